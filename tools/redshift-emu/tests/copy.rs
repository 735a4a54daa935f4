//! Integration tests against the local stack: the emulator binary in front of PostgreSQL, objects
//! in s3s-fs, a tokio-postgres client talking to the emulator.

#[macro_use]
mod support;

use support::{bucket, gzip, put, run, table, Emu, Stack};

const ROLE: &str = "IAM_ROLE 'arn:aws:iam::123456789012:role/loader'";

/// The query id in the DETAIL block of a failed COPY.
fn detail_query(e: &tokio_postgres::Error) -> i32 {
    let d = e.as_db_error().and_then(|d| d.detail()).unwrap_or_default();
    d.lines()
        .find_map(|l| l.trim().strip_prefix("query:"))
        .and_then(|q| q.trim().parse().ok())
        .unwrap_or_else(|| panic!("no query id in DETAIL {d:?}"))
}

fn db_error(e: &tokio_postgres::Error) -> (String, String) {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("not a database error: {e}"));
    (db.code().code().to_string(), db.message().to_string())
}

#[tokio::test]
async fn json_auto_from_a_prefix() {
    let stack = stack_or_skip!();
    let emu = Emu::start(&stack).await;
    let c = emu.connect().await;
    let s3 = stack.s3();
    let b = bucket(&s3, "json").await;
    let t = table("json");
    run(&c, &format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id int NOT NULL, name varchar(10), ts timestamp, ok boolean, amount numeric(8,2))")).await.unwrap();
    put(&s3, &b, "in/2024/01/a.json", "{\"id\":1,\"name\":\"one\",\"ts\":\"2024-01-02 03:04:05\",\"ok\":true,\"amount\":1.5}\n{\"id\":2,\"Name\":\"ignored\"}\n").await;
    // Concatenated objects with no separator, as Firehose writes them.
    put(
        &s3,
        &b,
        "in/2024/01/b.json",
        "{\"id\":3,\"name\":\"three\",\"extra\":{\"x\":1}}{\"id\":4,\"amount\":\"20.259\"}",
    )
    .await;
    put(&s3, &b, "other/c.json", "{\"id\":99}").await;
    run(
        &c,
        &format!("COPY {t} FROM 's3://{b}/in/' {ROLE} FORMAT AS JSON 'auto' TIMEFORMAT 'auto'"),
    )
    .await
    .unwrap();
    let rows = c
        .query(
            &format!("SELECT id, name, ok, amount::text FROM {t} ORDER BY id"),
            &[],
        )
        .await
        .unwrap();
    type Row = (i32, Option<String>, Option<bool>, Option<String>);
    let got: Vec<Row> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, Some("one".into()), Some(true), Some("1.50".into())),
            (2, None, None, None),
            (3, Some("three".into()), None, None),
            (4, None, None, Some("20.25".into())),
        ]
    );
    let row = c
        .query_one("SELECT pg_last_copy_id(), pg_last_copy_count()", &[])
        .await
        .unwrap();
    assert!(row.get::<_, i32>(0) > 0);
    assert_eq!(row.get::<_, i64>(1), 4);
}

#[tokio::test]
async fn gzip_csv_with_header_and_quotes() {
    let stack = stack_or_skip!();
    let emu = Emu::start(&stack).await;
    let c = emu.connect().await;
    let s3 = stack.s3();
    let b = bucket(&s3, "csv").await;
    let t = table("csv");
    run(
        &c,
        &format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id bigint, note text, d date)"),
    )
    .await
    .unwrap();
    put(&s3, &b, "csv/part-0.csv.gz", gzip(b"id,note,d\n1,\"a, \"\"quoted\"\" note\",2024-02-29\n2,,\n3,\"two\nlines\",2024-03-01\n")).await;
    run(
        &c,
        &format!(
            "copy {t} from 's3://{b}/csv/part' {ROLE} csv gzip ignoreheader 1 region 'us-east-1';"
        ),
    )
    .await
    .unwrap();
    let rows = c
        .query(
            &format!("SELECT id, note, d::text FROM {t} ORDER BY id"),
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(i64, Option<String>, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                1,
                Some("a, \"quoted\" note".into()),
                Some("2024-02-29".into())
            ),
            (2, Some(String::new()), None),
            (3, Some("two\nlines".into()), Some("2024-03-01".into())),
        ]
    );
}

#[tokio::test]
async fn bad_rows_within_maxerror_are_skipped_and_recorded() {
    let stack = stack_or_skip!();
    let emu = Emu::start(&stack).await;
    let c = emu.connect().await;
    let s3 = stack.s3();
    let b = bucket(&s3, "maxerr").await;
    let t = table("maxerr");
    run(
        &c,
        &format!(
            "DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id int, code char(3), name varchar(4))"
        ),
    )
    .await
    .unwrap();
    put(&s3, &b, "d/x.json", "{\"id\":1,\"code\":\"abc\",\"name\":\"ok\"}\n{\"id\":\"a1\",\"code\":\"x\"}\n{\"id\":3,\n \"name\":\"too long\"}\n{not json}\n{\"id\":5}\n").await;
    run(
        &c,
        &format!("COPY {t} FROM 's3://{b}/d/x.json' {ROLE} JSON 'auto' MAXERROR 5"),
    )
    .await
    .unwrap();
    let n: i64 = support::count(&c, &t).await;
    assert_eq!(n, 2);
    let rows = c
        .query(
            "SELECT line_number, trim(colname), err_code, trim(err_reason), trim(filename), trim(raw_field_value), trim(type), trim(col_length) \
             FROM stl_load_errors WHERE query = pg_last_copy_id() ORDER BY line_number",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(i64, String, i32, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                2,
                "id".into(),
                1207,
                "Invalid digit, Value 'a', Pos 0, Type: Integer".into()
            ),
            (
                4,
                "name".into(),
                1204,
                "String length exceeds DDL length".into()
            ),
            (5, "".into(), 1216, got[2].3.clone()),
        ]
    );
    assert_eq!(rows[0].get::<_, String>(4), format!("s3://{b}/d/x.json"));
    assert_eq!(rows[0].get::<_, String>(5), "a1");
    assert_eq!(rows[1].get::<_, String>(6), "varchar");
    assert_eq!(rows[1].get::<_, String>(7), "4");
    assert_eq!(
        c.query_one("SELECT pg_last_copy_count()", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        2
    );
}

#[tokio::test]
async fn too_many_errors_fail_and_stay_visible_after_rollback() {
    let stack = stack_or_skip!();
    let emu = Emu::start(&stack).await;
    let c = emu.connect().await;
    let s3 = stack.s3();
    let b = bucket(&s3, "fail").await;
    let t = table("fail");
    run(
        &c,
        &format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (a int, b int)"),
    )
    .await
    .unwrap();
    put(&s3, &b, "p/1.txt", "1|2\n3|x\n5|6\n7\n").await;
    run(&c, "BEGIN").await.unwrap();
    run(&c, &format!("INSERT INTO {t} VALUES (100, 100)"))
        .await
        .unwrap();
    let e = run(
        &c,
        &format!("COPY {t} FROM 's3://{b}/p/' {ROLE} MAXERROR 1"),
    )
    .await
    .unwrap_err();
    let query = detail_query(&e);
    assert_eq!(
        db_error(&e),
        (
            "XX000".into(),
            format!(
                "Load into table '{t}' failed.  Check 'stl_load_errors' system table for details."
            )
        )
    );
    // The transaction is aborted exactly as after any failed statement.
    let e = run(&c, "SELECT 1").await.unwrap_err();
    assert_eq!(db_error(&e).0, "25P02");
    run(&c, "ROLLBACK").await.unwrap();
    let n: i64 = support::count(&c, &t).await;
    assert_eq!(n, 0);
    // The COPY was rolled back, so it is not the session's last one; its errors stay.
    let last: i32 = c
        .query_one("SELECT pg_last_copy_id()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(last, -1);
    let rows = c
        .query("SELECT line_number, trim(colname), err_code FROM stl_load_errors WHERE query = $1 ORDER BY line_number", &[&query])
        .await
        .unwrap();
    let got: Vec<(i64, String, i32)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(got, vec![(2, "b".into(), 1207), (4, "b".into(), 1214)]);
    assert_eq!(
        c.query_one("SELECT pg_last_copy_count()", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        0
    );
}

#[tokio::test]
async fn copy_is_part_of_the_clients_transaction() {
    let stack = stack_or_skip!();
    let emu = Emu::start(&stack).await;
    let c = emu.connect().await;
    let s3 = stack.s3();
    let b = bucket(&s3, "txn").await;
    let t = table("txn");
    run(
        &c,
        &format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (a int)"),
    )
    .await
    .unwrap();
    put(&s3, &b, "k", "1\n2\n").await;
    let copy = format!("COPY {t} FROM 's3://{b}/k' {ROLE}");
    run(&c, "BEGIN").await.unwrap();
    run(&c, &format!("INSERT INTO {t} VALUES (0)"))
        .await
        .unwrap();
    run(&c, &copy).await.unwrap();
    run(&c, "ROLLBACK").await.unwrap();
    assert_eq!(support::count(&c, &t).await, 0);
    run(&c, "BEGIN").await.unwrap();
    run(&c, &format!("INSERT INTO {t} VALUES (0)"))
        .await
        .unwrap();
    run(&c, &copy).await.unwrap();
    // Another session sees nothing before COMMIT.
    let other = emu.connect().await;
    assert_eq!(support::count(&other, &t).await, 0);
    run(&c, "COMMIT").await.unwrap();
    assert_eq!(support::count(&other, &t).await, 3);
    // A table created in the same transaction is visible to the COPY.
    let t2 = table("txn_new");
    run(&c, &format!("DROP TABLE IF EXISTS {t2}"))
        .await
        .unwrap();
    run(&c, &format!("BEGIN; CREATE TABLE {t2} (a int);"))
        .await
        .unwrap();
    run(&c, &format!("COPY {t2} FROM 's3://{b}/k' {ROLE}"))
        .await
        .unwrap();
    run(&c, "COMMIT").await.unwrap();
    let n: i64 = other
        .query_one(&format!("SELECT count(*) FROM {t2}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[tokio::test]
async fn statement_errors_look_like_redshift() {
    let stack = stack_or_skip!();
    let emu = Emu::start(&stack).await;
    let c = emu.connect().await;
    let s3 = stack.s3();
    let b = bucket(&s3, "errs").await;
    let t = table("errs");
    run(
        &c,
        &format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (a int)"),
    )
    .await
    .unwrap();
    let e = run(
        &c,
        &format!("COPY {t} FROM 's3://{b}/x' {ROLE} FROBNICATE 1"),
    )
    .await
    .unwrap_err();
    assert_eq!(
        db_error(&e),
        (
            "42601".into(),
            "syntax error at or near \"FROBNICATE\"".into()
        )
    );
    let e = run(&c, &format!("COPY {t} FROM 's3://{b}/x' JSON 'auto'"))
        .await
        .unwrap_err();
    assert!(db_error(&e).1.starts_with("Missing credentials"), "{e}");
    let e = run(&c, &format!("COPY {t} FROM 's3://{b}/nothing/here' {ROLE}"))
        .await
        .unwrap_err();
    assert_eq!(
        db_error(&e),
        (
            "XX000".into(),
            "The specified S3 prefix 'nothing/here' does not exist".into()
        )
    );
    let e = run(
        &c,
        &format!("COPY no_such_table_xyz FROM 's3://{b}/x' {ROLE}"),
    )
    .await
    .unwrap_err();
    assert_eq!(db_error(&e).0, "42P01");
    // Ordinary statements, COPY FROM STDIN and the extended protocol pass through.
    let v: i32 = c
        .query_one("SELECT $1::int + 1", &[&41i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 42);
    let msgs = c
        .simple_query("select 'COPY t FROM ''s3://x/y'''")
        .await
        .unwrap();
    let row = msgs.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap().to_string()),
        _ => None,
    });
    assert_eq!(row.as_deref(), Some("COPY t FROM 's3://x/y'"));
}

#[tokio::test]
async fn manifest_loads_listed_files() {
    let stack = stack_or_skip!();
    let emu = Emu::start(&stack).await;
    let c = emu.connect().await;
    let s3 = stack.s3();
    let b = bucket(&s3, "man").await;
    let b2 = bucket(&s3, "man2").await;
    let t = table("man");
    run(
        &c,
        &format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (a int, s varchar(20))"),
    )
    .await
    .unwrap();
    put(&s3, &b, "data/1.json.gz", gzip(b"{\"a\":1,\"s\":\"x\"}\n")).await;
    put(&s3, &b2, "data/2.json.gz", gzip(b"{\"a\":2}\n")).await;
    put(&s3, &b, "data/unlisted.json.gz", gzip(b"{\"a\":3}\n")).await;
    let manifest = format!(
        r#"{{"entries":[{{"url":"s3://{b}/data/1.json.gz","mandatory":true,"meta":{{"content_length":10}}}},
            {{"url":"s3://{b2}/data/2.json.gz","mandatory":true}},
            {{"url":"s3://{b}/data/gone.json.gz","mandatory":false}}]}}"#
    );
    put(&s3, &b, "manifests/m1", manifest).await;
    run(
        &c,
        &format!("COPY {t} FROM 's3://{b}/manifests/m1' {ROLE} MANIFEST JSON 'auto' GZIP"),
    )
    .await
    .unwrap();
    let rows = c
        .query(&format!("SELECT a FROM {t} ORDER BY a"), &[])
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let commits: i64 = c
        .query_one(
            "SELECT count(*) FROM stl_load_commits WHERE query = pg_last_copy_id()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(commits, 2);

    put(&s3, &b, "manifests/m2", format!(r#"{{"entries":[{{"url":"s3://{b}/data/1.json.gz","mandatory":true}},{{"url":"s3://{b}/data/gone.json.gz","mandatory":true}}]}}"#)).await;
    let e = run(
        &c,
        &format!("COPY {t} FROM 's3://{b}/manifests/m2' {ROLE} MANIFEST JSON 'auto' GZIP"),
    )
    .await
    .unwrap_err();
    assert!(db_error(&e).1.contains("NoSuchKey"), "{e}");
    put(
        &s3,
        &b,
        "manifests/m3",
        format!(r#"{{"entries":[{{"url":"s3://{b}/","mandatory":true}}]}}"#),
    )
    .await;
    let e = run(
        &c,
        &format!("COPY {t} FROM 's3://{b}/manifests/m3' {ROLE} MANIFEST JSON 'auto' GZIP"),
    )
    .await
    .unwrap_err();
    let d = e.as_db_error().unwrap();
    assert!(
        d.message()
            .starts_with("COPY with MANIFEST requires the full path"),
        "{e}"
    );
    assert!(d.detail().unwrap_or_default().contains("8001"));
    let n: i64 = support::count(&c, &t).await;
    assert_eq!(n, 2);
}

#[tokio::test]
async fn json_defaults_jsonpaths_and_other_codecs() {
    let stack = stack_or_skip!();
    let emu = Emu::start(&stack).await;
    let c = emu.connect().await;
    let s3 = stack.s3();
    let b = bucket(&s3, "more").await;
    let t = table("more");
    run(&c, &format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id serial, v int, src text NOT NULL DEFAULT 'dflt', at timestamptz DEFAULT now())")).await.unwrap();
    // A missing key takes the column DEFAULT; an explicit null stays NULL.
    put(
        &s3,
        &b,
        "j/1.json",
        "{\"v\":1}\n{\"v\":2,\"src\":\"given\",\"at\":null}\n",
    )
    .await;
    run(
        &c,
        &format!("COPY {t} (v, src, at, id) FROM 's3://{b}/j/' {ROLE} JSON 'auto'"),
    )
    .await
    .unwrap();
    let rows = c
        .query(
            &format!("SELECT id, v, src, at IS NULL FROM {t} ORDER BY v"),
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(i32, i32, String, bool)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        got,
        vec![(1, 1, "dflt".into(), false), (2, 2, "given".into(), true)]
    );

    put(
        &s3,
        &b,
        "paths.json",
        r#"{"jsonpaths":["$.x.value","$['name']"]}"#,
    )
    .await;
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    std::io::Write::write_all(&mut e, b"{\"x\":{\"value\":7},\"name\":\"z\"}").unwrap();
    put(&s3, &b, "z/1.json.zst", e.finish().unwrap()).await;
    run(
        &c,
        &format!("COPY {t} (v, src) FROM 's3://{b}/z/' {ROLE} JSON 's3://{b}/paths.json' ZSTD"),
    )
    .await
    .unwrap();
    let src: String = c
        .query_one(&format!("SELECT src FROM {t} WHERE v = 7"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(src, "z");

    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    std::io::Write::write_all(&mut e, b"8\tNULL\n9\tnine\n").unwrap();
    put(&s3, &b, "t/1.tsv.bz2", e.finish().unwrap()).await;
    let e = run(
        &c,
        &format!(
            "COPY {t} (v, src) FROM 's3://{b}/t/' {ROLE} DELIMITER '\\t' NULL AS 'NULL' BZIP2"
        ),
    )
    .await
    .unwrap_err();
    // NULL into a NOT NULL column is load error 1213.
    assert_eq!(db_error(&e).0, "XX000");
    let code: i32 = c
        .query_one(
            "SELECT err_code FROM stl_load_errors WHERE query = pg_last_copy_id()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(code, 1213);
    run(&c, &format!("COPY {t} (v, src) FROM 's3://{b}/t/' {ROLE} DELIMITER '\\t' NULL AS 'NULL' BZIP2 MAXERROR 1")).await.unwrap();
    assert_eq!(
        c.query_one("SELECT pg_last_copy_count()", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        1
    );
}

#[tokio::test]
async fn pipelined_requests_and_backend_rejections() {
    let stack = stack_or_skip!();
    let emu = Emu::start(&stack).await;
    let c = emu.connect().await;
    let s3 = stack.s3();
    let b = bucket(&s3, "pipe").await;
    let t = table("pipe");
    run(
        &c,
        &format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (a int PRIMARY KEY)"),
    )
    .await
    .unwrap();
    put(&s3, &b, "ok", "1\n2\n").await;
    put(&s3, &b, "dup", "3\n3\n").await;
    // tokio-postgres pipelines: the COPY waits until the earlier request has been answered.
    let slow = c.query_one("SELECT pg_sleep(0.2)::text, $1::int", &[&5i32]);
    let copy_sql = format!("COPY {t} FROM 's3://{b}/ok' {ROLE}");
    let copy = run(&c, &copy_sql);
    let count_sql = format!("SELECT count(*) FROM {t}");
    let after = c.query_one(&count_sql, &[]);
    let (slow, copy, after) = tokio::join!(slow, copy, after);
    assert_eq!(slow.unwrap().get::<_, i32>(1), 5);
    copy.unwrap();
    assert_eq!(after.unwrap().get::<_, i64>(0), 2);
    // A row PostgreSQL itself rejects fails the whole COPY with PostgreSQL's error.
    let e = run(&c, &format!("COPY {t} FROM 's3://{b}/dup' {ROLE}"))
        .await
        .unwrap_err();
    assert_eq!(db_error(&e).0, "23505");
    assert_eq!(support::count(&c, &t).await, 2);
    assert_eq!(
        c.query_one("SELECT pg_last_copy_count()", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        0
    );
}
