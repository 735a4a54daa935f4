//! Stages benchmark data for `scripts/bench.sh`: `--objects` gzip NDJSON objects of
//! `--object-mib` MiB uncompressed each, clickstream-like records of about 250 to 400 bytes with
//! varied values (so gzip compresses them about as much as real clickstream), under Firehose's key
//! layout (`<prefix>YYYY/MM/DD/HH/<stream>-1-YYYY-MM-DD-HH-MM-SS-<id>.gz`).
//!
//! Each object is generated and compressed on its own, so memory holds one compressed object at
//! a time, whatever the total. The last line of output is machine-readable:
//! `objects=N records=R uncompressed_bytes=U compressed_bytes=C`.
//!
//! Reads the endpoint and keys from `STAGELOAD_S3_ENDPOINT`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` (as `.stack/env` sets them).

#[path = "common/local_s3.rs"]
mod local_s3;

use aws_sdk_s3::primitives::ByteStream;
use chrono::{Duration, Utc};
use clap::Parser;
use std::io::Write;

/// Stage benchmark clickstream objects.
#[derive(Parser)]
struct Args {
    /// Bucket (created if missing).
    #[arg(long)]
    bucket: String,
    /// Key prefix.
    #[arg(long, default_value = "firehose/bench/")]
    prefix: String,
    /// Objects to write.
    #[arg(long, default_value_t = 16)]
    objects: usize,
    /// Uncompressed MiB per object (each object ends at the first record past this size).
    #[arg(long, default_value_t = 64)]
    object_mib: u64,
    /// Uncompressed KiB per object instead of `--object-mib` (many small objects, as Fluent
    /// Bit or Vector flushing every few seconds write).
    #[arg(long)]
    object_kib: Option<u64>,
    /// Seed of the record generator (same seed, same data).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// gzip level (Firehose and most shippers use 6).
    #[arg(long, default_value_t = 6)]
    level: u32,
}

/// xorshift64*: fast, deterministic, good enough for varied test values.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    /// Skewed pick: low indexes are much more likely (popular pages, frequent users).
    fn skewed(&mut self, n: u64) -> u64 {
        let a = self.below(n);
        self.below(a + 1)
    }
}

const ACTIONS: &[&str] = &[
    "page_view",
    "page_view",
    "page_view",
    "click",
    "click",
    "search",
    "add_to_cart",
    "purchase",
];
const CATEGORIES: &[&str] = &[
    "shoes",
    "jackets",
    "electronics",
    "kitchen",
    "garden",
    "books",
    "toys",
    "sports",
    "beauty",
    "office",
];
const REFERRERS: &[&str] = &[
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://duckduckgo.com/",
    "https://t.co/",
    "https://www.facebook.com/",
    "",
    "",
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
];
const COUNTRIES: &[&str] = &["US", "DE", "FR", "GB", "BR", "IN", "JP", "CA", "ES", "NL"];
const WORDS: &[&str] = &[
    "red",
    "running",
    "waterproof",
    "wireless",
    "cheap",
    "organic",
    "kids",
    "leather",
    "usb-c",
    "gift",
    "large",
    "sale",
    "black",
    "bamboo",
    "steel",
];

/// Appends one record (a JSON line with its `\n`).
fn record(rng: &mut Rng, out: &mut Vec<u8>, ts_ms: i64, seq: u64) {
    let action = rng.pick(ACTIONS);
    let category = rng.pick(CATEGORIES);
    let product = rng.skewed(5000);
    let user = rng.skewed(200_000);
    let session = rng.next() >> 16;
    let a = rng.next();
    let ip = [
        10 + (a & 0x3f),
        (a >> 8) & 0xff,
        (a >> 16) & 0xff,
        (a >> 24) & 0xff,
    ];
    let _ = write!(
        out,
        r#"{{"event_id":"{:016x}-{seq:08x}","ts":{ts_ms},"user_id":"u-{user:06}","session_id":"{session:012x}","action":"{action}","page":"/{category}/p-{product:05}","referrer":"{}","user_agent":"{}","ip":"{}.{}.{}.{}","country":"{}","#,
        rng.next(),
        rng.pick(REFERRERS),
        rng.pick(AGENTS),
        ip[0],
        ip[1],
        ip[2],
        ip[3],
        rng.pick(COUNTRIES),
    );
    match action {
        "search" => {
            let _ = write!(
                out,
                r#""query":"{} {} {}","results":{}"#,
                rng.pick(WORDS),
                rng.pick(WORDS),
                category,
                rng.below(500)
            );
        }
        "add_to_cart" | "purchase" => {
            let _ = write!(
                out,
                r#""quantity":{},"price":{}.{:02},"currency":"USD""#,
                1 + rng.skewed(5),
                1 + rng.below(300),
                rng.below(100)
            );
        }
        _ => {
            let _ = write!(
                out,
                r#""position":{},"duration_ms":{},"viewport":{{"w":{},"h":{}}}"#,
                rng.below(24),
                rng.below(30_000),
                [360, 390, 768, 1280, 1440, 1920][rng.below(6) as usize],
                [640, 844, 1024, 720, 900, 1080][rng.below(6) as usize]
            );
        }
    }
    out.extend_from_slice(b"}\n");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let s3 = local_s3::client(&args.bucket).await?;

    let mut rng = Rng(args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let target = args
        .object_kib
        .map_or(args.object_mib * 1024 * 1024, |k| k * 1024);
    let start = Utc::now() - Duration::minutes(10);
    let (mut records, mut uncompressed, mut compressed) = (0u64, 0u64, 0u64);
    let mut chunk = Vec::with_capacity(1 << 20);
    // Objects 30 s apart, or closer when there are more than 20: all within ten minutes before
    // now, so no key lies in the future.
    let step_ms = 30_000.min(600_000 / args.objects.max(1) as i64);
    for o in 0..args.objects {
        let t = start + Duration::milliseconds(o as i64 * step_ms);
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity((target / 6) as usize),
            flate2::Compression::new(args.level),
        );
        let mut written = 0u64;
        let mut ts_ms = t.timestamp_millis();
        while written < target {
            chunk.clear();
            while chunk.len() < (1 << 20) - 1024 && written + (chunk.len() as u64) < target {
                ts_ms += rng.below(40) as i64;
                record(&mut rng, &mut chunk, ts_ms, records);
                records += 1;
            }
            gz.write_all(&chunk)?;
            written += chunk.len() as u64;
        }
        let body = gz.finish()?;
        uncompressed += written;
        compressed += body.len() as u64;
        let key = format!(
            "{}{}bench-1-{}-{:08x}.gz",
            args.prefix,
            t.format("%Y/%m/%d/%H/"),
            t.format("%Y-%m-%d-%H-%M-%S"),
            o
        );
        let size = body.len();
        s3.put_object()
            .bucket(&args.bucket)
            .key(&key)
            .body(ByteStream::from(body))
            .send()
            .await?;
        eprintln!(
            "stage_bench: s3://{}/{key}: {written} bytes, {size} gzip",
            args.bucket
        );
    }
    println!(
        "staged {} objects: {records} records, {uncompressed} bytes uncompressed, {compressed} bytes gzip ({:.1}x)",
        args.objects,
        uncompressed as f64 / compressed.max(1) as f64
    );
    println!(
        "objects={} records={records} uncompressed_bytes={uncompressed} compressed_bytes={compressed}",
        args.objects
    );
    Ok(())
}
