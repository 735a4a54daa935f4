//! Where a new pipeline starts and how history is loaded: `source.start_at = "now"` leaves the
//! objects already under the prefix alone; `stageload backfill` stages them later, once each,
//! at a bounded rate, reporting progress as JSON lines and resuming after an interruption, also
//! when its range is an age (`--since 30d`).

mod common;
mod proxy;

use common::*;
use std::time::Duration;

/// A control database, a bucket holding `n` objects of `records` records under `in/<name>/<stem>-<i>.json`,
/// and a file pipeline with `start_at = "now"` started after them. Returns (db, bucket, out dir,
/// daemon).
async fn history(
    name: &str,
    stem: &str,
    n: usize,
    records: usize,
) -> (
    String,
    String,
    aws_sdk_s3::Client,
    tempfile::TempDir,
    Daemon,
) {
    let stack = Stack::get();
    let db = stack.fresh_database(&format!("{name}ctl")).await;
    let bucket = stack.bucket(name).await;
    let s3 = stack.s3().await;
    let dir = tempfile::tempdir().unwrap();
    for i in 0..n {
        let body = json_lines(&format!("{stem}{i}"), records, 40);
        put(&s3, &bucket, &format!("in/{name}/{stem}-{i}.json"), body).await;
    }
    // S3 keeps LastModified to the second: the pipeline must start after the old objects.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let config = (stack.base_config(&db) + &file_pipeline(name, &bucket, dir.path(), 30)).replace(
        "format = \"json_lines\"",
        "format = \"json_lines\"\nstart_at = \"now\"",
    );
    let daemon = Daemon::start(&config);
    wait_log(|| daemon.log_text(), &["pipeline started"]).await;
    (db, bucket, s3, dir, daemon)
}

/// Ids of the records delivered, sorted.
fn ids(dir: &std::path::Path) -> Vec<String> {
    let mut ids: Vec<String> = delivered_lines(dir)
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn start_at_now_skips_history_and_backfill_loads_it_once() {
    let (db, bucket, s3, dir, daemon) = history("bf", "old", 5, 10).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    put(&s3, &bucket, "in/bf/new-0.json", json_lines("new0", 10, 40)).await;
    wait_for(
        "the new object delivered",
        Duration::from_secs(40),
        || async { (delivered_lines(dir.path()).len() == 10).then_some(()) },
    )
    .await;
    wait_all_settled(&db).await;
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM staged_objects").await,
        1,
        "the old objects were not staged"
    );

    // Backfill two pages at a time; the daemon delivers what it stages.
    let (code, out, err) = daemon.cli(&[
        "backfill",
        "--pipeline",
        "bf",
        "--prefix",
        "old-",
        "--page-keys",
        "2",
        "--rate",
        "100",
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("progress is JSON lines"))
        .collect();
    assert_eq!(lines.len(), 3, "one line per page: {out}");
    let last = lines.last().unwrap();
    assert_eq!(
        (
            last["objects"].as_i64(),
            last["total"].as_i64(),
            last["recorded"].as_i64(),
            last["done"].as_bool()
        ),
        (Some(5), Some(5), Some(5), Some(true)),
        "{out}"
    );
    wait_for("the history delivered", Duration::from_secs(40), || async {
        (delivered_lines(dir.path()).len() == 60).then_some(())
    })
    .await;
    wait_all_settled(&db).await;
    let all = ids(dir.path());
    let mut unique = all.clone();
    unique.dedup();
    assert_eq!((all.len(), unique.len()), (60, 60), "every record once");

    // Running it again stages nothing new.
    let (code, out, err) = daemon.cli(&["backfill", "--pipeline", "bf", "--prefix", "old-"]);
    assert_eq!(code, 0, "{err}");
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(
        (last["objects"].as_i64(), last["recorded"].as_i64()),
        (Some(5), Some(0))
    );
}

#[tokio::test]
async fn an_interrupted_backfill_resumes_where_it_stopped() {
    let (db, _bucket, _s3, dir, daemon) = history("bfr", "h", 6, 5).await;
    // One object per second, one per page: stopped after the second page.
    interrupted_backfill(&daemon.config, "bfr", &[]);
    let staged = query_i64(&db, "SELECT count(*) FROM staged_objects").await;
    assert!(
        (2..6).contains(&staged),
        "interrupted part way: {staged} staged"
    );
    let (code, out, err) = daemon.cli(&[
        "backfill",
        "--pipeline",
        "bfr",
        "--page-keys",
        "1",
        "--rate",
        "100",
    ]);
    assert_eq!(code, 0, "{err}");
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert!(
        first["objects"].as_i64().unwrap() > 1,
        "resumed, not restarted: {out}"
    );
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["objects"].as_i64(), Some(6), "{out}");
    wait_for("the history delivered", Duration::from_secs(40), || async {
        (delivered_lines(dir.path()).len() == 30).then_some(())
    })
    .await;
    wait_all_settled(&db).await;
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM staged_objects").await,
        6
    );
    let all = ids(dir.path());
    let mut unique = all.clone();
    unique.dedup();
    assert_eq!(unique.len(), 30, "every record once");
}

/// `stageload backfill --page-keys 1 --rate 1 <extra>` with `config`, killed after its second
/// progress line: two pages recorded, then interrupted.
fn interrupted_backfill(config: &std::path::Path, pipeline: &str, extra: &[&str]) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stageload"))
        .args([
            "backfill",
            "--pipeline",
            pipeline,
            "--page-keys",
            "1",
            "--rate",
            "1",
        ])
        .args(extra)
        .arg("--config")
        .arg(config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reader = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    for _ in 0..2 {
        reader.next().expect("a progress line").unwrap();
    }
    child.kill().unwrap();
    let _ = child.wait();
}

/// `--since 1d` names a later time on every run; keyed by that time, an interrupted run never
/// resumed and listed everything again. Keyed by what was given, the same command resumes: the
/// objects are counted once and no page before the saved key is listed again.
// The proxy runs on this runtime, and the test blocks its thread (waiting for a process).
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_backfill_over_an_age_resumes_where_it_stopped() {
    let stack = Stack::get();
    let (db, _bucket, _s3, dir, daemon) = history("bfa", "h", 6, 5).await;
    // The backfill goes through a proxy that keeps each request line; the daemon does not.
    let proxy = proxy::Proxy::start(&stack.s3_endpoint).await;
    let config = daemon.config.with_file_name("backfill.toml");
    let text = std::fs::read_to_string(&daemon.config).unwrap();
    std::fs::write(&config, text.replace(&stack.s3_endpoint, &proxy.endpoint())).unwrap();
    interrupted_backfill(&config, "bfa", &["--since", "1d"]);
    let saved = query_strings(
        &db,
        "SELECT range_key || ' ' || last_key FROM backfills WHERE finished_at IS NULL",
    )
    .await;
    assert_eq!(saved.len(), 1, "{saved:?}");
    let (range_key, resume_after) = saved[0].split_once(' ').unwrap();
    assert_eq!(range_key, "|1d|", "keyed by what was given");
    let listed_before = proxy.requests().len();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stageload"))
        .args([
            "backfill",
            "--pipeline",
            "bfa",
            "--page-keys",
            "1",
            "--rate",
            "100",
        ])
        .args(["--since", "1d", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first: serde_json::Value = serde_json::from_str(said.lines().next().unwrap()).unwrap();
    assert!(
        first["objects"].as_i64().unwrap() > 2,
        "resumed, not restarted: {said}"
    );
    let last: serde_json::Value = serde_json::from_str(said.lines().last().unwrap()).unwrap();
    assert_eq!(
        (last["objects"].as_i64(), last["total"].as_i64()),
        (Some(6), Some(6)),
        "every object counted once: {said}"
    );
    // Neither the count nor the listing went back over the pages already done.
    let lists: Vec<String> = proxy.requests()[listed_before..]
        .iter()
        .filter(|r| r.contains("list-type=2"))
        .cloned()
        .collect();
    assert!(!lists.is_empty());
    for r in &lists {
        let from = proxy::query_param(r, "start-after").unwrap_or_default();
        assert!(
            r.contains("continuation-token") || from.as_str() >= resume_after,
            "listed again from {from:?}, before {resume_after:?}: {r}"
        );
    }
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(*) FROM backfills WHERE finished_at IS NULL"
        )
        .await,
        0
    );
    wait_for("the history delivered", Duration::from_secs(40), || async {
        (delivered_lines(dir.path()).len() == 30).then_some(())
    })
    .await;
    wait_all_settled(&db).await;
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM staged_objects").await,
        6
    );
    let all = ids(dir.path());
    let mut unique = all.clone();
    unique.dedup();
    assert_eq!(unique.len(), 30, "every record once");
}
