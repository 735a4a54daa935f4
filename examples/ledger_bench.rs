//! The control database under a large ledger (not a test): for each size (10 thousand, then 10
//! million settled objects by default), fills a fresh database with settled history through
//! `INSERT ... SELECT generate_series`, then times what must not slow down as history grows:
//!
//! - `record`: recording a page of 1,000 new objects (the ledger insert discovery uses),
//! - `seal`: sealing 1,000 pending objects into a batch (`Control::seal`),
//! - `scrape`: the status query a `/metrics` scrape runs (`Control::pipeline_status`),
//! - `page`: the status page's per-pipeline queries (throughput, newest error, failing batch).
//!
//! Prints one row per size (median and worst of the repetitions, in milliseconds) and, with
//! `--explain`, the plan of the scrape's query at the largest size.
//!
//! Reads the superuser URL from `STAGELOAD_PG_URL` (as `.stack/env` sets it) and creates, then
//! drops, one database per size. Run: `cargo run --release --example ledger_bench`; see
//! docs/bench.md.

#[path = "common/history.rs"]
mod history;

use chrono::{Duration as ChronoDuration, Utc};
use clap::Parser;
use stageload::config::{BufferConfig, Config};
use stageload::control::ledger::ListedObject;
use stageload::control::Control;
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

/// Time ledger operations at growing ledger sizes.
#[derive(Parser)]
struct Args {
    /// Settled objects per size, in order.
    #[arg(long, value_delimiter = ',', default_value = "10000,10000000")]
    sizes: Vec<i64>,
    /// Objects per settled batch in the filled history.
    #[arg(long, default_value_t = 100)]
    per_batch: i64,
    /// Repetitions of each measured operation.
    #[arg(long, default_value_t = 20)]
    reps: usize,
    /// Print the scrape query's plan at the largest size.
    #[arg(long)]
    explain: bool,
    /// Keep the databases.
    #[arg(long)]
    keep: bool,
}

const PIPELINE: &str = "bench";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let admin_url = std::env::var("STAGELOAD_PG_URL")
        .map_err(|_| anyhow::anyhow!("STAGELOAD_PG_URL is not set: source .stack/env"))?;
    let mut rows = Vec::new();
    for (i, &size) in args.sizes.iter().enumerate() {
        let name = format!("ledger_bench_{}_{}", std::process::id(), size);
        let (admin, conn) = tokio_postgres::connect(&admin_url, NoTls).await?;
        tokio::spawn(conn);
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
        let result = measure(&url, size, &args, args.explain && i + 1 == args.sizes.len()).await;
        if !args.keep {
            admin
                .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
                .await?;
        }
        rows.push((size, result?));
    }
    println!();
    println!(
        "ledger_bench: {} reps each, 1,000 objects per record and seal; ms, median / worst",
        args.reps
    );
    println!(
        "{:>12} {:>9} {:>17} {:>17} {:>17} {:>17}",
        "settled", "fill s", "record 1000", "seal 1000", "scrape", "status page"
    );
    for (size, r) in rows {
        println!(
            "{:>12} {:>9.1} {:>17} {:>17} {:>17} {:>17}",
            size,
            r.fill.as_secs_f64(),
            r.record.show(),
            r.seal.show(),
            r.scrape.show(),
            r.page.show()
        );
    }
    Ok(())
}

struct Timings(Vec<Duration>);

impl Timings {
    fn show(&self) -> String {
        let mut v: Vec<f64> = self.0.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        v.sort_by(f64::total_cmp);
        format!("{:.2} / {:.2}", v[v.len() / 2], v[v.len() - 1])
    }
}

struct Result {
    fill: Duration,
    record: Timings,
    seal: Timings,
    scrape: Timings,
    page: Timings,
}

async fn measure(url: &str, size: i64, args: &Args, explain: bool) -> anyhow::Result<Result> {
    let config = Config::parse(
        &format!("[control]\ndatabase_url = \"{url}\"\npool_size = 4\n"),
        "ledger_bench",
        &|_| None,
    )?;
    let control = Control::new(&config.control)?;
    control.migrate().await?;
    let (db, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(conn);

    eprintln!("ledger_bench: filling {size} settled objects");
    let started = Instant::now();
    history::fill(
        &db,
        size,
        args.per_batch,
        &history::History {
            destination: "file",
            bucket: "bench",
            key_prefix: "in/bench/old/",
        },
    )
    .await?;
    let fill = started.elapsed();
    eprintln!("ledger_bench: filled in {:.1}s", fill.as_secs_f64());

    let mut next_key = 0usize;
    let mut page = |n: usize| -> Vec<ListedObject> {
        let now = Utc::now();
        (0..n)
            .map(|_| {
                next_key += 1;
                ListedObject {
                    key: format!("in/bench/new/{next_key:09}.json"),
                    etag: format!("{next_key:032x}"),
                    size: 1000,
                    last_modified: Some(now),
                    arrival_time: now - ChronoDuration::seconds(10),
                }
            })
            .collect()
    };
    // Sealing takes every pending object at once (interval 0), up to 1,000.
    let buffer = BufferConfig {
        size_mib: 1024,
        interval_s: 0,
        max_objects: 1000,
    };
    let (mut record, mut seal, mut scrape, mut status_page) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let names = vec![PIPELINE.to_string()];
    for _ in 0..args.reps {
        let objects = page(1000);
        let t = Instant::now();
        let n = control.record_objects(PIPELINE, "bench", &objects).await?;
        record.push(t.elapsed());
        anyhow::ensure!(n == 1000, "recorded {n} of 1000");

        let t = Instant::now();
        let sealed = control.seal(PIPELINE, "file", &buffer).await?;
        seal.push(t.elapsed());
        anyhow::ensure!(sealed.len() == 1, "sealed {} batches", sealed.len());

        let t = Instant::now();
        control.pipeline_status(&names).await?;
        scrape.push(t.elapsed());

        let t = Instant::now();
        control.throughput(PIPELINE, 3600, 300).await?;
        control
            .errors(&stageload::control::status::ErrorFilter {
                pipeline: Some(PIPELINE.into()),
                limit: 1,
                ..Default::default()
            })
            .await?;
        control
            .batches(Some(PIPELINE), Some("delivering"), 1)
            .await?;
        status_page.push(t.elapsed());
    }
    if explain {
        let plan = db
            .query(
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
                 SELECT * FROM stageload_pipeline_status WHERE pipeline = 'bench'",
                &[],
            )
            .await?;
        println!("\nplan of stageload_pipeline_status at {size} settled objects:");
        for r in plan {
            println!("  {}", r.get::<_, String>(0));
        }
    }
    Ok(Result {
        fill,
        record: Timings(record),
        seal: Timings(seal),
        scrape: Timings(scrape),
        page: Timings(status_page),
    })
}
