//! The chain over blocks: outputs, drops, splits, errors and ordinals.

use super::*;
use crate::config::Config;

fn chain(steps: &str, format: &str) -> Arc<Chain> {
    let text = format!(
        r#"
[control]
database_url = "postgres://u@h/db"
[[pipeline]]
name = "t"
[pipeline.source]
bucket = "stage"
format = "{format}"
[pipeline.destination]
type = "file"
directory = "/tmp/out"
{steps}
"#
    );
    let config = Config::parse(&text, "t.toml", &|_| None).expect("config parses");
    Chain::for_pipeline(&config.pipelines[0], None)
        .unwrap()
        .expect("a chain")
}

fn block(records: &[&str]) -> RecordBlock {
    let mut b = RecordBlock::default();
    for (i, r) in records.iter().enumerate() {
        let start = b.data.len();
        b.data.extend_from_slice(r.as_bytes());
        b.records.push(RecordRef {
            start,
            end: b.data.len(),
            line: i as u64 + 1,
            ordinal: i as u64,
        });
    }
    b
}

fn outputs(b: &RecordBlock) -> Vec<(u64, u64, String)> {
    b.iter()
        .map(|(r, bytes)| {
            (
                r.ordinal,
                r.line,
                String::from_utf8(bytes.to_vec()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn steps_run_in_order_and_reshape_drop_and_split() {
    let c = chain(
        r#"
[[pipeline.transform]]
type = "jq"
program = "select(.level != \"debug\")"
[[pipeline.transform]]
type = "jq"
name = "split"
program = ".items[] as $i | {id: .id, item: $i}"
"#,
        "json_lines",
    );
    let mut b = block(&[
        r#"{"id":1,"level":"info","items":["a","b"]}"#,
        r#"{"id":2,"level":"debug","items":["c"]}"#,
        r#"{"id":3,"level":"info","items":[]}"#,
        r#"{"id":4,"level":"warn","items":["d"]}"#,
    ]);
    c.apply(&mut b, &mut RecordBlock::default());
    let one = 1u64 << OUTPUT_BITS;
    assert_eq!(
        outputs(&b),
        vec![
            (0, 1, r#"{"id":1,"item":"a"}"#.to_string()),
            (1, 1, r#"{"id":1,"item":"b"}"#.to_string()),
            (3 * one, 4, r#"{"id":4,"item":"d"}"#.to_string()),
        ]
    );
    assert!(b.errors.is_empty());
}

#[test]
fn a_runtime_error_rejects_that_record_alone_and_names_the_step() {
    let c = chain(
        r#"
[[pipeline.transform]]
type = "jq"
program = ".n"
[[pipeline.transform]]
type = "jq"
name = "inc"
program = ". + 1"
"#,
        "json_lines",
    );
    let mut b = block(&[r#"{"n":1}"#, r#"{"n":"x"}"#, r#"{"n":3}"#]);
    // A framer error already in the block keeps its place, with its ordinal widened.
    b.errors.push(RecordError {
        err_code: codes::INVALID_JSON,
        reason: "bad".into(),
        line: 9,
        ordinal: 3,
        raw: b"{".to_vec(),
    });
    c.apply(&mut b, &mut RecordBlock::default());
    let one = 1u64 << OUTPUT_BITS;
    assert_eq!(
        outputs(&b),
        vec![(0, 1, "2".to_string()), (2 * one, 3, "4".to_string())]
    );
    let errs: Vec<(i32, u64, u64)> = b
        .errors
        .iter()
        .map(|e| (e.err_code, e.line, e.ordinal))
        .collect();
    assert_eq!(
        errs,
        vec![
            (codes::TRANSFORM_FAILED, 2, one),
            (codes::INVALID_JSON, 9, 3 * one)
        ]
    );
    assert!(
        b.errors[0].reason.starts_with("transform[1] (inc): cannot"),
        "{}",
        b.errors[0].reason
    );
    assert_eq!(b.errors[0].raw, br#"{"n":"x"}"#);
}

#[test]
fn text_lines_reach_jq_as_strings() {
    let c = chain(
        r#"
[[pipeline.transform]]
type = "jq"
program = "split(\" \") | {verb: .[0], path: .[1]}"
"#,
        "lines",
    );
    let mut b = block(&["GET /index.html", "POST \"/q\""]);
    c.apply(&mut b, &mut RecordBlock::default());
    assert_eq!(
        outputs(&b)
            .into_iter()
            .map(|(_, _, s)| s)
            .collect::<Vec<_>>(),
        vec![
            r#"{"verb":"GET","path":"/index.html"}"#,
            r#"{"verb":"POST","path":"\"/q\""}"#
        ]
    );
}

#[test]
fn the_same_block_gives_the_same_outputs_every_time() {
    let c = chain(
        "[[pipeline.transform]]\ntype = \"jq\"\nprogram = \".[]\"\n",
        "json_lines",
    );
    let records = ["[1,2,3]", "[]", "[4]"];
    let mut first = block(&records);
    c.apply(&mut first, &mut RecordBlock::default());
    let mut again = block(&records);
    c.apply(&mut again, &mut RecordBlock::default());
    assert_eq!(outputs(&first), outputs(&again));
    assert_eq!(outputs(&first).len(), 4);
}

/// The program of the recipe named `name` in docs/transforms.md.
fn recipe(name: &str) -> String {
    let doc = include_str!("../../docs/transforms.md");
    let at = doc
        .find(&format!("name = \"{name}\""))
        .unwrap_or_else(|| panic!("recipe {name} is in docs/transforms.md"));
    let line = doc[at..]
        .lines()
        .find(|l| l.starts_with("program = '"))
        .expect("the recipe has a program");
    line.trim_start_matches("program = '")
        .trim_end_matches('\'')
        .to_string()
}

fn run_recipe(name: &str, format: &str, records: &[&str]) -> Vec<Value> {
    let step = format!(
        "[[pipeline.transform]]\ntype = \"jq\"\nname = \"{name}\"\nprogram = '{}'\n",
        recipe(name)
    );
    let c = chain(&step, format);
    let mut b = block(records);
    c.apply(&mut b, &mut RecordBlock::default());
    assert!(b.errors.is_empty(), "{:?}", b.errors);
    outputs(&b)
        .into_iter()
        .map(|(_, _, s)| serde_json::from_str(&s).expect("output is JSON"))
        .collect()
}

use serde_json::{json, Value};

#[test]
fn the_documented_recipes_do_what_the_page_says() {
    let trail = json!({"Records": [
        {"eventTime": "2026-12-01T10:00:00Z", "eventName": "GetObject", "eventSource": "s3.amazonaws.com",
         "userIdentity": {"arn": "arn:aws:iam::1:user/a"}, "sourceIPAddress": "10.0.0.1",
         "awsRegion": "eu-west-1", "requestParameters": {"bucketName": "b"}},
        {"eventTime": "2026-12-01T10:00:01Z", "eventName": "Decrypt", "eventSource": "kms.amazonaws.com",
         "userIdentity": {"arn": "arn:aws:iam::1:role/r"}, "sourceIPAddress": "10.0.0.2", "awsRegion": "eu-west-1"}
    ]})
    .to_string();
    assert_eq!(
        run_recipe("cloudtrail", "json_lines", &[&trail]),
        vec![
            json!({"time": "2026-12-01T10:00:00Z", "event": "GetObject", "source": "s3.amazonaws.com",
                    "user": "arn:aws:iam::1:user/a", "ip": "10.0.0.1", "region": "eu-west-1"})
        ]
    );

    // Records as the `alb` framing builds them (only the fields the recipe reads, and one more).
    let ok = json!({"time": "2026-12-01T10:00:00Z", "elb_status_code": 200, "request": "GET https://x/ HTTP/1.1",
                    "client:port": "1.2.3.4:5", "target_processing_time": 0.002, "sent_bytes": 10})
    .to_string();
    let bad = json!({"time": "2026-12-01T10:00:01Z", "elb_status_code": 502, "request": "POST https://x/api HTTP/1.1",
                     "client:port": "1.2.3.4:6", "target_processing_time": 0.25, "sent_bytes": 0})
    .to_string();
    assert_eq!(
        run_recipe("alb", "alb", &[&ok, &bad]),
        vec![
            json!({"time": "2026-12-01T10:00:01Z", "status": 502, "client": "1.2.3.4:6",
                    "method": "POST", "url": "https://x/api", "target_ms": 250.0})
        ]
    );

    let accept = json!({"srcaddr": "10.0.0.1", "dstaddr": "10.0.0.2", "dstport": 443, "bytes": 100,
                        "start": 1764583200, "action": "ACCEPT"})
    .to_string();
    let reject = json!({"srcaddr": "10.0.0.3", "dstaddr": "10.0.0.2", "dstport": 22, "bytes": 40,
                        "start": 1764583200, "action": "REJECT"})
    .to_string();
    assert_eq!(
        run_recipe("vpc", "vpc_flow", &[&accept, &reject]),
        vec![
            json!({"src": "10.0.0.3", "dst": "10.0.0.2", "port": 22, "bytes": 40,
                    "start": "2025-12-01T10:00:00Z"})
        ]
    );
}
