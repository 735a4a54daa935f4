//! Exactly once into Redshift where the outcome of a load is not seen: a COMMIT whose answer is
//! lost on the last attempt of the budget, and a marker table left by an earlier stageload with
//! a batch it committed but never settled. Each runs through the daemon against the emulator.

mod common;
#[path = "proxy/pg.rs"]
mod pg_proxy;

use common::redshift::*;
use common::*;
use pg_proxy::PgProxy;

#[tokio::test]
async fn a_commit_whose_answer_is_lost_on_the_last_attempt_settles_loaded() {
    let s = setup("rscut", EVENTS).await;
    let proxy = PgProxy::start(&s.emu.addr).await;
    proxy.cut_after_next_commit();
    put(&s.s3, &s.bucket, "in/cut/a.json", json_lines("a", 20, 60)).await;
    put(&s.s3, &s.bucket, "in/cut/b.json", json_lines("b", 15, 60)).await;
    // retry_duration_s = 0: the attempt whose COMMIT answer is lost is the last one.
    // A generous connect timeout: on a busy machine the one attempt must reach its COMMIT.
    let config = s
        .json_config("cut", 0, "")
        .replace(&s.emu.addr, &proxy.addr)
        .replace("connect_timeout_s = 2", "connect_timeout_s = 30");
    let d = Daemon::start(&config);
    s.wait_batches_settled("the batch settled").await;
    assert_eq!(proxy.cuts(), 1, "the COMMIT's answer was cut");
    s.assert_exactly_once(35).await;
    assert_eq!(
        s.object_states().await,
        vec!["in/cut/a.json=loaded", "in/cut/b.json=loaded"]
    );
    assert_eq!(
        query_i64(&s.control, "SELECT count(*) FROM load_errors").await,
        0,
        "nothing written off"
    );
    assert_eq!(
        query_strings(
            &s.control,
            "SELECT state || ':' || records_delivered FROM batches"
        )
        .await,
        vec!["loaded:35"]
    );
    wait_log(|| d.log_text(), &["not writing it off"]).await;
}

/// The marker table of the release before installation ids, as it created it.
const OLD_MARKER_DDL: &str =
    "CREATE TABLE public.stageload_commits (batch_id bigint NOT NULL PRIMARY KEY, \
     pipeline varchar(256) NOT NULL, manifest varchar(1024), objects integer, \
     rows_loaded bigint, rows_rejected bigint, copy_query bigint, committed_at timestamp)";

#[tokio::test]
async fn an_earlier_marker_table_is_upgraded_and_its_unsettled_batch_settled_once() {
    let s = setup("rsupg", EVENTS).await;
    put(&s.s3, &s.bucket, "in/upg/a.json", json_lines("a", 12, 60)).await;
    put(&s.s3, &s.bucket, "in/upg/b.json", json_lines("b", 8, 60)).await;
    let config = s.json_config("upg", 120, "");
    // The earlier release commits the batch and dies before settling it: run this one to the
    // same point, then leave the marker as that release wrote it (the old table, its row).
    let mut first = Daemon::start_with_env(
        &config,
        &[("STAGELOAD_TEST_REDSHIFT_PAUSE", "after_commit:30000")],
    );
    wait_log(|| first.log_text(), &["test hook: pausing", "after_commit"]).await;
    first.kill9();
    assert_eq!(s.rows("SELECT count(*) FROM public.events").await, 20);
    exec(
        &s.rs,
        &format!(
            "ALTER TABLE public.stageload_commits RENAME TO new_markers; \
             DROP TABLE public.stageload_commit_errors; {OLD_MARKER_DDL}; \
             INSERT INTO public.stageload_commits SELECT batch_id, pipeline, manifest, objects, \
             rows_loaded, rows_rejected, copy_query, committed_at FROM new_markers; \
             DROP TABLE new_markers"
        ),
    )
    .await;
    let second = Daemon::start(&config);
    s.wait_batches_settled("the batch committed before the upgrade settled")
        .await;
    s.assert_exactly_once(20).await;
    assert_eq!(
        s.object_states().await,
        vec!["in/upg/a.json=loaded", "in/upg/b.json=loaded"]
    );
    assert_eq!(
        query_i64(&s.control, "SELECT count(*) FROM load_errors").await,
        0
    );
    wait_log(|| second.log_text(), &["upgrading it in place"]).await;
    // The old row is kept, with an empty installation id; later batches get full markers.
    assert_eq!(
        query_strings(
            &s.rs,
            "SELECT installation_id || ':' || rows_loaded FROM public.stageload_commits"
        )
        .await,
        vec![":20"]
    );
    put(&s.s3, &s.bucket, "in/upg/c.json", json_lines("c", 5, 60)).await;
    s.settled_with(25).await;
    assert_eq!(
        s.rows("SELECT count(*) FROM public.stageload_commits WHERE installation_id <> ''")
            .await,
        1
    );
}

#[tokio::test]
async fn a_recreated_control_database_loads_only_what_the_warehouse_lacks() {
    let s = setup("rsheld", EVENTS).await;
    for i in 0..4 {
        let body = json_lines(&format!("old{i}"), 50, 60);
        put(&s.s3, &s.bucket, &format!("in/held/old-{i}.json"), body).await;
    }
    let config = s.json_config("held", 60, "");
    let mut d = Daemon::start(&config);
    s.settled_with(200).await;
    d.terminate();
    // The objects stay under the prefix; the control database is created anew.
    assert!(
        recreate_database(&s.stack, &s.control, None).await,
        "recreate"
    );
    for i in 0..2 {
        let body = json_lines(&format!("new{i}"), 30, 60);
        put(&s.s3, &s.bucket, &format!("in/held/new-{i}.json"), body).await;
    }
    let d = Daemon::start(&config);
    s.settled_with(260).await;
    let states = s.object_states().await;
    assert_eq!(states.len(), 6);
    assert!(states.iter().all(|k| k.ends_with("=loaded")), "{states:?}");
    assert_eq!(
        query_i64(&s.control, "SELECT count(*) FROM load_errors").await,
        0
    );
    wait_log(|| d.log_text(), &["objects the warehouse already holds"]).await;
    assert_eq!(
        s.rows("SELECT count(*) FROM public.stageload_loaded_objects")
            .await,
        6,
        "each object recorded once"
    );
}

#[tokio::test]
async fn a_control_database_restored_from_a_dump_taken_mid_run_loads_nothing_twice() {
    let s = setup("rsdump", EVENTS).await;
    put(&s.s3, &s.bucket, "in/dump/a.json", json_lines("a", 40, 60)).await;
    let config = s.json_config("dump", 60, "");
    let mut d = Daemon::start(&config);
    s.settled_with(40).await;
    let scratch = tempfile::tempdir().unwrap();
    let dump = scratch.path().join("control.sql");
    assert!(dump_database(&s.control, &dump), "pg_dump failed");
    // After the dump: two more objects load, then the control database is lost.
    put(&s.s3, &s.bucket, "in/dump/b.json", json_lines("b", 25, 60)).await;
    put(&s.s3, &s.bucket, "in/dump/c.json", json_lines("c", 15, 60)).await;
    s.settled_with(80).await;
    d.terminate();
    assert!(
        recreate_database(&s.stack, &s.control, Some(&dump)).await,
        "restore failed"
    );
    put(&s.s3, &s.bucket, "in/dump/d.json", json_lines("d", 10, 60)).await;
    let _d = Daemon::start(&config);
    s.settled_with(90).await;
    assert_eq!(
        s.object_states().await,
        vec![
            "in/dump/a.json=loaded",
            "in/dump/b.json=loaded",
            "in/dump/c.json=loaded",
            "in/dump/d.json=loaded"
        ]
    );
    assert_eq!(
        query_i64(&s.control, "SELECT count(*) FROM load_errors").await,
        0
    );
}

/// A batch taken over after its budget ended, whose cluster cannot be reached to read the
/// marker, waits (it may have committed) with growing waits, not every 100 ms, and says why
/// in its `last_error`; once the cluster is back it loads, once.
#[tokio::test]
async fn a_takeover_that_cannot_read_the_marker_backs_off_and_shows_why() {
    let mut s = setup("rsundecided", EVENTS).await;
    put(&s.s3, &s.bucket, "in/und/a.json", json_lines("a", 10, 60)).await;
    let config = s.json_config("und", 1, "");
    let mut first = Daemon::start_with_env(
        &config,
        &[("STAGELOAD_TEST_REDSHIFT_PAUSE", "before_commit:60000")],
    );
    wait_log(|| first.log_text(), &["test hook: pausing"]).await;
    first.kill9();
    let addr = s.emu.addr.clone();
    s.emu.stop().await;
    let second = Daemon::start(&config);
    wait_log(
        || second.log_text(),
        &["cannot tell whether the batch was delivered"],
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    let asked = second
        .log_text()
        .lines()
        .filter(|l| l.contains("cannot tell whether the batch was delivered"))
        .count();
    // Waits from 0.2 s doubling to the 2 s cap: about 8 in 10 s; every 100 ms would be ~100.
    assert!(
        (2..=20).contains(&asked),
        "asked {asked} times in about 10 s"
    );
    let shown = query_strings(
        &s.control,
        "SELECT state || ': ' || last_error FROM batches",
    )
    .await;
    assert!(
        shown.len() == 1
            && shown[0].starts_with("delivering: cannot tell whether the batch was delivered"),
        "status shows why the batch waits: {shown:?}"
    );
    s.emu = Emu::start(&s.stack, &s.rs, &addr).await;
    s.wait_batches_settled("the batch settled").await;
    s.assert_exactly_once(10).await;
}
