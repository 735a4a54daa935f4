//! `source.format` end to end: objects in each format staged in S3, delivered through the file
//! destination by the daemon; the records delivered and the `load_errors` rows for the bad ones.

mod common;

use common::*;
use serde_json::{json, Value};

/// Runs one file pipeline whose `[pipeline.source]` also holds `source` over `objects`
/// (key under `in/<name>/`, body) until everything settles; returns the delivered records and
/// the rows (`err_code line key: reason`).
async fn run(name: &str, source: &str, objects: &[(&str, Vec<u8>)]) -> (Vec<Value>, Vec<String>) {
    let stack = Stack::get();
    let (db, bucket) = (stack.fresh_database(name).await, stack.bucket(name).await);
    let s3 = stack.s3().await;
    let out = tempfile::tempdir().unwrap();
    let block = pipeline_block(
        name,
        &bucket,
        "json_lines",
        30,
        &format!("type = \"file\"\ndirectory = \"{}\"", out.path().display()),
    )
    .replace("format = \"json_lines\"", source);
    let config = stack.base_config(&db) + &block;
    for (key, body) in objects {
        put(&s3, &bucket, &format!("in/{name}/{key}"), body.clone()).await;
    }
    let mut daemon = Daemon::start(&config);
    wait_for(
        "every object settled",
        std::time::Duration::from_secs(60),
        || async {
            (query_i64(
                &db,
                "SELECT count(*) FROM staged_objects WHERE state IN ('loaded', 'skipped')",
            )
            .await
                == objects.len() as i64)
                .then_some(())
        },
    )
    .await;
    wait_all_settled(&db).await;
    assert_eq!(daemon.terminate(), Some(0));
    let prefix = format!("s3://{bucket}/in/{name}/");
    let rows = query_strings(
        &db,
        "SELECT err_code || ' ' || line_number || ' ' || filename || ': ' || err_reason \
         FROM load_errors ORDER BY filename, line_number",
    )
    .await
    .into_iter()
    .map(|r| r.replace(&prefix, ""))
    .collect();
    let records = delivered_lines(out.path())
        .iter()
        .map(|l| serde_json::from_str(l).expect("a delivered line is JSON"))
        .collect();
    (records, rows)
}

#[tokio::test]
async fn csv_rows_become_objects() {
    let body = b"id;name;note\n1;ann;'hi; there'\n2;bob\n3;'multi\nline';x\n".to_vec();
    let (records, rows) = run(
        "csv",
        "format = \"csv\"\ncsv_delimiter = \";\"\ncsv_quote = \"'\"",
        &[("a.csv.gz", gzip(&body))],
    )
    .await;
    assert_eq!(
        records,
        vec![
            json!({"id": "1", "name": "ann", "note": "hi; there"}),
            json!({"id": "3", "name": "multi\nline", "note": "x"}),
        ]
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].starts_with("9110 3 a.csv.gz: the row has 2 fields, the header has 3"),
        "{rows:?}"
    );
}

#[tokio::test]
async fn cloudtrail_records_are_streamed_and_a_truncated_file_keeps_its_head() {
    let event = |n: u32| {
        json!({"eventVersion": "1.08", "eventTime": "2024-05-01T00:00:00Z",
               "eventSource": "s3.amazonaws.com", "eventName": format!("Get{n}"),
               "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/a"}})
    };
    let whole =
        serde_json::to_vec_pretty(&json!({"Records": (0..50).map(event).collect::<Vec<_>>()}))
            .unwrap();
    let mut cut = serde_json::to_vec(&json!({"Records": [event(100), event(101)]})).unwrap();
    cut.truncate(cut.len() - 40);
    let (records, rows) = run(
        "trail",
        "format = \"cloudtrail\"",
        &[("whole.json.gz", gzip(&whole)), ("cut.json", cut)],
    )
    .await;
    let mut names: Vec<&str> = records
        .iter()
        .map(|r| r["eventName"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 51, "{names:?}");
    assert!(names.contains(&"Get100") && names.contains(&"Get49"));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].starts_with("9110 1 cut.json: truncated JSON array"),
        "{rows:?}"
    );
}

#[tokio::test]
async fn json_array_at_a_pointer() {
    let body =
        br#"{"meta": {"n": 2}, "data": {"items": [{"a": 1}, {"a": 2}, {"a": tru}]}}"#.to_vec();
    let (records, rows) = run(
        "jarray",
        "format = \"json_array\"\njson_array = \"/data/items\"",
        &[
            ("x.json", body),
            ("none.json", br#"{"other": []}"#.to_vec()),
        ],
    )
    .await;
    assert_eq!(records, vec![json!({"a": 1}), json!({"a": 2})]);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows[0].starts_with("9110 1 none.json: no JSON array at \"/data/items\""),
        "{rows:?}"
    );
    assert!(
        rows[1].starts_with("9103 1 x.json: Invalid JSON"),
        "{rows:?}"
    );
}

#[tokio::test]
async fn multiline_lines_gather_stack_traces() {
    let body = b"2024-05-01T00:00:00Z ERROR boom\n  at a.b(C.java:1)\n  at d.e(F.java:2)\n\
                 2024-05-01T00:00:01Z INFO ok\n"
        .to_vec();
    let (records, rows) = run(
        "multi",
        "format = \"lines\"\n[pipeline.source.multiline]\nstart_pattern = '^\\d{4}-\\d{2}-\\d{2}T'",
        &[("app.log", body)],
    )
    .await;
    assert_eq!(
        records,
        vec![
            json!("2024-05-01T00:00:00Z ERROR boom\n  at a.b(C.java:1)\n  at d.e(F.java:2)"),
            json!("2024-05-01T00:00:01Z INFO ok"),
        ]
    );
    assert!(rows.is_empty(), "{rows:?}");
}
