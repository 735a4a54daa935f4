//! The bridge from an async S3 body to blocks of records: decompression and framing run on a
//! blocking thread and hand contiguous blocks of records over a small bounded channel, so memory
//! stays flat and decoding overlaps with the consumer's sending.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

use crate::source::decode::{self, Compression};
use crate::source::formats::FormatOptions;
use crate::source::framing::{Frame, Framer, Framing, ReadError, RecordError};

/// Blocks in flight between the reading thread and the consumer.
const CHANNEL_BLOCKS: usize = 2;

/// How to read one object.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// The pipeline's compression; `Auto` is resolved from `key`, `content_encoding` and the
    /// first bytes (see [`decode::detect`]).
    pub compression: Compression,
    /// The object's key, for extension-based detection.
    pub key: String,
    /// The object's `Content-Encoding`, if any.
    pub content_encoding: Option<String>,
    /// Record framing and its options.
    pub format: FormatOptions,
    /// Records longer than this are rejected with `RECORD_TOO_LARGE`.
    pub max_record_bytes: usize,
    /// Target bytes of record data per block.
    pub block_bytes: usize,
    /// Run on each block on the reading thread before it is handed over (the transforms).
    pub hook: Option<Arc<dyn BlockHook>>,
}

/// Work done on the reading thread on each block of records before the destination sees it:
/// the transform layer's steps. It rewrites the block in place and keeps its invariants
/// (records and errors in object order by ordinal, ordinals increasing).
pub trait BlockHook: Send + Sync + std::fmt::Debug {
    /// Rewrites `block`; `spare` is an empty block whose buffers it may build into and swap.
    fn apply(&self, block: &mut RecordBlock, spare: &mut RecordBlock);
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            compression: Compression::Auto,
            key: String::new(),
            content_encoding: None,
            format: FormatOptions::from(Framing::JsonLines),
            max_record_bytes: 1 << 20,
            block_bytes: 1 << 20,
            hook: None,
        }
    }
}

/// Where one record lies in [`RecordBlock::data`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef {
    /// Offset of the record's first byte in `data`.
    pub start: usize,
    /// Offset one past the record's last byte.
    pub end: usize,
    /// 1-based number of the record's last line in the object.
    pub line: u64,
    /// 0-based index of the record in the object, counting rejected records.
    pub ordinal: u64,
}

/// A run of consecutive records of one object, copied back to back into `data`, and the
/// record errors met among them (in object order by ordinal).
#[derive(Debug, Default)]
pub struct RecordBlock {
    /// The records' bytes, without delimiters.
    pub data: Vec<u8>,
    /// The records, in object order.
    pub records: Vec<RecordRef>,
    /// Records rejected by the framer.
    pub errors: Vec<RecordError>,
}

impl RecordBlock {
    /// The records with their bytes.
    pub fn iter(&self) -> impl Iterator<Item = (RecordRef, &[u8])> + '_ {
        self.records
            .iter()
            .map(|r| (*r, &self.data[r.start..r.end]))
    }

    /// True when the block holds neither records nor errors.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.errors.is_empty()
    }

    /// Empties the block, keeping its buffers.
    pub fn clear(&mut self) {
        self.data.clear();
        self.records.clear();
        self.errors.clear();
    }
}

/// How an object read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEnd {
    /// The compression used (resolved when the options said `Auto`).
    pub compression: Compression,
    /// Valid records delivered in blocks.
    pub records: u64,
    /// Records rejected.
    pub errors: u64,
    /// Bytes read from the body (compressed size), to compare with the object's size.
    pub bytes_read: u64,
    /// Bytes after decompression.
    pub bytes_decompressed: u64,
    /// Lines in the decompressed object.
    pub lines: u64,
}

/// What a [`RecordStream`] yields: blocks, then exactly one `End`.
#[derive(Debug)]
pub enum ReaderItem {
    /// Records and record errors.
    Block(RecordBlock),
    /// The object ended, cleanly or with a fatal error after every block before it.
    End(Result<ObjectEnd, ReadError>),
}

/// The consumer's end of a reader started by [`spawn_reader`]. Dropping it stops the reader.
pub struct RecordStream {
    rx: mpsc::Receiver<ReaderItem>,
    recycle: std::sync::mpsc::SyncSender<RecordBlock>,
    ended: bool,
}

impl RecordStream {
    /// The next item; `None` after the `End` item.
    pub async fn next(&mut self) -> Option<ReaderItem> {
        if self.ended {
            return None;
        }
        let item = self.rx.recv().await.unwrap_or_else(|| {
            // The reading thread panicked or was cancelled without saying how the object ended.
            let e = io::Error::other("reader thread ended without finishing the object");
            ReaderItem::End(Err(ReadError::Io { line: 0, source: e }))
        });
        self.ended = matches!(item, ReaderItem::End(_));
        Some(item)
    }

    /// Hands a consumed block back for reuse, saving the reader an allocation; optional.
    pub fn recycle(&self, mut block: RecordBlock) {
        block.clear();
        let _ = self.recycle.try_send(block);
    }
}

/// The producing end of a [`RecordStream`], for readers that are not a decompressed byte
/// stream (Parquet): blocks go to `tx`, then one `End`; consumed blocks come back on
/// `recycled`.
pub struct BlockSink {
    /// Where blocks and the final `End` go.
    pub tx: mpsc::Sender<ReaderItem>,
    /// Blocks the consumer handed back for reuse.
    pub recycled: std::sync::mpsc::Receiver<RecordBlock>,
}

impl BlockSink {
    /// A recycled block, or a new one sized for `block_bytes`.
    pub fn block(&self, block_bytes: usize) -> RecordBlock {
        self.recycled.try_recv().unwrap_or_else(|_| RecordBlock {
            data: Vec::with_capacity(block_bytes + block_bytes / 4),
            records: Vec::with_capacity(block_bytes / 128),
            errors: Vec::new(),
        })
    }
}

/// A [`RecordStream`] and the sink that feeds it.
pub fn record_channel() -> (BlockSink, RecordStream) {
    let (tx, rx) = mpsc::channel(CHANNEL_BLOCKS);
    let (recycle, recycled) = std::sync::mpsc::sync_channel(CHANNEL_BLOCKS + 1);
    (
        BlockSink { tx, recycled },
        RecordStream {
            rx,
            recycle,
            ended: false,
        },
    )
}

/// A stream that ends at once with `e`, before any record.
pub fn failed_stream(e: ReadError) -> RecordStream {
    let (sink, stream) = record_channel();
    // The channel is new and empty: the one item fits.
    let _ = sink.tx.try_send(ReaderItem::End(Err(e)));
    stream
}

/// Starts reading `body` on a blocking thread; must be called within a Tokio runtime.
pub fn spawn_reader(
    body: impl AsyncRead + Send + Unpin + 'static,
    opts: ReadOptions,
) -> RecordStream {
    let (sink, stream) = record_channel();
    let bridge = SyncIoBridge::new(body);
    tokio::task::spawn_blocking(move || read_object(bridge, opts, &sink.tx, &sink.recycled));
    stream
}

/// Counts the compressed bytes read from the body.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn read_object(
    body: impl Read + Send + 'static,
    opts: ReadOptions,
    tx: &mpsc::Sender<ReaderItem>,
    recycled: &std::sync::mpsc::Receiver<RecordBlock>,
) {
    let count = Arc::new(AtomicU64::new(0));
    let counted = Box::new(Counting {
        inner: body,
        count: Arc::clone(&count),
    });
    let opened = decode::open(
        opts.compression,
        &opts.key,
        opts.content_encoding.as_deref(),
        counted,
    );
    let (compression, decoded) = match opened {
        Ok(v) => v,
        Err(e) => {
            let _ = tx.blocking_send(ReaderItem::End(Err(ReadError::from_io(e, 1))));
            return;
        }
    };
    let mut framer = Framer::with_options(decoded, &opts.format, opts.max_record_bytes);
    let new_block = || {
        recycled.try_recv().unwrap_or_else(|_| RecordBlock {
            data: Vec::with_capacity(opts.block_bytes + opts.block_bytes / 4),
            records: Vec::with_capacity(opts.block_bytes / 128),
            errors: Vec::new(),
        })
    };
    let mut block = new_block();
    let mut spare = RecordBlock::default();
    let end = loop {
        match framer.next_frame() {
            Ok(Some(Frame::Record(r))) => {
                let start = block.data.len();
                block.data.extend_from_slice(r.bytes);
                block.records.push(RecordRef {
                    start,
                    end: block.data.len(),
                    line: r.line,
                    ordinal: r.ordinal,
                });
            }
            Ok(Some(Frame::Error(e))) => block.errors.push(e),
            Ok(None) => {
                let s = framer.stats();
                break Ok(ObjectEnd {
                    compression,
                    records: s.records,
                    errors: s.errors,
                    bytes_read: count.load(Ordering::Relaxed),
                    bytes_decompressed: s.bytes,
                    lines: s.lines,
                });
            }
            Err(e) => break Err(e),
        }
        // Errors are counted too, so an object of nothing but bad records still flows.
        if block.data.len() + block.errors.len() * 1024 >= opts.block_bytes {
            let mut full = std::mem::replace(&mut block, new_block());
            if let Some(hook) = &opts.hook {
                hook.apply(&mut full, &mut spare);
            }
            if tx.blocking_send(ReaderItem::Block(full)).is_err() {
                return;
            }
        }
    };
    if let Some(hook) = &opts.hook {
        hook.apply(&mut block, &mut spare);
    }
    if !block.is_empty() && tx.blocking_send(ReaderItem::Block(block)).is_err() {
        return;
    }
    let _ = tx.blocking_send(ReaderItem::End(end));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes;
    use crate::source::decode::tests::gzip;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncWriteExt, ReadBuf};

    async fn collect(
        mut s: RecordStream,
    ) -> (
        Vec<(u64, u64, Vec<u8>)>,
        Vec<RecordError>,
        usize,
        ReaderItem,
    ) {
        let (mut records, mut errors, mut blocks) = (Vec::new(), Vec::new(), 0);
        loop {
            match s.next().await.unwrap() {
                ReaderItem::Block(b) => {
                    blocks += 1;
                    records.extend(
                        b.iter()
                            .map(|(r, bytes)| (r.ordinal, r.line, bytes.to_vec())),
                    );
                    errors.extend(b.errors.iter().cloned());
                    s.recycle(b);
                }
                end => {
                    assert!(s.next().await.is_none());
                    return (records, errors, blocks, end);
                }
            }
        }
    }

    #[tokio::test]
    async fn end_to_end_over_duplex_with_small_blocks() {
        let mut text = Vec::new();
        for i in 0..10_000 {
            text.extend(format!("{{\"i\":{i}}}\n").as_bytes());
            if i % 1000 == 0 {
                text.extend(b"not json\n");
            }
        }
        let body = gzip(&text);
        let (mut w, r) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            for chunk in body.chunks(1000) {
                w.write_all(chunk).await.unwrap();
            }
        });
        let opts = ReadOptions {
            key: "stream/2024/01/01/00/obj".into(),
            block_bytes: 4096,
            ..ReadOptions::default()
        };
        let (records, errors, blocks, end) = collect(spawn_reader(r, opts)).await;
        assert_eq!(records.len(), 10_000);
        assert_eq!(errors.len(), 10);
        assert!(blocks > 20);
        assert_eq!(records[0], (0, 1, b"{\"i\":0}".to_vec()));
        assert_eq!(records[1], (2, 3, b"{\"i\":1}".to_vec()));
        assert_eq!((errors[1].ordinal, errors[1].line), (1002, 1003));
        let ReaderItem::End(Ok(end)) = end else {
            panic!("{end:?}")
        };
        assert_eq!(end.compression, Compression::Gzip);
        assert_eq!((end.records, end.errors, end.lines), (10_000, 10, 10_010));
        assert_eq!(end.bytes_decompressed, text.len() as u64);
    }

    #[tokio::test]
    async fn truncated_gzip_ends_with_decompression_error_after_blocks() {
        let text: Vec<u8> = (0..50_000)
            .flat_map(|i| format!("{{\"i\":{i}}}\n").into_bytes())
            .collect();
        let mut body = gzip(&text);
        body.truncate(body.len() / 2);
        let body: &'static [u8] = Box::leak(body.into_boxed_slice());
        let opts = ReadOptions {
            block_bytes: 10_000,
            ..ReadOptions::default()
        };
        let (records, _, _, end) = collect(spawn_reader(body, opts)).await;
        let ReaderItem::End(Err(e)) = end else {
            panic!("{end:?}")
        };
        assert_eq!(e.err_code(), codes::DECOMPRESSION_FAILED);
        assert!(!records.is_empty() && records.len() < 50_000);
        assert!(e.line() > records.len() as u64, "{e}");
    }

    /// Yields its data, then a connection reset.
    struct Resetting(&'static [u8]);
    impl AsyncRead for Resetting {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.0.is_empty() {
                return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
            let n = self.0.len().min(buf.remaining()).min(3000);
            buf.put_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn stream_reset_is_a_read_failure() {
        let text: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("{{\"i\":{i}}}").into_bytes())
            .collect();
        let body: &'static [u8] = Box::leak(gzip(&text).into_boxed_slice());
        let opts = ReadOptions {
            format: Framing::JsonConcat.into(),
            ..ReadOptions::default()
        };
        let (_, _, _, end) = collect(spawn_reader(Resetting(body), opts)).await;
        let ReaderItem::End(Err(e)) = end else {
            panic!("{end:?}")
        };
        assert_eq!(e.err_code(), codes::READ_FAILED, "{e}");
    }

    #[tokio::test]
    async fn plain_object_and_empty_object() {
        let opts = ReadOptions {
            format: Framing::Lines.into(),
            ..ReadOptions::default()
        };
        let (records, _, _, end) = collect(spawn_reader(&b"a\r\nb"[..], opts.clone())).await;
        assert_eq!(records, vec![(0, 1, b"a".to_vec()), (1, 2, b"b".to_vec())]);
        let ReaderItem::End(Ok(end)) = end else {
            panic!()
        };
        assert_eq!(
            (end.compression, end.bytes_read, end.lines),
            (Compression::None, 4, 2)
        );
        let (records, _, blocks, end) = collect(spawn_reader(&b""[..], opts)).await;
        assert_eq!((records.len(), blocks), (0, 0));
        assert!(matches!(
            end,
            ReaderItem::End(Ok(ObjectEnd { lines: 0, .. }))
        ));
    }

    /// `cargo test --release --lib source::reader::tests::bench -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn bench_gzip_ndjson() {
        use std::time::Instant;
        let mb = std::env::var("BENCH_MB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200usize);
        let mut text = Vec::with_capacity(mb << 20);
        let (mut i, mut x) = (0u64, 0x9e37_79b9_7f4a_7c15u64);
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        while text.len() < mb << 20 {
            let (a, b, c) = (rnd(), rnd(), rnd());
            text.extend(
                format!(
                    "{{\"event_id\":\"{a:016x}-{:08x}\",\"ts\":{},\"user_id\":{},\"action\":\"{}\",\
                     \"page\":\"/products/{}?ref=home&q=red%20shoes&s={:x}\",\"ua\":\"Mozilla/5.0 (X11; Linux \
                     x86_64) AppleWebKit/537.{}\",\"props\":{{\"price\":{}.{:02},\"tags\":[\"sale\",\"new\"],\
                     \"ok\":true,\"note\":\"line\\nbreak \\u00e9\"}}}}\n",
                    b as u32,
                    1_700_000_000 + i / 7,
                    c % 100_003,
                    ["click", "view", "buy"][(c >> 20) as usize % 3],
                    b % 977,
                    c >> 40,
                    a % 40,
                    b % 300,
                    c % 100
                )
                .as_bytes(),
            );
            i += 1;
        }
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        std::io::Write::write_all(&mut e, &text).unwrap();
        let gz = e.finish().unwrap();
        let mbs = |t: Instant| text.len() as f64 / 1e6 / t.elapsed().as_secs_f64();
        std::fs::write("/tmp/stageload-bench.json.gz", &gz).unwrap();
        println!(
            "{} MB NDJSON, {} records, {} MB gzip",
            text.len() / 1_000_000,
            i,
            gz.len() / 1_000_000
        );

        for _ in 0..3 {
            let t = Instant::now();
            let mut d = flate2::read::MultiGzDecoder::new(&gz[..]);
            std::io::copy(&mut d, &mut std::io::sink()).unwrap();
            println!("gzip decompress only:            {:7.0} MB/s", mbs(t));
        }

        for framing in [Framing::JsonLines, Framing::JsonConcat, Framing::Lines] {
            let t = Instant::now();
            let mut f = Framer::new(&text[..], framing, 1 << 20);
            while f.next_frame().unwrap().is_some() {}
            assert_eq!(f.stats().records, i);
            println!("frame+validate {framing:?} (plain): {:7.0} MB/s", mbs(t));
        }

        for _ in 0..3 {
            let t = Instant::now();
            let d = flate2::read::MultiGzDecoder::new(&gz[..]);
            let mut f = Framer::new(d, Framing::JsonLines, 1 << 20);
            while f.next_frame().unwrap().is_some() {}
            println!("gzip + json_lines, one thread:   {:7.0} MB/s", mbs(t));
        }

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let body: &'static [u8] = Box::leak(gz.into_boxed_slice());
        for recycle in [false, true] {
            let t = Instant::now();
            let n = rt.block_on(async {
                let mut s = spawn_reader(body, ReadOptions::default());
                let mut n = 0;
                while let Some(ReaderItem::Block(b)) = s.next().await {
                    n += b.records.len();
                    if recycle {
                        s.recycle(b);
                    }
                }
                n
            });
            assert_eq!(n as u64, i);
            println!(
                "spawn_reader gzip json_lines (recycle {recycle}): {:7.0} MB/s",
                mbs(t)
            );
        }
    }
}
