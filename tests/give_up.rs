//! Writing off a batch whose retry budget ran out, as a user checks it: one `load_errors` row
//! per lost record (with its line), and one failed-record object in S3 holding one Firehose
//! JSON line per lost record. The batches here are large enough for the write-off to go in
//! several chunks and the failed-record object in several multipart parts.

mod common;

use base64::Engine;
use common::*;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

/// Records per object, and objects: 25,000 records of 600 bytes, about 26 MB of failed
/// records (more than three 8 MiB parts) and 25,000 rows (more than two 10,000-row chunks).
const PER_OBJECT: usize = 12_500;
const LINE_BYTES: usize = 600;

/// An Elasticsearch destination for index `name` at `addr`.
fn elasticsearch_at(name: &str, addr: &str) -> String {
    format!(
        "type = \"elasticsearch\"\nendpoints = [\"http://{addr}\"]\nindex = \"{name}\"\nrequest_timeout_s = 5"
    )
}

/// A Splunk destination at `addr`.
fn splunk_at(addr: &str) -> String {
    format!(
        "type = \"splunk\"\nurl = \"http://{addr}\"\ntoken = \"00000000-0000-0000-0000-000000000001\"\nrequest_timeout_s = 5"
    )
}

/// Stages two gzip objects of `PER_OBJECT` records each under `in/<name>/`; returns the
/// records' text.
async fn stage(s3: &aws_sdk_s3::Client, bucket: &str, name: &str) -> HashSet<String> {
    let mut all = HashSet::new();
    for part in ["a", "b"] {
        let body = json_lines(&format!("{name}-{part}"), PER_OBJECT, LINE_BYTES);
        for line in String::from_utf8_lossy(&body).lines() {
            all.insert(line.to_string());
        }
        put(
            s3,
            bucket,
            &format!("in/{name}/{part}.json.gz"),
            gzip(&body),
        )
        .await;
    }
    all
}

/// Waits until the batch is skipped and every record has its row.
async fn wait_written_off(db: &str, n: usize) {
    wait_for(
        &format!("{n} budget-exhausted rows and a skipped batch"),
        Duration::from_secs(120),
        || async {
            let rows = query_i64(
                db,
                "SELECT count(*) FROM load_errors WHERE err_code = 9100 AND line_number > 0",
            )
            .await;
            let skipped =
                query_i64(db, "SELECT count(*) FROM batches WHERE state = 'skipped'").await;
            (rows >= n as i64 && skipped >= 1).then_some(())
        },
    )
    .await;
}

/// The rows a user checks: one per record, each object's lines 1..=PER_OBJECT once.
async fn assert_rows(db: &str, bucket: &str, name: &str) {
    let by_object = query_strings(
        db,
        "SELECT filename || ':' || count(*) || ':' || count(DISTINCT line_number) || ':' \
             || min(line_number) || ':' || max(line_number) \
         FROM load_errors WHERE err_code = 9100 AND line_number > 0 \
         GROUP BY filename ORDER BY filename",
    )
    .await;
    let n = PER_OBJECT;
    assert_eq!(
        by_object,
        [
            format!("s3://{bucket}/in/{name}/a.json.gz:{n}:{n}:1:{n}"),
            format!("s3://{bucket}/in/{name}/b.json.gz:{n}:{n}:1:{n}"),
        ],
        "one row per record with its line, none lost or doubled"
    );
    assert_eq!(
        query_i64(
            db,
            "SELECT count(*) FROM load_errors WHERE err_code <> 9100"
        )
        .await,
        0
    );
    assert_eq!(
        query_i64(
            db,
            "SELECT count(*) FROM load_errors WHERE raw_line = '' OR err_reason NOT LIKE 'retry duration of%'"
        )
        .await,
        0,
        "every row carries its record and the reason"
    );
}

/// The failed-record objects under `errors/<name>/<kind>-failed/`: (keys, JSON lines).
async fn failed_records(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    name: &str,
    kind: &str,
) -> (Vec<String>, Vec<Value>) {
    let keys = keys(s3, bucket, &format!("errors/{name}/{kind}-failed/")).await;
    let mut lines = Vec::new();
    for key in &keys {
        let body = get(s3, bucket, key).await.unwrap_or_default();
        for line in String::from_utf8_lossy(&body).lines() {
            lines.push(serde_json::from_str(line).expect("failed record is JSON"));
        }
    }
    (keys, lines)
}

/// Every failed record has Firehose's fields and the original record, each record once.
fn assert_records(records: &[Value], staged: &HashSet<String>, fields: &[&str]) {
    assert_eq!(records.len(), staged.len(), "one JSON line per lost record");
    let mut seen = HashSet::new();
    for r in records {
        for f in fields {
            assert!(r.get(*f).is_some(), "{f} missing in {r}");
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(r["rawData"].as_str().expect("rawData"))
            .expect("rawData is base64");
        let raw = String::from_utf8(raw).expect("utf-8 record");
        assert!(staged.contains(&raw), "rawData is a staged record");
        assert!(seen.insert(raw), "each record once");
    }
}

/// Stages the records, runs a pipeline whose destination (`destination`, given the address of
/// a closed port) is down past its 2 s budget, and checks the write-off: one row per record and
/// one failed-record object of `kind` holding every record with Firehose's `fields`. Returns the
/// failed records and how many were staged.
async fn writes_off_every_record(
    tag: &str,
    kind: &str,
    destination: impl FnOnce(&str, &str) -> String,
    fields: &[&str],
) -> (Vec<Value>, usize) {
    let stack = Stack::get();
    let db = stack.fresh_database(tag).await;
    let bucket = stack.bucket(tag).await;
    let s3 = stack.s3().await;
    let name = Stack::unique(tag);
    let staged = stage(&s3, &bucket, &name).await;
    let mut cfg = stack.base_config(&db);
    let port = closed_port().await;
    cfg.push_str(&pipeline_block(
        &name,
        &bucket,
        "json_lines",
        2,
        &destination(&name, &port),
    ));
    let _daemon = Daemon::start(&cfg);
    wait_written_off(&db, staged.len()).await;
    assert_rows(&db, &bucket, &name).await;

    let (keys, records) = wait_for(
        "the failed-record object",
        Duration::from_secs(30),
        || async {
            let (keys, records) = failed_records(&s3, &bucket, &name, kind).await;
            (records.len() >= staged.len()).then_some((keys, records))
        },
    )
    .await;
    assert_eq!(keys.len(), 1, "one failed-record object: {keys:?}");
    assert_records(&records, &staged, fields);
    (records, staged.len())
}

#[tokio::test]
async fn elasticsearch_down_past_the_budget_writes_off_every_record_in_chunks() {
    writes_off_every_record(
        "guees",
        "elasticsearch",
        elasticsearch_at,
        &[
            "attemptsMade",
            "arrivalTimestamp",
            "errorCode",
            "errorMessage",
            "attemptEndingTimestamp",
            "esDocumentId",
            "esIndexName",
        ],
    )
    .await;
}

#[tokio::test]
async fn splunk_down_past_the_budget_writes_off_every_record_in_chunks() {
    let (records, staged) = writes_off_every_record(
        "guhec",
        "splunk",
        |_, port| splunk_at(port) + "\nmax_request_bytes = 65536",
        &[
            "attemptsMade",
            "arrivalTimestamp",
            "errorCode",
            "errorMessage",
            "attemptEndingTimestamp",
            "EventId",
        ],
    )
    .await;
    let ids: HashSet<&str> = records
        .iter()
        .map(|r| r["EventId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), staged, "EventIds are unique");
}

#[tokio::test]
async fn an_unwritable_error_bucket_still_leaves_a_row_per_record() {
    let stack = Stack::get();
    let db = stack.fresh_database("gunob").await;
    let bucket = stack.bucket("gunob").await;
    let s3 = stack.s3().await;
    let name = Stack::unique("gunob");
    let staged = stage(&s3, &bucket, &name).await;
    let mut cfg = stack.base_config(&db);
    // S3 refuses every write to this bucket (two dots make its name invalid).
    let block = pipeline_block(
        &name,
        &bucket,
        "json_lines",
        2,
        &elasticsearch_at(&name, &closed_port().await),
    )
    .replace(
        "error_prefix = ",
        &format!("error_bucket = \"{name}..missing\"\nerror_prefix = "),
    );
    cfg.push_str(&block);
    let daemon = Daemon::start(&cfg);
    wait_written_off(&db, staged.len()).await;
    assert_rows(&db, &bucket, &name).await;
    let log = wait_for(
        "the log line about the unwritten object",
        Duration::from_secs(20),
        || async {
            let log = daemon.log_text();
            log.contains("failed records not written to S3")
                .then_some(log)
        },
    )
    .await;
    assert!(log.contains("load_errors rows keep them"), "{log}");
}

/// Stages `body` (one object, gzip) for a pipeline of `format` whose destination is down past
/// its 2 s budget; waits for the write-off and returns the rows as
/// `line_number:record_ordinal` and the failed records' `rawData`.
async fn write_off_one_object(
    tag: &str,
    format: &str,
    body: &[u8],
    records: usize,
    destination: impl FnOnce(&str, &str) -> String,
    kind: &str,
) -> (Vec<String>, Vec<String>) {
    let stack = Stack::get();
    let db = stack.fresh_database(tag).await;
    let bucket = stack.bucket(tag).await;
    let s3 = stack.s3().await;
    let name = Stack::unique(tag);
    put(&s3, &bucket, &format!("in/{name}/x.json.gz"), gzip(body)).await;
    let mut cfg = stack.base_config(&db);
    let port = closed_port().await;
    cfg.push_str(&pipeline_block(
        &name,
        &bucket,
        format,
        2,
        &destination(&name, &port),
    ));
    let _daemon = Daemon::start(&cfg);
    wait_written_off(&db, records).await;
    let rows = query_strings(
        &db,
        "SELECT line_number || ':' || COALESCE(record_ordinal::text, 'null') FROM load_errors \
         WHERE err_code = 9100 AND line_number > 0 ORDER BY record_ordinal",
    )
    .await;
    let raw = wait_for(
        "the failed-record object",
        Duration::from_secs(30),
        || async {
            let (_, lines) = failed_records(&s3, &bucket, &name, kind).await;
            (lines.len() >= records).then_some(lines)
        },
    )
    .await
    .iter()
    .map(|r| {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(r["rawData"].as_str().expect("rawData"))
            .expect("rawData is base64");
        String::from_utf8(raw).expect("utf-8 record")
    })
    .collect();
    (rows, raw)
}

/// A CloudTrail log file is one line holding every record: the write-off keeps a row for each
/// (line 1, ordinals 0..n), not one for the line.
#[tokio::test]
async fn a_cloudtrail_file_written_off_keeps_a_row_per_record() {
    const N: usize = 3000;
    let records: Vec<String> = (0..N)
        .map(|i| {
            format!(
                r#"{{"eventVersion":"1.08","eventTime":"2026-12-07T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","requestID":"r{i}"}}"#
            )
        })
        .collect();
    let body = format!(r#"{{"Records":[{}]}}"#, records.join(","));
    let (rows, raw) = write_off_one_object(
        "gucth",
        "cloudtrail",
        body.as_bytes(),
        N,
        |_, port| splunk_at(port),
        "splunk",
    )
    .await;
    let want: Vec<String> = (0..N).map(|i| format!("1:{i}")).collect();
    assert_eq!(rows, want, "one row per record of the one line");
    let raw: HashSet<String> = raw.into_iter().collect();
    assert_eq!(raw, records.into_iter().collect(), "every record once");
}

/// `json_concat` with many documents on one line, into Elasticsearch: a row per document.
#[tokio::test]
async fn a_json_concat_line_written_off_keeps_a_row_per_document() {
    const N: usize = 2000;
    let docs: Vec<String> = (0..N)
        .map(|i| format!(r#"{{"n":{i},"msg":"m{i}"}}"#))
        .collect();
    // Two lines: the first holds every document but the last.
    let body = format!("{}\n{}\n", docs[..N - 1].join(""), docs[N - 1]);
    let (rows, raw) = write_off_one_object(
        "gucat",
        "json_concat",
        body.as_bytes(),
        N,
        elasticsearch_at,
        "elasticsearch",
    )
    .await;
    let want: Vec<String> = (0..N)
        .map(|i| format!("{}:{i}", if i < N - 1 { 1 } else { 2 }))
        .collect();
    assert_eq!(rows, want, "one row per document");
    let raw: HashSet<String> = raw.into_iter().collect();
    assert_eq!(raw, docs.into_iter().collect(), "every document once");
}

/// CSV records are one per line after a header; the rows carry the file's line numbers and
/// the failed records the events as they were to be sent.
#[tokio::test]
async fn a_csv_object_written_off_keeps_a_row_per_record() {
    const N: usize = 500;
    let mut body = String::from("n,msg\n");
    for i in 0..N {
        body.push_str(&format!("{i},\"m,{i}\"\n"));
    }
    let (rows, raw) = write_off_one_object(
        "gucsv",
        "csv",
        body.as_bytes(),
        N,
        |_, port| splunk_at(port),
        "splunk",
    )
    .await;
    let want: Vec<String> = (0..N).map(|i| format!("{}:{i}", i + 2)).collect();
    assert_eq!(
        rows, want,
        "one row per CSV record with its line in the file"
    );
    assert_eq!(raw.len(), N);
    // HEC was to get each record as the JSON object its header makes of it.
    assert!(
        raw.contains(&r#"{"n":"7","msg":"m,7"}"#.to_string()),
        "{:?}",
        &raw[..3]
    );
}
