//! Landing-to-COPY latency of the Redshift path (not a test): the release daemon runs against
//! the Redshift emulator (`tools/redshift-emu`) with an SQS queue as its discovery path, while
//! this bench PUTs small objects at a steady rate and sends each one's S3 event notification as
//! S3 would (one SendMessage per object, right after the PUT). Once every object is loaded it
//! reports, in seconds, p50/p99/max of:
//!
//! - **landing to COPY start**: from the PUT's answer (the object's landing, as this bench
//!   sees it) to the start of the COPY that loaded it, as the emulator logs it (its `copy`
//!   line, with the manifest naming the batch);
//! - **landing to ledger**: to the object's `staged_objects.discovered_at` in the control
//!   database;
//! - **COPY duration**: the emulator's `copy` to `copy done` lines, per batch: the emulator's
//!   own time (the loader runs one batch at a time here, so the lines pair up in order).
//!
//! All clocks are this machine's. Reads `.stack/env` (`STAGELOAD_PG_URL`, `STAGELOAD_PG_PORT`,
//! `STAGELOAD_S3_ENDPOINT`, `STAGELOAD_SQS_ENDPOINT`, the AWS keys). Run (after
//! `cargo build --release --bin stageload` and `cargo build -p redshift-emu`):
//! `cargo run --release --example latency_bench -- --rate 10 --seconds 60 --interval 5`; see
//! docs/bench.md.

#[path = "common/local_s3.rs"]
mod local_s3;
#[path = "common/notify.rs"]
mod notify;

use chrono::{DateTime, Utc};
use clap::Parser;
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

/// Stage objects at a steady rate and measure landing to COPY start.
#[derive(Parser)]
struct Args {
    /// Objects per second.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// How long to stage for.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// The pipeline's `buffer.interval_s`.
    #[arg(long, default_value_t = 5)]
    interval: u64,
    /// The daemon binary.
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// The emulator binary.
    #[arg(long)]
    emulator: Option<PathBuf>,
    /// Keep the databases, the bucket and the logs.
    #[arg(long)]
    keep: bool,
}

const ROLE: &str = "arn:aws:iam::123456789012:role/loader";

fn var(k: &str) -> anyhow::Result<String> {
    std::env::var(k).map_err(|_| anyhow::anyhow!("{k} is not set: source .stack/env"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let daemon = args
        .daemon
        .clone()
        .unwrap_or_else(|| PathBuf::from(&target).join("release/stageload"));
    let emulator = args
        .emulator
        .clone()
        .unwrap_or_else(|| PathBuf::from(&target).join("debug/redshift-emu"));
    let admin_url = var("STAGELOAD_PG_URL")?;
    let run = format!("{}_{}", std::process::id(), Utc::now().format("%H%M%S"));
    let (ctl_db, rs_db) = (format!("latency_ctl_{run}"), format!("latency_rs_{run}"));
    let (admin, conn) = tokio_postgres::connect(&admin_url, NoTls).await?;
    tokio::spawn(conn);
    for db in [&ctl_db, &rs_db] {
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await?;
    }
    let base = admin_url.rsplit_once('/').unwrap().0.to_string();
    let work = std::env::temp_dir().join(format!("latency-bench-{run}"));
    std::fs::create_dir_all(&work)?;
    let result = measure(
        &args, &daemon, &emulator, &base, &ctl_db, &rs_db, &run, &work,
    )
    .await;
    if !args.keep {
        for db in [&ctl_db, &rs_db] {
            let _ = admin
                .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
                .await;
        }
        let _ = std::fs::remove_dir_all(&work);
    } else {
        eprintln!(
            "latency_bench: kept {ctl_db}, {rs_db} and {}",
            work.display()
        );
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &Args,
    daemon: &PathBuf,
    emulator: &PathBuf,
    base: &str,
    ctl_db: &str,
    rs_db: &str,
    run: &str,
    work: &std::path::Path,
) -> anyhow::Result<()> {
    let (rs, conn) = tokio_postgres::connect(&format!("{base}/{rs_db}"), NoTls).await?;
    tokio::spawn(conn);
    rs.batch_execute("CREATE TABLE public.events (i integer, note varchar(64))")
        .await?;

    // The emulator, its log kept for the COPY start and end times.
    let emu_log = work.join("emulator.log");
    let mut emu = Command::new(emulator)
        .args(["--listen", "127.0.0.1:0"])
        .args([
            "--backend",
            &format!("127.0.0.1:{}", var("STAGELOAD_PG_PORT")?),
        ])
        .args(["--admin-url", &format!("{base}/{rs_db}")])
        .args(["--s3-endpoint", &var("STAGELOAD_S3_ENDPOINT")?])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&emu_log)?)
        .spawn()?;
    let mut line = String::new();
    std::io::BufReader::new(emu.stdout.take().unwrap()).read_line(&mut line)?;
    let emu_addr = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| anyhow::anyhow!("emulator did not start: {line:?}"))?
        .to_string();

    let bucket = format!("latency-{}", run.replace('_', "-"));
    let s3 = local_s3::client(&bucket).await?;
    let sqs = notify::client(&notify::stack_endpoint()?)?;
    let queue = notify::create_queue(&sqs, &format!("{bucket}-events")).await?;

    let config = work.join("stageload.toml");
    let mut f = std::fs::File::create(&config)?;
    write!(
        f,
        r#"{head}[admin]
listen = ""
[[pipeline]]
name = "lat"
[pipeline.source]
bucket = "{bucket}"
prefix = "in/lat/"
format = "json_lines"
poll_interval_s = 3600
sqs_queue_url = "{queue}"
[pipeline.buffer]
size_mib = 128
interval_s = {interval}
max_objects = 1000
[pipeline.destination]
type = "redshift"
url = "postgres://stageload:stageload@{emu_addr}/{rs_db}?sslmode=disable"
table = "public.events"
copy_options = "JSON 'auto'"
iam_role = "{ROLE}"
manifest_prefix = "manifests/lat/"
connect_timeout_s = 2
"#,
        head = local_s3::config_head(&format!("{base}/{ctl_db}")),
        interval = args.interval
    )?;
    drop(f);
    let daemon_log = work.join("daemon.log");
    let mut loader = Command::new(daemon)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&daemon_log)?)
        .spawn()?;
    let (ctl, conn) = tokio_postgres::connect(&format!("{base}/{ctl_db}"), NoTls).await?;
    tokio::spawn(conn);
    // Started: the daemon has migrated the control database and its receiver is polling.
    let t = Instant::now();
    while !std::fs::read_to_string(&daemon_log)?.contains("queue receiver started") {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(30),
            "the daemon did not start"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Stage at a steady rate: each object's landing is its PUT's answer, then its notification.
    let n = (args.rate * args.seconds as f64).round() as usize;
    let every = Duration::from_secs_f64(1.0 / args.rate);
    let mut tick = tokio::time::interval(every);
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for i in 0..n {
        tick.tick().await;
        let (s3, sqs, queue, bucket) = (s3.clone(), sqs.clone(), queue.clone(), bucket.clone());
        tasks.spawn(async move {
            let key = format!("in/lat/obj-{i:06}.json");
            let body = format!("{{\"i\":{i},\"note\":\"latency bench\"}}\n").into_bytes();
            let size = body.len() as i64;
            let out = s3
                .put_object()
                .bucket(&bucket)
                .key(&key)
                .body(body.into())
                .send()
                .await?;
            let landed = Utc::now();
            let etag = out.e_tag().unwrap_or("").trim_matches('"').to_string();
            let msg = notify::body(
                &bucket,
                &notify::Created {
                    key: key.clone(),
                    size,
                    etag,
                },
            );
            sqs.send_message()
                .queue_url(&queue)
                .message_body(msg)
                .send()
                .await?;
            anyhow::Ok((key, landed))
        });
    }
    let mut landed = HashMap::new();
    while let Some(r) = tasks.join_next().await {
        let (key, at) = r??;
        landed.insert(key, at);
    }
    let stage_s = started.elapsed().as_secs_f64();
    eprintln!("latency_bench: {n} objects staged in {stage_s:.1}s, waiting for the loads");

    let t = Instant::now();
    loop {
        let loaded: i64 = ctl
            .query_one(
                "SELECT count(*) FROM staged_objects WHERE state = 'loaded'",
                &[],
            )
            .await?
            .get(0);
        if loaded as usize >= n {
            break;
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(300),
            "{loaded} of {n} objects loaded after 300s (logs in {})",
            work.display()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    // SIGTERM: the daemon stops cleanly.
    unsafe { libc::kill(loader.id() as i32, libc::SIGTERM) };
    let _ = loader.wait();
    let _ = emu.kill();
    let _ = emu.wait();

    let rows: i64 = rs
        .query_one("SELECT count(*) FROM public.events", &[])
        .await?
        .get(0);
    anyhow::ensure!(
        rows as usize == n,
        "{rows} rows in public.events for {n} objects"
    );
    let objects = ctl
        .query(
            "SELECT key, batch_id, discovered_at FROM staged_objects",
            &[],
        )
        .await?;
    let copies = copy_times(&std::fs::read_to_string(&emu_log)?)?;
    let mut to_copy = Vec::new();
    let mut to_ledger = Vec::new();
    for o in &objects {
        let key: String = o.get(0);
        let batch: i64 = o.get(1);
        let discovered: DateTime<Utc> = o.get(2);
        let at = landed[&key];
        let (start, _) = copies
            .get(&batch)
            .ok_or_else(|| anyhow::anyhow!("no COPY in the emulator's log for batch {batch}"))?;
        to_copy.push((*start - at).as_seconds_f64());
        to_ledger.push((discovered - at).as_seconds_f64());
    }
    let mut copy_s: Vec<f64> = copies
        .values()
        .map(|(s, e)| (*e - *s).as_seconds_f64())
        .collect();
    println!(
        "latency_bench: objects={n} rate={}/s interval_s={} batches={} \
         landing_to_copy_s={} landing_to_ledger_s={} copy_duration_s={} load={}",
        args.rate,
        args.interval,
        copies.len(),
        percentiles(&mut to_copy),
        percentiles(&mut to_ledger),
        percentiles(&mut copy_s),
        load.split(' ').next().unwrap_or("?"),
    );
    Ok(())
}

/// `p50/p99/max` of `v`, in seconds.
fn percentiles(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    format!("{:.2}/{:.2}/{:.2}", at(0.50), at(0.99), at(1.0))
}

/// When a COPY started and ended.
type Span = (DateTime<Utc>, DateTime<Utc>);

/// Per batch: the emulator's `copy` and `copy done` times. The `copy` line names the manifest,
/// `<prefix><hour>/<pipeline>-<batch>.manifest`; with one delivery at a time, the next
/// `copy done` line is its end.
fn copy_times(log: &str) -> anyhow::Result<HashMap<i64, Span>> {
    let mut out = HashMap::new();
    let mut open: Option<(i64, DateTime<Utc>)> = None;
    for l in log.lines() {
        let Some((ts, rest)) = l.split_once(' ') else {
            continue;
        };
        let Ok(at) = DateTime::parse_from_rfc3339(ts) else {
            continue;
        };
        let at = at.with_timezone(&Utc);
        if rest.contains(" copy done") {
            if let Some((batch, start)) = open.take() {
                out.insert(batch, (start, at));
            }
        } else if rest.contains(" copy ") && rest.contains(".manifest") {
            let batch = rest
                .split(".manifest")
                .next()
                .and_then(|s| s.rsplit('-').next())
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("no batch id in {l:?}"))?;
            open = Some((batch, at));
        }
    }
    Ok(out)
}
