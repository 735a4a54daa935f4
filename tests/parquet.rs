//! `source.format = "parquet"` end to end: Parquet files written in the test with `ArrowWriter`
//! (several row groups, thousands of rows) staged in the local S3 server and delivered by the
//! daemon to the file destination, the local OpenSearch-compatible server and the HEC test
//! receiver; an unreadable object is skipped with its `load_errors` row while the good object
//! of the same batch loads.

mod common;
#[path = "proxy/mod.rs"]
mod proxy;

use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, Decimal128Array, Int64Array, ListArray, RecordBatch, StringArray, StructArray,
    TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Fields};
use common::*;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::{json, Value};

/// Row `i` as the file holds it, and as JSON it is delivered.
fn expected(i: i64) -> Value {
    let cents = 1000 + i * 7;
    let mut v = json!({
        "id": i,
        // arrow-json prints the fraction only when there is one: 12:00:00Z, 12:00:01.001Z.
        "at": chrono::DateTime::from_timestamp_millis(1_796_212_800_000 + i * 1001)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        "price": serde_json::from_str::<Value>(&format!("{}.{:02}", cents / 100, cents % 100))
            .unwrap(),
        "tags": [i % 3, i % 5],
        "user": {"name": format!("user-{}", i % 97)},
    });
    if i % 10 == 0 {
        v["note"] = json!(format!("note \"{i}\"\nline two"));
    }
    v
}

/// A Parquet file of rows `from..to` in row groups of `group` rows, snappy pages.
fn parquet_file(from: i64, to: i64, group: usize) -> Vec<u8> {
    let ids: Vec<i64> = (from..to).collect();
    let mut batches = Vec::new();
    for chunk in ids.chunks(1500) {
        let user = StructArray::new(
            Fields::from(vec![Field::new("name", DataType::Utf8, false)]),
            vec![Arc::new(StringArray::from(
                chunk
                    .iter()
                    .map(|i| format!("user-{}", i % 97))
                    .collect::<Vec<_>>(),
            )) as ArrayRef],
            None,
        );
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("id", Arc::new(Int64Array::from(chunk.to_vec()))),
            (
                "at",
                Arc::new(
                    TimestampMillisecondArray::from(
                        chunk
                            .iter()
                            .map(|i| 1_796_212_800_000 + i * 1001)
                            .collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
            ),
            (
                "price",
                Arc::new(
                    Decimal128Array::from(
                        chunk
                            .iter()
                            .map(|i| (1000 + i * 7) as i128)
                            .collect::<Vec<_>>(),
                    )
                    .with_precision_and_scale(12, 2)
                    .unwrap(),
                ),
            ),
            (
                "tags",
                Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(
                    chunk
                        .iter()
                        .map(|i| Some(vec![Some((i % 3) as i32), Some((i % 5) as i32)])),
                )),
            ),
            ("user", Arc::new(user)),
            (
                "note",
                Arc::new(StringArray::from(
                    chunk
                        .iter()
                        .map(|i| (i % 10 == 0).then(|| format!("note \"{i}\"\nline two")))
                        .collect::<Vec<_>>(),
                )),
            ),
        ];
        batches.push(RecordBatch::try_from_iter(columns).unwrap());
    }
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group))
        .set_compression(Compression::SNAPPY)
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batches[0].schema(), Some(props)).unwrap();
    for batch in &batches {
        writer.write(batch).unwrap();
    }
    writer.close().unwrap();
    out
}

/// Checks `got` (sorted by id) holds exactly the rows `ids`, as JSON.
fn assert_rows(got: &[Value], ids: impl Iterator<Item = i64>) {
    let want: Vec<Value> = ids.map(expected).collect();
    assert_eq!(got.len(), want.len());
    if let Some(i) = got.iter().zip(&want).position(|(a, b)| a != b) {
        panic!("row {i}: got {} want {}", got[i], want[i]);
    }
}

/// The delivered records sorted by `id`.
fn by_id(mut records: Vec<Value>) -> Vec<Value> {
    records.sort_by_key(|r| r["id"].as_i64());
    records
}

/// The `load_errors` rows as `err_code line key: reason`.
async fn error_rows(db: &str, bucket: &str, name: &str) -> Vec<String> {
    let prefix = format!("s3://{bucket}/in/{name}/");
    query_strings(
        db,
        "SELECT err_code || ' ' || line_number || ' ' || filename || ': ' || err_reason \
         FROM load_errors ORDER BY filename, line_number",
    )
    .await
    .into_iter()
    .map(|r| r.replace(&prefix, ""))
    .collect()
}

async fn wait_settled(db: &str, n: i64) {
    wait_for("every object settled", Duration::from_secs(90), || async {
        (query_i64(
            db,
            "SELECT count(*) FROM staged_objects WHERE state IN ('loaded', 'skipped')",
        )
        .await
            == n)
            .then_some(())
    })
    .await;
    wait_all_settled(db).await;
}

#[tokio::test]
async fn file_destination_gets_every_row_and_unreadable_objects_are_skipped_alone() {
    let stack = Stack::get();
    let name = "pq";
    let (db, bucket) = (stack.fresh_database(name).await, stack.bucket(name).await);
    let s3 = stack.s3().await;
    let out = tempfile::tempdir().unwrap();
    let good = parquet_file(0, 6000, 1000);
    let mut cut = parquet_file(10_000, 10_500, 100);
    cut.truncate(cut.len() - 100);
    // A page scribbled over in the third row group: its first 2,000 rows are delivered.
    let mut bad = parquet_file(20_000, 23_000, 1000);
    let meta = parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&bytes::Bytes::from(bad.clone()))
        .unwrap();
    let (start, len) = meta.row_group(2).column(0).byte_range();
    bad[(start + len / 3) as usize..(start + 2 * len / 3) as usize].fill(0xAB);
    for (key, body) in [
        ("good.parquet", good),
        ("cut.parquet", cut),
        ("bad.parquet", bad),
        ("text.parquet", b"{\"id\": 1}\n".to_vec()),
    ] {
        put(&s3, &bucket, &format!("in/{name}/{key}"), body).await;
    }
    let config = stack.base_config(&db)
        + &pipeline_block(
            name,
            &bucket,
            "parquet",
            30,
            &format!("type = \"file\"\ndirectory = \"{}\"", out.path().display()),
        );
    let mut daemon = Daemon::start(&config);
    wait_settled(&db, 4).await;
    assert_eq!(daemon.terminate(), Some(0));

    let records = by_id(
        delivered_lines(out.path())
            .iter()
            .map(|l| serde_json::from_str(l).expect("a delivered line is JSON"))
            .collect(),
    );
    assert_rows(&records, (0..6000).chain(20_000..22_000));
    let rows = error_rows(&db, &bucket, name).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows[0].starts_with("9111 2001 bad.parquet: unreadable Parquet file at row 2001"),
        "{rows:?}"
    );
    assert!(
        rows[1].starts_with("9111 1 cut.parquet: unreadable Parquet file at row 1"),
        "{rows:?}"
    );
    assert!(rows[2].starts_with("9111 1 text.parquet"), "{rows:?}");
    let states = query_strings(
        &db,
        "SELECT regexp_replace(key, '.*/', '') || ' ' || state FROM staged_objects ORDER BY key",
    )
    .await;
    assert_eq!(
        states,
        vec![
            "bad.parquet skipped",
            "cut.parquet skipped",
            "good.parquet loaded",
            "text.parquet skipped"
        ]
    );
}

/// A GET answered with JSON (`null` when the body is not JSON).
async fn es_get(url: &str) -> Value {
    reqwest::get(url)
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn elasticsearch_gets_every_row_as_a_document() {
    let stack = Stack::get();
    let es = stack.opensearch_url.clone();
    let name = Stack::unique("pqes");
    let (db, bucket) = (
        stack.fresh_database("pqes").await,
        stack.bucket("pqes").await,
    );
    let s3 = stack.s3().await;
    put(
        &s3,
        &bucket,
        &format!("in/{name}/a.parquet"),
        parquet_file(0, 4000, 1000),
    )
    .await;
    put(
        &s3,
        &bucket,
        &format!("in/{name}/b.parquet"),
        parquet_file(4000, 5000, 300),
    )
    .await;
    let config = stack.base_config(&db)
        + &pipeline_block(
            &name,
            &bucket,
            "parquet",
            120,
            &format!(
                "type = \"elasticsearch\"\nendpoints = [\"{es}\"]\nindex = \"{name}\"\nrequest_timeout_s = 30\nbulk_max_docs = 1000"
            ),
        );
    let _daemon = Daemon::start(&config);
    wait_settled(&db, 2).await;
    let client = reqwest::Client::new();
    client
        .post(format!("{es}/{name}/_refresh"))
        .send()
        .await
        .unwrap();
    let count = es_get(&format!("{es}/{name}/_count")).await;
    assert_eq!(count["count"], 5000, "{count}");
    for i in [0, 2999, 4000, 4999] {
        let hit = es_get(&format!("{es}/{name}/_search?q=id:{i}")).await;
        assert_eq!(hit["hits"]["hits"][0]["_source"], expected(i), "{hit}");
    }
    let rows = error_rows(&db, &bucket, &name).await;
    assert!(
        rows.is_empty(),
        "{} rows: {:?}",
        rows.len(),
        &rows[..rows.len().min(3)]
    );
}

const TOKEN: &str = "00000000-0000-0000-0000-0000000000B2";

/// The project's HEC test receiver, one process per test.
struct Receiver {
    child: Child,
    url: String,
}

impl Receiver {
    fn start() -> Receiver {
        let (child, addr) = start_hec_receiver("127.0.0.1:0", TOKEN, &["--ack"]);
        Receiver {
            url: format!("http://{addr}"),
            child,
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn splunk_receives_every_row_as_an_event() {
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("pqhec").await,
        stack.bucket("pqhec").await,
    );
    let s3 = stack.s3().await;
    let hec = Receiver::start();
    put(&s3, &bucket, "in/hec/a.parquet", parquet_file(0, 3000, 500)).await;
    let config = stack.base_config(&db)
        + &pipeline_block(
            "hec",
            &bucket,
            "parquet",
            30,
            &format!(
                "type = \"splunk\"\ntoken = \"{TOKEN}\"\nack_poll_interval_s = 0.2\nrequest_timeout_s = 5\nurl = \"{}\"\nsourcetype = \"orders\"",
                hec.url
            ),
        );
    let _daemon = Daemon::start(&config);
    wait_settled(&db, 1).await;
    let events = es_get(&format!("{}/_receiver/events", hec.url)).await;
    let events = events.as_array().cloned().unwrap_or_default();
    let mut got = by_id(events.iter().map(|e| e["event"].clone()).collect());
    // At least once: a resent request may repeat events, never lose one.
    got.dedup_by_key(|e| e["id"].as_i64());
    assert_rows(&got, 0..3000);
    assert!(events.iter().all(|e| e["sourcetype"] == "orders"));
    assert_eq!(query_i64(&db, "SELECT count(*) FROM load_errors").await, 0);
}

/// A file of `columns` Int64 columns (`c0` = the row number, `cN` = row * N) in row groups of
/// `group` rows.
fn wide_file(rows: i64, columns: usize, group: usize) -> Vec<u8> {
    let arrays: Vec<(String, ArrayRef)> = (0..columns)
        .map(|c| {
            let values: Vec<i64> = (0..rows).map(|r| r * c.max(1) as i64).collect();
            (
                format!("c{c}"),
                Arc::new(Int64Array::from(values)) as ArrayRef,
            )
        })
        .collect();
    let batch = RecordBatch::try_from_iter(arrays).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}

/// Each row group's column chunks lie side by side: a 300-column file of 12 row groups is read
/// with one GET per row group (plus the footer's), where one GET per column chunk took 3,600.
#[tokio::test]
async fn a_wide_file_is_read_with_one_get_per_row_group() {
    let stack = Stack::get();
    let name = "pqwide";
    let (db, bucket) = (stack.fresh_database(name).await, stack.bucket(name).await);
    let s3 = stack.s3().await;
    let proxy = proxy::Proxy::start(&stack.s3_endpoint).await;
    let out = tempfile::tempdir().unwrap();
    put(
        &s3,
        &bucket,
        &format!("in/{name}/wide.parquet"),
        wide_file(600, 300, 50),
    )
    .await;
    let config = stack
        .base_config(&db)
        .replace(&stack.s3_endpoint, &proxy.endpoint())
        + &pipeline_block(
            name,
            &bucket,
            "parquet",
            30,
            &format!("type = \"file\"\ndirectory = \"{}\"", out.path().display()),
        );
    let _daemon = Daemon::start(&config);
    wait_settled(&db, 1).await;
    let records: Vec<Value> = delivered_lines(out.path())
        .iter()
        .map(|l| serde_json::from_str(l).expect("a delivered line is JSON"))
        .collect();
    assert_eq!(records.len(), 600);
    let r = records.iter().find(|r| r["c0"] == 37).expect("row 37");
    assert_eq!(
        (r["c1"].as_i64(), r["c299"].as_i64()),
        (Some(37), Some(37 * 299))
    );
    let gets = proxy
        .requests()
        .iter()
        .filter(|l| l.starts_with("GET ") && l.contains("wide.parquet"))
        .count();
    // One per row group, the rest for the footer's metadata (16 when measured); one GET per
    // column chunk would be 3,600.
    assert!((12..=20).contains(&gets), "{gets} GETs of the object");
}
