//! Pipelines loading different tables of one cluster do not wait on each other: each load
//! locks its target's own lock table, not the shared marker table. At SERIALIZABLE isolation,
//! where two transactions writing the shared marker tables cannot both commit, the marker table
//! is locked too and loads go one at a time. Both run through the daemon against the emulator,
//! each load held open after its COPY by a test hook, and are checked from the cluster's side:
//! which load transactions are open at once, and the rows each table ends with.

mod common;

use common::redshift::*;
use common::*;
use std::time::{Duration, Instant};

const ORDERS: &str = "CREATE TABLE public.orders (id varchar(64) NOT NULL, user_id integer, \
                      action varchar(16), ts timestamp, pad varchar(2000))";

/// How long each load stays open between its COPY and its COMMIT.
const HOLD_MS: u64 = 12_000;

/// Two pipelines, `ev` into `public.events` and `or` into `public.orders`, each with one
/// object of 20 records staged; returns the daemon.
async fn two_pipelines(s: &Setup, tag: &str) -> Daemon {
    let ev = s.json_config(&format!("{tag}ev"), 60, "");
    let or = s
        .json_config(&format!("{tag}or"), 60, "")
        .replace("table = \"public.events\"", "table = \"public.orders\"");
    // The second config's pipeline block, without its copy of the daemon settings.
    let block = &or[or.find("[[pipeline]]").expect("a pipeline block")..];
    let config = format!("{ev}\n{block}");
    for p in ["ev", "or"] {
        let key = format!("in/{tag}{p}/a.json");
        put(
            &s.s3,
            &s.bucket,
            &key,
            json_lines(&format!("{tag}{p}"), 20, 60),
        )
        .await;
    }
    Daemon::start_with_env(
        &config,
        &[(
            "STAGELOAD_TEST_REDSHIFT_PAUSE",
            &format!("before_commit:{HOLD_MS}"),
        )],
    )
}

/// Load transactions open on the cluster now: sessions of the loader's user inside a
/// transaction that has written to one of the two tables.
async fn open_loads(s: &Setup) -> i64 {
    query_i64(
        &s.rs,
        "SELECT count(DISTINCT l.pid) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
         WHERE c.relname IN ('events', 'orders') AND l.mode = 'RowExclusiveLock' AND l.granted",
    )
    .await
}

/// Most load transactions seen open at once while both tables fill.
async fn most_open_at_once(s: &Setup) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut most = 0;
    loop {
        most = most.max(open_loads(s).await);
        let done = s.rows("SELECT count(*) FROM public.events").await == 20
            && s.rows("SELECT count(*) FROM public.orders").await == 20;
        if done || Instant::now() > deadline {
            return most;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn assert_each_loaded_once(s: &Setup) {
    s.wait_batches_settled("both batches settled").await;
    for table in ["events", "orders"] {
        assert_eq!(
            s.rows(&format!(
                "SELECT count(DISTINCT id) * 1000 + count(*) FROM public.{table}"
            ))
            .await,
            20_020,
            "public.{table} holds each of its 20 records once"
        );
    }
    assert_eq!(
        query_i64(&s.control, "SELECT count(*) FROM load_errors").await,
        0
    );
}

#[tokio::test]
async fn loads_into_two_tables_run_side_by_side_at_snapshot_isolation() {
    let s = setup("rslk", &format!("{EVENTS}; {ORDERS}")).await;
    let d = two_pipelines(&s, "lk").await;
    let most = most_open_at_once(&s).await;
    assert_each_loaded_once(&s).await;
    assert_eq!(
        most, 2,
        "both COPYs were open together, each waiting {HOLD_MS} ms before its COMMIT"
    );
    wait_log(
        || d.log_text(),
        &["load lock chosen", "mode=\"target_table\""],
    )
    .await;
    // One lock table per target, each named for its target in its comment.
    let comments = query_strings(
        &s.rs,
        "SELECT obj_description(c.oid, 'pg_class') FROM pg_class c \
         WHERE c.relname LIKE 'stageload_lock_%' ORDER BY 1",
    )
    .await;
    assert_eq!(
        comments,
        vec![
            "stageload: every load into public.events locks this table first",
            "stageload: every load into public.orders locks this table first",
        ]
    );
}

#[tokio::test]
async fn loads_go_one_at_a_time_at_serializable_isolation() {
    let s = setup_with(
        "rslks",
        &format!("{EVENTS}; {ORDERS}"),
        &["--isolation", "serializable"],
    )
    .await;
    let d = two_pipelines(&s, "ls").await;
    let most = most_open_at_once(&s).await;
    assert_each_loaded_once(&s).await;
    assert_eq!(most, 1, "the second load waited for the first to commit");
    wait_log(
        || d.log_text(),
        &["load lock chosen", "mode=\"target_and_marker_tables\""],
    )
    .await;
}

/// A takeover whose owner froze (SIGSTOP) inside its load transaction, after its COPY and
/// marker insert and before its COMMIT: the second owner's transaction waits on the lock, and
/// only then reads the marker, so when the first owner wakes and commits, the second finds that
/// commit and loads nothing again. A loader that read the marker (or took its snapshot) before
/// the lock would miss it and load the batch twice.
#[tokio::test]
async fn a_takeover_waits_on_the_lock_of_an_owner_frozen_before_commit_and_loads_once() {
    let s = setup("rslkr", EVENTS).await;
    for i in 0..3 {
        put(
            &s.s3,
            &s.bucket,
            &format!("in/lkr/{i}.json"),
            json_lines(&format!("r{i}"), 20, 60),
        )
        .await;
    }
    let config = s.json_config("lkr", 120, "");
    let first = Daemon::start_with_env(
        &config,
        &[("STAGELOAD_TEST_REDSHIFT_PAUSE", "before_commit:2000")],
    );
    wait_log(
        || first.log_text(),
        &["test hook: pausing", "before_commit"],
    )
    .await;
    first.signal("STOP");
    // Past the 6 s lease, a second owner takes the batch over and its load waits on the lock
    // the frozen one holds.
    let second = Daemon::start(&config);
    wait_for("the second owner waiting on the lock", LONG, || async {
        let waiting = query_i64(
            &s.rs,
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
             WHERE c.relname LIKE 'stageload_lock_%' AND NOT l.granted",
        )
        .await;
        (waiting > 0).then_some(())
    })
    .await;
    assert_eq!(s.rows("SELECT count(*) FROM public.events").await, 0);
    first.signal("CONT");
    s.settled_with(60).await;
    wait_log(
        || second.log_text(),
        &["batch committed by an earlier attempt"],
    )
    .await;
    assert_eq!(
        s.rows("SELECT count(*) FROM public.stageload_commits")
            .await,
        1,
        "one load committed"
    );
    assert_eq!(
        query_strings(&s.control, "SELECT state FROM batches").await,
        vec!["loaded"]
    );
}
