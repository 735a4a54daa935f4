//! Retention against the local stack: a running daemon with a retention of a few seconds loads
//! objects, then retention removes the settled history (batches, objects, resolved errors) while
//! keeping open work and unresolved errors, and objects still in S3 are not loaded a second time
//! although discovery keeps listing them, a backfill lists them again, or a reload widens the
//! prefix or lengthens the lookback; only `backfill --reload` loads one again. Assertions are on
//! rows in the control database and lines delivered.

mod common;

use common::*;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// A few seconds: `retention_days` takes decimals (0.00005 days is 4.32 s).
const RETENTION: &str =
    "retention_days = 0.00005\nretention_interval_s = 1\nretention_chunk = 100\n";

fn with_retention(base: &str, retention: &str) -> String {
    base.replacen("pool_size = 4\n", &format!("pool_size = 4\n{retention}"), 1)
}

/// Settled and open rows of a pipeline no daemon runs ("ghost"), aged a day, so only retention
/// acts on them: what must go and what must stay.
const GHOST: &str = "
INSERT INTO staged_objects (id, pipeline, bucket, key, etag, size, arrival_time, discovered_at, state, batch_id, settled_at) VALUES
  (900001, 'ghost', 'b', 'pending.json', 'e', 1, now() - interval '1 day', now() - interval '1 day', 'pending', NULL, NULL),
  (900002, 'ghost', 'b', 'sealed.json', 'e', 1, now() - interval '1 day', now() - interval '1 day', 'batched', 800001, NULL),
  (900003, 'ghost', 'b', 'unresolved.json', 'e', 1, now() - interval '1 day', now() - interval '1 day', 'skipped', 800002, now() - interval '1 day'),
  (900004, 'ghost', 'b', 'resolved.json', 'e', 1, now() - interval '1 day', now() - interval '1 day', 'skipped', 800003, now() - interval '1 day'),
  (900005, 'ghost', 'b', 'rejected.json', 'e', 1, now() - interval '1 day', now() - interval '1 day', 'loaded', 800004, now() - interval '1 day');
INSERT INTO batches (id, pipeline, destination, state, seal_reason, object_count, total_bytes, sealed_at, settled_at) VALUES
  (800001, 'ghost', 'file', 'sealed', 'size', 1, 1, now() - interval '1 day', NULL),
  (800002, 'ghost', 'file', 'skipped', 'size', 1, 1, now() - interval '1 day', now() - interval '1 day'),
  (800003, 'ghost', 'file', 'skipped', 'size', 1, 1, now() - interval '1 day', now() - interval '1 day'),
  (800004, 'ghost', 'file', 'loaded', 'size', 1, 1, now() - interval '1 day', now() - interval '1 day');
INSERT INTO batch_objects VALUES (800001, 900002), (800002, 900003), (800003, 900004), (800004, 900005);
INSERT INTO load_errors (id, pipeline, destination, batch_id, object_id, filename, err_code, err_reason, recorded_at, resolution, resolved_at) VALUES
  (700001, 'ghost', 'file', 800002, 900003, 's3://b/unresolved.json', 9101, 'bad', now() - interval '1 day', NULL, NULL),
  (700002, 'ghost', 'file', 800003, 900004, 's3://b/resolved.json', 9101, 'bad', now() - interval '1 day', 'ignored', now() - interval '1 day'),
  (700003, 'ghost', 'file', 800004, 900005, 's3://b/rejected.json', 9101, 'bad', now() - interval '1 day', NULL, NULL);
";

#[tokio::test(flavor = "multi_thread")]
async fn retention_removes_settled_history_keeps_open_work_and_loads_nothing_twice() {
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("retention").await,
        stack.bucket("retention").await,
    );
    let s3 = stack.s3().await;
    let out = tempfile::tempdir().unwrap();
    // "flat": keys without time, so discovery re-lists the whole prefix on every poll and only
    // the retired digests stop a second load. "dated": Firehose keys from 2020, behind the cursor
    // and long before the lookback window.
    let config = with_retention(&stack.base_config(&db), RETENTION)
        + &file_pipeline("flat", &bucket, &out.path().join("flat"), 30)
        + &file_pipeline("dated", &bucket, &out.path().join("dated"), 30);
    for i in 0..3 {
        put(
            &s3,
            &bucket,
            &format!("in/flat/part-{i}.json"),
            json_lines(&format!("flat{i}"), 10, 100),
        )
        .await;
        put(
            &s3,
            &bucket,
            &format!("in/dated/2020/01/01/00/part-{i}.json"),
            json_lines(&format!("dated{i}"), 10, 100),
        )
        .await;
    }
    let daemon = Daemon::start(&config);

    wait_for("six objects loaded", Duration::from_secs(60), || async {
        (query_i64(
            &db,
            "SELECT count(*) FROM staged_objects WHERE state = 'loaded'",
        )
        .await
            == 6)
            .then_some(())
    })
    .await;
    let loaded_batches = query_i64(
        &db,
        "SELECT count(*) FROM batches WHERE state = 'loaded' AND pipeline IN ('flat', 'dated')",
    )
    .await;
    assert!(loaded_batches >= 2);
    exec(&db, GHOST).await;
    assert_eq!(delivered_lines(&out.path().join("flat")).len(), 30);
    assert_eq!(delivered_lines(&out.path().join("dated")).len(), 30);

    // Retention removes the loaded history of both pipelines, leaving a digest of each object.
    wait_for(
        "retention to remove the loaded objects and batches",
        Duration::from_secs(60),
        || async {
            let objects = query_i64(
                &db,
                "SELECT count(*) FROM staged_objects WHERE pipeline IN ('flat', 'dated')",
            )
            .await;
            let batches = query_i64(
                &db,
                "SELECT count(*) FROM batches WHERE pipeline IN ('flat', 'dated')",
            )
            .await;
            (objects == 0 && batches == 0).then_some(())
        },
    )
    .await;
    // Six of the two pipelines and the ghost's resolved one, however far behind the cursor.
    wait_for("a digest of every retired object", LONG, || async {
        (query_i64(&db, "SELECT count(*) FROM retired_digests").await == 7).then_some(())
    })
    .await;
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(*) FROM batch_objects WHERE batch_id NOT BETWEEN 800001 AND 800004"
        )
        .await,
        0
    );

    // What had to go.
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM load_errors WHERE id = 700002").await,
        0,
        "an error resolved longer ago than the period goes"
    );
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM batches WHERE id = 800003").await,
        0,
        "a skipped batch whose errors are all resolved and old goes"
    );
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM staged_objects WHERE id = 900004").await,
        0
    );
    // What had to stay: open work, an unresolved error and everything it references.
    for (what, sql) in [
        (
            "the pending object",
            "SELECT count(*) FROM staged_objects WHERE id = 900001 AND state = 'pending'",
        ),
        (
            "the sealed batch",
            "SELECT count(*) FROM batches WHERE id = 800001 AND state = 'sealed'",
        ),
        (
            "the sealed batch's object",
            "SELECT count(*) FROM staged_objects WHERE id = 900002",
        ),
        (
            "the unresolved error of a skipped batch",
            "SELECT count(*) FROM load_errors WHERE id = 700001",
        ),
        (
            "the skipped batch with an unresolved error",
            "SELECT count(*) FROM batches WHERE id = 800002",
        ),
        (
            "its object",
            "SELECT count(*) FROM staged_objects WHERE id = 900003",
        ),
        (
            "the unresolved error of a loaded batch",
            "SELECT count(*) FROM load_errors WHERE id = 700003",
        ),
        (
            "the loaded batch it points at",
            "SELECT count(*) FROM batches WHERE id = 800004",
        ),
        (
            "that batch's object",
            "SELECT count(*) FROM staged_objects WHERE id = 900005",
        ),
    ] {
        assert_eq!(query_i64(&db, sql).await, 1, "retention removed {what}");
    }

    // Discovery keeps listing (every second); nothing comes back and nothing loads twice.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(*) FROM staged_objects WHERE pipeline IN ('flat', 'dated')"
        )
        .await,
        0,
        "a retired object was recorded again"
    );
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM retired_digests").await,
        7,
        "retention forgot a retired object"
    );
    assert_eq!(delivered_lines(&out.path().join("flat")).len(), 30);
    assert_eq!(delivered_lines(&out.path().join("dated")).len(), 30);
    // The totals outlive the batches they count.
    assert_eq!(
        query_i64(
            &db,
            "SELECT sum(batches_loaded)::bigint FROM pipeline_totals WHERE pipeline IN ('flat', 'dated')"
        )
        .await,
        loaded_batches
    );

    // A new object still loads, once.
    put(
        &s3,
        &bucket,
        "in/flat/part-new.json",
        json_lines("new", 10, 100),
    )
    .await;
    wait_for(
        "the new object delivered",
        Duration::from_secs(30),
        || async { (delivered_lines(&out.path().join("flat")).len() == 40).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(delivered_lines(&out.path().join("flat")).len(), 40);
    let log = daemon.log_text();
    assert!(
        log.contains("retention pass deleted settled history"),
        "no retention log line:\n{log}"
    );
}

/// The last JSON progress line `stageload backfill` printed.
fn last_progress(out: &str) -> serde_json::Value {
    serde_json::from_str(out.lines().last().expect("a progress line")).unwrap()
}

/// Rewrites the daemon's config with `edit`, sends SIGHUP and waits for the reload's log line.
async fn reload(daemon: &Daemon, edit: impl Fn(String) -> String) {
    let reloads = || {
        daemon
            .log_text()
            .lines()
            .filter(|l| l.contains("config reloaded"))
            .count()
    };
    let before = reloads();
    let text = std::fs::read_to_string(&daemon.config).unwrap();
    std::fs::write(&daemon.config, edit(text)).unwrap();
    daemon.signal("HUP");
    wait_for("the config reloaded", LONG, || {
        let done = reloads() > before;
        async move { done.then_some(()) }
    })
    .await;
}

/// Issue 21: tombstones were pruned once live listing could no longer reach a key, and history
/// loaded twice when something else reached it. Every way back to a retired object is tried:
/// `stageload backfill`, a reload with a longer `lookback_s`, a reload that widens the prefix.
/// Only `backfill --reload`, asked for by name, loads one again.
#[tokio::test(flavor = "multi_thread")]
async fn retired_objects_are_not_loaded_again_by_backfill_a_longer_lookback_or_a_wider_prefix() {
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("retired").await,
        stack.bucket("retired").await,
    );
    let s3 = stack.s3().await;
    let out = tempfile::tempdir().unwrap();
    let config = with_retention(&stack.base_config(&db), RETENTION)
        + &file_pipeline("old", &bucket, out.path(), 30);
    for i in 0..3 {
        put(
            &s3,
            &bucket,
            &format!("in/old/2020/01/01/00/part-{i}.json"),
            json_lines(&format!("old{i}"), 10, 100),
        )
        .await;
    }
    let daemon = Daemon::start(&config);
    wait_for("the history loaded and retired", LONG, || async {
        let loaded = delivered_lines(out.path()).len() == 30;
        let retired = query_i64(&db, "SELECT count(*) FROM staged_objects").await == 0
            && query_i64(&db, "SELECT count(*) FROM retired_digests").await == 3;
        (loaded && retired).then_some(())
    })
    .await;
    // Give retention a few more passes: nothing it keeps may be pruned later either.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let staged = || query_i64(&db, "SELECT count(*) FROM staged_objects");

    let (code, said, err) = daemon.cli(&["backfill", "--pipeline", "old", "--rate", "100"]);
    assert_eq!(code, 0, "{err}");
    let last = last_progress(&said);
    assert_eq!(
        (last["objects"].as_i64(), last["recorded"].as_i64()),
        (Some(3), Some(0)),
        "backfill staged retired objects again: {said}"
    );

    // A lookback of years reaches the 2020 partition again.
    reload(&daemon, |c| {
        c.replace(
            "poll_interval_s = 1",
            "poll_interval_s = 1\nlookback_s = 400000000",
        )
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        staged().await,
        0,
        "a longer lookback staged retired objects"
    );

    // A wider prefix is listed from its start.
    reload(&daemon, |c| {
        c.replace("prefix = \"in/old/\"", "prefix = \"in/\"")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(staged().await, 0, "a wider prefix staged retired objects");
    assert_eq!(
        delivered_lines(out.path()).len(),
        30,
        "history loaded twice"
    );

    // Asked for by name, one object loads again, once.
    let (code, said, err) = daemon.cli(&[
        "backfill",
        "--pipeline",
        "old",
        "--prefix",
        "old/2020/01/01/00/part-1",
        "--reload",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(last_progress(&said)["recorded"].as_i64(), Some(1), "{said}");
    wait_for("the reloaded object delivered", LONG, || async {
        (delivered_lines(out.path()).len() == 40).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lines = delivered_lines(out.path());
    assert_eq!(lines.len(), 40);
    assert_eq!(
        lines.iter().filter(|l| l.contains("\"old1-")).count(),
        20,
        "the reloaded object's records, twice"
    );
}

#[tokio::test]
async fn retention_out_of_range_is_refused_at_startup_naming_the_field() {
    let stack = Stack::get();
    let out = tempfile::tempdir().unwrap();
    for bad in [
        "retention_days = -1\n",
        "retention_days = 4000\n",
        "retention_chunk = 5\n",
    ] {
        let config = with_retention(&stack.base_config("postgres://u:p@127.0.0.1:1/x"), bad)
            + &file_pipeline("p", "b", out.path(), 30);
        let mut d = Daemon::start(&config);
        wait_for("the daemon to exit", Duration::from_secs(20), || {
            let exited = !d.running();
            async move { exited.then_some(()) }
        })
        .await;
        let field = bad.split(' ').next().unwrap();
        let log = d.log_text();
        assert!(
            log.contains(&format!("control.{field}")),
            "{bad}: the refusal does not name control.{field}:\n{log}"
        );
    }
}
