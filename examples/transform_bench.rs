//! What a transform costs on the reading thread: generates gzip NDJSON log records in memory,
//! then reads them through the daemon's own reader (`stageload::source::reader::spawn_reader`:
//! decompression, framing, the JSON check) three ways and prints CPU seconds per uncompressed
//! GB for each, beside `gzip -dc` of the same bytes run in the same process's machine:
//!
//! - `read`: no transform;
//! - `jq-id`: the identity program `.` (what parsing and writing each record costs);
//! - `jq-1`: one simple step (drop a field and rename one);
//! - `jq-3`: three steps (drop debug records, drop a field, rename one).
//!
//! The extra cost of a transform is its row minus `read`, as a multiple of `gzip -dc`. Not a
//! test: `cargo run --release --example transform_bench -- --mib 256`.

#[path = "common/cpu.rs"]
mod cpu;

use clap::Parser;
use stageload::config::Config;
use stageload::source::reader::{spawn_reader, BlockHook, ReadOptions, ReaderItem};
use stageload::transform::Chain;
use std::io::Write;
use std::sync::Arc;

/// Transform cost against `gzip -dc`.
#[derive(Parser)]
struct Args {
    /// Uncompressed MiB of records to read per row.
    #[arg(long, default_value_t = 256)]
    mib: usize,
}

/// Log records of about 300 bytes, one in ten at level debug.
fn records(mib: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(mib << 20);
    let mut i = 0u64;
    while out.len() < mib << 20 {
        let level = if i.is_multiple_of(10) {
            "debug"
        } else {
            "info"
        };
        writeln!(
            out,
            r#"{{"ts":{},"level":"{level}","hostname":"web-{:03}","service":"checkout","trace":"{:032x}","msg":"request served in {} ms","status":{},"bytes":{},"path":"/api/v1/items/{}"}}"#,
            1_764_583_200 + i,
            i % 200,
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            i % 900,
            200 + (i % 5) * 100,
            i * 37 % 100_000,
            i
        )
        .unwrap();
        i += 1;
    }
    out
}

fn chain(steps: &str) -> Option<Arc<dyn BlockHook>> {
    let text = format!(
        "[control]\ndatabase_url = \"postgres://u@h/db\"\n[[pipeline]]\nname = \"b\"\n\
         [pipeline.source]\nbucket = \"b\"\n[pipeline.destination]\ntype = \"file\"\n\
         directory = \"/tmp/b\"\n{steps}"
    );
    let config = Config::parse(&text, "bench.toml", &|_| None).expect("bench config");
    Chain::hook(&Chain::for_pipeline(&config.pipelines[0], None).expect("compiles"))
}

/// Reads `gz` through the reader with `hook`; (CPU seconds, records out).
async fn read(gz: &Arc<Vec<u8>>, hook: Option<Arc<dyn BlockHook>>) -> (f64, u64) {
    let start = cpu::self_seconds();
    let body = std::io::Cursor::new(gz.as_ref().clone());
    let mut stream = spawn_reader(
        body,
        ReadOptions {
            key: "bench.json.gz".into(),
            hook,
            ..ReadOptions::default()
        },
    );
    let mut n = 0;
    while let Some(item) = stream.next().await {
        match item {
            ReaderItem::Block(b) => {
                n += b.records.len() as u64;
                stream.recycle(b);
            }
            ReaderItem::End(end) => {
                end.expect("reads to its end");
            }
        }
    }
    (cpu::self_seconds() - start, n)
}

/// CPU seconds of `gzip -dc` over `gz` (its children's rusage).
fn gzip_dc(gz: &[u8]) -> f64 {
    let file = std::env::temp_dir().join(format!("transform-bench-{}.gz", std::process::id()));
    std::fs::write(&file, gz).unwrap();
    let before = cpu::children_seconds();
    let status = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run gzip");
    assert!(status.success());
    let _ = std::fs::remove_file(&file);
    cpu::children_seconds() - before
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let raw = records(args.mib);
    let gb = raw.len() as f64 / 1e9;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&raw).unwrap();
    let gz = Arc::new(enc.finish().unwrap());
    drop(raw);
    let gzip = gzip_dc(&gz);
    println!(
        "{:<6} {:>10} {:>12} {:>14} {:>16}",
        "row", "records", "cpu s/GB", "x gzip -dc", "extra x gzip -dc"
    );
    println!(
        "{:<6} {:>10} {:>12.2} {:>14.2} {:>16}",
        "gzip",
        "-",
        gzip / gb,
        1.0,
        "-"
    );
    let rows = [
        ("read", None),
        (
            "jq-id",
            chain("[[pipeline.transform]]\ntype = \"jq\"\nprogram = '.'\n"),
        ),
        (
            "jq-1",
            chain("[[pipeline.transform]]\ntype = \"jq\"\nprogram = 'del(.trace) | .host = .hostname | del(.hostname)'\n"),
        ),
        (
            "jq-3",
            chain(
                "[[pipeline.transform]]\ntype = \"jq\"\nprogram = 'select(.level != \"debug\")'\n\
                 [[pipeline.transform]]\ntype = \"jq\"\nprogram = 'del(.trace)'\n\
                 [[pipeline.transform]]\ntype = \"jq\"\nprogram = '.host = .hostname | del(.hostname)'\n",
            ),
        ),
    ];
    let mut base = 0.0;
    for (name, hook) in rows {
        let (secs, n) = read(&gz, hook).await;
        if name == "read" {
            base = secs;
        }
        let extra = if name == "read" {
            "-".to_string()
        } else {
            format!("{:.2}", (secs - base) / gzip)
        };
        println!(
            "{name:<6} {n:>10} {:>12.2} {:>14.2} {extra:>16}",
            secs / gb,
            secs / gzip
        );
    }
}
