//! Stages sample clickstream data (search and click events) in S3 under Firehose's key layout
//! (`<prefix>YYYY/MM/DD/HH/<stream>-1-YYYY-MM-DD-HH-MM-SS-<id>.gz`), for `make demo`.
//! The last object carries two bad records, so the demo shows `load_errors` rows: one that is not
//! valid JSON (every destination rejects it) and one whose `ts` is not a time (valid JSON: Redshift
//! rejects it with 1206, an index mapping `ts` as a number rejects it, the file and HEC take it).
//! Objects already under the prefix are deleted first, so each run starts clean.
//!
//! Reads the endpoint and keys from `STAGELOAD_S3_ENDPOINT`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` (as `.stack/env` sets them).

#[path = "common/local_s3.rs"]
mod local_s3;

use aws_sdk_s3::primitives::ByteStream;
use chrono::{Duration, Utc};
use clap::Parser;
use std::io::Write;

/// Stage sample clickstream objects.
#[derive(Parser)]
struct Args {
    /// Bucket (created if missing).
    #[arg(long)]
    bucket: String,
    /// Key prefix.
    #[arg(long, default_value = "firehose/clickstream/")]
    prefix: String,
    /// Objects to write.
    #[arg(long, default_value_t = 12)]
    objects: usize,
    /// Records per object.
    #[arg(long, default_value_t = 400)]
    records: usize,
}

fn event(i: usize, t: i64) -> String {
    let users = ["u-ana", "u-bo", "u-chen", "u-dara", "u-eli"];
    let user = users[i % users.len()];
    if i.is_multiple_of(3) {
        let queries = ["rust loader", "redshift copy", "gzip speed", "s3 manifest"];
        format!(
            r#"{{"event_id":"e-{t}-{i}","ts":{t},"user_id":"{user}","action":"search","query":"{}","results":{}}}"#,
            queries[i % queries.len()],
            (i * 7) % 50
        )
    } else {
        format!(
            r#"{{"event_id":"e-{t}-{i}","ts":{t},"user_id":"{user}","action":"click","url":"/products/{}","position":{}}}"#,
            i % 40,
            i % 10
        )
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let s3 = local_s3::client(&args.bucket).await?;
    let old = s3
        .list_objects_v2()
        .bucket(&args.bucket)
        .prefix(&args.prefix)
        .send()
        .await?;
    for o in old.contents() {
        if let Some(k) = o.key() {
            s3.delete_object()
                .bucket(&args.bucket)
                .key(k)
                .send()
                .await?;
        }
    }

    let start = Utc::now() - Duration::minutes(5);
    let mut total = 0;
    for o in 0..args.objects {
        let t = start + Duration::seconds(o as i64 * 20);
        let mut body = String::new();
        for r in 0..args.records {
            if o + 1 == args.objects && r == args.records / 2 {
                body.push_str("{\"event_id\":\"broken-json\",\"ts\":}\n");
                continue;
            }
            if o + 1 == args.objects && r == args.records / 2 + 1 {
                body.push_str("{\"event_id\":\"bad-ts\",\"ts\":\"yesterday\",\"user_id\":\"u-x\",\"action\":\"click\"}\n");
                total += 1;
                continue;
            }
            body.push_str(&event(o * args.records + r, t.timestamp()));
            body.push('\n');
            total += 1;
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(body.as_bytes())?;
        let key = format!(
            "{}{}clickstream-1-{}-{:08x}.gz",
            args.prefix,
            t.format("%Y/%m/%d/%H/"),
            t.format("%Y-%m-%d-%H-%M-%S"),
            o
        );
        s3.put_object()
            .bucket(&args.bucket)
            .key(&key)
            .body(ByteStream::from(gz.finish()?))
            .send()
            .await?;
    }
    println!(
        "staged {} objects with {total} JSON records (one with a bad timestamp) and 1 invalid JSON record",
        args.objects
    );
    Ok(())
}
