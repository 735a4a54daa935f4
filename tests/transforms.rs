//! `[[pipeline.transform]]` through the daemon: jq steps that reshape, drop and split records
//! into the file destination, OpenSearch and Splunk HEC; a runtime error that rejects one
//! record with a row naming the step, the object and the line; ids that stay the same when a
//! second installation delivers the same objects again; programs refused at startup.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Two steps: drop debug records, then one record per element of `items`.
const DROP_AND_SPLIT: &str = r#"
[[pipeline.transform]]
type = "jq"
program = 'select(.level != "debug")'
[[pipeline.transform]]
type = "jq"
name = "split"
program = '.items[] as $i | {id: .id, item: $i}'
"#;

/// The records every test stages: what they become under [`DROP_AND_SPLIT`] is
/// `{"id":1,"item":"a"}`, `{"id":1,"item":"b"}` and `{"id":5,"item":"e"}`; line 3's items is a
/// string, which `.items[]` cannot iterate.
fn staged() -> Vec<u8> {
    [
        r#"{"id":1,"level":"info","items":["a","b"]}"#,
        r#"{"id":2,"level":"debug","items":["c"]}"#,
        r#"{"id":3,"level":"info","items":"d"}"#,
        r#"{"id":4,"level":"info","items":[]}"#,
        r#"{"id":5,"level":"warn","items":["e"]}"#,
    ]
    .join("\n")
    .into_bytes()
}

fn expected_outputs() -> BTreeSet<(i64, String)> {
    [(1, "a"), (1, "b"), (5, "e")]
        .into_iter()
        .map(|(id, item)| (id, item.to_string()))
        .collect()
}

/// (id, item) of each delivered record.
fn pairs<'a>(records: impl IntoIterator<Item = &'a Value>) -> Vec<(i64, String)> {
    records
        .into_iter()
        .map(|v| {
            (
                v["id"].as_i64().expect("id"),
                v["item"].as_str().expect("item").to_string(),
            )
        })
        .collect()
}

/// The one `load_errors` row the bad record leaves, as `code line filename: reason`.
async fn the_rejection(db: &str) -> Vec<String> {
    query_strings(
        db,
        "SELECT err_code || ' ' || line_number || ' ' || filename || ': ' || err_reason \
         FROM load_errors ORDER BY filename, line_number",
    )
    .await
}

fn assert_rejection(rows: &[String], bucket: &str, key: &str) {
    assert_eq!(rows.len(), 1, "{rows:?}");
    let want = format!("9112 3 s3://{bucket}/{key}: transform[1] (split): ");
    assert!(rows[0].starts_with(&want), "{rows:?}");
    assert!(rows[0].contains("cannot"), "the jq error is kept: {rows:?}");
}

#[tokio::test]
async fn jq_steps_drop_split_and_reject_one_record_into_files() {
    let stack = Stack::get();
    let db = stack.fresh_database("txfile").await;
    let bucket = stack.bucket("txfile").await;
    let s3 = stack.s3().await;
    let dir = tempfile::tempdir().unwrap();
    put(&s3, &bucket, "in/tx/a.json", staged()).await;
    // A CloudTrail file: one JSON document whose `Records` array holds the events.
    let trail = json!({"Records": [
        {"eventName": "GetObject", "userIdentity": {"arn": "arn:aws:iam::1:user/a"}, "debug": 1},
        {"eventName": "PutObject", "userIdentity": {"arn": "arn:aws:iam::1:user/b"}, "debug": 2},
    ]});
    put(
        &s3,
        &bucket,
        "in/trail/111_CloudTrail_us-east-1_x.json.gz",
        gzip(trail.to_string().as_bytes()),
    )
    .await;
    let file = |name: &str| {
        pipeline_block(
            name,
            &bucket,
            "json_lines",
            30,
            &format!(
                "type = \"file\"\ndirectory = \"{}\"",
                dir.path().join(name).display()
            ),
        )
    };
    let config = format!(
        "{}{}{DROP_AND_SPLIT}{}{}",
        stack.base_config(&db),
        file("tx"),
        file("trail"),
        r#"
[[pipeline.transform]]
type = "jq"
program = '.Records[] | del(.debug) | .user = .userIdentity.arn | del(.userIdentity)'
"#,
    );
    let daemon = Daemon::start(&config);
    wait_all_settled(&db).await;
    let states = query_strings(&db, "SELECT state FROM batches ORDER BY id").await;
    assert_eq!(states, vec!["loaded", "loaded"], "{}", daemon.log_text());

    let records: Vec<Value> = delivered_lines(&dir.path().join("tx"))
        .iter()
        .map(|l| serde_json::from_str(l).expect("delivered line is JSON"))
        .collect();
    let got = pairs(&records);
    assert_eq!(got.len(), 3, "{records:?}");
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), expected_outputs());
    assert_rejection(&the_rejection(&db).await, &bucket, "in/tx/a.json");
    let log = daemon.log_text();
    assert!(
        log.lines().any(|l| l.contains("record rejected")
            && l.contains("pipeline=tx ")
            && l.contains("line=3")
            && l.contains("in/tx/a.json")),
        "the log names the pipeline, the object and the line:\n{log}"
    );

    let mut events: Vec<Value> = delivered_lines(&dir.path().join("trail"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    events.sort_by_key(|e| e["eventName"].as_str().unwrap_or("").to_string());
    assert_eq!(
        events,
        vec![
            json!({"eventName": "GetObject", "user": "arn:aws:iam::1:user/a"}),
            json!({"eventName": "PutObject", "user": "arn:aws:iam::1:user/b"}),
        ]
    );
}

/// What an OpenSearch index holds: (id, item) per document and the documents' `_id`s.
async fn documents(index: &str) -> (Vec<(i64, String)>, BTreeSet<String>) {
    let hits = es_hits(index).await;
    let sources: Vec<Value> = hits.iter().map(|h| h["_source"].clone()).collect();
    let ids = hits
        .iter()
        .map(|h| h["_id"].as_str().unwrap_or("").to_string())
        .collect();
    (pairs(&sources), ids)
}

#[tokio::test]
async fn transformed_documents_keep_their_ids_when_delivered_again() {
    let stack = Stack::get();
    let es = stack.opensearch_url.trim_end_matches('/').to_string();
    let bucket = stack.bucket("txes").await;
    let s3 = stack.s3().await;
    let index = Stack::unique("txes");
    put(&s3, &bucket, "in/tx/a.json", staged()).await;
    let pipeline = format!(
        "{}{DROP_AND_SPLIT}",
        pipeline_block(
            "tx",
            &bucket,
            "json_lines",
            30,
            &format!(
                "type = \"elasticsearch\"\nendpoints = [\"{es}\"]\nindex = \"{index}\"\nrequest_timeout_s = 5"
            ),
        )
    );
    // Two installations (two control databases) deliver the same object: the second writes
    // the same ids, so the index still holds one document per output.
    let mut first_ids = BTreeSet::new();
    for round in ["first", "second"] {
        let db = stack.fresh_database("txes").await;
        let daemon = Daemon::start(&(stack.base_config(&db) + &pipeline));
        wait_all_settled(&db).await;
        assert_eq!(
            query_strings(&db, "SELECT state FROM batches").await,
            vec!["loaded"],
            "{round}: {}",
            daemon.log_text()
        );
        assert_rejection(&the_rejection(&db).await, &bucket, "in/tx/a.json");
        let (docs, ids) = documents(&index).await;
        assert_eq!(docs.len(), 3, "{round}: {docs:?}");
        assert_eq!(
            docs.into_iter().collect::<BTreeSet<_>>(),
            expected_outputs()
        );
        if round == "first" {
            first_ids = ids;
        } else {
            assert_eq!(ids, first_ids, "the second delivery wrote the same ids");
        }
    }
}

#[tokio::test]
async fn text_lines_become_hec_events_through_jq() {
    let stack = Stack::get();
    let db = stack.fresh_database("txhec").await;
    let bucket = stack.bucket("txhec").await;
    let s3 = stack.s3().await;
    let token = "00000000-0000-0000-0000-0000000000B7";
    let (mut receiver, addr) = start_hec_receiver("127.0.0.1:0", token, &["--ack"]);
    put(
        &s3,
        &bucket,
        "in/web/access.log",
        b"GET /a 200\nPOST /b 500\n# comment\nGET /c 404\n".to_vec(),
    )
    .await;
    let config = format!(
        "{}{}{}",
        stack.base_config(&db),
        pipeline_block(
            "web",
            &bucket,
            "lines",
            30,
            &format!(
                "type = \"splunk\"\nurl = \"http://{addr}\"\ntoken = \"{token}\"\nack_poll_interval_s = 0.2\nindex = \"web\""
            ),
        ),
        r##"
[[pipeline.transform]]
type = "jq"
program = 'select(startswith("#") | not) | split(" ") | {method: .[0], path: .[1], status: (.[2] | tonumber)}'
"##,
    );
    let daemon = Daemon::start(&config);
    wait_all_settled(&db).await;
    let events = hec_events(&addr, 3).await;
    let mut got: Vec<Value> = events
        .iter()
        .map(|e| {
            assert_eq!(e["index"], "web", "{e}");
            e["event"].clone()
        })
        .collect();
    got.sort_by_key(|e| e["path"].as_str().unwrap_or("").to_string());
    assert_eq!(
        got,
        vec![
            json!({"method": "GET", "path": "/a", "status": 200}),
            json!({"method": "POST", "path": "/b", "status": 500}),
            json!({"method": "GET", "path": "/c", "status": 404}),
        ],
        "{}",
        daemon.log_text()
    );
    assert!(query_strings(&db, "SELECT 1 FROM load_errors")
        .await
        .is_empty());
    let _ = receiver.kill();
    let _ = receiver.wait();
}

#[test]
fn programs_that_do_not_compile_are_refused_with_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let base = r#"
[control]
database_url = "postgres://u@h/db"
[[pipeline]]
name = "tx"
[pipeline.source]
bucket = "stage"
"#;
    let err = check_config_refused(
        dir.path(),
        &format!(
            "{base}[pipeline.destination]\ntype = \"file\"\ndirectory = \"/tmp/x\"\n\
             [[pipeline.transform]]\ntype = \"jq\"\nprogram = \".\"\n\
             [[pipeline.transform]]\ntype = \"jq\"\nprogram = \"map(.a\"\n"
        ),
    );
    assert!(
        err.contains("pipeline \"tx\".transform[1].program")
            && err.contains("does not compile: expected"),
        "{err}"
    );
    let err = check_config_refused(
        dir.path(),
        &format!(
            "{base}[pipeline.destination]\ntype = \"redshift\"\nurl = \"postgres://u@h:5439/dev\"\ntable = \"public.t\"\niam_role = \"arn:aws:iam::1:role/r\"\n\
             [[pipeline.transform]]\ntype = \"jq\"\nprogram = \".\"\n"
        ),
    );
    assert!(
        err.contains("pipeline \"tx\".transform") && err.contains("redshift"),
        "{err}"
    );
}

#[test]
fn a_sample_file_runs_through_the_transforms_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("stageload.toml");
    std::fs::write(
        &config,
        format!(
            "[control]\ndatabase_url = \"postgres://u@127.0.0.1:9/none\"\n{}{DROP_AND_SPLIT}",
            pipeline_block(
                "tx",
                "stage",
                "json_lines",
                30,
                "type = \"file\"\ndirectory = \"/tmp/x\""
            )
        ),
    )
    .unwrap();
    let sample = dir.path().join("sample.json.gz");
    std::fs::write(&sample, gzip(&staged())).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stageload"))
        .args(["transform", "--config"])
        .arg(&config)
        .args(["--pipeline", "tx"])
        .arg(&sample)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let records: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("an output line is JSON"))
        .collect();
    assert_eq!(
        pairs(&records).into_iter().collect::<BTreeSet<_>>(),
        expected_outputs(),
        "{stderr}"
    );
    assert!(
        stderr.contains("sample.json.gz:3: transform[1] (split): ") && stderr.contains("(9112)"),
        "{stderr}"
    );
    assert!(stderr.contains("5 record(s) read, 1 rejected"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "a rejection fails the command");
}
