//! The dispatcher through faults of its own: a delivery that panics costs one attempt, not the
//! worker; records that used to panic the file destination load; a batch held by a process
//! killed with -9 resumes within seconds, not after its lease.

mod common;

use common::redshift::*;
use common::*;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_panicking_delivery_fails_an_attempt_and_the_worker_goes_on() {
    let stack = Stack::get();
    let db = stack.fresh_database("panicctl").await;
    let bucket = stack.bucket("panic").await;
    let s3 = stack.s3().await;
    let dir = tempfile::tempdir().unwrap();
    let config = stack.base_config(&db) + &file_pipeline("boom", &bucket, dir.path(), 3);
    put(&s3, &bucket, "in/boom/boom-1.json", json_lines("b", 5, 40)).await;
    let d = Daemon::start_with_env(&config, &[("STAGELOAD_TEST_FILE_PANIC", "boom-")]);
    wait_for(
        "the panicking batch skipped",
        Duration::from_secs(40),
        || async {
            (query_i64(&db, "SELECT count(*) FROM batches WHERE state = 'skipped'").await == 1)
                .then_some(())
        },
    )
    .await;
    let why = query_strings(&db, "SELECT err_code || ' ' || err_reason FROM load_errors").await;
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(
        why[0].starts_with("9100 ") && why[0].contains("panicked: test hook"),
        "the panic is the recorded reason: {why:?}"
    );
    let attempts = query_i64(&db, "SELECT attempts::bigint FROM batches").await;
    assert!(attempts >= 2, "each panic was one attempt: {attempts}");
    // The same worker delivers the next batch.
    put(&s3, &bucket, "in/boom/ok.json", json_lines("ok", 5, 40)).await;
    wait_for("the next batch loaded", Duration::from_secs(40), || async {
        (query_i64(&db, "SELECT count(*) FROM batches WHERE state = 'loaded'").await == 1)
            .then_some(())
    })
    .await;
    assert!(d
        .log_text()
        .contains("delivery refused, retrying until the budget ends"));
    assert_eq!(
        delivered_lines(dir.path()).len(),
        5,
        "the next batch's records"
    );
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(*) FROM batches WHERE state = 'delivering'"
        )
        .await,
        0,
        "no batch is left leased"
    );
}

#[tokio::test]
async fn multi_line_values_the_old_reparse_refused_are_delivered() {
    let stack = Stack::get();
    let db = stack.fresh_database("concatctl").await;
    let bucket = stack.bucket("concat").await;
    let s3 = stack.s3().await;
    let dir = tempfile::tempdir().unwrap();
    let config = stack.base_config(&db)
        + &pipeline_block(
            "cc",
            &bucket,
            "json_concat",
            30,
            &format!("type = \"file\"\ndirectory = \"{}\"", dir.path().display()),
        );
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let body =
        format!("{{\n\"id\": \"c-0\",\n\"n\": 1e999\n}}{{\"id\": \"c-1\",\n\"deep\": {deep}}}");
    put(&s3, &bucket, "in/cc/a.json", body.into_bytes()).await;
    let _d = Daemon::start(&config);
    wait_for("two records delivered", Duration::from_secs(40), || async {
        (delivered_lines(dir.path()).len() == 2).then_some(())
    })
    .await;
    let lines = delivered_lines(dir.path());
    assert!(
        lines[0].contains("\"n\": 1e999") && lines[1].contains("\"deep\""),
        "{lines:?}"
    );
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM batches WHERE state = 'loaded'").await,
        1
    );
    assert_eq!(query_i64(&db, "SELECT count(*) FROM load_errors").await, 0);
}

#[tokio::test]
async fn a_batch_held_by_a_killed_process_resumes_at_the_restart_not_after_its_lease() {
    let s = setup("rsresume", EVENTS).await;
    for i in 0..2 {
        put(
            &s.s3,
            &s.bucket,
            &format!("in/resume/{i}.json"),
            json_lines(&format!("r{i}"), 10, 60),
        )
        .await;
    }
    // A 120 s lease: waiting it out would take two minutes.
    let config = s
        .config(
            "resume",
            "json_lines",
            "JSON 'auto' TIMEFORMAT 'epochsecs'",
            300,
        )
        .replace("lease_s = 6", "lease_s = 120");
    let mut d = Daemon::start_with_env(
        &config,
        &[("STAGELOAD_TEST_REDSHIFT_PAUSE", "before_copy:60000")],
    );
    wait_log(|| d.log_text(), &["test hook: pausing", "before_copy"]).await;
    d.kill9();
    let restarted = Instant::now();
    let d = Daemon::start(&config);
    wait_for(
        "the batch resumed and loaded",
        Duration::from_secs(15),
        || async { (s.rows("SELECT count(*) FROM public.events").await == 20).then_some(()) },
    )
    .await;
    s.wait_batches_settled("settled").await;
    s.assert_exactly_once(20).await;
    assert!(
        d.log_text()
            .contains("taking over a batch before its lease ends: its owner's session is gone"),
        "resumed by the restart, {:?} after it",
        restarted.elapsed()
    );
}

#[tokio::test]
async fn a_file_worker_paused_past_its_lease_cannot_settle_or_duplicate() {
    let stack = Stack::get();
    let db = stack.fresh_database("fencectl").await;
    let bucket = stack.bucket("fence").await;
    let s3 = stack.s3().await;
    let dir = tempfile::tempdir().unwrap();
    let config = stack.base_config(&db) + &file_pipeline("fence", &bucket, dir.path(), 120);
    paused_owner_is_fenced(&config, &db, &s3, &bucket, "fence").await;
    let mut ids: Vec<String> = delivered_lines(dir.path())
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].to_string())
        .collect();
    let all = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!((all, ids.len()), (60, 60), "every record delivered once");
}

#[tokio::test]
async fn error_rows_holding_nul_are_stored_not_retried_forever() {
    use stageload::control::load_errors::ErrorContext;
    let stack = Stack::get();
    let db = stack.fresh_database("nulctl").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stageload.toml");
    let text = stack.base_config(&db) + &file_pipeline("nul", "b", dir.path(), 30);
    std::fs::write(&path, text).unwrap();
    let config = stageload::config::Config::load(&path).unwrap();
    let control = stageload::control::Control::new(&config.control).unwrap();
    control.migrate().await.unwrap();
    exec(
        &db,
        "INSERT INTO batches (id, pipeline, destination, seal_reason, object_count, total_bytes, \
         state, lease_token) VALUES (1, 'nul', 'file', 'size', 0, 0, 'delivering', \
         '00000000-0000-0000-0000-0000000000c1')",
    )
    .await;
    // A destination's error text can echo a record's bytes, NUL included; PostgreSQL's text
    // cannot hold NUL, so such a row used to fail its INSERT on every retry.
    let row = stageload::model::LoadError {
        filename: "s3://b/k\0".into(),
        line_number: 3,
        colname: "f\0".into(),
        raw_line: "{\"a\":\"\0\"}".into(),
        err_code: 400,
        err_reason: "mapper_parsing_exception: \0 in field".into(),
        ..Default::default()
    };
    let ctx = ErrorContext {
        pipeline: "nul",
        destination: "elasticsearch",
        target: "idx\0",
        batch_id: 1,
        lease_token: "00000000-0000-0000-0000-0000000000c1",
        attempts: 1,
        first_attempt_at: chrono::Utc::now(),
    };
    let stored = tokio::time::timeout(Duration::from_secs(10), control.record_errors(&ctx, &[row]))
        .await
        .expect("no endless retry")
        .expect("the row is stored");
    assert_eq!(stored, 1);
    let got = query_strings(
        &db,
        "SELECT err_reason || '|' || colname || '|' || target FROM load_errors",
    )
    .await;
    assert_eq!(
        got,
        vec!["mapper_parsing_exception: \u{FFFD} in field|f\u{FFFD}|idx\u{FFFD}"]
    );
}

#[tokio::test]
async fn a_stale_owner_cannot_write_load_errors_onto_a_batch_another_worker_settled() {
    let stack = Stack::get();
    let db = stack.fresh_database("fenceerr").await;
    let bucket = stack.bucket("fenceerr").await;
    let s3 = stack.s3().await;
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("out");
    // `out` starts as a file: every attempt fails until it is removed.
    std::fs::write(&out, b"in the way").unwrap();
    // A 60 s lease is renewed every 20 s, so nothing renews during this test: the owner learns
    // of the takeover only from the writes it makes.
    let config = stack
        .base_config(&db)
        .replace("lease_s = 6", "lease_s = 60")
        + &file_pipeline("stale", &bucket, &out, 2);
    for i in 0..3 {
        put(
            &s3,
            &bucket,
            &format!("in/stale/{i}.json"),
            json_lines(&format!("s{i}"), 10, 60),
        )
        .await;
    }
    let first = Daemon::start_with_env(
        &config,
        &[("STAGELOAD_TEST_PAUSE_BEFORE_WRITE_OFF_MS", "10000")],
    );
    wait_log(
        || first.log_text(),
        &["test hook: pausing before writing off"],
    )
    .await;
    // The owner is held while its lease ends, as a pause past the lease (SIGSTOP, a VM freeze)
    // would leave it; the destination comes back, and another worker takes the batch over and
    // delivers it.
    std::fs::remove_file(&out).unwrap();
    exec(&db, "UPDATE batches SET lease_expires_at = now()").await;
    let second = Daemon::start(&config);
    wait_for(
        "the second worker loaded the batch",
        Duration::from_secs(30),
        || async {
            (query_i64(&db, "SELECT count(*) FROM batches WHERE state = 'loaded'").await == 1)
                .then_some(())
        },
    )
    .await;
    wait_log(
        || first.log_text(),
        &["settlement refused: the lease was taken over"],
    )
    .await;
    assert_eq!(
        query_strings(&db, "SELECT err_code || ' ' || filename FROM load_errors").await,
        Vec::<String>::new(),
        "a loaded batch has no load_errors rows"
    );
    assert!(
        first
            .log_text()
            .contains("load errors refused: the lease was taken over"),
        "the stale owner's rows were refused"
    );
    assert!(second.log_text().contains("batch settled"));
    assert_eq!(
        delivered_lines(&out).len(),
        30,
        "every record delivered once"
    );
}
