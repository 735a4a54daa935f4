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

/// Runs `format` over one gzip object of `lines`; returns the records and the rows' codes and
/// lines.
async fn log_run(name: &str, format: &str, lines: &[&str]) -> (Vec<Value>, Vec<String>) {
    let body = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    let (records, rows) = run(
        name,
        &format!("format = \"{format}\""),
        &[("log.gz", gzip(body.as_bytes()))],
    )
    .await;
    let rows = rows
        .iter()
        .map(|r| r.split(':').next().unwrap().to_string())
        .collect();
    (records, rows)
}

#[tokio::test]
async fn alb_access_log() {
    let (records, rows) = log_run(
        "alb",
        "alb",
        &[
            "http 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 \
             192.168.131.39:2817 10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 \
             \"GET http://www.example.com:80/ HTTP/1.1\" \"curl/7.46.0\" - - \
             arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 \
             \"Root=1-58337262-36d228ad5d99923122bbe354\" \"-\" \"-\" 0 2018-07-02T22:22:48.364000Z \
             \"forward\" \"-\" \"-\" \"10.0.0.1:80\" \"200\" \"-\" \"-\" TID_1234abcd5678ef90",
            "http 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 too few",
        ],
    )
    .await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["elb_status_code"], 200);
    assert_eq!(
        records[0]["request"],
        "GET http://www.example.com:80/ HTTP/1.1"
    );
    assert_eq!(rows, vec!["9110 2 log.gz"]);
}

#[tokio::test]
async fn elb_access_log() {
    let (records, rows) = log_run(
        "elb",
        "elb",
        &[
            "2015-05-13T23:39:43.945958Z my-loadbalancer 192.168.131.39:2817 10.0.0.1:80 \
             0.000073 0.001048 0.000057 200 200 0 29 \"GET http://www.example.com:80/ HTTP/1.1\" \
             \"curl/7.38.0\" - -",
            "2015-05-13T23:39:43.945958Z my-loadbalancer",
        ],
    )
    .await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["backend_status_code"], 200);
    assert_eq!(records[0]["sent_bytes"], 29);
    assert_eq!(rows, vec!["9110 2 log.gz"]);
}

#[tokio::test]
async fn vpc_flow_log() {
    let (records, rows) = log_run(
        "vpc",
        "vpc_flow",
        &[
            "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets \
             bytes start end action log-status",
            "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 \
             1418530010 1418530070 ACCEPT OK",
            "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - NODATA",
            "2 123456789010 eni-1235b8ca123456789",
        ],
    )
    .await;
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["dstport"], 22);
    assert_eq!(records[1]["bytes"], Value::Null);
    assert_eq!(rows, vec!["9110 4 log.gz"]);
}

#[tokio::test]
async fn cloudfront_standard_log() {
    let (records, rows) = log_run(
        "cf",
        "cloudfront",
        &[
            "#Version: 1.0",
            "#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status",
            "2019-12-04\t21:02:31\tLAX1\t392\t192.0.2.100\tGET\td111111abcdef8.cloudfront.net\t/index.html\t200",
            "2019-12-04\t21:02:31\tLAX1",
        ],
    )
    .await;
    assert_eq!(
        records,
        vec![
            json!({"date": "2019-12-04", "time": "21:02:31", "x-edge-location": "LAX1",
                    "sc-bytes": 392, "c-ip": "192.0.2.100", "cs-method": "GET",
                    "cs(Host)": "d111111abcdef8.cloudfront.net", "cs-uri-stem": "/index.html",
                    "sc-status": 200})
        ]
    );
    assert_eq!(rows, vec!["9110 4 log.gz"]);
}

#[tokio::test]
async fn s3_server_access_log() {
    let (records, rows) = log_run(
        "s3acc",
        "s3_access",
        &[
            "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be DOC-EXAMPLE-BUCKET1 \
             [06/Feb/2019:00:00:38 +0000] 192.0.2.3 \
             79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be 3E57427F3EXAMPLE \
             REST.GET.VERSIONING - \"GET /DOC-EXAMPLE-BUCKET1?versioning HTTP/1.1\" 200 - 113 - 7 - \
             \"-\" \"S3Console/0.4\" - \
             s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTPFvsiP/XV/VLi31234= SigV4 \
             ECDHE-RSA-AES128-GCM-SHA256 AuthHeader DOC-EXAMPLE-BUCKET1.s3.us-west-1.amazonaws.com \
             TLSV1.2 - -",
            "owner bucket [06/Feb/2019:00:00:38 +0000] 192.0.2.3 \"unclosed",
        ],
    )
    .await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["time"], "06/Feb/2019:00:00:38 +0000");
    assert_eq!(records[0]["http_status"], 200);
    assert_eq!(rows, vec!["9110 2 log.gz"]);
}
