//! `FORMAT AS PARQUET` and `JSON 'noshred'` against the local stack: Parquet files written in
//! the test with `ArrowWriter`, put in the local S3, loaded through the emulator.

#[macro_use]
mod support;

use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int32Array, Int64Array,
    RecordBatch, StringArray, TimestampMicrosecondArray,
};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use support::{bucket, put, run, table, Emu, Stack};

const ROLE: &str = "IAM_ROLE 'arn:aws:iam::123456789012:role/loader'";

/// A Parquet file of `rows` rows (id, name, ok, amount, ts, day, score), several row groups.
fn parquet_file(first_id: i64, rows: usize) -> Vec<u8> {
    let ids: Vec<i64> = (first_id..first_id + rows as i64).collect();
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int64Array::from(ids.clone()))),
        (
            "name",
            Arc::new(StringArray::from(
                ids.iter()
                    .map(|i| (i % 5 != 0).then(|| format!("n{i}")))
                    .collect::<Vec<_>>(),
            )),
        ),
        (
            "ok",
            Arc::new(BooleanArray::from(
                ids.iter().map(|i| i % 2 == 0).collect::<Vec<_>>(),
            )),
        ),
        (
            "amount",
            Arc::new(
                Decimal128Array::from(ids.iter().map(|i| i128::from(*i) * 101).collect::<Vec<_>>())
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
        ),
        (
            "ts",
            Arc::new(TimestampMicrosecondArray::from(
                ids.iter()
                    .map(|i| 1_700_000_000_000_000 + i * 1_000_000)
                    .collect::<Vec<_>>(),
            )),
        ),
        (
            "day",
            Arc::new(Date32Array::from(
                ids.iter().map(|i| 19_000 + *i as i32).collect::<Vec<_>>(),
            )),
        ),
        (
            "score",
            Arc::new(Float64Array::from(
                ids.iter().map(|i| *i as f64 / 4.0).collect::<Vec<_>>(),
            )),
        ),
    ];
    write(cols, 7)
}

fn write(cols: Vec<(&str, ArrayRef)>, row_group: usize) -> Vec<u8> {
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(row_group))
        .build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    out
}

fn manifest(b: &str, keys: &[(&str, usize)], meta: bool) -> String {
    let entries: Vec<String> = keys
        .iter()
        .map(|(k, len)| {
            if meta {
                format!(
                    r#"{{"url":"s3://{b}/{k}","mandatory":true,"meta":{{"content_length":{len}}}}}"#
                )
            } else {
                format!(r#"{{"url":"s3://{b}/{k}","mandatory":true}}"#)
            }
        })
        .collect();
    format!(r#"{{"entries":[{}]}}"#, entries.join(","))
}

fn db_error(e: &tokio_postgres::Error) -> (String, String, String) {
    let db = e.as_db_error().expect("a database error");
    (
        db.code().code().to_string(),
        db.message().to_string(),
        db.detail().unwrap_or_default().to_string(),
    )
}

const COLUMNS: &str = "id bigint NOT NULL, name varchar(10), ok boolean, amount numeric(12,2), \
                       ts timestamp, day date, score double precision";

#[tokio::test]
async fn parquet_through_a_manifest_loads_every_row_with_its_types() {
    let stack = stack_or_skip!();
    let emu = Emu::start(&stack).await;
    let c = emu.connect().await;
    let s3 = stack.s3();
    let b = bucket(&s3, "pq").await;
    let t = table("pq");
    run(
        &c,
        &format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} ({COLUMNS})"),
    )
    .await
    .unwrap();
    let one = parquet_file(1, 20);
    let two = parquet_file(21, 15);
    put(&s3, &b, "in/one.parquet", one.clone()).await;
    put(&s3, &b, "in/two.parquet", two.clone()).await;
    let m = manifest(
        &b,
        &[("in/one.parquet", one.len()), ("in/two.parquet", two.len())],
        true,
    );
    put(&s3, &b, "m/ok.manifest", m).await;
    run(
        &c,
        &format!("COPY {t} FROM 's3://{b}/m/ok.manifest' {ROLE} MANIFEST FORMAT AS PARQUET"),
    )
    .await
    .unwrap();
    let row = c
        .query_one(
            &format!(
                "SELECT count(*), count(DISTINCT id), count(name), sum(amount)::text, \
                 min(ts)::text, max(day)::text, sum(score), pg_last_copy_count() FROM {t}"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 35);
    assert_eq!(row.get::<_, i64>(1), 35);
    // Every fifth name is NULL in the file: 7 of 35.
    assert_eq!(row.get::<_, i64>(2), 28);
    assert_eq!(
        row.get::<_, String>(3),
        format!("{:.2}", (1..=35).sum::<i64>() as f64 * 1.01)
    );
    assert_eq!(row.get::<_, String>(4), "2023-11-14 22:13:21");
    assert_eq!(row.get::<_, String>(5), "2022-02-12");
    assert_eq!(row.get::<_, f64>(6), (1..=35).sum::<i64>() as f64 / 4.0);
    assert_eq!(row.get::<_, i64>(7), 35);
    let ok_even: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM {t} WHERE ok = (id % 2 = 0)"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ok_even, 35);
}

#[tokio::test]
async fn a_manifest_without_content_length_fails_a_columnar_copy() {
    let stack = stack_or_skip!();
    let emu = Emu::start(&stack).await;
    let c = emu.connect().await;
    let s3 = stack.s3();
    let b = bucket(&s3, "pqmeta").await;
    let t = table("pqmeta");
    run(
        &c,
        &format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} ({COLUMNS})"),
    )
    .await
    .unwrap();
    put(&s3, &b, "in/one.parquet", parquet_file(1, 3)).await;
    put(
        &s3,
        &b,
        "m/x.manifest",
        manifest(&b, &[("in/one.parquet", 0)], false),
    )
    .await;
    let e = run(
        &c,
        &format!("COPY {t} FROM 's3://{b}/m/x.manifest' {ROLE} MANIFEST FORMAT AS PARQUET"),
    )
    .await
    .unwrap_err();
    let (code, msg, detail) = db_error(&e);
    assert_eq!(code, "XX000");
    assert_eq!(msg, "File entry does not have 'meta' key.");
    assert!(detail.contains("15003"), "{detail}");
    let n: i64 = support::count(&c, &t).await;
    assert_eq!(n, 0);
}

#[tokio::test]
async fn one_corrupt_or_mismatched_file_fails_the_whole_copy_naming_it() {
    let stack = stack_or_skip!();
    let emu = Emu::start(&stack).await;
    let c = emu.connect().await;
    let s3 = stack.s3();
    let b = bucket(&s3, "pqbad").await;
    let t = table("pqbad");
    run(
        &c,
        &format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} ({COLUMNS})"),
    )
    .await
    .unwrap();
    let good = parquet_file(1, 10);
    let mut corrupt = parquet_file(11, 10);
    corrupt.truncate(corrupt.len() / 2);
    let narrow = write(
        vec![("id", Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef)],
        10,
    );
    put(&s3, &b, "in/good.parquet", good.clone()).await;
    put(&s3, &b, "in/corrupt.parquet", corrupt.clone()).await;
    put(&s3, &b, "in/narrow.parquet", narrow.clone()).await;
    for (bad, len, expect) in [
        (
            "in/corrupt.parquet",
            corrupt.len(),
            "is not a valid Parquet file",
        ),
        (
            "in/narrow.parquet",
            narrow.len(),
            "Unmatched number of columns between table and file. Table columns: 7, Data columns: 1",
        ),
    ] {
        let m = manifest(&b, &[("in/good.parquet", good.len()), (bad, len)], true);
        put(&s3, &b, "m/bad.manifest", m).await;
        let e = run(
            &c,
            &format!("COPY {t} FROM 's3://{b}/m/bad.manifest' {ROLE} MANIFEST FORMAT PARQUET"),
        )
        .await
        .unwrap_err();
        let (code, msg, detail) = db_error(&e);
        assert_eq!(
            (code.as_str(), msg.as_str()),
            ("XX000", "Spectrum Scan Error")
        );
        assert!(detail.contains(expect), "{detail}");
        assert!(
            detail.contains(&format!("https://s3.us-east-1.amazonaws.com/{b}/{bad}")),
            "{detail}"
        );
        let n: i64 = support::count(&c, &t).await;
        assert_eq!(n, 0, "the good file's rows went with the failed COPY");
    }
}

#[tokio::test]
async fn columnar_refuses_options_and_orc_is_not_read() {
    let stack = stack_or_skip!();
    let emu = Emu::start(&stack).await;
    let c = emu.connect().await;
    let s3 = stack.s3();
    let b = bucket(&s3, "pqopt").await;
    let t = table("pqopt");
    run(
        &c,
        &format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} ({COLUMNS})"),
    )
    .await
    .unwrap();
    let e = run(
        &c,
        &format!("COPY {t} FROM 's3://{b}/m' {ROLE} MANIFEST FORMAT AS PARQUET MAXERROR 10"),
    )
    .await
    .unwrap_err();
    assert_eq!(
        db_error(&e).1,
        "MAXERROR argument is not supported for PARQUET based COPY"
    );
    let f = parquet_file(1, 2);
    put(&s3, &b, "in/a.orc", f.clone()).await;
    put(
        &s3,
        &b,
        "m/orc.manifest",
        manifest(&b, &[("in/a.orc", f.len())], true),
    )
    .await;
    let e = run(
        &c,
        &format!("COPY {t} FROM 's3://{b}/m/orc.manifest' {ROLE} MANIFEST FORMAT AS ORC"),
    )
    .await
    .unwrap_err();
    assert!(db_error(&e).1.contains("does not read ORC"), "{e:?}");
}

#[tokio::test]
async fn noshred_loads_whole_documents_into_super_and_counts_malformed_ones() {
    let stack = stack_or_skip!();
    let emu = Emu::start(&stack).await;
    let c = emu.connect().await;
    let s3 = stack.s3();
    let b = bucket(&s3, "noshred").await;
    let t = table("noshred");
    run(
        &c,
        &format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (doc super)"),
    )
    .await
    .unwrap();
    put(
        &s3,
        &b,
        "in/a.json",
        "{\"id\":1,\"user\":{\"name\":\"a\"}}\n{\"id\":2,\"tags\":[1,2,3]}\n{\"id\":3,\"user\":tru}\n[4,{\"id\":5}]\n",
    )
    .await;
    run(
        &c,
        &format!("COPY {t} FROM 's3://{b}/in/' {ROLE} FORMAT AS JSON 'noshred' MAXERROR 1"),
    )
    .await
    .unwrap();
    let rows = c
        .query(&format!("SELECT doc::text FROM {t}"), &[])
        .await
        .unwrap();
    let mut docs: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    docs.sort();
    assert_eq!(
        docs,
        vec![
            "[4, {\"id\": 5}]",
            "{\"id\": 1, \"user\": {\"name\": \"a\"}}",
            "{\"id\": 2, \"tags\": [1, 2, 3]}",
        ]
    );
    let err = c
        .query_one(
            "SELECT line_number, err_code, trim(raw_line) FROM stl_load_errors WHERE query = pg_last_copy_id()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(err.get::<_, i64>(0), 3);
    assert_eq!(err.get::<_, i32>(1), 1224);
    assert_eq!(err.get::<_, String>(2), "{\"id\":3,\"user\":tru}");
    // Past MAXERROR the COPY fails.
    let e = run(
        &c,
        &format!("COPY {t} FROM 's3://{b}/in/' {ROLE} JSON 'noshred'"),
    )
    .await
    .unwrap_err();
    assert!(db_error(&e).1.starts_with("Load into table"), "{e:?}");
    // A table of two columns cannot take noshred.
    let t2 = table("noshred2");
    run(
        &c,
        &format!("DROP TABLE IF EXISTS {t2}; CREATE TABLE {t2} (a super, b int)"),
    )
    .await
    .unwrap();
    let e = run(
        &c,
        &format!("COPY {t2} FROM 's3://{b}/in/' {ROLE} JSON 'noshred'"),
    )
    .await
    .unwrap_err();
    assert!(db_error(&e).1.contains("single SUPER column"), "{e:?}");
}
