//! Discovery against the real stack: late writes into partitions the cursor has passed are
//! found for layouts with a leading partition that is not time (`region=eu/year=...`), for
//! date partitions (`dt=YYYY-MM-DD/`) and for keys dated in another time zone
//! (`source.key_time_zone`), and a restarted daemon knows the key layout from the control
//! database, so it re-lists only the lookback window, never the whole prefix.

mod common;
mod proxy;

use chrono::{Datelike, Duration as ChronoDuration, Timelike, Utc};
use common::*;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

async fn loaded(db: &str, pipeline: &str) -> i64 {
    query_i64(
        db,
        &format!(
            "SELECT count(*) FROM staged_objects WHERE pipeline = '{pipeline}' AND state = 'loaded'"
        ),
    )
    .await
}

#[tokio::test]
async fn late_writes_under_leading_partitions_are_found() {
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("late").await,
        stack.bucket("late").await,
    );
    let s3 = stack.s3().await;
    let (out_r, out_d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let now = Utc::now();
    let hive = format!(
        "year={:04}/month={:02}/day={:02}/hour={:02}",
        now.year(),
        now.month(),
        now.day(),
        now.hour()
    );
    let date = format!("dt={:04}-{:02}-{:02}", now.year(), now.month(), now.day());
    put(
        &s3,
        &bucket,
        &format!("in/region/region=eu/{hive}/b.json"),
        json_lines("eu-b", 2, 60),
    )
    .await;
    put(
        &s3,
        &bucket,
        &format!("in/region/region=us/{hive}/b.json"),
        json_lines("us-b", 3, 60),
    )
    .await;
    put(
        &s3,
        &bucket,
        &format!("in/dt/{date}/b.json"),
        json_lines("dt-b", 2, 60),
    )
    .await;
    put(
        &s3,
        &bucket,
        &format!("in/dt/{date}/z.json"),
        json_lines("dt-z", 3, 60),
    )
    .await;
    let config = stack.base_config(&db)
        + &file_pipeline("region", &bucket, out_r.path(), 30)
        + &file_pipeline("dt", &bucket, out_d.path(), 30);
    let _daemon = Daemon::start(&config);
    wait_for("the first objects", LONG, || async {
        (loaded(&db, "region").await == 2 && loaded(&db, "dt").await == 2).then_some(())
    })
    .await;
    let layouts = query_strings(
        &db,
        "SELECT pipeline || ' ' || key_layout FROM discovery_state ORDER BY pipeline",
    )
    .await;
    assert_eq!(
        layouts,
        vec![
            "dt dt={YYYY-MM-DD}".to_string(),
            "region region=*/year={YYYY}/month={MM}/day={DD}/hour={HH}".to_string()
        ]
    );

    // Late writes: both sort before their pipeline's cursor.
    put(
        &s3,
        &bucket,
        &format!("in/region/region=eu/{hive}/a.json"),
        json_lines("eu-a", 4, 60),
    )
    .await;
    put(
        &s3,
        &bucket,
        &format!("in/dt/{date}/a.json"),
        json_lines("dt-a", 5, 60),
    )
    .await;
    wait_for("the late writes", LONG, || async {
        (loaded(&db, "region").await == 3 && loaded(&db, "dt").await == 3).then_some(())
    })
    .await;
    assert_eq!(delivered_lines(out_r.path()).len(), 2 + 3 + 4);
    assert_eq!(delivered_lines(out_d.path()).len(), 2 + 3 + 5);
}

// The proxy runs on this runtime, and the test blocks its thread (waiting for a process).
#[tokio::test(flavor = "multi_thread")]
async fn a_restart_lists_only_the_lookback_window() {
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("restart").await,
        stack.bucket("restart").await,
    );
    let s3 = stack.s3().await;
    let proxy = proxy::Proxy::start(&stack.s3_endpoint).await;
    let out = tempfile::tempdir().unwrap();
    let part = |t: chrono::DateTime<Utc>| {
        format!(
            "in/fh/{:04}/{:02}/{:02}/{:02}/",
            t.year(),
            t.month(),
            t.day(),
            t.hour()
        )
    };
    let now = Utc::now();
    for days in [3, 2] {
        let p = part(now - ChronoDuration::days(days));
        put(
            &s3,
            &bucket,
            &format!("{p}old.json"),
            json_lines("old", 2, 60),
        )
        .await;
    }
    put(
        &s3,
        &bucket,
        &format!("{}m.json", part(now)),
        json_lines("m", 2, 60),
    )
    .await;
    let config = stack
        .base_config(&db)
        .replace(&stack.s3_endpoint, &proxy.endpoint())
        + &file_pipeline("fh", &bucket, out.path(), 30);
    let mut daemon = Daemon::start(&config);
    wait_for("the first objects and the layout", LONG, || async {
        (loaded(&db, "fh").await == 3
            && query_i64(
                &db,
                "SELECT count(*) FROM discovery_state WHERE key_layout = '{YYYY}/{MM}/{DD}/{HH}'",
            )
            .await
                == 1)
            .then_some(())
    })
    .await;
    assert_eq!(daemon.terminate(), Some(0));

    let before = proxy.requests().len();
    // A late write into the current partition, before the cursor (`m.json`).
    put(
        &s3,
        &bucket,
        &format!("{}a.json", part(now)),
        json_lines("a", 3, 60),
    )
    .await;
    daemon.spawn();
    wait_for("the late write after the restart", LONG, || async {
        (loaded(&db, "fh").await == 4).then_some(())
    })
    .await;
    let lists: Vec<String> = proxy.requests()[before..]
        .iter()
        .filter(|r| r.contains("list-type=2"))
        .cloned()
        .collect();
    assert!(!lists.is_empty());
    // Every listing after the restart starts at the cursor or in the lookback window: the
    // partitions of days ago are never listed again.
    let window = part(now - ChronoDuration::hours(2));
    for r in &lists {
        let start = proxy::query_param(r, "start-after").unwrap_or_default();
        assert!(
            start >= window,
            "a listing from {start:?} re-lists the whole prefix: {r}"
        );
    }
    assert_eq!(delivered_lines(out.path()).len(), 2 + 2 + 2 + 3);
}

// The proxy runs on this runtime, and the test blocks its thread (waiting for a process).
#[tokio::test(flavor = "multi_thread")]
async fn a_listing_of_several_pages_records_and_delivers_every_key_once() {
    use futures::StreamExt;
    const OBJECTS: usize = 2_345;
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("pages").await,
        stack.bucket("pages").await,
    );
    let s3 = stack.s3().await;
    let proxy = proxy::Proxy::start(&stack.s3_endpoint).await;
    let out = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let hour = format!(
        "in/pages/{:04}/{:02}/{:02}/{:02}",
        now.year(),
        now.month(),
        now.day(),
        now.hour()
    );
    let keys: Vec<String> = (0..OBJECTS)
        .map(|i| format!("{hour}/obj-{i:05}.json"))
        .collect();
    futures::stream::iter(keys.iter().enumerate())
        .for_each_concurrent(32, |(i, key)| {
            let (s3, bucket) = (&s3, &bucket);
            async move { put(s3, bucket, key, json_lines(&format!("o{i}"), 1, 40)).await }
        })
        .await;

    let config = stack
        .base_config(&db)
        .replace(&stack.s3_endpoint, &proxy.endpoint())
        + &file_pipeline("pages", &bucket, out.path(), 30);
    let _daemon = Daemon::start(&config);
    wait_for("every object loaded", LONG, || async {
        (loaded(&db, "pages").await == OBJECTS as i64).then_some(())
    })
    .await;
    // S3 answers at most 1,000 keys a page: the first listing went on with continuation tokens.
    let pages = proxy
        .requests()
        .iter()
        .filter(|r| r.contains("list-type=2") && r.contains("continuation-token"))
        .count();
    assert!(pages >= 2, "{pages} continued listings");
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(DISTINCT key) FROM staged_objects WHERE pipeline = 'pages'"
        )
        .await,
        OBJECTS as i64
    );
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM staged_objects").await,
        OBJECTS as i64
    );
    // The cursor ends at the last key, so the next poll lists nothing already recorded.
    let cursor = query_strings(&db, "SELECT last_key FROM discovery_cursors").await;
    assert_eq!(cursor, vec![keys[OBJECTS - 1].clone()]);
    let mut lines = delivered_lines(out.path());
    assert_eq!(lines.len(), OBJECTS);
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), OBJECTS, "a record was delivered twice");
}

/// Firehose with a `CustomTimeZone` dates its prefix and object names in local time. Read as
/// UTC, keys dated in Los Angeles (UTC-8) sort before the lookback window, so a late write into
/// the current local hour was never listed again. With `key_time_zone` the window opens at the
/// local partition, and the arrival time a key carries is read in the zone too.
#[tokio::test]
async fn a_late_write_under_a_prefix_dated_in_los_angeles_is_found() {
    use chrono::TimeZone;
    let stack = Stack::get();
    let (db, bucket) = (stack.fresh_database("la").await, stack.bucket("la").await);
    let s3 = stack.s3().await;
    let out = tempfile::tempdir().unwrap();
    let la: chrono_tz::Tz = "America/Los_Angeles".parse().unwrap();
    let now = Utc::now().with_timezone(&la);
    let (y, m, d, h) = (now.year(), now.month(), now.day(), now.hour());
    // Firehose's key: the local hour's prefix, then `<stream>-<version>-<local time>-<id>`.
    let key = |id: &str| {
        format!(
            "in/la/{y:04}/{m:02}/{d:02}/{h:02}/la-1-{y:04}-{m:02}-{d:02}-{h:02}-05-33-{id}.json"
        )
    };
    put(&s3, &bucket, &key("mmm"), json_lines("m", 2, 60)).await;
    let config = stack.base_config(&db)
        + &file_pipeline("la", &bucket, out.path(), 30).replace(
            "poll_interval_s = 1",
            "poll_interval_s = 1\nkey_time_zone = \"America/Los_Angeles\"",
        );
    let _daemon = Daemon::start(&config);
    wait_for("the first object", LONG, || async {
        (loaded(&db, "la").await == 1).then_some(())
    })
    .await;
    let arrival = query_strings(
        &db,
        "SELECT to_char(arrival_time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM staged_objects",
    )
    .await;
    let written = la.with_ymd_and_hms(y, m, d, h, 5, 33).earliest().unwrap();
    assert_eq!(
        arrival,
        vec![written
            .with_timezone(&Utc)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()],
        "the key's local time, as UTC"
    );

    // A late write into the same local hour, before the cursor.
    put(&s3, &bucket, &key("aaa"), json_lines("a", 3, 60)).await;
    wait_for("the late write", LONG, || async {
        (loaded(&db, "la").await == 2).then_some(())
    })
    .await;
    assert_eq!(delivered_lines(out.path()).len(), 2 + 3);
}

#[tokio::test]
async fn an_unknown_key_time_zone_is_refused_at_startup_naming_the_field() {
    let stack = Stack::get();
    let out = tempfile::tempdir().unwrap();
    let config = stack.base_config("postgres://u:p@127.0.0.1:1/x")
        + &file_pipeline("tz", "b", out.path(), 30).replace(
            "poll_interval_s = 1",
            "poll_interval_s = 1\nkey_time_zone = \"America/Los_Angles\"",
        );
    let mut daemon = Daemon::start(&config);
    wait_for("the daemon to exit", LONG, || {
        let exited = !daemon.running();
        async move { exited.then_some(()) }
    })
    .await;
    let log = daemon.log_text();
    assert!(
        log.contains("pipeline \"tz\".source.key_time_zone")
            && log.contains("\"America/Los_Angles\" is not an IANA time zone name"),
        "{log}"
    );
}

/// The cursor moves page by page: a daemon killed (kill -9) between two pages of a listing has
/// the first page recorded and the cursor at its last key, and the next start lists on from
/// there, never from the start of the prefix, and records each object once. (Were the cursor
/// moved only at the end of a listing, the first page would be listed again.)
// The proxy runs on this runtime, and the test blocks its thread (waiting for a process).
#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_killed_between_two_pages_resumes_after_the_last_recorded_page() {
    use futures::StreamExt;
    const OBJECTS: usize = 1_150;
    let stack = Stack::get();
    let (db, bucket) = (stack.fresh_database("cut").await, stack.bucket("cut").await);
    let s3 = stack.s3().await;
    let proxy = proxy::Proxy::start(&stack.s3_endpoint).await;
    let out = tempfile::tempdir().unwrap();
    // An old partition, before any lookback window: only the cursor's listing reads it.
    let keys: Vec<String> = (0..OBJECTS)
        .map(|i| format!("in/cut/2020/01/01/00/obj-{i:05}.json"))
        .collect();
    futures::stream::iter(keys.iter().enumerate())
        .for_each_concurrent(32, |(i, key)| {
            let (s3, bucket) = (&s3, &bucket);
            async move { put(s3, bucket, key, json_lines(&format!("o{i}"), 1, 40)).await }
        })
        .await;
    let config = stack
        .base_config(&db)
        .replace(&stack.s3_endpoint, &proxy.endpoint())
        + &file_pipeline("cut", &bucket, out.path(), 30);
    let mut daemon = Daemon::start_with_env(
        &config,
        &[("STAGELOAD_TEST_PAUSE_BETWEEN_PAGES_MS", "60000")],
    );
    wait_log(
        || daemon.log_text(),
        &["test hook: pausing between listing pages"],
    )
    .await;
    // S3 answers 1,000 keys a page: the first is recorded and the cursor is past it.
    let first_page = keys[999].clone();
    assert_eq!(
        query_strings(&db, "SELECT last_key FROM discovery_cursors").await,
        vec![first_page.clone()],
        "the cursor did not move with the first page"
    );
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM staged_objects").await,
        1000
    );
    daemon.kill9();

    let before = proxy.requests().len();
    daemon.spawn();
    wait_for("every object loaded", LONG, || async {
        (loaded(&db, "cut").await == OBJECTS as i64).then_some(())
    })
    .await;
    let lists: Vec<String> = proxy.requests()[before..]
        .iter()
        .filter(|r| r.contains("list-type=2"))
        .cloned()
        .collect();
    assert!(!lists.is_empty());
    for r in &lists {
        let from = proxy::query_param(r, "start-after").unwrap_or_default();
        assert!(
            r.contains("continuation-token") || from >= first_page,
            "the restarted daemon listed from {from:?}, before its cursor {first_page:?}: {r}"
        );
    }
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(*) FROM staged_objects WHERE pipeline = 'cut'"
        )
        .await,
        OBJECTS as i64,
        "an object recorded twice"
    );
    wait_all_settled(&db).await;
    let mut lines = delivered_lines(out.path());
    assert_eq!(lines.len(), OBJECTS);
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), OBJECTS, "a record was delivered twice");
}
