//! Integration tests of the session semantics: snapshot and serializable isolation, system views
//! that ignore the reader's snapshot, `pg_last_copy_id()` across commit and rollback, `getdate()`,
//! and the Serverless mode.

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::Duration;

use support::{bucket, put, run, table, Emu, Stack};
use tokio_postgres::Client;

const ROLE: &str = "IAM_ROLE 'arn:aws:iam::123456789012:role/loader'";

fn db_error(e: &tokio_postgres::Error) -> (String, String) {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("not a database error: {e}"));
    (db.code().code().to_string(), db.message().to_string())
}

async fn count(c: &Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

async fn last_copy(c: &Client) -> (i32, i64) {
    let r = c
        .query_one("SELECT pg_last_copy_id(), pg_last_copy_count()", &[])
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

#[tokio::test]
async fn snapshot_is_taken_by_the_first_query_not_by_lock() {
    let stack = stack_or_skip!();
    let emu = Emu::start(&stack).await;
    let c = Arc::new(emu.connect().await);
    let other = emu.connect().await;
    let t = table("snap");
    run(
        &c,
        &format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (a int)"),
    )
    .await
    .unwrap();
    let level: String = c
        .query_one("SHOW transaction_isolation", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(level, "repeatable read");
    let n = format!("SELECT count(*) FROM {t}");

    // The first SELECT fixes the snapshot: a later commit elsewhere stays invisible.
    run(&c, "BEGIN").await.unwrap();
    assert_eq!(count(&c, &n).await, 0);
    run(&other, &format!("INSERT INTO {t} VALUES (1)"))
        .await
        .unwrap();
    assert_eq!(count(&c, &n).await, 0);
    run(&c, "COMMIT").await.unwrap();
    assert_eq!(count(&c, &n).await, 1);

    // A leading LOCK takes no snapshot: rows committed while it waited are seen afterwards.
    run(&other, &format!("BEGIN; INSERT INTO {t} VALUES (2)"))
        .await
        .unwrap();
    let c2 = c.clone();
    let lock = format!("BEGIN; LOCK TABLE {t} IN SHARE ROW EXCLUSIVE MODE");
    let waiter = tokio::spawn(async move { run(&c2, &lock).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "LOCK should wait for the writer");
    run(&other, "COMMIT").await.unwrap();
    waiter.await.unwrap().unwrap();
    assert_eq!(count(&c, &n).await, 2);
    run(&c, "COMMIT").await.unwrap();
}

#[tokio::test]
async fn serializable_mode_fails_write_skew() {
    let stack = stack_or_skip!();
    let emu = Emu::start_with(&stack, &["--isolation", "serializable"]).await;
    let a = emu.connect().await;
    let b = emu.connect().await;
    let t = table("ser");
    run(
        &a,
        &format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (a int)"),
    )
    .await
    .unwrap();
    let level: String = a
        .query_one("SHOW transaction_isolation", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(level, "serializable");
    let n = format!("SELECT count(*) FROM {t}");
    run(&a, "BEGIN").await.unwrap();
    run(&b, "BEGIN").await.unwrap();
    assert_eq!(count(&a, &n).await, 0);
    assert_eq!(count(&b, &n).await, 0);
    run(&a, &format!("INSERT INTO {t} VALUES (1)"))
        .await
        .unwrap();
    let second = async {
        run(&b, &format!("INSERT INTO {t} VALUES (2)")).await?;
        run(&a, "COMMIT").await.unwrap();
        run(&b, "COMMIT").await
    };
    let e = second.await.unwrap_err();
    assert_eq!(db_error(&e).0, "40001");
    run(&b, "ROLLBACK").await.unwrap();
    let _ = run(&a, "COMMIT").await;
    assert_eq!(count(&a, &n).await, 1);
}

#[tokio::test]
async fn system_views_ignore_the_readers_snapshot() {
    let stack = stack_or_skip!();
    let emu = Emu::start(&stack).await;
    let c = emu.connect().await;
    let other = emu.connect().await;
    let s3 = stack.s3();
    let b = bucket(&s3, "views").await;
    let t = table("views");
    let marker = table("views_marker");
    run(
        &c,
        &format!(
            "DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (a int); \
             DROP TABLE IF EXISTS {marker}; CREATE TABLE {marker} (k text)"
        ),
    )
    .await
    .unwrap();
    put(&s3, &b, "d/1.txt", "1\nx\n3\n").await;
    let copy = format!("COPY {t} FROM 's3://{b}/d/' {ROLE} MAXERROR 5");

    // The loader's pattern: lock and read the marker, COPY, then read the system views.
    run(&c, &format!("BEGIN; LOCK {marker}")).await.unwrap();
    assert_eq!(
        count(&c, &format!("SELECT count(*) FROM {marker}")).await,
        0
    );
    // Another session's COPY after this snapshot was taken.
    run(&other, &copy).await.unwrap();
    let (theirs, _) = last_copy(&other).await;
    run(&c, &copy).await.unwrap();
    let (mine, loaded) = last_copy(&c).await;
    assert!(mine > theirs);
    assert_eq!(loaded, 2);
    for q in [mine, theirs] {
        let stl = c
            .query_one(
                "SELECT count(*) FROM stl_load_errors WHERE query = $1",
                &[&q],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        assert_eq!(stl, 1, "stl_load_errors for query {q}");
        let sys = c
            .query_one(
                "SELECT count(*) FROM sys_load_error_detail WHERE query_id = $1",
                &[&(q as i64)],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        assert_eq!(sys, 1, "sys_load_error_detail for query {q}");
        let commits = c
            .query_one(
                "SELECT count(*) FROM stl_load_commits WHERE query = $1",
                &[&q],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        assert_eq!(commits, 1, "stl_load_commits for query {q}");
    }
    // The table itself still follows the snapshot: the other session's rows are not there.
    assert_eq!(count(&c, &format!("SELECT count(*) FROM {t}")).await, 2);
    run(&c, "COMMIT").await.unwrap();
    assert_eq!(count(&c, &format!("SELECT count(*) FROM {t}")).await, 4);
}

#[tokio::test]
async fn pg_last_copy_id_follows_commit_and_rollback() {
    let stack = stack_or_skip!();
    let emu = Emu::start(&stack).await;
    let c = emu.connect().await;
    let s3 = stack.s3();
    let b = bucket(&s3, "lastid").await;
    let t = table("lastid");
    run(
        &c,
        &format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (a int)"),
    )
    .await
    .unwrap();
    put(&s3, &b, "ok2", "1\n2\n").await;
    put(&s3, &b, "ok3", "1\n2\n3\n").await;
    put(&s3, &b, "bad", "1\nx\n").await;
    let copy = |k: &str| format!("COPY {t} FROM 's3://{b}/{k}' {ROLE}");
    assert_eq!(last_copy(&c).await, (-1, 0));

    run(&c, &copy("ok2")).await.unwrap();
    let (a, n) = last_copy(&c).await;
    assert!(a > 0);
    assert_eq!(n, 2);

    // A successful COPY whose transaction rolls back leaves the value where it was.
    run(&c, "BEGIN").await.unwrap();
    run(&c, &copy("ok3")).await.unwrap();
    let (inside, n) = last_copy(&c).await;
    assert!(inside > a);
    assert_eq!(n, 3);
    run(&c, "ROLLBACK").await.unwrap();
    assert_eq!(last_copy(&c).await, (a, 2));

    // So does a COPY failing on bad data inside a block.
    run(&c, "BEGIN").await.unwrap();
    run(&c, &copy("bad")).await.unwrap_err();
    run(&c, "ROLLBACK").await.unwrap();
    assert_eq!(last_copy(&c).await, (a, 2));

    // A committed block updates it.
    run(&c, "BEGIN").await.unwrap();
    run(&c, &copy("ok3")).await.unwrap();
    run(&c, "COMMIT").await.unwrap();
    let (committed, n) = last_copy(&c).await;
    assert!(committed > inside);
    assert_eq!(n, 3);

    // Invalid load data outside a block updates it (count 0) and its errors are there.
    run(&c, &copy("bad")).await.unwrap_err();
    let (failed, n) = last_copy(&c).await;
    assert!(failed > committed);
    assert_eq!(n, 0);
    let errs = c
        .query_one(
            "SELECT count(*) FROM stl_load_errors WHERE query = pg_last_copy_id()",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(errs, 1);

    // An error before the load begins (nothing under the prefix) does not.
    run(&c, &copy("missing/")).await.unwrap_err();
    assert_eq!(last_copy(&c).await, (failed, 0));

    // The value belongs to the session.
    let fresh = emu.connect().await;
    assert_eq!(last_copy(&fresh).await, (-1, 0));
}

#[tokio::test]
async fn getdate_is_utc_and_precedes_the_copys_error_rows() {
    let stack = stack_or_skip!();
    let emu = Emu::start(&stack).await;
    let c = emu.connect().await;
    let s3 = stack.s3();
    let b = bucket(&s3, "getdate").await;
    let t = table("getdate");
    run(
        &c,
        &format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (a int)"),
    )
    .await
    .unwrap();
    // A session time zone far from UTC must not shift getdate() or the start times.
    run(&c, "SET TIME ZONE 'Asia/Kolkata'").await.unwrap();
    let r = c
        .query_one(
            "SELECT getdate()::text, pg_typeof(getdate())::text, \
             abs(extract(epoch FROM getdate() - (now() AT TIME ZONE 'UTC'))) < 2",
            &[],
        )
        .await
        .unwrap();
    let before: String = r.get(0);
    assert_eq!(r.get::<_, String>(1), "timestamp without time zone");
    assert!(r.get::<_, bool>(2), "getdate() is not UTC now: {before}");
    let url = format!("s3://{b}/e/1.txt");
    put(&s3, &b, "e/1.txt", "1\nx\n").await;
    run(
        &c,
        &format!("COPY {t} FROM 's3://{b}/e/' {ROLE} MAXERROR 1"),
    )
    .await
    .unwrap();
    let stl = c
        .query_one(
            "SELECT count(*) FROM stl_load_errors \
             WHERE starttime >= $1::text::timestamp AND trim(filename) = $2 \
               AND starttime <= getdate() + interval '1 second'",
            &[&before, &url],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(stl, 1);
    let sys = c
        .query_one(
            "SELECT count(*) FROM sys_load_error_detail \
             WHERE start_time >= $1::text::timestamp AND trim(file_name) = $2",
            &[&before, &url],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(sys, 1);
}

#[tokio::test]
async fn serverless_refuses_stl_and_keeps_its_own_query_ids() {
    let stack = stack_or_skip!();
    let emu = Emu::start_with(&stack, &["--serverless"]).await;
    let c = emu.connect().await;
    let s3 = stack.s3();
    let b = bucket(&s3, "srvless").await;
    let t = table("srvless");
    run(
        &c,
        &format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (a int)"),
    )
    .await
    .unwrap();
    for rel in ["stl_load_errors", "stl_load_commits"] {
        let e = c
            .query(&format!("SELECT count(*) FROM {rel}"), &[])
            .await
            .unwrap_err();
        assert_eq!(
            db_error(&e),
            (
                "42501".into(),
                format!("permission denied for relation {rel}")
            )
        );
    }
    let before: String = c
        .query_one("SELECT getdate()::text", &[])
        .await
        .unwrap()
        .get(0);
    let url = format!("s3://{b}/f/1.txt");
    put(&s3, &b, "f/1.txt", "1\nx\n").await;
    let e = run(&c, &format!("COPY {t} FROM 's3://{b}/f/' {ROLE}"))
        .await
        .unwrap_err();
    assert_eq!(
        db_error(&e),
        (
            "XX000".into(),
            format!(
                "Load into table '{t}' failed.  Check 'sys_load_error_detail' system table for details."
            )
        )
    );
    let (q, _) = last_copy(&c).await;
    assert!(q > 0);
    let joined = c
        .query_one(
            "SELECT count(*) FROM sys_load_error_detail WHERE query_id = pg_last_copy_id()",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(
        joined, 0,
        "Serverless query ids are not pg_last_copy_id()'s"
    );
    let rows = c
        .query(
            "SELECT query_id, error_code FROM sys_load_error_detail \
             WHERE start_time >= $1::text::timestamp AND trim(file_name) = $2",
            &[&before, &url],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_ne!(rows[0].get::<_, i64>(0), q as i64);
    assert_eq!(rows[0].get::<_, i32>(1), 1207);
}
