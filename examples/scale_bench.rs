//! How the daemon's per-batch work scales with cores when nothing else wants them: reads the
//! gzip NDJSON objects in `--dir` (as `scripts/bench.sh` stages them) through the daemon's own
//! reader (`stageload::source::reader::spawn_reader`: decompression, framing and the JSON check
//! on a blocking thread) and copies every record behind a `_bulk` action line into request
//! bodies of `--request-mib`, as the Elasticsearch destination does, without sending them.
//!
//! For each count in `--at-once` it reads every object, that many at a time (as `workers`
//! delivers that many batches at a time), and prints wall seconds, CPU seconds, uncompressed
//! MB/s and the throughput against the first count. No S3 server, receiver or database shares
//! the cores, so the ratio is what the loader itself can scale to on this machine. Not a test.
//!
//! `cargo run --release --example scale_bench -- --dir <directory of .gz objects>`

#[path = "common/cpu.rs"]
mod cpu;

use clap::Parser;
use stageload::source::reader::{spawn_reader, ReadOptions, ReaderItem};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;

/// Per-batch pipeline scaling with cores.
#[derive(Parser)]
struct Args {
    /// Directory whose `.gz` files (searched recursively) are the objects.
    #[arg(long)]
    dir: PathBuf,
    /// Objects read at once, one row each (comma-separated).
    #[arg(long, default_value = "1,2")]
    at_once: String,
    /// Request body size the records are copied into, MiB.
    #[arg(long, default_value_t = 5)]
    request_mib: usize,
}

/// What one pass over the objects read.
#[derive(Default)]
struct Totals {
    records: u64,
    bytes: u64,
}

fn objects(dir: &PathBuf, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            objects(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "gz") {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads one object and builds its request bodies; returns what it read.
async fn one(path: PathBuf, request_bytes: usize) -> anyhow::Result<Totals> {
    let file = tokio::fs::File::open(&path).await?;
    let opts = ReadOptions {
        key: path.display().to_string(),
        ..ReadOptions::default()
    };
    let mut stream = spawn_reader(file, opts);
    let mut body = Vec::with_capacity(request_bytes + request_bytes / 8);
    let mut t = Totals::default();
    while let Some(item) = stream.next().await {
        match item {
            ReaderItem::Block(block) => {
                for (_, bytes) in block.iter() {
                    if body.len() + bytes.len() + 64 > request_bytes {
                        std::hint::black_box(&body);
                        body.clear();
                    }
                    body.extend_from_slice(b"{\"index\":{\"_index\":\"bench\"}}\n");
                    body.extend_from_slice(bytes);
                    body.push(b'\n');
                    t.records += 1;
                    t.bytes += bytes.len() as u64 + 1;
                }
                anyhow::ensure!(
                    block.errors.is_empty(),
                    "{}: rejected records",
                    path.display()
                );
                stream.recycle(block);
            }
            ReaderItem::End(end) => {
                end.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            }
        }
    }
    std::hint::black_box(&body);
    Ok(t)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut files = Vec::new();
    objects(&args.dir, &mut files)?;
    files.sort();
    anyhow::ensure!(
        !files.is_empty(),
        "no .gz objects under {}",
        args.dir.display()
    );
    let request_bytes = args.request_mib << 20;
    println!(
        "{} objects from {}; {} cores; MB = 10^6 bytes of uncompressed records",
        files.len(),
        args.dir.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:>8} {:>10} {:>8} {:>8} {:>8} {:>10} {:>8}",
        "at once", "records", "MB", "wall s", "CPU s", "MB/s", "x first"
    );
    let mut first = None;
    for n in args.at_once.split(',') {
        let n: usize = n.trim().parse()?;
        anyhow::ensure!(n > 0, "--at-once: counts start at 1");
        let gate = Arc::new(Semaphore::new(n));
        let (cpu0, t0) = (cpu::self_seconds(), Instant::now());
        let mut tasks = tokio::task::JoinSet::new();
        for f in &files {
            let permit = Arc::clone(&gate).acquire_owned().await?;
            let f = f.clone();
            tasks.spawn(async move {
                let t = one(f, request_bytes).await;
                drop(permit);
                t
            });
        }
        let mut total = Totals::default();
        while let Some(t) = tasks.join_next().await {
            let t = t??;
            total.records += t.records;
            total.bytes += t.bytes;
        }
        let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu::self_seconds() - cpu0);
        let rate = total.bytes as f64 / 1e6 / wall;
        let base = *first.get_or_insert(rate);
        println!(
            "{n:>8} {:>10} {:>8.1} {wall:>8.2} {cpu:>8.2} {rate:>10.1} {:>8.2}",
            total.records,
            total.bytes as f64 / 1e6,
            rate / base
        );
    }
    Ok(())
}
