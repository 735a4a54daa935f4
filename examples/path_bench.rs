//! The front half of the Redshift path at scale (not a test): many small objects in the local
//! S3, then discovery, the ledger insert and sealing, timed as the daemon runs them, over one of
//! two discovery paths (`--via`):
//!
//! - `list`: `Discoverer::run_once` until every object is recorded: ListObjectsV2 pages, plus a
//!   HEAD per new key when the server lists without ETags, as s3s-fs does (the time spent in
//!   those HEADs is reported apart);
//! - `sqs`: the bench sends the S3 event notifications S3 would (SendMessageBatch, 10 per call,
//!   timed apart as staging), then the daemon's queue receiver (`Queues`) runs until every
//!   object is in the ledger. `--raw` first times a plain client receiving and deleting the
//!   same notifications from a second queue: the queue server's own rate.
//!
//! Then `Control::seal` until nothing is pending. Optionally on top of settled history
//! (`--settled`, filled as `ledger_bench` does); `--database` keeps that database for the next
//! run (the run's own rows are deleted at the end) and `--bucket` keeps the staged objects.
//!
//! Prints one line of figures. Reads `STAGELOAD_PG_URL`, `STAGELOAD_S3_ENDPOINT`,
//! `STAGELOAD_SQS_ENDPOINT` and the AWS keys from the environment (`.stack/env`). Run:
//! `cargo run --release --example path_bench -- --objects 100000 --via sqs`; see docs/bench.md.

#[path = "common/bench_queue.rs"]
mod bench_queue;
#[path = "common/history.rs"]
mod history;
#[path = "common/local_s3.rs"]
mod local_s3;
#[path = "common/notify.rs"]
mod notify;
#[path = "common/small_objects.rs"]
mod small_objects;
#[path = "common/sqs_standin.rs"]
mod sqs_standin;

use bench_queue::Queue;
use chrono::Utc;
use clap::{Parser, ValueEnum};
use stageload::config::Config;
use stageload::control::Control;
use stageload::discovery::listing::Discoverer;
use stageload::discovery::sqs::{QueueReceiver, Queues, Route};
use stageload::source::s3::S3;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

/// Time discovery, ledger and sealing over many small objects.
#[derive(Parser)]
struct Args {
    /// Objects to stage.
    #[arg(long, default_value_t = 100_000)]
    objects: usize,
    /// How the loader finds them.
    #[arg(long, value_enum, default_value = "list")]
    via: Via,
    /// With `--via sqs`: the queue server, `standin` (in memory, answers in constant time) or
    /// `moto` (the local stack's).
    #[arg(long, value_enum, default_value = "standin")]
    queue: QueueServer,
    /// With `--queue standin`: milliseconds each call waits, standing in for the round trip
    /// to SQS.
    #[arg(long, default_value_t = 0)]
    queue_delay_ms: u64,
    /// With `--via sqs`: the receive loop as it was before receives went out in parallel and
    /// were handled together (one `QueueReceiver::run_once` at a time: receive 10, record them,
    /// delete them), for comparison.
    #[arg(long)]
    one_at_a_time: bool,
    /// With `--via sqs`: first time a plain client draining the same notifications from the
    /// same kind of queue, with as many receives in flight as the loader.
    #[arg(long)]
    raw: bool,
    /// Settled objects in the ledger before the run.
    #[arg(long, default_value_t = 0)]
    settled: i64,
    /// Use this database, created and filled with `--settled` rows when it has none, and kept.
    #[arg(long)]
    database: Option<String>,
    /// Use this bucket, staged when it holds no objects yet, and kept.
    #[arg(long)]
    bucket: Option<String>,
    /// PUTs in flight while staging.
    #[arg(long, default_value_t = 64)]
    put_concurrency: usize,
    /// SendMessageBatch calls in flight while sending notifications.
    #[arg(long, default_value_t = 16)]
    send_concurrency: usize,
}

/// A discovery path.
#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Via {
    List,
    Sqs,
}

/// The queue server of `--via sqs`.
#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum QueueServer {
    Standin,
    Moto,
}

const PIPELINE: &str = "bench";
const PREFIX: &str = "firehose/path/";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let admin_url = std::env::var("STAGELOAD_PG_URL")
        .map_err(|_| anyhow::anyhow!("STAGELOAD_PG_URL is not set: source .stack/env"))?;
    let run = format!("{}_{}", std::process::id(), Utc::now().format("%H%M%S"));
    let db_name = args
        .database
        .clone()
        .unwrap_or_else(|| format!("path_bench_{run}"));
    let bucket = args
        .bucket
        .clone()
        .unwrap_or_else(|| format!("path-bench-{}", run.replace('_', "-")));
    let (admin, conn) = tokio_postgres::connect(&admin_url, NoTls).await?;
    tokio::spawn(conn);
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db_name])
        .await?
        .is_some();
    if !exists {
        admin
            .batch_execute(&format!("CREATE DATABASE \"{db_name}\""))
            .await?;
    }
    let url = format!("{}/{db_name}", admin_url.rsplit_once('/').unwrap().0);
    let result = measure(&url, &bucket, &args).await;
    if args.database.is_none() {
        admin
            .batch_execute(&format!("DROP DATABASE \"{db_name}\" WITH (FORCE)"))
            .await?;
    }
    let r = result?;
    let rate = |s: f64| args.objects as f64 / s;
    let via = match args.via {
        Via::List => "list",
        Via::Sqs => "sqs",
    };
    println!(
        "path_bench: via={via} objects={} settled={} put_s={:.1} send_s={:.1} raw_s={} \
         discover_s={:.2} discover_per_s={:.0} head_s={:.2} heads={} lookback_s={:.2} seal_s={:.2} seal_per_s={:.0} \
         batches={} together_per_s={:.0} load={}",
        args.objects,
        r.settled,
        r.put_s,
        r.send_s,
        r.raw_s.map_or("-".into(), |s| format!(
            "{s:.2} raw_per_s={:.0}",
            rate(s)
        )),
        r.discover_s,
        rate(r.discover_s),
        r.head_s,
        r.heads,
        r.lookback_s,
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

#[derive(Default)]
struct Measured {
    settled: i64,
    put_s: f64,
    send_s: f64,
    raw_s: Option<f64>,
    discover_s: f64,
    head_s: f64,
    heads: u64,
    lookback_s: f64,
    seal_s: f64,
    batches: usize,
}

fn config(url: &str, bucket: &str, queue: Option<&str>) -> anyhow::Result<Config> {
    let queue = queue.map_or(String::new(), |q| format!("sqs_queue_url = \"{q}\""));
    let env = |k: &str| std::env::var(k).ok();
    Ok(Config::parse(
        &format!(
            r#"{head}
[[pipeline]]
name = "{PIPELINE}"

[pipeline.source]
bucket = "{bucket}"
prefix = "{PREFIX}"
{queue}

[pipeline.buffer]
size_mib = 128
interval_s = 0
max_objects = 1000

[pipeline.destination]
type = "file"
directory = "/tmp"
"#,
            head = local_s3::config_head(url)
        ),
        "path_bench",
        &env,
    )?)
}

async fn measure(url: &str, bucket: &str, args: &Args) -> anyhow::Result<Measured> {
    let delay = Duration::from_millis(args.queue_delay_ms);
    let queue = match (args.via, args.queue) {
        (Via::List, _) => None,
        (Via::Sqs, QueueServer::Standin) => {
            Some(Queue::StandIn(sqs_standin::StandIn::start(delay).await?))
        }
        (Via::Sqs, QueueServer::Moto) => {
            let sqs = notify::client(&notify::stack_endpoint()?)?;
            let url = notify::create_queue(&sqs, &format!("{bucket}-events")).await?;
            Some(Queue::Moto(sqs, url))
        }
    };
    let config = config(url, bucket, queue.as_ref().map(Queue::url))?;
    let control = Control::new(&config.control)?;
    control.migrate().await?;
    let (db, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(conn);
    let mut m = Measured {
        settled: settle_history(&db, args.settled).await?,
        ..Measured::default()
    };

    let s3 = S3::new(&config.s3).await;
    let t = Instant::now();
    let keep = args.bucket.is_some();
    let (n, at_once) = (args.objects, args.put_concurrency);
    let staged = small_objects::stage(&s3, bucket, PREFIX, n, at_once, keep).await?;
    m.put_s = t.elapsed().as_secs_f64();
    eprintln!(
        "path_bench: {} objects staged in {:.1}s",
        staged.len(),
        m.put_s
    );
    anyhow::ensure!(
        staged.len() == args.objects,
        "the bucket holds {} objects",
        staged.len()
    );

    let pipeline = config.pipelines[0].clone();
    if let Some(queue) = &queue {
        let bodies: Vec<String> = staged.iter().map(|o| notify::body(bucket, o)).collect();
        if args.raw {
            let sends = args.send_concurrency;
            m.raw_s = Some(bench_queue::raw(queue, bucket, bodies.clone(), sends, delay).await?);
            eprintln!(
                "path_bench: a plain client drained the queue in {:.2}s",
                m.raw_s.unwrap()
            );
        }
        let t = Instant::now();
        queue.send(bodies, args.send_concurrency).await?;
        m.send_s = t.elapsed().as_secs_f64();
        eprintln!("path_bench: notifications sent in {:.1}s", m.send_s);
        let t = Instant::now();
        let route =
            Route::of(&pipeline, Arc::new(tokio::sync::Notify::new()), None).expect("a queue");
        if args.one_at_a_time {
            let receiver = QueueReceiver::new(queue.url(), &s3, control.clone(), vec![route])
                .map_err(|e| anyhow::anyhow!(e))?;
            let mut recorded = 0;
            while recorded < args.objects as u64 {
                recorded += receiver.run_once().await?.recorded;
            }
            m.discover_s = t.elapsed().as_secs_f64();
        } else {
            let mut queues = Queues::new(s3.clone(), control.clone());
            queues.route(vec![route]);
            while pending(&db, bucket).await? < args.objects as i64 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            m.discover_s = t.elapsed().as_secs_f64();
            // Deletes follow the ledger commit: give the last ones a moment before looking.
            tokio::time::sleep(Duration::from_millis(500)).await;
            queues.stop().await;
        }
        if let Queue::StandIn(s) = queue {
            let (received, deleted, left) = s.counts();
            eprintln!("path_bench: stand-in received {received}, deleted {deleted}, left {left}");
        }
        queue.remove().await;
    } else {
        let mut discoverer = Discoverer::new(pipeline, s3.clone(), control.clone(), Vec::new());
        let t = Instant::now();
        let mut recorded = 0u64;
        while recorded < args.objects as u64 {
            let n = discoverer.run_once().await?;
            anyhow::ensure!(n > 0, "discovery stalled at {recorded} of {}", args.objects);
            recorded += n;
        }
        m.discover_s = t.elapsed().as_secs_f64();
        (m.heads, m.head_s) = discoverer.head_stats();
        m.lookback_s = discoverer.lookback_s();
    }

    let t = Instant::now();
    loop {
        let sealed = control
            .seal(PIPELINE, "redshift", &config.pipelines[0].buffer)
            .await?;
        if sealed.is_empty() {
            break;
        }
        m.batches += sealed.len();
    }
    m.seal_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        m.batches == args.objects.div_ceil(1000),
        "sealed {} batches for {} objects",
        m.batches,
        args.objects
    );
    if args.database.is_some() {
        forget_run(&db, bucket).await?;
    }
    if args.bucket.is_none() {
        small_objects::remove_bucket(&s3, bucket).await;
    }
    Ok(m)
}

/// Fills settled history when the database has none; returns the settled rows it holds.
async fn settle_history(db: &tokio_postgres::Client, settled: i64) -> anyhow::Result<i64> {
    let have: i64 = db
        .query_one(
            "SELECT count(*) FROM staged_objects WHERE pipeline = $1 AND state = 'loaded'",
            &[&PIPELINE],
        )
        .await?
        .get(0);
    if have > 0 || settled == 0 {
        return Ok(have);
    }
    eprintln!("path_bench: filling {settled} settled objects");
    let t = Instant::now();
    let h = history::History {
        destination: "redshift",
        bucket: "old",
        key_prefix: "old/",
    };
    history::fill(db, settled, 100, &h).await?;
    eprintln!("path_bench: filled in {:.1}s", t.elapsed().as_secs_f64());
    Ok(settled)
}

/// Pending objects of the bench's bucket in the ledger.
async fn pending(db: &tokio_postgres::Client, bucket: &str) -> anyhow::Result<i64> {
    Ok(db
        .query_one(
            "SELECT count(*) FROM staged_objects WHERE pipeline = $1 AND bucket = $2 AND state = 'pending'",
            &[&PIPELINE, &bucket],
        )
        .await?
        .get(0))
}

/// Deletes the run's rows from a kept database, so the next run finds only the settled history.
async fn forget_run(db: &tokio_postgres::Client, bucket: &str) -> anyhow::Result<()> {
    db.execute(
        "DELETE FROM batch_objects WHERE batch_id IN
           (SELECT id FROM batches WHERE pipeline = $1 AND state = 'sealed')",
        &[&PIPELINE],
    )
    .await?;
    for sql in [
        "DELETE FROM staged_objects WHERE pipeline = $1 AND bucket = $2",
        "DELETE FROM discovery_cursors WHERE pipeline = $1 AND bucket = $2",
        "DELETE FROM discovery_state WHERE pipeline = $1 AND bucket = $2",
    ] {
        db.execute(sql, &[&PIPELINE, &bucket]).await?;
    }
    db.execute(
        "DELETE FROM batches WHERE pipeline = $1 AND state = 'sealed'",
        &[&PIPELINE],
    )
    .await?;
    Ok(())
}
