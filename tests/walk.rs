//! The one record walk every record-reading destination consumes
//! (`stageload::source::records::Walk`), against the real S3 server: each planned object's
//! records from its start ordinal, once and in order, a missing object and a truncated one
//! skipped with their rows after what could be read, a bad line rejected alone, and the same
//! steps when `next` is cancelled over and over (as a `select!` does).

mod common;

use common::*;
use stageload::codes;
use stageload::config::Config;
use stageload::model::StagedObject;
use stageload::source::records::{Start, Step, Walk};
use stageload::source::s3::S3;
use std::time::Duration;

/// What a walk handed on, per object: (index, ordinals, error lines, how it ended).
#[derive(Debug, Default, PartialEq)]
struct Seen {
    records: Vec<(usize, u64)>,
    errors: Vec<(usize, u64, i32)>,
    ended: Vec<(usize, String)>,
}

impl Seen {
    fn take(&mut self, step: Step) {
        match step {
            Step::Block(block) => {
                self.records
                    .extend(block.records().map(|(r, _)| (block.index, r.ordinal)));
                self.errors
                    .extend(block.errors().map(|e| (block.index, e.line, e.err_code)));
            }
            Step::Done { index } => self.ended.push((index, "done".into())),
            Step::Skipped { index, row } => self
                .ended
                .push((index, format!("skipped {} {}", row.err_code, row.filename))),
            Step::Unreadable { index, error } => {
                self.ended.push((index, format!("unreadable {error}")))
            }
        }
    }
}

async fn object(s3: &aws_sdk_s3::Client, bucket: &str, id: i64, key: &str) -> StagedObject {
    let head = s3.head_object().bucket(bucket).key(key).send().await;
    let (etag, size) = match head {
        Ok(h) => (
            h.e_tag().unwrap_or_default().trim_matches('"').to_string(),
            h.content_length().unwrap_or_default(),
        ),
        Err(_) => ("0".repeat(32), 0),
    };
    StagedObject {
        id,
        bucket: bucket.into(),
        key: key.into(),
        etag,
        size,
        arrival_time: chrono::Utc::now(),
    }
}

#[tokio::test]
async fn the_walk_hands_on_each_planned_record_once_and_says_how_each_object_ended() {
    let stack = Stack::get();
    let bucket = stack.bucket("walk").await;
    let s3c = stack.s3().await;
    let out = tempfile::tempdir().unwrap();
    let text = stack.base_config(&stack.pg_url) + &file_pipeline("walk", &bucket, out.path(), 60);
    let config = Config::parse(&text, "test", &|n| std::env::var(n).ok()).unwrap();
    let source = config.pipelines[0].source.clone();
    let s3 = S3::new(&config.s3).await;

    put(&s3c, &bucket, "in/walk/a.json", json_lines("a", 10, 80)).await;
    // b.json is never written: missing when read.
    let whole = gzip(&json_lines("c", 4000, 100));
    put(
        &s3c,
        &bucket,
        "in/walk/c.json.gz",
        whole[..whole.len() / 2].to_vec(),
    )
    .await;
    let mut d = json_lines("d", 3, 60);
    d.extend_from_slice(b"{\"id\": not json}\n");
    d.extend(json_lines("d2", 2, 60));
    put(&s3c, &bucket, "in/walk/d.json", d).await;
    put(&s3c, &bucket, "in/walk/e.json", json_lines("e", 5, 60)).await;
    let mut objects = Vec::new();
    for (id, key) in ["a.json", "b.json", "c.json.gz", "d.json", "e.json"]
        .iter()
        .enumerate()
    {
        objects.push(object(&s3c, &bucket, id as i64 + 1, &format!("in/walk/{key}")).await);
    }
    // a from its fourth record (an earlier attempt handed on three), e not at all.
    let plan = [(0, 3), (1, 0), (2, 0), (3, 0)].map(|(index, from)| Start { index, from });

    let mut plain = Seen::default();
    let mut walk = Walk::new(&s3, &source, &objects, plan);
    while let Some(step) = walk.next().await {
        plain.take(step);
    }

    let of = |i: usize| -> Vec<u64> {
        plain
            .records
            .iter()
            .filter(|(k, _)| *k == i)
            .map(|(_, o)| *o)
            .collect()
    };
    assert_eq!(
        of(0),
        (3..10).collect::<Vec<_>>(),
        "a from ordinal 3, once each"
    );
    assert!(of(1).is_empty());
    let c = of(2);
    assert!(
        !c.is_empty() && c.len() < 4000,
        "the truncated object's readable records are handed on: {}",
        c.len()
    );
    assert_eq!(
        c,
        (0..c.len() as u64).collect::<Vec<_>>(),
        "in order, none twice"
    );
    assert_eq!(of(3), vec![0, 1, 2, 4, 5], "the bad line is left out alone");
    assert!(of(4).is_empty(), "an object outside the plan is not read");
    assert_eq!(plain.errors, vec![(3, 4, codes::INVALID_JSON)]);
    let url = |key: &str| format!("s3://{bucket}/in/walk/{key}");
    assert_eq!(
        plain.ended,
        vec![
            (0, "done".to_string()),
            (
                1,
                format!("skipped {} {}", codes::OBJECT_MISSING, url("b.json"))
            ),
            (
                2,
                format!(
                    "skipped {} {}",
                    codes::DECOMPRESSION_FAILED,
                    url("c.json.gz")
                )
            ),
            (3, "done".to_string()),
        ]
    );

    // The same walk with `next` cut off every millisecond, opens included: nothing is lost or
    // handed on twice.
    let mut cut = Seen::default();
    let mut walk = Walk::new(&s3, &source, &objects, plan);
    let mut cancelled = 0;
    loop {
        match tokio::time::timeout(Duration::from_millis(1), walk.next()).await {
            Ok(Some(step)) => cut.take(step),
            Ok(None) => break,
            Err(_) => cancelled += 1,
        }
        assert!(
            cancelled < 100_000,
            "the walk makes no progress when cut off"
        );
    }
    assert_eq!(cut, plain, "the same steps after {cancelled} cancellations");
}
