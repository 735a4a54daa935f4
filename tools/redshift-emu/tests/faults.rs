//! The fault switch: a row in `redshift_emu_faults` answers the next COPY with Redshift's
//! serializable isolation violation (1023). Alone in its test binary because an armed fault is
//! shared by every emulator on the database, and cargo runs test binaries one after another.

#[macro_use]
mod support;

use support::{bucket, connect_backend, put, run, table, Emu, Stack};

const ROLE: &str = "IAM_ROLE 'arn:aws:iam::123456789012:role/loader'";

#[tokio::test]
async fn armed_1023_fails_only_the_next_copy() {
    let Some(stack) = Stack::get() else {
        return;
    };
    let emu = Emu::start(&stack).await;
    let c = emu.connect().await;
    let admin = connect_backend(&stack).await;
    let s3 = stack.s3();
    let b = bucket(&s3, "fault").await;
    let t = table("fault");
    run(
        &c,
        &format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (a int)"),
    )
    .await
    .unwrap();
    put(&s3, &b, "k", "1\n2\n").await;
    let copy = format!("COPY {t} FROM 's3://{b}/k' {ROLE}");
    let oid: i32 = c
        .query_one(&format!("SELECT '{t}'::regclass::oid::int"), &[])
        .await
        .unwrap()
        .get(0);
    let pid: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    admin
        .batch_execute("INSERT INTO redshift_emu_faults VALUES ('copy_1023', 1)")
        .await
        .unwrap();
    run(&c, &format!("BEGIN; INSERT INTO {t} VALUES (0)"))
        .await
        .unwrap();
    let e = run(&c, &copy).await.unwrap_err();
    let db = e.as_db_error().expect("database error");
    assert_eq!(db.code().code(), "XX000");
    assert_eq!(db.message(), "1023");
    let detail = db.detail().unwrap_or_default();
    let prefix = format!(
        "Serializable isolation violation on table - {oid}, transactions forming the cycle are: "
    );
    assert!(detail.starts_with(&prefix), "detail: {detail:?}");
    assert!(
        detail.ends_with(&format!(" (pid:{pid})")),
        "detail: {detail:?}"
    );
    // The transaction is aborted: only ROLLBACK works.
    let e = run(&c, "SELECT 1").await.unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code().code(), "25P02");
    run(&c, "ROLLBACK").await.unwrap();
    let last: i32 = c
        .query_one("SELECT pg_last_copy_id()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(last, -1);

    // The fault is spent: the next COPY loads.
    run(&c, &copy).await.unwrap();
    let n: i64 = support::count(&c, &t).await;
    assert_eq!(n, 2);
    let left: i64 = admin
        .query_one(
            "SELECT coalesce(sum(remaining), 0)::bigint FROM redshift_emu_faults WHERE fault = 'copy_1023'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);

    // A fault can be aimed at one table (the optional third column); others load.
    let other = table("fault_other");
    run(
        &c,
        &format!("DROP TABLE IF EXISTS {other}; CREATE TABLE {other} (a int)"),
    )
    .await
    .unwrap();
    admin
        .execute(
            "INSERT INTO redshift_emu_faults VALUES ('copy_1023', 1, $1)",
            &[&t],
        )
        .await
        .unwrap();
    run(&c, &format!("COPY {other} FROM 's3://{b}/k' {ROLE}"))
        .await
        .unwrap();
    let e = run(&c, &copy).await.unwrap_err();
    assert_eq!(e.as_db_error().unwrap().message(), "1023");
    admin
        .batch_execute("DELETE FROM redshift_emu_faults WHERE remaining = 0")
        .await
        .unwrap();
}
