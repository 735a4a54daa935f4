//! The Redshift guarantees against a real cluster or Serverless workgroup, for a user to check
//! their own warehouse: `scripts/redshift-smoke.sh` runs it (never part of `make test`, which
//! has no Redshift). The same cases as the emulator tests: a load lands once, a kill -9 after
//! COMMIT and before settling loses nothing and loads nothing twice, and a bad file is left out
//! alone while a file with one bad row loads under MAXERROR.
//!
//! Environment: `STAGELOAD_SMOKE_REDSHIFT_URL` (`postgres://user@host:5439/db?sslmode=verify-full`),
//! `STAGELOAD_SMOKE_REDSHIFT_PASSWORD`, `STAGELOAD_SMOKE_IAM_ROLE` (a role the cluster may assume
//! to read the bucket), `STAGELOAD_SMOKE_BUCKET` and `AWS_REGION` (credentials from the default
//! AWS chain), and `STAGELOAD_SMOKE_CONTROL_URL` (a PostgreSQL for the control database; the
//! script passes the local stack's).

mod common;

use common::*;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(600);

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: see scripts/redshift-smoke.sh"))
}

/// A session to the cluster, with verified TLS as the daemon makes it.
async fn cluster() -> tokio_postgres::Client {
    let (url, mode) =
        stageload::pgtls::split_sslmode(&env("STAGELOAD_SMOKE_REDSHIFT_URL")).unwrap();
    let mut config: tokio_postgres::Config = url.parse().unwrap();
    if let Some(mode) = mode {
        config.ssl_mode(mode);
    }
    config.password(env("STAGELOAD_SMOKE_REDSHIFT_PASSWORD"));
    let (client, conn) = config
        .connect(stageload::pgtls::make_tls(None).unwrap())
        .await
        .expect("connect to the cluster");
    tokio::spawn(conn);
    client
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    let rows = client.simple_query(sql).await.expect(sql);
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse().ok(),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no row from {sql}"))
}

async fn s3() -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::new(&aws_config::load_from_env().await)
}

fn config(control: &str, table: &str, bucket: &str, prefix: &str) -> String {
    format!(
        r#"
[control]
database_url = "{control}"
[s3]
region = "{region}"
[admin]
listen = ""
[daemon]
lease_s = 10
backoff_initial_ms = 500
backoff_max_s = 5
[[pipeline]]
name = "smoke"
retry_duration_s = 600
error_prefix = "{prefix}errors/"
[pipeline.source]
bucket = "{bucket}"
prefix = "{prefix}in/"
poll_interval_s = 2
format = "json_lines"
[pipeline.buffer]
size_mib = 64
interval_s = 5
max_objects = 100
[pipeline.destination]
type = "redshift"
url = "{url}"
password = "${{STAGELOAD_SMOKE_REDSHIFT_PASSWORD}}"
table = "{table}"
copy_options = "JSON 'auto' TIMEFORMAT 'epochsecs' MAXERROR 2"
iam_role = "{role}"
manifest_prefix = "{prefix}manifests/"
"#,
        region = env("AWS_REGION"),
        url = env("STAGELOAD_SMOKE_REDSHIFT_URL"),
        role = env("STAGELOAD_SMOKE_IAM_ROLE"),
    )
}

#[tokio::test]
#[ignore = "needs a real Redshift: scripts/redshift-smoke.sh"]
async fn real_cluster_loads_once_through_a_crash_and_isolates_a_bad_file() {
    let run = format!("{}", std::process::id());
    let table = format!("public.stageload_smoke_{run}");
    let bucket = env("STAGELOAD_SMOKE_BUCKET");
    let prefix = format!("stageload-smoke/{run}/");
    let rs = cluster().await;
    rs.batch_execute(&format!(
        "CREATE TABLE {table} (id varchar(64) NOT NULL, user_id integer, action varchar(16), \
         ts timestamp, pad varchar(256))"
    ))
    .await
    .expect("create the smoke table");
    let s3 = s3().await;
    let put = |key: String, body: Vec<u8>| {
        let (s3, bucket) = (s3.clone(), bucket.clone());
        async move {
            s3.put_object()
                .bucket(bucket)
                .key(key)
                .body(body.into())
                .send()
                .await
                .expect("put object");
        }
    };
    // Four clean files, one with one bad row (loaded under MAXERROR 2), one bad file.
    for i in 0..4 {
        put(
            format!("{prefix}in/good-{i}.json"),
            json_lines(&format!("g{i}"), 100, 60),
        )
        .await;
    }
    let mut one_bad = json_lines("o", 50, 60);
    one_bad.extend_from_slice(b"{\"id\":\"o-bad\",\"user_id\":\"x\"}\n");
    put(format!("{prefix}in/one-bad-row.json"), one_bad).await;
    let bad: String = (0..5)
        .map(|i| format!("{{\"id\":\"b-{i}\",\"user_id\":\"x{i}\"}}\n"))
        .collect();
    put(format!("{prefix}in/bad-file.json"), bad.into_bytes()).await;

    let control = env("STAGELOAD_SMOKE_CONTROL_URL");
    let cfg = config(&control, &table, &bucket, &prefix);
    // Killed after COMMIT, before settling; the next process settles from the marker.
    let mut first = Daemon::start_with_env(
        &cfg,
        &[("STAGELOAD_TEST_REDSHIFT_PAUSE", "after_commit:60000")],
    );
    wait_for("the first COMMIT", LONG, || async {
        first.log_text().contains("after_commit").then_some(())
    })
    .await;
    first.kill9();
    let second = Daemon::start(&cfg);
    wait_all_settled(&control).await;
    assert_eq!(
        count(&rs, &format!("SELECT count(*) FROM {table}")).await,
        450
    );
    assert_eq!(
        count(
            &rs,
            &format!(
                "SELECT count(*) FROM (SELECT id FROM {table} GROUP BY id HAVING count(*) > 1) d"
            )
        )
        .await,
        0,
        "no row loaded twice"
    );
    let skipped = query_strings(
        &control,
        "SELECT key FROM staged_objects WHERE state = 'skipped'",
    )
    .await;
    assert_eq!(skipped, vec![format!("{prefix}in/bad-file.json")]);
    assert_eq!(
        query_i64(
            &control,
            "SELECT count(*) FROM load_errors WHERE filename LIKE '%one-bad-row.json'"
        )
        .await,
        1,
        "the harvested MAXERROR row survived the crash"
    );
    assert!(second
        .log_text()
        .contains("taken-over batch was already delivered"));
    rs.batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}
