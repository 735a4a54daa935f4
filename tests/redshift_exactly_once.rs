//! Exactly once into Redshift through the faults that used to break it: a crash between COMMIT
//! and settling, a recreated control database, MAXERROR outcomes that depended on batching, a
//! takeover racing a paused first owner, serializable isolation and error 1023, Serverless's
//! error view, a COPY that ignores its statement timeout, and marker tables an operator created
//! for a user without CREATE. Each runs against the emulator in the matching mode.

mod common;

use common::redshift::*;
use common::*;

const JSON_MAXERROR_2: &str = "JSON 'auto' TIMEFORMAT 'epochsecs' MAXERROR 2";

/// `n` rows with ids `<tag>-<i>` whose `user_id` is not a number (Redshift code 1207).
fn bad_rows(tag: &str, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| format!("{{\"id\":\"{tag}-{i}\",\"user_id\":\"x{i}\"}}\n"))
        .collect::<String>()
        .into_bytes()
}

/// `key=state` of the objects whose key holds `part`.
async fn state_of(s: &Setup, part: &str) -> Vec<String> {
    s.object_states()
        .await
        .into_iter()
        .filter(|k| k.contains(part))
        .collect()
}

#[tokio::test]
async fn a_crash_between_commit_and_settle_keeps_skipped_files_and_rejected_rows() {
    let s = setup("rscrash", EVENTS).await;
    // b has one bad row (loaded under MAXERROR 2, its row harvested); c is a bad file (past
    // MAXERROR on its own), left out; a and d are clean.
    put(&s.s3, &s.bucket, "in/crash/a.json", json_lines("a", 10, 60)).await;
    let mut b = json_lines("b", 10, 60);
    b.extend(bad_rows("bbad", 1));
    put(&s.s3, &s.bucket, "in/crash/b.json", b).await;
    put(&s.s3, &s.bucket, "in/crash/c.json", bad_rows("c", 5)).await;
    put(&s.s3, &s.bucket, "in/crash/d.json", json_lines("d", 10, 60)).await;
    let config = s.config("crash", "json_lines", JSON_MAXERROR_2, 120);
    let mut first = Daemon::start_with_env(
        &config,
        &[("STAGELOAD_TEST_REDSHIFT_PAUSE", "after_commit:30000")],
    );
    wait_log(|| first.log_text(), &["test hook: pausing", "after_commit"]).await;
    assert_eq!(s.rows("SELECT count(*) FROM public.events").await, 30);
    first.kill9();
    assert_eq!(
        query_i64(&s.control, "SELECT count(*) FROM load_errors").await,
        0,
        "nothing was recorded before the crash"
    );
    let second = Daemon::start(&config);
    s.wait_batches_settled("the committed batch settled after the crash")
        .await;
    s.assert_exactly_once(30).await;
    assert!(
        second
            .log_text()
            .contains("taken-over batch was already delivered"),
        "settled from the marker"
    );
    assert_eq!(
        s.object_states().await,
        vec![
            "in/crash/a.json=loaded",
            "in/crash/b.json=loaded",
            "in/crash/c.json=skipped",
            "in/crash/d.json=loaded"
        ]
    );
    let errors = query_strings(
        &s.control,
        "SELECT split_part(filename, '/', 6) || ':' || line_number || ':' || err_code \
         FROM load_errors ORDER BY filename, line_number",
    )
    .await;
    assert_eq!(
        errors,
        vec!["b.json:11:1207", "c.json:1:1207", "c.json:2:1207"],
        "the harvested row and the bad file's rows survive the crash"
    );
    let batch = query_strings(
        &s.control,
        "SELECT state || ':' || records_delivered || ':' || records_rejected FROM batches",
    )
    .await;
    assert_eq!(batch, vec!["loaded:30:3"]);
    let manifests = keys(&s.s3, &s.bucket, "errors/crash/errors/manifests/").await;
    assert_eq!(manifests.len(), 1, "the bad file is left replayable");
}

#[tokio::test]
async fn a_recreated_control_database_loads_new_data() {
    let s = setup("rsrecreate", EVENTS).await;
    for i in 0..3 {
        put(
            &s.s3,
            &s.bucket,
            &format!("in/re/old-{i}.json"),
            json_lines(&format!("old{i}"), 100, 60),
        )
        .await;
    }
    let config = s.config("re", "json_lines", "JSON 'auto' TIMEFORMAT 'epochsecs'", 60);
    let mut d = Daemon::start(&config);
    s.settled_with(300).await;
    d.terminate();
    // The loaded objects are archived away; the control database is dropped and created again
    // (a restore, a re-install): its batch ids start at 1 again.
    for i in 0..3 {
        s.s3.delete_object()
            .bucket(&s.bucket)
            .key(format!("in/re/old-{i}.json"))
            .send()
            .await
            .unwrap();
    }
    assert!(
        recreate_database(&s.stack, &s.control, None).await,
        "recreate"
    );
    for i in 0..3 {
        put(
            &s.s3,
            &s.bucket,
            &format!("in/re/new-{i}.json"),
            json_lines(&format!("new{i}"), 200, 60),
        )
        .await;
    }
    let _d = Daemon::start(&config);
    s.settled_with(900).await;
    assert_eq!(
        s.rows("SELECT count(*) FROM public.events WHERE id LIKE 'new%'")
            .await,
        600,
        "every new record is in the table"
    );
    assert_eq!(
        s.rows("SELECT count(DISTINCT installation_id) FROM public.stageload_commits")
            .await,
        2,
        "the markers of the two control databases are told apart"
    );
}

#[tokio::test]
async fn maxerror_outcomes_do_not_depend_on_batching() {
    let s = setup("rsover", EVENTS).await;
    // a: 300 records, one with a bad field; b: ten bad rows. MAXERROR 3 between them.
    let mut a = json_lines("a", 149, 60);
    a.extend(bad_rows("abad", 1));
    a.extend(json_lines("a2", 150, 60));
    put(&s.s3, &s.bucket, "in/over/a.json", a).await;
    put(&s.s3, &s.bucket, "in/over/b.json", bad_rows("b", 10)).await;
    let _d = Daemon::start(&s.config(
        "over",
        "json_lines",
        "JSON 'auto' TIMEFORMAT 'epochsecs' MAXERROR 3",
        60,
    ));
    s.settled_with(299).await;
    assert_eq!(
        s.object_states().await,
        vec!["in/over/a.json=loaded", "in/over/b.json=skipped"]
    );
    let a_rows = query_strings(
        &s.control,
        "SELECT line_number || ':' || colname || ':' || err_code FROM load_errors \
         WHERE filename LIKE '%/a.json'",
    )
    .await;
    assert_eq!(
        a_rows,
        vec!["150:user_id:1207"],
        "a's one bad row, as alone"
    );
    let b_rows = query_i64(
        &s.control,
        "SELECT count(*) FROM load_errors WHERE filename LIKE '%/b.json'",
    )
    .await;
    assert!(b_rows >= 1, "the bad file says why it was skipped");
    assert_eq!(
        query_strings(&s.control, "SELECT state FROM batches").await,
        vec!["loaded"]
    );
}

#[tokio::test]
async fn serializable_isolation_and_error_1023_are_retried_once_loaded() {
    let s = setup_with("rs1023", EVENTS, &["--isolation", "serializable"]).await;
    exec(
        &s.rs,
        "INSERT INTO redshift_emu_faults VALUES ('copy_1023', 1, 'events')",
    )
    .await;
    for i in 0..2 {
        put(
            &s.s3,
            &s.bucket,
            &format!("in/ser/{i}.json"),
            json_lines(&format!("s{i}"), 25, 60),
        )
        .await;
    }
    let d = Daemon::start(&s.config(
        "ser",
        "json_lines",
        "JSON 'auto' TIMEFORMAT 'epochsecs'",
        60,
    ));
    s.settled_with(50).await;
    let attempts = query_i64(&s.control, "SELECT attempts::bigint FROM batches").await;
    assert!(attempts >= 2, "the 1023 attempt was retried: {attempts}");
    assert!(
        d.log_text().contains("Serializable isolation violation")
            && d.log_text().contains("delivery failed, will retry"),
        "1023 is transient"
    );
    assert_eq!(
        query_i64(&s.control, "SELECT count(*) FROM load_errors").await,
        0
    );
}

#[tokio::test]
async fn serverless_is_detected_and_its_error_view_isolates_a_bad_file() {
    let s = setup_with("rsless", EVENTS, &["--serverless"]).await;
    put(&s.s3, &s.bucket, "in/less/a.json", json_lines("a", 10, 60)).await;
    put(&s.s3, &s.bucket, "in/less/b.json", bad_rows("b", 1)).await;
    // No error_table in the config: the loader finds out by itself.
    let d = Daemon::start(&s.config(
        "less",
        "json_lines",
        "JSON 'auto' TIMEFORMAT 'epochsecs'",
        60,
    ));
    s.settled_with(10).await;
    assert!(
        d.log_text().contains("reading sys_load_error_detail"),
        "the STL refusal was noticed"
    );
    let row = query_strings(
        &s.control,
        "SELECT split_part(filename, '/', 6) || '|' || line_number || '|' || err_code || '|' || raw_line \
         FROM load_errors",
    )
    .await;
    // sys_load_error_detail has no raw line: an empty one shows which view was read.
    assert_eq!(row, vec!["b.json|1|1207|"]);
    assert_eq!(state_of(&s, "b.json").await, vec!["in/less/b.json=skipped"]);
}

#[tokio::test]
async fn a_takeover_racing_a_paused_first_owner_loads_once() {
    let s = setup("rsrace", EVENTS).await;
    for i in 0..3 {
        put(
            &s.s3,
            &s.bucket,
            &format!("in/race/{i}.json"),
            json_lines(&format!("r{i}"), 20, 60),
        )
        .await;
    }
    let config = s.config(
        "race",
        "json_lines",
        "JSON 'auto' TIMEFORMAT 'epochsecs'",
        120,
    );
    // The first owner stops (SIGSTOP) just before its COPY, past its 6 s lease.
    let first = Daemon::start_with_env(
        &config,
        &[("STAGELOAD_TEST_REDSHIFT_PAUSE", "before_copy:3000")],
    );
    wait_log(|| first.log_text(), &["test hook: pausing", "before_copy"]).await;
    first.signal("STOP");
    let second = Daemon::start(&config);
    s.settled_with(60).await;
    assert!(second.log_text().contains("batch committed"));
    // The first owner wakes up, runs its COPY transaction, finds the marker under the lock,
    // and its settlement is refused.
    first.signal("CONT");
    wait_for("the first owner noticed", LONG, || async {
        let log = first.log_text();
        (log.contains("lease ran out while this worker was stalled")
            || log.contains("settlement refused")
            || log.contains("lease lost"))
        .then_some(())
    })
    .await;
    wait_all_settled(&s.control).await;
    s.assert_exactly_once(60).await;
    assert_eq!(
        query_strings(&s.control, "SELECT state FROM batches").await,
        vec!["loaded"]
    );
    assert_eq!(
        s.rows("SELECT count(*) FROM public.stageload_commits")
            .await,
        1
    );
}

#[tokio::test]
async fn a_copy_deaf_to_its_timeout_is_ended_with_pg_terminate_backend() {
    let s = setup("rsdeaf", EVENTS).await;
    // The emulator sleeps 60 s in the next COPY, holding the marker lock, with no backend
    // statement running: the server's statement_timeout cannot end it.
    exec(
        &s.rs,
        "INSERT INTO redshift_emu_faults VALUES ('copy_hang', 1, 'events')",
    )
    .await;
    put(&s.s3, &s.bucket, "in/deaf/a.json", json_lines("h", 10, 60)).await;
    let d = Daemon::start(&s.json_config("deaf", 120, "statement_timeout_s = 2"));
    wait_log(|| d.log_text(), &["copy: no answer within 2s"]).await;
    wait_log(
        || d.log_text(),
        &["ended the backend of a statement that did not answer"],
    )
    .await;
    // Well before the hung COPY would wake up, the next attempt gets the lock and loads.
    s.settled_with(10).await;
}

#[tokio::test]
async fn marker_tables_made_by_an_operator_serve_a_user_without_create() {
    let s = setup("rsgrant", EVENTS).await;
    put(&s.s3, &s.bucket, "in/grant/a.json", json_lines("a", 10, 60)).await;
    let config = s.config(
        "grant",
        "json_lines",
        "JSON 'auto' TIMEFORMAT 'epochsecs'",
        60,
    );
    // An administrator's first run creates the marker tables.
    let mut admin = Daemon::start(&config);
    s.settled_with(10).await;
    admin.terminate();
    let role = Stack::unique("loader").replace('-', "_");
    let lock_table = query_strings(
        &s.rs,
        "SELECT relname::text FROM pg_class WHERE relname LIKE 'stageload_lock_%'",
    )
    .await;
    assert_eq!(lock_table.len(), 1, "one lock table for the one target");
    exec(
        &s.rs,
        &format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'loaderpw'; \
             GRANT SELECT, INSERT ON public.events TO {role}; \
             GRANT SELECT, INSERT, UPDATE ON public.stageload_commits, public.stageload_commit_errors, \
             public.stageload_loaded_objects, public.{} TO {role}",
            lock_table[0]
        ),
    )
    .await;
    put(&s.s3, &s.bucket, "in/grant/b.json", json_lines("b", 10, 60)).await;
    let limited = config.replace(
        &format!("stageload:stageload@{}", s.emu.addr),
        &format!("{role}:loaderpw@{}", s.emu.addr),
    );
    assert_ne!(limited, config);
    let d = Daemon::start(&limited);
    s.wait_rows(20).await;
    s.wait_batches_settled("the limited user's batch settled")
        .await;
    s.assert_exactly_once(20).await;
    assert!(
        !d.log_text().contains("permission denied"),
        "no CREATE was attempted"
    );
    wait_log(
        || d.log_text(),
        &["load lock chosen", "mode=\"target_table\""],
    )
    .await;
}
