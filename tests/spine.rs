//! The spine against the real local stack (PostgreSQL and s3s-fs): discovery, sealing, dispatch,
//! retry budget, takeover after a crash, bad input, bad configuration. Delivery goes to the file
//! destination; every assertion is on what a user would check: lines delivered, rows in
//! `load_errors`, batches and objects in the control database, artifacts in S3.

mod common;

use async_trait::async_trait;
use chrono::{Duration as ChronoDuration, Utc};
use common::*;
use stageload::config::{Config, DestinationConfig};
use stageload::destination::{
    file::FileDestination, Attempt, Destination, DestinationError, FailureKind, Resume,
};
use stageload::model::ClaimedBatch;
use stageload::source::s3::S3;
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// A Firehose key in the hour partition of `t`.
fn firehose_key(prefix: &str, t: chrono::DateTime<Utc>, n: usize) -> String {
    format!(
        "{prefix}{}stream-1-{}-{n:04}.gz",
        t.format("%Y/%m/%d/%H/"),
        t.format("%Y-%m-%d-%H-%M-%S")
    )
}

/// Ids of delivered records, checking each was delivered once.
fn delivered_ids(dir: &Path) -> HashSet<String> {
    let lines = delivered_lines(dir);
    let mut ids = HashSet::new();
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).expect("delivered line is JSON");
        let id = v["id"].as_str().expect("id").to_string();
        assert!(ids.insert(id.clone()), "record {id} delivered twice");
    }
    ids
}

async fn wait_delivered(dir: &Path, n: usize) {
    wait_for(&format!("{n} records delivered"), LONG, || async {
        (delivered_lines(dir).len() >= n).then_some(())
    })
    .await;
}

#[tokio::test]
async fn firehose_objects_are_delivered_once_across_restarts() {
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("spine").await,
        stack.bucket("spine").await,
    );
    let s3 = stack.s3().await;
    let out = tempfile::tempdir().unwrap();
    let config = stack.base_config(&db) + &file_pipeline("clicks", &bucket, out.path(), 30);
    let now = Utc::now();
    for n in 0..5 {
        let body = json_lines(&format!("a{n}"), 200, 120);
        put(
            &s3,
            &bucket,
            &firehose_key("in/clicks/", now, n),
            gzip(&body),
        )
        .await;
    }
    let mut daemon = Daemon::start(&config);
    wait_delivered(out.path(), 1000).await;
    assert_eq!(daemon.terminate(), Some(0), "SIGTERM exits 0");

    for n in 5..10 {
        let body = json_lines(&format!("a{n}"), 200, 120);
        put(
            &s3,
            &bucket,
            &firehose_key("in/clicks/", now, n),
            gzip(&body),
        )
        .await;
    }
    daemon.spawn();
    wait_delivered(out.path(), 2000).await;
    daemon.kill9();
    for n in 10..12 {
        let body = json_lines(&format!("a{n}"), 200, 120);
        put(
            &s3,
            &bucket,
            &firehose_key("in/clicks/", now, n),
            gzip(&body),
        )
        .await;
    }
    daemon.spawn();
    wait_delivered(out.path(), 2400).await;
    wait_all_settled(&db).await;
    assert_eq!(daemon.terminate(), Some(0));

    let ids = delivered_ids(out.path());
    assert_eq!(ids.len(), 2400, "every staged record exactly once");
    let loaded = query_i64(
        &db,
        "SELECT count(*) FROM staged_objects WHERE state = 'loaded'",
    )
    .await;
    assert_eq!(loaded, 12);
    let errors = query_i64(&db, "SELECT count(*) FROM load_errors").await;
    assert_eq!(errors, 0);
}

#[tokio::test]
async fn a_late_write_into_a_listed_partition_is_discovered() {
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("late").await,
        stack.bucket("late").await,
    );
    let s3 = stack.s3().await;
    let out = tempfile::tempdir().unwrap();
    let config = stack.base_config(&db) + &file_pipeline("late", &bucket, out.path(), 30);
    let (earlier, now) = (Utc::now() - ChronoDuration::minutes(50), Utc::now());
    put(
        &s3,
        &bucket,
        &firehose_key("in/late/", earlier, 1),
        gzip(&json_lines("old", 10, 50)),
    )
    .await;
    put(
        &s3,
        &bucket,
        &firehose_key("in/late/", now, 2),
        gzip(&json_lines("new", 10, 50)),
    )
    .await;
    let _daemon = Daemon::start(&config);
    wait_delivered(out.path(), 20).await;

    // Sorts before the cursor (the newer partition's key), so only the lookback finds it.
    let late_key = firehose_key("in/late/", earlier, 0);
    let cursor = query_strings(&db, "SELECT last_key FROM discovery_cursors").await;
    assert!(
        late_key < cursor[0],
        "{late_key} should sort before the cursor {}",
        cursor[0]
    );
    put(&s3, &bucket, &late_key, gzip(&json_lines("late", 10, 50))).await;
    wait_delivered(out.path(), 30).await;
    let ids = delivered_ids(out.path());
    assert!(ids.contains("late-9"));
}

#[tokio::test]
async fn size_and_interval_thresholds_seal_batches() {
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("seal").await,
        stack.bucket("seal").await,
    );
    let s3 = stack.s3().await;
    let (big, small) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut config = stack.base_config(&db);
    config += &file_pipeline("bysize", &bucket, big.path(), 30).replace(
        "size_mib = 5\ninterval_s = 1",
        "size_mib = 1\ninterval_s = 3600",
    );
    config += &file_pipeline("bytime", &bucket, small.path(), 30)
        .replace("interval_s = 1", "interval_s = 3");
    // 12 uncompressed objects of 256 KiB: 3 MiB, so three size-sealed batches of 1 MiB.
    for n in 0..12 {
        put(
            &s3,
            &bucket,
            &format!("in/bysize/obj-{n:02}.json"),
            json_lines(&format!("s{n}"), 1024, 255),
        )
        .await;
    }
    put(&s3, &bucket, "in/bytime/one.json", json_lines("t", 3, 40)).await;
    let _daemon = Daemon::start(&config);
    wait_delivered(big.path(), 12 * 1024).await;
    wait_delivered(small.path(), 3).await;

    let by_size = query_i64(
        &db,
        "SELECT count(*) FROM batches WHERE pipeline = 'bysize' AND seal_reason = 'size'",
    )
    .await;
    assert!(
        by_size >= 3,
        "a 1 MiB buffer with 3 MiB staged gives at least three batches, got {by_size}"
    );
    let max_bytes = query_i64(
        &db,
        "SELECT max(total_bytes) FROM batches WHERE pipeline = 'bysize'",
    )
    .await;
    assert!(
        max_bytes <= 1024 * 1024 + 256 * 1024,
        "batches stop at the first object reaching the size"
    );
    let waited = query_strings(
        &db,
        "SELECT seal_reason || ' ' || (extract(epoch FROM sealed_at - o.discovered_at) >= 2.9)::text
         FROM batches b JOIN staged_objects o ON o.batch_id = b.id WHERE b.pipeline = 'bytime'",
    )
    .await;
    assert_eq!(
        waited,
        vec!["interval true"],
        "the small object is sealed by the interval, after it"
    );
}

/// Fails the first `failures` attempts with a transient error, then delivers through the file
/// destination.
struct Flaky {
    inner: FileDestination,
    failures: AtomicU32,
}

#[async_trait]
impl Destination for Flaky {
    fn kind(&self) -> &'static str {
        "file"
    }
    fn target(&self) -> String {
        self.inner.target()
    }
    async fn check(&self) -> Result<(), DestinationError> {
        Ok(())
    }
    async fn deliver(&self, batch: &ClaimedBatch, attempt: u32, resume: Option<Resume>) -> Attempt {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Attempt::failed(FailureKind::Transient, "injected: connection reset by peer");
        }
        self.inner.deliver(batch, attempt, resume).await
    }
}

#[tokio::test]
async fn transient_failures_are_retried_and_a_dead_destination_is_skipped() {
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("retry").await,
        stack.bucket("retry").await,
    );
    let s3c = stack.s3().await;
    let (out, scratch) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A directory path under a regular file can never be created: always fails.
    let blocker = scratch.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let mut text = stack.base_config(&db);
    text += &file_pipeline("flaky", &bucket, out.path(), 30);
    text += &file_pipeline("dead", &bucket, &blocker.join("out"), 30)
        .replace("retry_duration_s = 30", "retry_duration_s = 3");
    let config = Config::parse(&text, "test", &|n| std::env::var(n).ok()).unwrap();

    let s3 = S3::new(&config.s3).await;
    let flaky_cfg = config.pipelines.iter().find(|p| p.name == "flaky").unwrap();
    let DestinationConfig::File(file_cfg) = &flaky_cfg.destination else {
        unreachable!()
    };
    let flaky: Arc<dyn Destination> = Arc::new(Flaky {
        inner: FileDestination::new(flaky_cfg, file_cfg, s3.clone()),
        failures: AtomicU32::new(3),
    });
    put(&s3c, &bucket, "in/flaky/a.json", json_lines("f", 50, 60)).await;
    put(&s3c, &bucket, "in/dead/a.json", json_lines("d", 5, 60)).await;
    put(&s3c, &bucket, "in/dead/b c é.json", json_lines("e", 5, 60)).await;

    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let overrides = [("flaky".to_string(), flaky)].into_iter().collect();
    let (_reload_tx, reloads) = tokio::sync::mpsc::channel(1);
    let daemon = tokio::spawn(stageload::daemon::run_with(
        config,
        async {
            let _ = rx.await;
        },
        reloads,
        overrides,
    ));

    wait_delivered(out.path(), 50).await;
    let attempts = query_i64(
        &db,
        "SELECT attempts FROM batches WHERE pipeline = 'flaky' AND state = 'loaded'",
    )
    .await;
    assert_eq!(attempts, 4, "three transient failures, then success");

    wait_for("the dead pipeline's batch to be skipped", LONG, || async {
        (query_i64(
            &db,
            "SELECT count(*) FROM batches WHERE pipeline = 'dead' AND state = 'skipped'",
        )
        .await
            == 1)
            .then_some(())
    })
    .await;
    let rows = query_strings(
        &db,
        "SELECT err_code || '|' || filename || '|' || (attempts > 1)::text || '|' || (first_attempt_at IS NOT NULL)::text
         || '|' || (err_reason LIKE 'retry duration of 3s exhausted%')::text
         FROM load_errors WHERE pipeline = 'dead' ORDER BY filename",
    )
    .await;
    assert_eq!(
        rows,
        vec![
            format!("9100|s3://{bucket}/in/dead/a.json|true|true|true"),
            format!("9100|s3://{bucket}/in/dead/b c é.json|true|true|true"),
        ]
    );
    let skipped = query_i64(
        &db,
        "SELECT count(*) FROM staged_objects WHERE pipeline = 'dead' AND state = 'skipped'",
    )
    .await;
    assert_eq!(skipped, 2);

    let manifests = keys(&s3c, &bucket, "errors/dead/errors/manifests/").await;
    assert_eq!(manifests.len(), 1, "one error manifest: {manifests:?}");
    let m: serde_json::Value =
        serde_json::from_slice(&get(&s3c, &bucket, &manifests[0]).await.unwrap()).unwrap();
    let mut urls: Vec<&str> = m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["url"].as_str().unwrap())
        .collect();
    urls.sort();
    assert_eq!(
        urls,
        vec![
            format!("s3://{bucket}/in/dead/a.json"),
            format!("s3://{bucket}/in/dead/b c é.json")
        ]
    );

    tx.send(()).unwrap();
    daemon.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_killed_worker_loses_nothing_and_delivers_nothing_twice() {
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("kill").await,
        stack.bucket("kill").await,
    );
    let s3 = stack.s3().await;
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("out");
    // `out` starts as a file, so the first daemon holds the batch, failing and retrying.
    std::fs::write(&out, b"in the way").unwrap();
    let config = stack.base_config(&db) + &file_pipeline("kill", &bucket, &out, 30);
    for n in 0..4 {
        put(
            &s3,
            &bucket,
            &format!("in/kill/{n}.json"),
            json_lines(&format!("k{n}"), 100, 80),
        )
        .await;
    }
    let mut daemon = Daemon::start(&config);
    wait_for("the batch to be held and failing", LONG, || async {
        (query_i64(
            &db,
            "SELECT count(*) FROM batches WHERE state = 'delivering' AND attempts >= 2",
        )
        .await
            == 1)
            .then_some(())
    })
    .await;
    let holder = query_strings(&db, "SELECT lease_owner FROM batches").await;
    daemon.kill9();
    std::fs::remove_file(&out).unwrap();

    daemon.spawn();
    wait_delivered(&out, 400).await;
    wait_all_settled(&db).await;
    assert_eq!(delivered_ids(&out).len(), 400, "every record once");
    let files = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "ndjson"))
        .count();
    assert_eq!(files, 1, "one batch file");
    let settled = query_strings(
        &db,
        "SELECT state || ' ' || (lease_owner IS NULL)::text FROM batches",
    )
    .await;
    assert_eq!(settled, vec!["loaded true"]);
    assert!(
        daemon.log_text().contains("batch settled"),
        "the new daemon settled it"
    );
    assert!(!holder[0].is_empty(), "the first daemon held a lease");
}

#[tokio::test]
async fn bad_input_is_recorded_and_the_daemon_keeps_running() {
    let stack = Stack::get();
    let (db, bucket) = (stack.fresh_database("bad").await, stack.bucket("bad").await);
    let s3 = stack.s3().await;
    let out = tempfile::tempdir().unwrap();
    let config = stack.base_config(&db) + &file_pipeline("bad", &bucket, out.path(), 30);

    let mut truncated = gzip(&json_lines("t", 2000, 100));
    truncated.truncate(truncated.len() / 2);
    put(&s3, &bucket, "in/bad/truncated.json.gz", truncated).await;
    let mut mixed = json_lines("m", 3, 40);
    mixed.extend_from_slice(b"{\"id\":\"m-broken\",\n");
    mixed.extend_from_slice(b"not json at all\n");
    mixed.extend_from_slice(&json_lines("n", 2, 40));
    put(&s3, &bucket, "in/bad/mixed.json", mixed).await;
    put(&s3, &bucket, "in/bad/empty.json", Vec::new()).await;
    put(
        &s3,
        &bucket,
        "in/bad/with space/ünïcødé 名前.json",
        json_lines("u", 4, 40),
    )
    .await;

    let mut daemon = Daemon::start(&config);
    wait_for("every object settled", LONG, || async {
        (query_i64(
            &db,
            "SELECT count(*) FROM staged_objects WHERE state IN ('loaded', 'skipped')",
        )
        .await
            == 4)
            .then_some(())
    })
    .await;
    let states = query_strings(
        &db,
        "SELECT key || ' ' || state FROM staged_objects ORDER BY key",
    )
    .await;
    assert_eq!(
        states,
        vec![
            "in/bad/empty.json loaded",
            "in/bad/mixed.json loaded",
            "in/bad/truncated.json.gz skipped",
            "in/bad/with space/ünïcødé 名前.json loaded",
        ]
    );
    let errors = query_strings(
        &db,
        "SELECT err_code || ' ' || filename || ' ' || line_number FROM load_errors ORDER BY filename, line_number",
    )
    .await;
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert_eq!(errors[0], format!("9103 s3://{bucket}/in/bad/mixed.json 4"));
    assert_eq!(errors[1], format!("9103 s3://{bucket}/in/bad/mixed.json 5"));
    assert!(
        errors[2].starts_with(&format!("9102 s3://{bucket}/in/bad/truncated.json.gz ")),
        "{errors:?}"
    );
    let raw = query_strings(
        &db,
        "SELECT raw_line FROM load_errors WHERE line_number = 5",
    )
    .await;
    assert_eq!(raw, vec!["not json at all"]);

    let ids = delivered_ids(out.path());
    for id in ["m-0", "m-2", "n-0", "n-1", "u-0", "u-3"] {
        assert!(ids.contains(id), "{id} delivered");
    }
    // The truncated object's records before the damage are delivered, none after it.
    let t = ids.iter().filter(|i| i.starts_with("t-")).count();
    assert!(t > 0 && t < 2000, "truncated object delivered {t} records");

    // Still running: a good object staged now is delivered too.
    assert!(daemon.running());
    put(
        &s3,
        &bucket,
        "in/bad/later.json",
        json_lines("later", 2, 40),
    )
    .await;
    wait_for("the later object", LONG, || async {
        delivered_ids(out.path()).contains("later-1").then_some(())
    })
    .await;
}

#[test]
fn bad_configuration_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let base = r#"
[control]
database_url = "postgres://u:p@127.0.0.1:1/db"
[[pipeline]]
name = "clicks"
[pipeline.source]
bucket = "b"
[pipeline.buffer]
size_mib = 5
[pipeline.destination]
type = "file"
directory = "/tmp/x"
"#;
    let cases = [
        (base.replace("size_mib = 5", "size_mib = 0"), "pipeline \"clicks\".buffer.size_mib"),
        (base.replace("size_mib = 5", "size_mb = 5"), "pipeline \"clicks\".buffer.size_mb: unknown field `size_mb`"),
        (base.replace("name = \"clicks\"", "name = \"clicks\"\nretry_duration_s = 7201"), "pipeline \"clicks\".retry_duration_s"),
        (base.replace("type = \"file\"", "type = \"ftp\""), "pipeline \"clicks\".destination"),
        (format!("{base}\n[[pipeline]]\nname = \"clicks\"\n[pipeline.source]\nbucket = \"b\"\n[pipeline.destination]\ntype = \"file\"\ndirectory = \"/x\"\n"), "duplicate pipeline name \"clicks\""),
        (base.replace("u:p@", "u:${STAGELOAD_TEST_UNSET_PASSWORD}@"), "control.database_url: environment variable STAGELOAD_TEST_UNSET_PASSWORD is not set"),
        (base.replace("bucket = \"b\"", "bucket = \"b\"\nformat = \"xml\""), "pipeline \"clicks\".source.format"),
    ];
    for (text, expected) in cases {
        let stderr = check_config_refused(dir.path(), &text);
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in: {stderr}"
        );
        assert!(
            !stderr.contains("u:p@"),
            "no password in the message: {stderr}"
        );
    }
    let ok = dir.path().join("ok.toml");
    std::fs::write(&ok, base).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stageload"))
        .args(["check-config", "--config"])
        .arg(&ok)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
