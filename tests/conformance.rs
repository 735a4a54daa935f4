//! The same properties, run against each of the four destinations (file, Redshift through the
//! emulator, OpenSearch, Splunk HEC through the receiver), so a fifth destination gets them by
//! adding one `Kind`:
//!
//! - **across kill -9**: a daemon killed after its delivery and before its settlement, then a
//!   fresh one: every record arrives, once (HEC, at least once: a record may come a second
//!   time from the second process, never more);
//! - **budget exhausted, then replay**: with the destination unreachable the batch is skipped
//!   when its budget ends, leaving `load_errors` rows (err_code 9100) naming every object and an
//!   error artifact in S3 (a manifest, or Firehose-format failed records); once the destination
//!   is back, `stageload replay` loads every record exactly once and marks the rows replayed;
//! - **a bad record is rejected alone**: one line that is not JSON in an object becomes one
//!   `load_errors` row naming the object and its line, every other record arrives, and the
//!   object ends `loaded`.
//!
//! File, OpenSearch and HEC run them twice: as staged, and with a jq step in front that
//! rewrites every record's id (`jq-<id>`), so each property holds through a transform too.

mod common;

use common::redshift::{Emu, EVENTS, ROLE};
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Child;
use std::time::Duration;

const HEC_TOKEN: &str = "00000000-0000-0000-0000-00000000c0f0";
/// A port nothing listens on: the destination is unreachable.
const CLOSED: &str = "127.0.0.1:9";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    File,
    Redshift,
    OpenSearch,
    Hec,
}

/// The HEC receiver (`tools/hec-receiver`) with acks on; killed on drop.
struct Receiver {
    child: Child,
    addr: String,
}

impl Receiver {
    fn start() -> Receiver {
        let (child, addr) = start_hec_receiver("127.0.0.1:0", HEC_TOKEN, &["--ack"]);
        Receiver { child, addr }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One destination under test, with its pipeline and where a user looks for the records.
struct Target {
    kind: Kind,
    name: String,
    control: String,
    bucket: String,
    s3: aws_sdk_s3::Client,
    stack: Stack,
    dir: Option<tempfile::TempDir>,
    emu: Option<Emu>,
    rs_db: String,
    index: String,
    receiver: Option<Receiver>,
    /// A jq step in front of the destination rewrites every id to `jq-<id>`.
    transform: bool,
}

impl Target {
    async fn new((kind, transform): (Kind, bool), tag: &str) -> Target {
        let stack = Stack::get();
        let jq = if transform { "jq" } else { "" };
        let label = format!("{tag}{kind:?}{jq}").to_lowercase();
        let control = stack.fresh_database(&format!("{label}c")).await;
        let bucket = stack.bucket(&label).await;
        let mut t = Target {
            kind,
            name: label.clone(),
            control: control.clone(),
            bucket,
            s3: stack.s3().await,
            stack: stack.clone(),
            dir: None,
            emu: None,
            rs_db: String::new(),
            index: control.rsplit('/').next().unwrap().replace('_', "-"),
            receiver: None,
            transform,
        };
        match kind {
            Kind::File => t.dir = Some(tempfile::tempdir().unwrap()),
            Kind::Redshift => {
                t.rs_db = stack.fresh_database(&format!("{label}rs")).await;
                exec(&t.rs_db, EVENTS).await;
                t.emu = Some(Emu::start(&stack, &t.rs_db, "127.0.0.1:0").await);
            }
            Kind::OpenSearch => assert!(
                !stack.opensearch_url.is_empty(),
                "STAGELOAD_OPENSEARCH_URL is empty: the stack has no OpenSearch-compatible server"
            ),
            Kind::Hec => t.receiver = Some(Receiver::start()),
        }
        t
    }

    /// The daemon's config; `reachable = false` points the destination where nothing answers.
    fn config(&self, reachable: bool, retry_s: u64) -> String {
        let destination = match self.kind {
            Kind::File => {
                let dir = self.dir.as_ref().unwrap().path();
                // A directory that cannot be created (its parent is a regular file).
                let dir = if reachable {
                    dir.display().to_string()
                } else {
                    let blocker = dir.join("not-a-dir");
                    std::fs::write(&blocker, b"x").unwrap();
                    blocker.join("out").display().to_string()
                };
                format!("type = \"file\"\ndirectory = \"{dir}\"")
            }
            Kind::Redshift => {
                let url = if reachable {
                    self.emu.as_ref().unwrap().url()
                } else {
                    format!("postgres://loader@{CLOSED}/dev?sslmode=disable")
                };
                format!(
                    "type = \"redshift\"\nurl = \"{url}\"\ntable = \"public.events\"\n\
                     copy_options = \"JSON 'auto' TIMEFORMAT 'epochsecs' MAXERROR 10\"\n\
                     iam_role = \"{ROLE}\"\nmanifest_prefix = \"manifests/{}/\"\nconnect_timeout_s = 2",
                    self.name
                )
            }
            Kind::OpenSearch => {
                let url = if reachable {
                    self.stack.opensearch_url.trim_end_matches('/').to_string()
                } else {
                    format!("http://{CLOSED}")
                };
                format!(
                    "type = \"elasticsearch\"\nendpoints = [\"{url}\"]\nindex = \"{}\"\nrequest_timeout_s = 5",
                    self.index
                )
            }
            Kind::Hec => {
                let addr = if reachable {
                    self.receiver.as_ref().unwrap().addr.clone()
                } else {
                    CLOSED.to_string()
                };
                format!(
                    "type = \"splunk\"\nurl = \"http://{addr}\"\ntoken = \"{HEC_TOKEN}\"\n\
                     ack_poll_interval_s = 0.2\nack_timeout_s = 5\nrequest_timeout_s = 5\nmax_request_bytes = 4096"
                )
            }
        };
        let transform = if self.transform {
            "[[pipeline.transform]]\ntype = \"jq\"\nprogram = '.id |= \"jq-\" + .'\n"
        } else {
            ""
        };
        self.stack.base_config(&self.control)
            + &pipeline_block(
                &self.name,
                &self.bucket,
                "json_lines",
                retry_s,
                &destination,
            )
            + transform
    }

    /// The id a staged record id has at the destination.
    fn id(&self, staged: String) -> String {
        if self.transform {
            format!("jq-{staged}")
        } else {
            staged
        }
    }

    /// Stages `objects` objects of `records` records each; returns their keys.
    async fn stage(&self, objects: usize, records: usize) -> Vec<String> {
        let mut keys = Vec::new();
        for i in 0..objects {
            let key = format!("in/{}/obj-{i}.json", self.name);
            put(
                &self.s3,
                &self.bucket,
                &key,
                json_lines(&format!("{}o{i}", self.name), records, 80),
            )
            .await;
            keys.push(key);
        }
        keys
    }

    /// Every staged record id `{name}o{object}-{i}`.
    fn staged_ids(&self, objects: usize, records: usize) -> Vec<String> {
        (0..objects)
            .flat_map(|o| (0..records).map(move |i| (o, i)))
            .map(|(o, i)| self.id(format!("{}o{o}-{i}", self.name)))
            .collect()
    }

    /// How many times each record id is at the destination.
    async fn delivered(&self) -> BTreeMap<String, usize> {
        let ids: Vec<String> = match self.kind {
            Kind::File => delivered_lines(self.dir.as_ref().unwrap().path())
                .iter()
                .map(|l| {
                    serde_json::from_str::<Value>(l).unwrap()["id"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect(),
            Kind::Redshift => query_strings(&self.rs_db, "SELECT id FROM public.events").await,
            Kind::OpenSearch => {
                let es = self.stack.opensearch_url.trim_end_matches('/');
                let client = reqwest::Client::new();
                let _ = client
                    .post(format!("{es}/{}/_refresh", self.index))
                    .send()
                    .await;
                let resp = client
                    .post(format!("{es}/{}/_search", self.index))
                    .json(&serde_json::json!({"size": 10000, "_source": ["id"]}))
                    .send()
                    .await
                    .expect("search");
                if resp.status().as_u16() == 404 {
                    Vec::new()
                } else {
                    let v: Value = resp.json().await.expect("search answer is JSON");
                    v["hits"]["hits"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(|h| h["_source"]["id"].as_str().unwrap_or("?").to_string())
                        .collect()
                }
            }
            Kind::Hec => {
                let addr = &self.receiver.as_ref().unwrap().addr;
                let v: Value = reqwest::get(format!("http://{addr}/_receiver/events"))
                    .await
                    .expect("receiver events")
                    .json()
                    .await
                    .expect("events are JSON");
                v.as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|e| e["event"]["id"].as_str().unwrap_or("?").to_string())
                    .collect()
            }
        };
        let mut counts = BTreeMap::new();
        for id in ids {
            *counts.entry(id).or_default() += 1;
        }
        counts
    }

    /// Waits until every staged id is at the destination, then checks how often.
    async fn assert_each_once(&self, ids: &[String], at_most: usize) {
        let counts = wait_for(
            "every record at the destination",
            Duration::from_secs(60),
            || async {
                let c = self.delivered().await;
                ids.iter().all(|id| c.contains_key(id)).then_some(c)
            },
        )
        .await;
        let extra: Vec<_> = counts.keys().filter(|k| !ids.contains(k)).collect();
        assert!(
            extra.is_empty(),
            "{:?}: records never staged arrived: {extra:?}",
            self.kind
        );
        let over: Vec<_> = counts.iter().filter(|(_, n)| **n > at_most).collect();
        assert!(
            over.is_empty(),
            "{:?}: records arrived more than {at_most} time(s): {over:?}",
            self.kind
        );
    }

    /// The error artifacts left under the pipeline's error prefix.
    async fn artifacts(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for key in keys(&self.s3, &self.bucket, &format!("errors/{}/", self.name)).await {
            let body = get(&self.s3, &self.bucket, &key).await.unwrap_or_default();
            out.push((key, body));
        }
        out
    }
}

async fn across_kill_9(target: (Kind, bool)) {
    let kind = target.0;
    let t = Target::new(target, "ck9").await;
    let (objects, records) = (3, 20);
    t.stage(objects, records).await;
    let mut first = Daemon::start_with_env(
        &t.config(true, 60),
        &[("STAGELOAD_TEST_PAUSE_BEFORE_SETTLE_MS", "60000")],
    );
    wait_log(|| first.log_text(), &["test hook: pausing before settling"]).await;
    first.kill9();
    let second = Daemon::start(&t.config(true, 60));
    wait_all_settled(&t.control).await;
    let at_most = if kind == Kind::Hec { 2 } else { 1 };
    t.assert_each_once(&t.staged_ids(objects, records), at_most)
        .await;
    assert_eq!(
        query_strings(&t.control, "SELECT DISTINCT state FROM staged_objects").await,
        vec!["loaded".to_string()],
        "{kind:?}: {}",
        second.log_text()
    );
    assert_eq!(
        query_i64(&t.control, "SELECT count(*) FROM load_errors").await,
        0
    );
}

async fn budget_exhausted_then_replay(target: (Kind, bool)) {
    let kind = target.0;
    let t = Target::new(target, "cbr").await;
    let (objects, records) = (2, 15);
    let keys = t.stage(objects, records).await;
    let mut down = Daemon::start(&t.config(false, 3));
    wait_for("the batch skipped", Duration::from_secs(60), || async {
        (query_i64(
            &t.control,
            "SELECT count(*) FROM batches WHERE state = 'skipped'",
        )
        .await
            == 1)
            .then_some(())
    })
    .await;
    wait_all_settled(&t.control).await;
    down.terminate();

    // Rows: one per object (file, Redshift) or per record (Elasticsearch, Splunk), each 9100,
    // naming every object.
    let rows = query_strings(
        &t.control,
        "SELECT err_code || ' ' || filename FROM load_errors ORDER BY filename",
    )
    .await;
    let per_record = matches!(kind, Kind::OpenSearch | Kind::Hec);
    assert_eq!(
        rows.len(),
        if per_record {
            objects * records
        } else {
            objects
        },
        "{kind:?}: {rows:?}"
    );
    assert!(
        rows.iter().all(|r| r.starts_with("9100 ")),
        "{kind:?}: {rows:?}"
    );
    for key in &keys {
        let url = format!("s3://{}/{key}", t.bucket);
        assert!(
            rows.iter().any(|r| r.ends_with(&url)),
            "{kind:?}: no row for {url}"
        );
    }
    // The artifact: a manifest of the skipped objects, or one failed record per record.
    let artifacts = t.artifacts().await;
    assert!(!artifacts.is_empty(), "{kind:?}: no error artifact");
    let text: String = artifacts
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    if per_record {
        let lines = text.lines().filter(|l| l.contains("\"rawData\"")).count();
        assert_eq!(lines, objects * records, "{kind:?}: failed records");
    } else {
        for key in &keys {
            assert!(
                text.contains(&format!("s3://{}/{key}", t.bucket)),
                "{kind:?}: manifest lacks {key}"
            );
        }
    }

    // The destination is back: replay loads every record exactly once.
    let up = Daemon::start(&t.config(true, 60));
    let (code, out, err) = up.cli(&["replay", "--pipeline", &t.name, "--since", "1h"]);
    assert_eq!(code, 0, "{out}{err}");
    t.assert_each_once(&t.staged_ids(objects, records), 1).await;
    wait_all_settled(&t.control).await;
    assert_eq!(
        query_i64(
            &t.control,
            "SELECT count(*) FROM load_errors WHERE resolution IS DISTINCT FROM 'replayed'"
        )
        .await,
        0,
        "{kind:?}: every row marked replayed"
    );
}

async fn a_bad_record_is_rejected_alone(target: (Kind, bool)) {
    let kind = target.0;
    let t = Target::new(target, "cbad").await;
    // Line 4 is not JSON, though its braces and quotes balance, so no reader (nor COPY's JSON
    // scanner) can take the lines after it with it.
    let mut body = Vec::new();
    for (i, line) in json_lines(&format!("{}o0", t.name), 6, 80)
        .split(|b| *b == b'\n')
        .enumerate()
    {
        if line.is_empty() {
            continue;
        }
        if i == 3 {
            body.extend_from_slice(format!("{{\"id\":\"{}o0-3\",broken}}", t.name).as_bytes());
        } else {
            body.extend_from_slice(line);
        }
        body.push(b'\n');
    }
    let key = format!("in/{}/obj-0.json", t.name);
    put(&t.s3, &t.bucket, &key, body).await;
    let _d = Daemon::start(&t.config(true, 60));
    wait_all_settled(&t.control).await;
    let good: Vec<String> = (0..6)
        .filter(|i| *i != 3)
        .map(|i| t.id(format!("{}o0-{i}", t.name)))
        .collect();
    t.assert_each_once(&good, 1).await;
    assert!(!t
        .delivered()
        .await
        .contains_key(&t.id(format!("{}o0-3", t.name))));
    let rows = query_strings(
        &t.control,
        "SELECT filename || ' ' || line_number FROM load_errors",
    )
    .await;
    assert_eq!(rows, vec![format!("s3://{}/{key} 4", t.bucket)], "{kind:?}");
    assert_eq!(
        query_strings(&t.control, "SELECT DISTINCT state FROM staged_objects").await,
        vec!["loaded".to_string()],
        "{kind:?}: the object loads, its bad record aside"
    );
}

macro_rules! conformance {
    ($($module:ident => $kind:expr),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn every_record_once_across_kill_9() {
                across_kill_9($kind).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn budget_exhausted_leaves_rows_and_an_artifact_and_replay_loads_once() {
                budget_exhausted_then_replay($kind).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_bad_record_is_rejected_alone() {
                super::a_bad_record_is_rejected_alone($kind).await;
            }
        }
    )*};
}

conformance! {
    file => (Kind::File, false),
    redshift => (Kind::Redshift, false),
    opensearch => (Kind::OpenSearch, false),
    splunk_hec => (Kind::Hec, false),
    // The same properties with a jq step in front (Redshift COPYs objects as they are staged,
    // so it takes no transform).
    file_jq => (Kind::File, true),
    opensearch_jq => (Kind::OpenSearch, true),
    splunk_hec_jq => (Kind::Hec, true),
}
