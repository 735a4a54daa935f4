//! Shared harness for integration tests against the local stack (`scripts/stack.sh up`, which
//! `make test` runs): per-test databases and buckets, staging objects, running the daemon
//! binary, and waiting for what a user would check.
#![allow(dead_code)]

pub mod redshift;

use aws_sdk_s3::primitives::ByteStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The local stack's addresses, from the environment `scripts/stack.sh` writes.
#[derive(Clone, Debug)]
pub struct Stack {
    /// Superuser URL of the `stageload` database.
    pub pg_url: String,
    /// `127.0.0.1:port` of PostgreSQL.
    pub pg_host_port: String,
    /// S3 endpoint.
    pub s3_endpoint: String,
    /// OpenSearch-compatible endpoint (may be empty).
    pub opensearch_url: String,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the integration tests through `make test` (scripts/test.sh), which starts the local stack")
    })
}

impl Stack {
    /// Reads the stack's addresses; panics with instructions when the stack is not up.
    pub fn get() -> Stack {
        Stack {
            pg_url: var("STAGELOAD_PG_URL"),
            pg_host_port: format!("127.0.0.1:{}", var("STAGELOAD_PG_PORT")),
            s3_endpoint: var("STAGELOAD_S3_ENDPOINT"),
            opensearch_url: std::env::var("STAGELOAD_OPENSEARCH_URL").unwrap_or_default(),
        }
    }

    /// A unique lowercase name for a test's database, bucket or pipeline.
    pub fn unique(prefix: &str) -> String {
        format!(
            "{prefix}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        )
    }

    /// Creates an empty database and returns its URL.
    pub async fn fresh_database(&self, prefix: &str) -> String {
        let name = Stack::unique(prefix).replace('-', "_");
        let (client, conn) = tokio_postgres::connect(&self.pg_url, NoTls)
            .await
            .expect("connect to stack postgres");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        format!(
            "postgres://stageload:stageload@{}/{name}",
            self.pg_host_port
        )
    }

    /// An S3 client for the stack.
    pub async fn s3(&self) -> aws_sdk_s3::Client {
        let creds = aws_sdk_s3::config::Credentials::new(
            var("AWS_ACCESS_KEY_ID"),
            var("AWS_SECRET_ACCESS_KEY"),
            None,
            None,
            "test",
        );
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(&self.s3_endpoint)
            .force_path_style(true)
            .credentials_provider(creds)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// Creates a fresh bucket and returns its name.
    pub async fn bucket(&self, prefix: &str) -> String {
        let name = Stack::unique(prefix);
        self.s3()
            .await
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .expect("create bucket");
        name
    }

    /// The `[control]` and `[s3]` sections for a test config.
    pub fn base_config(&self, database_url: &str) -> String {
        format!(
            r#"
[control]
database_url = "{database_url}"
pool_size = 4
[s3]
region = "us-east-1"
endpoint = "{}"
force_path_style = true
access_key_id = "${{AWS_ACCESS_KEY_ID}}"
secret_access_key = "${{AWS_SECRET_ACCESS_KEY}}"
[admin]
listen = ""
[daemon]
lease_s = 6
shutdown_grace_s = 5
backoff_initial_ms = 200
backoff_max_s = 2
"#,
            self.s3_endpoint
        )
    }
}

/// Writes an object.
pub async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: Vec<u8>) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .expect("put object");
}

/// Reads an object, if it exists.
pub async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let out = s3.get_object().bucket(bucket).key(key).send().await.ok()?;
    Some(out.body.collect().await.ok()?.into_bytes().to_vec())
}

/// Every key under a prefix.
pub async fn keys(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    let out = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .expect("list");
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

/// Gzip of some bytes.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// `n` JSON lines `{"id":"<tag>-<i>",...}` padded to about `line_bytes` each.
pub fn json_lines(tag: &str, n: usize, line_bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * (line_bytes + 1));
    for i in 0..n {
        let head = format!(
            r#"{{"id":"{tag}-{i}","user_id":{},"action":"click","ts":{},"pad":""#,
            i % 97,
            1_764_300_000 + i
        );
        out.extend_from_slice(head.as_bytes());
        let pad = line_bytes.saturating_sub(head.len() + 2);
        out.extend(std::iter::repeat_n(b'x', pad));
        out.extend_from_slice(b"\"}\n");
    }
    out
}

/// A loopback address nobody listens on.
pub async fn closed_port() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr.to_string()
}

/// Runs statements against a database; a failure fails the test.
pub async fn exec(url: &str, sql: &str) {
    let (c, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(conn);
    c.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
}

/// A PostgreSQL client program of the stack's version (`pg_dump`, `psql`).
pub fn pg_tool(name: &str) -> String {
    let versioned = format!("/usr/lib/postgresql/15/bin/{name}");
    if Path::new(&versioned).exists() {
        versioned
    } else {
        name.to_string()
    }
}

/// `pg_dump` of the database at `url` into `file` (plain SQL), as a backup taken while the
/// daemon runs; false when it failed (the server restarting).
pub fn dump_database(url: &str, file: &Path) -> bool {
    Command::new(pg_tool("pg_dump"))
        .args(["--no-owner", "--file"])
        .arg(file)
        .arg(url)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Drops the database at `url` and creates it again under the same name: empty, or restored
/// from `dump` (made by [`dump_database`]); false when a step failed.
pub async fn recreate_database(stack: &Stack, url: &str, dump: Option<&Path>) -> bool {
    let name = url.rsplit('/').next().unwrap();
    let Ok((admin, conn)) = tokio_postgres::connect(&stack.pg_url, NoTls).await else {
        return false;
    };
    tokio::spawn(conn);
    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE); CREATE DATABASE {name}");
    for statement in sql.split("; ") {
        if admin.batch_execute(statement).await.is_err() {
            return false;
        }
    }
    let Some(dump) = dump else { return true };
    Command::new(pg_tool("psql"))
        .args([
            "--quiet",
            "--set",
            "ON_ERROR_STOP=1",
            "--dbname",
            url,
            "--file",
        ])
        .arg(dump)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A query against a database, returning the first column of each row as text.
pub async fn query_strings(url: &str, sql: &str) -> Vec<String> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
        .simple_query(sql)
        .await
        .expect("query")
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_string()),
            _ => None,
        })
        .collect()
}

/// One number from a query (`SELECT count(*) ...`). A query that fails fails the test, except
/// that a table or column not created yet (the daemon migrates at start) is waited for, up to
/// 20 s.
pub async fn query_i64(url: &str, sql: &str) -> i64 {
    let start = Instant::now();
    loop {
        let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect");
        tokio::spawn(conn);
        match client.simple_query(sql).await {
            Ok(msgs) => {
                return msgs
                    .into_iter()
                    .find_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => {
                            r.get(0).map(|v| v.parse().expect("a number"))
                        }
                        _ => None,
                    })
                    .unwrap_or_else(|| panic!("no row from {sql}"))
            }
            Err(e)
                if (e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE)
                    || e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_COLUMN))
                    && start.elapsed() < Duration::from_secs(20) =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("query failed: {sql}: {e:?}"),
        }
    }
}

/// Polls `check` until it returns Some or `timeout` passes (then panics with `what`).
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the control database has batches and every batch and object is settled: nothing
/// sealed, delivering, pending or batched. Assertions of "no duplicates" come after this, not
/// after a sleep.
pub async fn wait_all_settled(db: &str) {
    wait_for(
        "every batch and object settled",
        Duration::from_secs(60),
        || async {
            let all = query_i64(db, "SELECT count(*) FROM batches").await;
            let open = query_i64(
                db,
                "SELECT (SELECT count(*) FROM batches WHERE state IN ('sealed', 'delivering')) + \
                    (SELECT count(*) FROM staged_objects WHERE state IN ('pending', 'batched'))",
            )
            .await;
            (all > 0 && open == 0).then_some(())
        },
    )
    .await
}

/// Waits for a log line holding every one of `needles`.
pub async fn wait_log(log: impl Fn() -> String, needles: &[&str]) {
    wait_for(
        &format!("a log line with {needles:?}"),
        Duration::from_secs(40),
        || async {
            log()
                .lines()
                .any(|l| needles.iter().all(|n| l.contains(n)))
                .then_some(())
        },
    )
    .await
}

/// Stages three objects, delivers them with a first daemon that pauses before settling and is
/// then stopped (SIGSTOP) past its lease, lets a second daemon take the batch over and settle
/// it, and wakes the first: its stale settlement must be refused. Returns the first's log.
pub async fn paused_owner_is_fenced(
    config: &str,
    db: &str,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    name: &str,
) -> String {
    for i in 0..3 {
        put(
            s3,
            bucket,
            &format!("in/{name}/{i}.json"),
            json_lines(&format!("f{i}"), 20, 60),
        )
        .await;
    }
    let first =
        Daemon::start_with_env(config, &[("STAGELOAD_TEST_PAUSE_BEFORE_SETTLE_MS", "4000")]);
    wait_log(|| first.log_text(), &["test hook: pausing before settling"]).await;
    first.signal("STOP");
    let second = Daemon::start(config);
    wait_for(
        "the second daemon settled the batch",
        Duration::from_secs(40),
        || async {
            (query_i64(db, "SELECT count(*) FROM batches WHERE state = 'loaded'").await == 1)
                .then_some(())
        },
    )
    .await;
    first.signal("CONT");
    wait_for(
        "the first daemon was fenced",
        Duration::from_secs(30),
        || async {
            let log = first.log_text();
            (log.contains("settlement refused: the lease was taken over")
                || log.contains("lease ran out while this worker was stalled"))
            .then_some(())
        },
    )
    .await;
    wait_all_settled(db).await;
    assert!(second.log_text().contains("batch settled"));
    assert_eq!(
        query_strings(db, "SELECT state || ' ' || attempts FROM batches")
            .await
            .len(),
        1,
        "one batch"
    );
    first.log_text()
}

/// A running `stageload run` process with its own config file and log.
pub struct Daemon {
    child: Option<Child>,
    /// The config file.
    pub config: PathBuf,
    /// Its stderr log.
    pub log: PathBuf,
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts the daemon binary with this config text.
    pub fn start(config_text: &str) -> Daemon {
        Daemon::start_with_env(config_text, &[])
    }

    /// Starts the daemon binary with this config text and extra environment variables.
    pub fn start_with_env(config_text: &str, env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("stageload.toml");
        std::fs::write(&config, config_text).unwrap();
        let log = dir.path().join("daemon.log");
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut d = Daemon {
            child: None,
            config,
            log,
            env,
            _dir: dir,
        };
        d.spawn();
        d
    }

    /// Starts the process again with the same config (after a kill).
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_stageload"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("STAGELOAD_LOG", "info,stageload=debug")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start stageload");
        self.child = Some(child);
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = c.kill();
                panic!(
                    "daemon did not stop within 30s of SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal (`HUP`, `TERM`, ...) to the process.
    pub fn signal(&self, name: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{name}"))
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Runs `stageload <args> --config <this daemon's config>` and returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_stageload"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run stageload");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- daemon log ({}) ----\n{}",
                self.log.display(),
                self.log_text()
            );
        }
        self.kill9();
    }
}

/// Every NDJSON line in every `*.ndjson` file of a directory.
pub fn delivered_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return lines;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "ndjson") {
            lines.extend(
                std::fs::read_to_string(&p)
                    .unwrap()
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    lines
}

/// A `[[pipeline]]` with test timings (poll every second, seal after a second) reading
/// `in/<name>/` of `bucket`; `destination` is the body of its `[pipeline.destination]` table.
pub fn pipeline_block(
    name: &str,
    bucket: &str,
    format: &str,
    retry_s: u64,
    destination: &str,
) -> String {
    format!(
        r#"
[[pipeline]]
name = "{name}"
retry_duration_s = {retry_s}
error_prefix = "errors/{name}/"
[pipeline.source]
bucket = "{bucket}"
prefix = "in/{name}/"
poll_interval_s = 1
format = "{format}"
[pipeline.buffer]
size_mib = 5
interval_s = 1
max_objects = 1000
[pipeline.destination]
{destination}
"#
    )
}

/// A JSON-lines pipeline into the file destination at `dir`.
pub fn file_pipeline(name: &str, bucket: &str, dir: &Path, retry_s: u64) -> String {
    pipeline_block(
        name,
        bucket,
        "json_lines",
        retry_s,
        &format!("type = \"file\"\ndirectory = \"{}\"", dir.display()),
    )
}

/// Starts the HEC receiver (`tools/hec-receiver`, built beside the daemon) on `listen` with
/// `token` and `extra` flags; returns the process and the `host:port` it printed.
pub fn start_hec_receiver(listen: &str, token: &str, extra: &[&str]) -> (Child, String) {
    use std::io::{BufRead, BufReader};
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_stageload"))
        .parent()
        .expect("target dir")
        .join("hec-receiver");
    assert!(
        bin.exists(),
        "{} is missing: cargo build --workspace --bins",
        bin.display()
    );
    let mut child = Command::new(bin)
        .args(["--listen", listen, "--token", token])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hec-receiver");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("receiver prints its address");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("hec-receiver: unexpected first line {line:?}"))
        .to_string();
    (child, addr)
}

/// Runs `stageload check-config` on `text` (written into `dir`), asserts it is refused (exit
/// status 2), and returns what it printed on stderr.
pub fn check_config_refused(dir: &Path, text: &str) -> String {
    let path = dir.join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stageload"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "refused: {stderr}");
    stderr
}

/// The stack's own AWS key as the AWS stand-ins take it, `AKID:SECRET` (the daemon signs with
/// it through `[s3]` and the default chain).
pub fn stack_key() -> String {
    format!(
        "{}:{}",
        std::env::var("AWS_ACCESS_KEY_ID").unwrap(),
        std::env::var("AWS_SECRET_ACCESS_KEY").unwrap()
    )
}

/// A Python test server from `tests/proxy/` (the AWS verifiers), killed on drop. It prints
/// `listening on host:port` first and answers `GET /__verifier/stats`.
pub struct PyServer {
    child: Child,
    /// `http://host:port`.
    pub url: String,
}

impl PyServer {
    /// Starts `tests/proxy/<script>` with `args`.
    pub fn start(script: &str, args: &[String]) -> PyServer {
        use std::io::{BufRead, BufReader};
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/proxy")
            .join(script);
        let mut child = Command::new("python3")
            .arg(path)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the verifier");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{script} did not start (botocore missing?): {line:?}"))
            .to_string();
        PyServer {
            child,
            url: format!("http://{addr}"),
        }
    }

    /// What it saw.
    pub async fn stats(&self) -> serde_json::Value {
        reqwest::get(format!("{}/__verifier/stats", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The hits of a search over `target` (an index, a pattern) on the stack's OpenSearch-compatible
/// server, after a refresh: up to 1,000 documents; none while no index matches.
pub async fn es_hits(target: &str) -> Vec<serde_json::Value> {
    let es = Stack::get()
        .opensearch_url
        .trim_end_matches('/')
        .to_string();
    let client = reqwest::Client::new();
    let _ = client.post(format!("{es}/{target}/_refresh")).send().await;
    let resp = client
        .post(format!("{es}/{target}/_search"))
        .json(&serde_json::json!({"size": 1000}))
        .send()
        .await
        .expect("search");
    if resp.status().as_u16() == 404 {
        return Vec::new();
    }
    let v: serde_json::Value = resp.json().await.expect("search answer is JSON");
    v["hits"]["hits"].as_array().cloned().unwrap_or_default()
}

/// Waits up to 20 s for the HEC receiver at `addr` to hold exactly `n` events; returns them.
pub async fn hec_events(addr: &str, n: usize) -> Vec<serde_json::Value> {
    wait_for(&format!("{n} events"), Duration::from_secs(20), || async {
        let v: serde_json::Value = reqwest::get(format!("http://{addr}/_receiver/events"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let events = v.as_array()?.clone();
        (events.len() == n).then_some(events)
    })
    .await
}

/// Strips ANSI colour sequences, in case the log was written with colours.
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The admin port's address, from the daemon's `admin listening addr=...` log line.
pub async fn admin_addr(daemon: &Daemon) -> String {
    wait_for("admin listening", Duration::from_secs(60), || async {
        let log = plain(&daemon.log_text());
        let line = log.lines().find(|l| l.contains("admin listening"))?;
        let addr = line.split("addr=").nth(1)?.split_whitespace().next()?;
        Some(addr.trim_matches('"').to_string())
    })
    .await
}
