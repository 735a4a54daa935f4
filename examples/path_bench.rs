//! The front half of the Redshift path at scale (not a test): many small objects in the local
//! S3, then discovery (listing, plus a HEAD per key when the server lists without ETags, as
//! s3s-fs does), the ledger insert, and sealing, timed as the daemon runs them
//! (`Discoverer::run_once` until every object is recorded, `Control::seal` until nothing is
//! pending). Optionally on top of settled history (`--settled`, filled as `ledger_bench`
//! does), to show the rate does not fall as the ledger grows.
//!
//! Prints one line: objects, settled rows, the PUT time (staging, not the loader's), the
//! discovery and seal times and the objects per second of each and of both together.
//!
//! Reads `STAGELOAD_PG_URL`, `STAGELOAD_S3_ENDPOINT` and the AWS keys from the environment
//! (`.stack/env`). Run: `cargo run --release --example path_bench -- --objects 100000`; see
//! docs/bench.md.

#[path = "common/history.rs"]
mod history;

use chrono::Utc;
use clap::Parser;
use futures::StreamExt;
use stageload::config::Config;
use stageload::control::Control;
use stageload::discovery::listing::Discoverer;
use stageload::source::s3::S3;
use std::time::Instant;
use tokio_postgres::NoTls;

/// Time discovery, ledger and sealing over many small objects.
#[derive(Parser)]
struct Args {
    /// Objects to stage.
    #[arg(long, default_value_t = 100_000)]
    objects: usize,
    /// Settled objects already in the ledger before the run.
    #[arg(long, default_value_t = 0)]
    settled: i64,
    /// PUTs in flight while staging.
    #[arg(long, default_value_t = 64)]
    put_concurrency: usize,
    /// Keep the database and the bucket.
    #[arg(long)]
    keep: bool,
}

const PIPELINE: &str = "bench";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let env = |k: &str| std::env::var(k).ok();
    let admin_url = env("STAGELOAD_PG_URL")
        .ok_or_else(|| anyhow::anyhow!("STAGELOAD_PG_URL is not set: source .stack/env"))?;
    let run = format!("{}_{}", std::process::id(), Utc::now().format("%H%M%S"));
    let db_name = format!("path_bench_{run}");
    let bucket = format!("path-bench-{}", run.replace('_', "-"));
    let (admin, conn) = tokio_postgres::connect(&admin_url, NoTls).await?;
    tokio::spawn(conn);
    admin
        .batch_execute(&format!("CREATE DATABASE {db_name}"))
        .await?;
    let url = format!("{}/{db_name}", admin_url.rsplit_once('/').unwrap().0);
    let result = measure(&url, &bucket, &args, &env).await;
    if !args.keep {
        admin
            .batch_execute(&format!("DROP DATABASE {db_name} WITH (FORCE)"))
            .await?;
    }
    let r = result?;
    let rate = |s: f64| args.objects as f64 / s;
    println!(
        "path_bench: objects={} settled={} put_s={:.1} discover_s={:.2} discover_per_s={:.0} \
         seal_s={:.2} seal_per_s={:.0} batches={} together_per_s={:.0} load={}",
        args.objects,
        args.settled,
        r.put_s,
        r.discover_s,
        rate(r.discover_s),
        r.seal_s,
        rate(r.seal_s),
        r.batches,
        rate(r.discover_s + r.seal_s),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .next()
            .unwrap_or("?"),
    );
    Ok(())
}

struct Measured {
    put_s: f64,
    discover_s: f64,
    seal_s: f64,
    batches: usize,
}

async fn measure(
    url: &str,
    bucket: &str,
    args: &Args,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Measured> {
    let prefix = "firehose/path/";
    let config = Config::parse(
        &format!(
            r#"
[control]
database_url = "{url}"
pool_size = 4

[s3]
region = "us-east-1"
endpoint = "${{STAGELOAD_S3_ENDPOINT}}"
force_path_style = true
access_key_id = "${{AWS_ACCESS_KEY_ID}}"
secret_access_key = "${{AWS_SECRET_ACCESS_KEY}}"

[[pipeline]]
name = "{PIPELINE}"

[pipeline.source]
bucket = "{bucket}"
prefix = "{prefix}"

[pipeline.buffer]
size_mib = 128
interval_s = 0
max_objects = 1000

[pipeline.destination]
type = "file"
directory = "/tmp"
"#
        ),
        "path_bench",
        env,
    )?;
    let control = Control::new(&config.control)?;
    control.migrate().await?;
    if args.settled > 0 {
        let (db, conn) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(conn);
        eprintln!("path_bench: filling {} settled objects", args.settled);
        let t = Instant::now();
        history::fill(
            &db,
            args.settled,
            100,
            &history::History {
                destination: "redshift",
                bucket: "old",
                key_prefix: "old/",
            },
        )
        .await?;
        eprintln!("path_bench: filled in {:.1}s", t.elapsed().as_secs_f64());
    }

    let s3 = S3::new(&config.s3).await;
    let _ = s3.client().create_bucket().bucket(bucket).send().await;
    // Firehose-style keys in one hour partition, a small gzip-less JSON record each.
    let hour = Utc::now().format("%Y/%m/%d/%H").to_string();
    let t = Instant::now();
    let puts = futures::stream::iter(0..args.objects)
        .map(|i| {
            let (s3, key) = (
                &s3,
                format!(
                    "{prefix}{hour}/bench-1-{hour2}-{i:08}.json",
                    hour2 = hour.replace('/', "-")
                ),
            );
            async move {
                let body = format!("{{\"i\":{i},\"note\":\"path bench\"}}\n").into_bytes();
                s3.put(bucket, &key, body, "application/json").await
            }
        })
        .buffer_unordered(args.put_concurrency)
        .collect::<Vec<_>>()
        .await;
    for p in puts {
        p?;
    }
    let put_s = t.elapsed().as_secs_f64();
    eprintln!("path_bench: staged {} objects in {put_s:.1}s", args.objects);

    let pipeline = config.pipelines[0].clone();
    let mut discoverer = Discoverer::new(pipeline, s3.clone(), control.clone(), Vec::new());
    let t = Instant::now();
    let mut recorded = 0u64;
    while recorded < args.objects as u64 {
        let n = discoverer.run_once().await?;
        anyhow::ensure!(
            n > 0,
            "discovery stalled at {recorded} of {} objects",
            args.objects
        );
        recorded += n;
    }
    let discover_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut batches = 0;
    loop {
        let sealed = control
            .seal(PIPELINE, "redshift", &config.pipelines[0].buffer)
            .await?;
        if sealed.is_empty() {
            break;
        }
        batches += sealed.len();
    }
    let seal_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        batches == args.objects.div_ceil(1000),
        "sealed {batches} batches for {} objects",
        args.objects
    );
    if !args.keep {
        remove_bucket(&s3, bucket).await;
    }
    Ok(Measured {
        put_s,
        discover_s,
        seal_s,
        batches,
    })
}

/// Deletes the bench's objects and bucket (best effort).
async fn remove_bucket(s3: &S3, bucket: &str) {
    let c = s3.client();
    let mut token = None;
    loop {
        let Ok(page) = c
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .send()
            .await
        else {
            return;
        };
        let keys: Vec<String> = page
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect();
        futures::stream::iter(keys)
            .for_each_concurrent(64, |k| async move {
                let _ = c.delete_object().bucket(bucket).key(k).send().await;
            })
            .await;
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let _ = c.delete_bucket().bucket(bucket).send().await;
}
