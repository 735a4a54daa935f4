//! Logging in to Redshift and TLS, against the local stack, the Redshift emulator and moto:
//! the password from a Secrets Manager secret (and read again after rotation), IAM temporary
//! credentials from moto's `GetClusterCredentials`, `GetClusterCredentialsWithIAM` and
//! Serverless `GetCredentials` from a small fake AWS endpoint (moto has neither), and the
//! `sslmode` verification levels through a TLS-terminating proxy in front of the emulator.

mod common;

use common::redshift::*;
use common::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// moto's random numbers (its generated passwords) are one sequence for the whole server:
/// tests that use moto take turns.
static MOTO: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn moto() -> String {
    std::env::var("STAGELOAD_SQS_ENDPOINT")
        .ok()
        .filter(|s| !s.is_empty())
        .expect("moto's endpoint (STAGELOAD_SQS_ENDPOINT) is not set: is the stack up?")
}

async fn aws() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await
}

/// The database name of the setup's Redshift database.
fn db(s: &Setup) -> String {
    s.rs.rsplit('/').next().unwrap().to_string()
}

/// A JSON-lines pipeline `name` whose destination URL is `url` and with `extra` destination
/// lines.
fn config_with_url(s: &Setup, name: &str, url: &str, extra: &str) -> String {
    s.json_config(name, 60, extra).replace(&s.emu.url(), url)
}

/// A Secrets Manager client for moto.
async fn secrets_manager() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(&aws().await)
            .endpoint_url(moto())
            .build(),
    )
}

/// A new secret holding `value`; its ARN.
async fn create_secret(sm: &aws_sdk_secretsmanager::Client, value: &str) -> String {
    sm.create_secret()
        .name(Stack::unique("rs-secret"))
        .secret_string(value)
        .send()
        .await
        .expect("create secret in moto")
        .arn()
        .expect("secret arn")
        .to_string()
}

/// A password unlikely to appear in a log by chance.
fn password(tag: &str) -> String {
    format!("Pw{tag}x{}", uuid::Uuid::new_v4().simple())
}

fn assert_never_logged(log: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !log.contains(s),
            "a secret value appears in the log:\n{log}"
        );
    }
}

#[tokio::test]
async fn password_from_secrets_manager_and_its_rotation() {
    let _turn = MOTO.lock().await;
    let s = setup("rsauthsec", EVENTS).await;
    let role = Stack::unique("secloader").replace('-', "_");
    let pw1 = password("one");
    exec(
        &s.rs,
        &format!("CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{pw1}'"),
    )
    .await;
    let sm = secrets_manager().await;
    let value = |pw: &str| {
        serde_json::json!({"username": role, "password": pw, "engine": "redshift"}).to_string()
    };
    let arn = create_secret(&sm, &value(&pw1)).await;
    // No password in the URL, and a user the secret's username replaces.
    let url = format!(
        "postgres://nobody@{}/{}?sslmode=disable",
        s.emu.addr,
        db(&s)
    );
    let cfg = config_with_url(
        &s,
        "sec",
        &url,
        &format!(
            "password_secret_arn = \"{arn}\"\naws_endpoint = \"{}\"",
            moto()
        ),
    );
    put(&s.s3, &s.bucket, "in/sec/a.json", json_lines("a", 20, 60)).await;
    let d = Daemon::start(&cfg);
    s.wait_rows(20).await;

    // Rotation: the role's password changes, the secret follows, the sessions end; the next
    // session is refused with the kept password, reads the secret again and loads.
    let pw2 = password("two");
    exec(
        &s.rs,
        &format!(
            "ALTER ROLE {role} PASSWORD '{pw2}'; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
        ),
    )
    .await;
    sm.put_secret_value()
        .secret_id(&arn)
        .secret_string(value(&pw2))
        .send()
        .await
        .expect("rotate the secret");
    put(&s.s3, &s.bucket, "in/sec/b.json", json_lines("b", 10, 60)).await;
    s.wait_rows(30).await;
    s.wait_batches_settled("batches settled after rotation")
        .await;
    s.assert_exactly_once(30).await;
    wait_log(
        || d.log_text(),
        &["redshift refused the login, reading the password secret again"],
    )
    .await;
    assert_never_logged(&d.log_text(), &[&pw1, &pw2, &value(&pw1), &value(&pw2)]);
}

/// Seeds moto's random numbers (its generated passwords follow from the seed).
async fn seed_moto(seed: u32) {
    let r = reqwest::Client::new()
        .post(format!("{}/moto-api/seed?a={seed}", moto()))
        .send()
        .await
        .expect("seed moto");
    assert!(r.status().is_success(), "seed moto: {}", r.status());
}

#[tokio::test]
async fn iam_credentials_from_get_cluster_credentials() {
    let _turn = MOTO.lock().await;
    let s = setup("rsauthiam", EVENTS).await;
    let rs = aws_sdk_redshift::Client::from_conf(
        aws_sdk_redshift::config::Builder::from(&aws().await)
            .endpoint_url(moto())
            .build(),
    );
    let cluster = Stack::unique("cluster");
    rs.create_cluster()
        .cluster_identifier(&cluster)
        .node_type("ra3.xlplus")
        .master_username("admin")
        .master_user_password("Admin12345")
        .send()
        .await
        .expect("create cluster in moto");
    let db_user = Stack::unique("loader").replace('-', "_");
    // moto answers a random password: learn the one it will give after this seed, then seed
    // again so the daemon's call gets the same one, and give the database user that password.
    let seed = std::process::id() % 100_000;
    seed_moto(seed).await;
    let creds = rs
        .get_cluster_credentials()
        .cluster_identifier(&cluster)
        .db_user(&db_user)
        .duration_seconds(900)
        .auto_create(false)
        .db_name(db(&s))
        .send()
        .await
        .expect("GetClusterCredentials from moto");
    let user = creds.db_user().unwrap().to_string();
    let pw = creds.db_password().unwrap().to_string();
    assert_eq!(user, format!("IAM:{db_user}"));
    exec(
        &s.rs,
        &format!("CREATE ROLE \"{user}\" LOGIN SUPERUSER PASSWORD '{pw}'"),
    )
    .await;
    seed_moto(seed).await;
    // No user or password in the URL: both come from GetClusterCredentials.
    let url = format!("postgres://{}/{}?sslmode=disable", s.emu.addr, db(&s));
    let cfg = config_with_url(
        &s,
        "iam",
        &url,
        &format!(
            "auth = \"iam\"\ncluster_identifier = \"{cluster}\"\ndb_user = \"{db_user}\"\n\
             iam_duration_s = 900\naws_endpoint = \"{}\"",
            moto()
        ),
    );
    put(&s.s3, &s.bucket, "in/iam/a.json", json_lines("i", 25, 60)).await;
    let d = Daemon::start(&cfg);
    s.settled_with(25).await;
    let loaded_by = query_strings(
        &s.rs,
        "SELECT DISTINCT usename FROM pg_stat_activity WHERE application_name = 'stageload'",
    )
    .await;
    assert!(loaded_by.contains(&user), "sessions as {loaded_by:?}");
    assert_never_logged(&d.log_text(), &[&pw]);
}

/// One request a fake AWS endpoint received.
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: String,
}

/// A fake AWS endpoint that answers every request with `answer` and records what it got.
async fn fake_aws(content_type: &'static str, answer: String) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body) = loop {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break (String::new(), String::new());
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let head = text[..end].to_string();
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break (head, text[end + 4..end + 4 + len].to_string());
                    }
                }
            };
            log.lock().unwrap().push(Seen { head, body });
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
                 x-amzn-RequestId: 1\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = sock.write_all(reply.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    (format!("http://{addr}"), seen)
}

/// A load with `auth = "iam"` whose credentials come from a fake endpoint answering `answer`
/// with user `user`; returns what the endpoint received.
async fn load_with_fake_iam(
    tag: &str,
    iam_lines: &str,
    content_type: &'static str,
    answer: impl Fn(&str, &str) -> String,
) -> Vec<Seen> {
    let s = setup(tag, EVENTS).await;
    let user = format!("IAMR:{}", Stack::unique("role").replace('-', "_"));
    let pw = password("iam");
    exec(
        &s.rs,
        &format!("CREATE ROLE \"{user}\" LOGIN SUPERUSER PASSWORD '{pw}'"),
    )
    .await;
    let (endpoint, seen) = fake_aws(content_type, answer(&user, &pw)).await;
    let url = format!("postgres://{}/{}?sslmode=disable", s.emu.addr, db(&s));
    let cfg = config_with_url(
        &s,
        "fake",
        &url,
        &format!(
            "auth = \"iam\"\n{iam_lines}\naws_endpoint = \"{endpoint}\"\niam_duration_s = 1200"
        ),
    );
    put(&s.s3, &s.bucket, "in/fake/a.json", json_lines(tag, 15, 60)).await;
    let d = Daemon::start(&cfg);
    s.settled_with(15).await;
    assert_never_logged(&d.log_text(), &[&pw]);
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    for r in &seen {
        assert!(
            r.body.contains(&db(&s)),
            "the database is named in the request: {r:?}"
        );
    }
    seen
}

#[tokio::test]
async fn iam_credentials_from_get_cluster_credentials_with_iam() {
    // moto has no GetClusterCredentialsWithIAM: a fake endpoint answers as the API reference
    // shows, and the request is checked.
    let seen = load_with_fake_iam(
        "rsauthwi",
        "cluster_identifier = \"c-with-iam\"",
        "text/xml",
        |user, pw| {
            format!(
                "<GetClusterCredentialsWithIAMResponse xmlns=\"http://redshift.amazonaws.com/doc/2012-12-01/\">\
                 <GetClusterCredentialsWithIAMResult><DbUser>{user}</DbUser><DbPassword>{pw}</DbPassword>\
                 <Expiration>2030-01-01T00:00:00Z</Expiration></GetClusterCredentialsWithIAMResult>\
                 <ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetClusterCredentialsWithIAMResponse>"
            )
        },
    )
    .await;
    let body = &seen[0].body;
    for part in [
        "Action=GetClusterCredentialsWithIAM",
        "ClusterIdentifier=c-with-iam",
        "DurationSeconds=1200",
        "DbName=",
    ] {
        assert!(body.contains(part), "{part} in {body}");
    }
    assert!(!body.contains("DbUser"), "{body}");
}

#[tokio::test]
async fn iam_credentials_from_serverless_get_credentials() {
    // moto has no Redshift Serverless: a fake endpoint answers as the API reference shows.
    let seen = load_with_fake_iam(
        "rsauthsl",
        "workgroup_name = \"wg-main\"",
        "application/x-amz-json-1.1",
        |user, pw| {
            serde_json::json!({"dbUser": user, "dbPassword": pw, "expiration": 1.9e9}).to_string()
        },
    )
    .await;
    let r = &seen[0];
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("x-amz-target: redshiftserverless.getcredentials"),
        "{}",
        r.head
    );
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["workgroupName"], "wg-main");
    assert_eq!(body["durationSeconds"], 1200);
    assert!(body["dbName"].is_string(), "{body}");
}

// ---- TLS ----

/// A test CA and a server certificate for `localhost` it signed.
struct Pki {
    ca_pem: String,
    cert: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

fn pki(ca_name: &str) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert: leaf.der().clone(),
        key: rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    }
}

/// A TLS-terminating proxy in front of the emulator: answers the SSLRequest with `S`, performs
/// the handshake with `pki`'s certificate, then relays bytes. Returns its `127.0.0.1:port`.
async fn tls_proxy(pki: &Pki, emu: &str) -> String {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![pki.cert.clone()], pki.key.clone_key())
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let emu = emu.to_string();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let emu = emu.clone();
            tokio::spawn(async move {
                let mut first = [0u8; 8];
                sock.read_exact(&mut first).await?;
                let mut backend = TcpStream::connect(&emu).await?;
                if first == [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f] {
                    // SSLRequest (length 8, code 80877103).
                    sock.write_all(b"S").await?;
                    let mut tls = acceptor.accept(sock).await?;
                    tokio::io::copy_bidirectional(&mut tls, &mut backend).await?;
                } else {
                    backend.write_all(&first).await?;
                    tokio::io::copy_bidirectional(&mut sock, &mut backend).await?;
                }
                Ok::<_, std::io::Error>(())
            });
        }
    });
    addr
}

/// The setup, a proxy with a certificate for `localhost` from a test CA, the CA's PEM file, and
/// another CA's PEM file the server's certificate does not chain to.
struct TlsSetup {
    s: Setup,
    proxy: String,
    ca_file: std::path::PathBuf,
    other_ca_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn tls_setup(tag: &str) -> TlsSetup {
    let s = setup(tag, EVENTS).await;
    let pki = pki("stageload test CA");
    let proxy = tls_proxy(&pki, &s.emu.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let other_ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca_file, self::pki("another test CA").ca_pem).unwrap();
    TlsSetup {
        s,
        proxy,
        ca_file,
        other_ca_file,
        _dir: dir,
    }
}

impl TlsSetup {
    fn config(&self, name: &str, mode: &str, ca_file: &std::path::Path, extra: &str) -> String {
        let url = format!(
            "postgres://stageload:stageload@{}/{}?sslmode={mode}",
            self.proxy,
            db(&self.s)
        );
        config_with_url(
            &self.s,
            name,
            &url,
            &format!("ca_file = \"{}\"\n{extra}", ca_file.display()),
        )
    }
}

#[tokio::test]
async fn verify_ca_checks_the_chain_and_verify_full_the_name() {
    let t = tls_setup("rstlsok").await;
    let s = &t.s;
    // verify-full to 127.0.0.1 with a certificate for localhost: refused, naming the pipeline.
    let full = Daemon::start(&t.config("full", "verify-full", &t.ca_file, ""));
    wait_log(
        || full.log_text(),
        &[
            "destination check failed",
            "pipeline full:",
            "certificate not valid for name",
        ],
    )
    .await;
    drop(full);
    // verify-ca: the chain is enough.
    put(&s.s3, &s.bucket, "in/ca/a.json", json_lines("ca", 10, 60)).await;
    let ca = Daemon::start(&t.config("ca", "verify-ca", &t.ca_file, ""));
    s.wait_rows(10).await;
    // The rows are there once the COPY committed; the batch settles just after. Stopping the
    // daemon in between would leave a batch of pipeline "ca" that no later daemon runs.
    s.wait_batches_settled("the verify-ca batch settled").await;
    drop(ca);
    // verify-full with the certificate's name given: loads.
    put(
        &s.s3,
        &s.bucket,
        "in/named/a.json",
        json_lines("nm", 10, 60),
    )
    .await;
    let named = Daemon::start(&t.config(
        "named",
        "verify-full",
        &t.ca_file,
        "tls_server_name = \"localhost\"",
    ));
    s.wait_rows(20).await;
    s.wait_batches_settled("tls batches settled").await;
    s.assert_exactly_once(20).await;
    assert!(
        !named.log_text().contains("destination check failed"),
        "{}",
        named.log_text()
    );
}

#[tokio::test]
async fn an_untrusted_ca_is_refused_in_every_mode() {
    let t = tls_setup("rstlsbad").await;
    for (i, (mode, extra)) in [
        ("verify-ca", ""),
        ("verify-full", "tls_server_name = \"localhost\""),
        ("require", "tls_server_name = \"localhost\""),
        ("prefer", "tls_server_name = \"localhost\""),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("bad{i}");
        let key = format!("in/{name}/a.json");
        put(&t.s.s3, &t.s.bucket, &key, json_lines(&name, 5, 60)).await;
        let d = Daemon::start(&t.config(&name, mode, &t.other_ca_file, extra));
        wait_log(
            || d.log_text(),
            &[
                "destination check failed",
                &format!("pipeline {name}:"),
                "invalid peer certificate: UnknownIssuer",
            ],
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(t.s.rows("SELECT count(*) FROM public.events").await, 0);
}

/// Issue 22: the secret in another account, read as a role assumed with its external id.
#[tokio::test]
async fn the_password_secret_is_read_as_a_role_assumed_with_its_external_id() {
    let _turn = MOTO.lock().await;
    let s = setup("rsauthrole", EVENTS).await;
    let user = Stack::unique("roleloader").replace('-', "_");
    let pw = password("role");
    exec(
        &s.rs,
        &format!("CREATE ROLE {user} LOGIN SUPERUSER PASSWORD '{pw}'"),
    )
    .await;
    let arn = create_secret(
        &secrets_manager().await,
        &serde_json::json!({"username": user, "password": pw}).to_string(),
    )
    .await;
    let role = "arn:aws:iam::777788889999:role/secret-reader";
    let key = stack_key();
    let sts = PyServer::start(
        "sts_s3_verifier.py",
        &[
            "--s3-upstream".into(),
            s.stack.s3_endpoint.clone(),
            "--upstream-key".into(),
            key.clone(),
            "--base-key".into(),
            key,
            "--role".into(),
            format!("{role}=rs-ext-9"),
        ],
    );
    let url = format!(
        "postgres://nobody@{}/{}?sslmode=disable",
        s.emu.addr,
        db(&s)
    );
    let cfg = config_with_url(
        &s,
        "rsrole",
        &url,
        &format!(
            "password_secret_arn = \"{arn}\"\naws_endpoint = \"{}\"\n\
             aws_role_arn = \"{role}\"\naws_external_id = \"rs-ext-9\"",
            moto()
        ),
    );
    put(
        &s.s3,
        &s.bucket,
        "in/rsrole/a.json",
        json_lines("a", 10, 60),
    )
    .await;
    let d = Daemon::start_with_env(&cfg, &[("AWS_ENDPOINT_URL_STS", &sts.url)]);
    s.wait_rows(10).await;
    let stats = sts.stats().await;
    assert!(
        stats["assumed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["role"] == role
                && a["external_id"] == "rs-ext-9"
                && a["session"] == "stageload-redshift"),
        "{stats}"
    );
    assert_never_logged(&d.log_text(), &[&pw]);
}
