//! The Redshift destination against the local stack and the Redshift emulator
//! (tools/redshift-emu, built with `cargo build -p redshift-emu`): typed loads from JSON and gzip
//! CSV, exactly-once across kill -9 at chosen points of a load, bad-file isolation, MAXERROR
//! harvesting, and the cluster going away for less and for longer than the retry duration.

mod common;

use common::redshift::*;
use common::*;
use std::time::Duration;

#[tokio::test]
async fn json_and_gzip_csv_land_typed_and_complete() {
    let s = setup("rsload", EVENTS).await;
    // JSON lines through JSON 'auto'.
    for i in 0..3 {
        put(
            &s.s3,
            &s.bucket,
            &format!("in/js/part-{i}.json"),
            json_lines(&format!("j{i}"), 50, 80),
        )
        .await;
    }
    let d1 = Daemon::start(&s.config("js", "json_lines", "JSON 'auto' TIMEFORMAT 'epochsecs'", 60));
    s.wait_rows(150).await;
    s.wait_batches_settled("json batches settled").await;
    // gzip CSV, with a quoted comma and a non-ASCII value.
    let csv = "c-1,7,\"buy, now\",2026-01-02 03:04:05,é\nc-2,8,view,2026-01-02 03:04:06,x\n";
    put(&s.s3, &s.bucket, "in/csv/a.csv.gz", gzip(csv.as_bytes())).await;
    let d2 = Daemon::start(&s.config("csv", "lines", "CSV GZIP", 60));
    s.wait_rows(152).await;
    s.assert_exactly_once(152).await;
    let got = query_strings(
        &s.rs,
        "SELECT id || '|' || user_id || '|' || action || '|' || ts::text || '|' || coalesce(pad, 'null') \
         FROM public.events WHERE id IN ('c-1', 'j0-3') ORDER BY id",
    )
    .await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[0], "c-1|7|buy, now|2026-01-02 03:04:05|é",
        "typed CSV values"
    );
    assert!(
        got[1].starts_with("j0-3|3|click|2025-11-28 03:20:03|xx"),
        "typed JSON values: {}",
        got[1]
    );
    // One marker row per committed batch, and the daemon logs the COPY without the role.
    let markers = s
        .rows("SELECT count(*) FROM public.stageload_commits")
        .await;
    let loaded = query_i64(
        &s.control,
        "SELECT count(*) FROM batches WHERE state = 'loaded'",
    )
    .await;
    assert_eq!(markers, loaded);
    assert!(
        d1.log_text().contains("IAM_ROLE '***'"),
        "copy logged redacted"
    );
    assert!(!d1.log_text().contains(ROLE), "role never logged");
    drop(d2);
}

/// Stages `objects` files, starts a daemon that pauses at `point`, and kills it with -9 once
/// the pause is logged; returns the table's row count at that moment.
async fn kill_at(s: &Setup, name: &str, point: &str, objects: usize) -> i64 {
    for i in 0..objects {
        let body = json_lines(&format!("{name}x{i}"), 20, 60);
        put(&s.s3, &s.bucket, &format!("in/{name}/o-{i}.json"), body).await;
    }
    let cfg = s.config(
        name,
        "json_lines",
        "JSON 'auto' TIMEFORMAT 'epochsecs'",
        120,
    );
    let hook = format!("{point}:30000");
    let mut d = Daemon::start_with_env(&cfg, &[("STAGELOAD_TEST_REDSHIFT_PAUSE", &hook)]);
    wait_log(|| d.log_text(), &["test hook: pausing", point]).await;
    let before = s.rows("SELECT count(*) FROM public.events").await;
    d.kill9();
    before
}

#[tokio::test]
async fn kill9_at_every_point_of_a_load_never_duplicates() {
    let s = setup("rskill", EVENTS).await;
    // Before COPY: nothing in the table yet; after restart everything once.
    let before = kill_at(&s, "k1", "before_copy", 3).await;
    assert_eq!(before, 0, "killed before COPY: nothing loaded");
    // Inside the COPY's transaction (COPY and marker insert done, COMMIT not sent): the
    // rollback leaves nothing behind.
    let before = kill_at(&s, "k2", "before_commit", 2).await;
    assert_eq!(before, 0, "killed inside the transaction: nothing visible");
    // After COMMIT, before settling: the rows are there and the marker row is too.
    let before = kill_at(&s, "k3", "after_commit", 2).await;
    assert_eq!(before, 40, "killed after commit: the batch is in the table");
    assert_eq!(
        s.rows("SELECT count(*) FROM public.stageload_commits")
            .await,
        1
    );
    // Restart without hooks: every pipeline finishes; rows exactly once.
    let mut cfg = String::new();
    for (name, _) in [("k1", 3), ("k2", 2), ("k3", 2)] {
        let one = s.config(
            name,
            "json_lines",
            "JSON 'auto' TIMEFORMAT 'epochsecs'",
            120,
        );
        if cfg.is_empty() {
            cfg = one;
        } else {
            cfg.push_str(&one[one.find("[[pipeline]]").unwrap()..]);
        }
    }
    let d = Daemon::start(&cfg);
    s.wait_rows(140).await;
    s.wait_batches_settled("all batches settled after restart")
        .await;
    s.assert_exactly_once(140).await;
    assert!(
        d.log_text()
            .contains("taken-over batch was already delivered")
            || d.log_text().contains("already committed"),
        "the after-commit batch was recognised by its marker"
    );
}

/// A batch with one bad file, with load errors read from `error_table`.
async fn one_bad_file(tag: &str, error_table: &str) {
    let s = setup(tag, EVENTS).await;
    put(&s.s3, &s.bucket, "in/bad/a.json", json_lines("a", 10, 60)).await;
    put(
        &s.s3,
        &s.bucket,
        "in/bad/b.json",
        b"{\"id\":\"b-0\",\"user_id\":1}\n{\"id\":\"b-1\",\"user_id\":\"many\"}\n".to_vec(),
    )
    .await;
    put(&s.s3, &s.bucket, "in/bad/c.json", json_lines("c", 10, 60)).await;
    let config = s.json_config("bad", 60, &format!("error_table = \"{error_table}\""));
    let d = Daemon::start(&config);
    s.settled_with(20).await;
    let row = query_strings(
        &s.control,
        "SELECT filename || '|' || line_number || '|' || colname || '|' || err_code || '|' || \
         raw_line || '|' || err_reason FROM load_errors",
    )
    .await;
    assert_eq!(row.len(), 1, "one stl_load_errors row copied: {row:?}");
    let r = &row[0];
    assert!(
        r.starts_with(&format!("s3://{}/in/bad/b.json|2|user_id|", s.bucket)),
        "{r}"
    );
    assert!(
        r.contains("|1207|"),
        "Redshift's code for an invalid digit: {r}"
    );
    // sys_load_error_detail has no raw_line column: an empty one shows which view was read.
    if error_table == "stl_load_errors" {
        assert!(r.contains("\"many\""), "raw line kept: {r}");
    } else {
        assert!(r.contains("|1207||"), "no raw line from the SYS view: {r}");
    }
    let state = s.object_states().await;
    assert_eq!(
        state,
        vec![
            "in/bad/a.json=loaded",
            "in/bad/b.json=skipped",
            "in/bad/c.json=loaded"
        ]
    );
    // The bad file is left behind as an error manifest.
    let errs = keys(&s.s3, &s.bucket, "errors/bad/errors/manifests/").await;
    assert_eq!(errs.len(), 1, "{errs:?}");
    let body = String::from_utf8(get(&s.s3, &s.bucket, &errs[0]).await.unwrap()).unwrap();
    assert!(body.contains("in/bad/b.json") && !body.contains("in/bad/a.json"));
    drop(d);
}

#[tokio::test]
async fn one_bad_file_is_skipped_and_the_rest_loads() {
    one_bad_file("rsbad", "stl_load_errors").await;
}

#[tokio::test]
async fn serverless_error_view_isolates_a_bad_file_too() {
    one_bad_file("rsbadsys", "sys_load_error_detail").await;
}

#[tokio::test]
async fn an_object_deleted_after_listing_is_skipped_alone() {
    let s = setup("rsgone", EVENTS).await;
    for name in ["a", "b", "c"] {
        put(
            &s.s3,
            &s.bucket,
            &format!("in/gone/{name}.json"),
            json_lines(name, 10, 60),
        )
        .await;
    }
    // A longer interval leaves time to delete an object between listing and sealing.
    let config = s
        .config(
            "gone",
            "json_lines",
            "JSON 'auto' TIMEFORMAT 'epochsecs'",
            60,
        )
        .replace("interval_s = 1", "interval_s = 4");
    let d = Daemon::start(&config);
    wait_for("three objects listed", LONG, || async {
        (query_i64(&s.control, "SELECT count(*) FROM staged_objects").await == 3).then_some(())
    })
    .await;
    s.s3.delete_object()
        .bucket(&s.bucket)
        .key("in/gone/b.json")
        .send()
        .await
        .unwrap();
    s.settled_with(20).await;
    let state = s.object_states().await;
    assert_eq!(
        state,
        vec![
            "in/gone/a.json=loaded",
            "in/gone/b.json=skipped",
            "in/gone/c.json=loaded"
        ]
    );
    let errors = query_strings(
        &s.control,
        "SELECT filename || '|' || err_code || '|' || err_reason FROM load_errors",
    )
    .await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(&format!("s3://{}/in/gone/b.json|9101|", s.bucket)),
        "{errors:?}"
    );
    let batches = query_strings(&s.control, "SELECT state FROM batches").await;
    assert_eq!(
        batches,
        vec!["loaded"],
        "one batch, loaded at the first attempt"
    );
    drop(d);
}

/// JSON lines `{"id":..,"user_id":..,"ts":..}` from (id, user, ts) triples.
fn users(rows: &[(String, i64, i64)]) -> Vec<u8> {
    rows.iter()
        .map(|(id, user, ts)| format!("{{\"id\":\"{id}\",\"user_id\":{user},\"ts\":{ts}}}\n"))
        .collect::<String>()
        .into_bytes()
}

#[tokio::test]
async fn merge_keys_replace_rows_and_keep_the_newest_of_a_batch() {
    let s = setup("rsmerge", EVENTS).await;
    // Batch 1: a-0..a-9, and a-7 twice with a later ts: the later one wins.
    let mut first: Vec<(String, i64, i64)> = (0..10).map(|i| (format!("a-{i}"), 1, 100)).collect();
    first.push(("a-7".into(), 99, 200));
    put(&s.s3, &s.bucket, "in/merge/1.json", users(&first)).await;
    let config = s.json_config(
        "merge",
        60,
        "columns = [\"id\", \"user_id\", \"ts\"]\n\
             merge_keys = [\"id\"]\nmerge_order_by = \"ts\"",
    );
    let d = Daemon::start(&config);
    s.settled_with(10).await;
    assert_eq!(
        s.rows("SELECT user_id FROM public.events WHERE id = 'a-7'")
            .await,
        99,
        "the newest row of a key within a batch wins"
    );
    // Batch 2 updates a-0..a-4 and adds b-0..b-4.
    let second: Vec<(String, i64, i64)> = (0..5)
        .map(|i| (format!("a-{i}"), 2, 300))
        .chain((0..5).map(|i| (format!("b-{i}"), 3, 300)))
        .collect();
    put(&s.s3, &s.bucket, "in/merge/2.json", users(&second)).await;
    wait_for("the second batch loaded", LONG, || async {
        (query_i64(
            &s.control,
            "SELECT count(*) FROM batches WHERE state = 'loaded'",
        )
        .await
            == 2)
            .then_some(())
    })
    .await;
    s.assert_exactly_once(15).await;
    let by_user = query_strings(
        &s.rs,
        "SELECT user_id || ':' || count(*) FROM public.events GROUP BY user_id ORDER BY user_id",
    )
    .await;
    assert_eq!(by_user, vec!["1:4", "2:5", "3:5", "99:1"]);
    let markers = query_strings(
        &s.rs,
        "SELECT rows_loaded::text FROM public.stageload_commits ORDER BY batch_id",
    )
    .await;
    assert_eq!(markers, vec!["10", "10"], "rows inserted per batch");
    drop(d);
}

#[tokio::test]
async fn a_copy_that_hangs_is_cancelled_and_retried() {
    let s = setup("rshang", EVENTS).await;
    // Another session holds the table in a mode that lets readers in but not writers: the
    // loader's COPY waits for the lock and gets no answer.
    let (holder, conn) = tokio_postgres::connect(&s.rs, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    holder
        .batch_execute("BEGIN; LOCK TABLE public.events IN SHARE MODE")
        .await
        .unwrap();
    put(&s.s3, &s.bucket, "in/hang/a.json", json_lines("h", 10, 60)).await;
    let config = s.json_config("hang", 120, "statement_timeout_s = 2");
    let d = Daemon::start(&config);
    // The server's statement_timeout cancels the COPY (57014); the client-side limit is the
    // backstop for a server that cannot.
    wait_log(|| d.log_text(), &["copy: ", "statement timeout"]).await;
    assert_eq!(s.rows("SELECT count(*) FROM public.events").await, 0);
    holder.batch_execute("COMMIT").await.unwrap();
    s.settled_with(10).await;
    let attempts = query_i64(&s.control, "SELECT attempts::bigint FROM batches").await;
    assert!(
        attempts >= 2,
        "the hung attempt was retried: {attempts} attempts"
    );
    drop(d);
}

#[tokio::test]
async fn maxerror_loads_and_records_the_skipped_rows() {
    let s = setup("rsmax", EVENTS).await;
    let mut body = json_lines("m", 10, 60);
    for i in 0..3 {
        body.extend_from_slice(format!("{{\"id\":\"bad-{i}\",\"user_id\":\"x{i}\"}}\n").as_bytes());
    }
    put(&s.s3, &s.bucket, "in/max/a.json", body).await;
    let d = Daemon::start(&s.config(
        "max",
        "json_lines",
        "JSON 'auto' TIMEFORMAT 'epochsecs' MAXERROR 5",
        60,
    ));
    s.settled_with(10).await;
    let rows = query_strings(
        &s.control,
        "SELECT line_number || '|' || colname || '|' || err_code FROM load_errors ORDER BY line_number",
    )
    .await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows[0].starts_with("11|user_id|"), "{rows:?}");
    let state = query_strings(&s.control, "SELECT state FROM batches").await;
    assert_eq!(state, vec!["loaded"]);
    drop(d);
}

#[tokio::test]
async fn cluster_outages_shorter_and_longer_than_the_budget() {
    let mut s = setup("rsdown", EVENTS).await;
    let listen = s.emu.addr.clone();
    // Shorter: the emulator is down for ~4 s of a 30 s budget; everything loads once it is back.
    s.emu.stop().await;
    put(&s.s3, &s.bucket, "in/short/a.json", json_lines("s", 10, 60)).await;
    let d = Daemon::start(&s.config(
        "short",
        "json_lines",
        "JSON 'auto' TIMEFORMAT 'epochsecs'",
        30,
    ));
    wait_log(|| d.log_text(), &["delivery failed, will retry"]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.emu = Emu::start(&s.stack, &s.rs, &listen).await;
    s.wait_rows(10).await;
    s.wait_batches_settled("short outage batch loaded").await;
    assert_eq!(
        query_strings(&s.control, "SELECT state FROM batches").await,
        vec!["loaded"]
    );
    drop(d);

    // Longer: a 4 s budget with the emulator down throughout: the batch is skipped with an error
    // manifest, which then loads by hand through the emulator.
    s.emu.stop().await;
    put(&s.s3, &s.bucket, "in/long/a.json", json_lines("l", 7, 60)).await;
    let d = Daemon::start(&s.config(
        "long",
        "json_lines",
        "JSON 'auto' TIMEFORMAT 'epochsecs'",
        4,
    ));
    wait_for("batch skipped", LONG, || async {
        (query_i64(
            &s.control,
            "SELECT count(*) FROM batches WHERE state = 'skipped'",
        )
        .await
            == 1)
            .then_some(())
    })
    .await;
    let errs = keys(&s.s3, &s.bucket, "errors/long/errors/manifests/").await;
    assert_eq!(errs.len(), 1, "{errs:?}");
    drop(d);
    s.emu = Emu::start(&s.stack, &s.rs, &listen).await;
    let (c, conn) = tokio_postgres::connect(&s.emu.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c.batch_execute(&format!(
        "COPY public.events FROM 's3://{}/{}' IAM_ROLE '{ROLE}' MANIFEST JSON 'auto' TIMEFORMAT 'epochsecs'",
        s.bucket, errs[0]
    ))
    .await
    .unwrap();
    s.assert_exactly_once(17).await;
}
