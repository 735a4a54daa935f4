//! Parquet files written with `ArrowWriter` and read back through [`start`] over an in-memory
//! reader that records the ranges asked for.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use ::parquet::arrow::arrow_reader::ArrowReaderOptions;
use ::parquet::arrow::async_reader::AsyncFileReader;
use ::parquet::arrow::ArrowWriter;
use ::parquet::basic::Compression as PageCompression;
use ::parquet::errors::Result;
use ::parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use ::parquet::file::properties::WriterProperties;
use arrow_array::builder::{Int64Builder, MapBuilder, StringBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Int64Array, ListArray,
    RecordBatch, StringArray, StructArray, TimestampMicrosecondArray, TimestampMillisecondArray,
};
use arrow_array::{FixedSizeBinaryArray, Float64Array, Time32MillisecondArray};
use arrow_schema::{DataType, Field, Fields, Schema};
use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use serde_json::{json, Value};

use super::*;
use crate::codes;
use crate::source::s3::S3Error;

/// A file in memory; every range asked for after the footer is logged, and the requests
/// after the first `fail_from` fail as a reset connection would.
struct Mem {
    data: Bytes,
    log: Arc<Mutex<Vec<Range<u64>>>>,
    fail_from: usize,
}

impl Mem {
    fn new(data: Vec<u8>) -> Mem {
        Mem {
            data: data.into(),
            log: Arc::default(),
            fail_from: usize::MAX,
        }
    }
}

impl AsyncFileReader for Mem {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes>> {
        let mut log = self.log.lock().unwrap();
        log.push(range.clone());
        if log.len() > self.fail_from {
            let e = S3Error::Request {
                op: "get",
                bucket: "b".into(),
                key: "k".into(),
                message: "connection reset".into(),
            };
            return async move { Err(ParquetError::External(Box::new(FetchError(e)))) }.boxed();
        }
        drop(log);
        let bytes = self.data.slice(range.start as usize..range.end as usize);
        async move { Ok(bytes) }.boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, Result<Arc<ParquetMetaData>>> {
        async move {
            let len = self.data.len() as u64;
            let meta = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(&mut *self, len)
                .await?;
            self.log.lock().unwrap().clear();
            Ok(Arc::new(meta))
        }
        .boxed()
    }
}

fn opts(block_bytes: usize) -> ParquetOptions {
    ParquetOptions {
        max_record_bytes: 1 << 20,
        block_bytes,
        hook: None,
        batch_rows: 300,
    }
}

async fn read(
    data: Vec<u8>,
    opts: ParquetOptions,
) -> (Vec<(u64, u64, Value)>, Result<ObjectEnd, ReadError>) {
    let mut stream = start(Mem::new(data), opts, Arc::default()).await.unwrap();
    let mut records = Vec::new();
    loop {
        match stream.next().await.unwrap() {
            ReaderItem::Block(b) => {
                for (r, bytes) in b.iter() {
                    let v = serde_json::from_slice(bytes).expect("a row is JSON");
                    records.push((r.ordinal, r.line, v));
                }
                stream.recycle(b);
            }
            ReaderItem::End(end) => return (records, end),
        }
    }
}

/// `n` rows of `{"i": <int>, "name": "row-<i>"}` in row groups of `group` rows.
fn simple_file(n: i64, group: usize, compression: PageCompression) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("i", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
    ]));
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group))
        .set_compression(compression)
        .build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, Arc::clone(&schema), Some(props)).unwrap();
    for chunk in (0..n).collect::<Vec<_>>().chunks(700) {
        let names: Vec<String> = chunk.iter().map(|i| format!("row-{i}")).collect();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(chunk.to_vec())),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap();
        w.write(&batch).unwrap();
    }
    w.close().unwrap();
    out
}

#[tokio::test]
async fn logical_and_nested_types_map_as_arrow_json_writes_them() {
    let point = Fields::from(vec![
        Field::new("label", DataType::Utf8, true),
        Field::new("weight", DataType::Float64, true),
    ]);
    let mut tags = MapBuilder::new(None, StringBuilder::new(), Int64Builder::new());
    tags.keys().append_value("clicks");
    tags.values().append_value(3);
    tags.append(true).unwrap();
    let tags = tags.finish();
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "at",
            Arc::new(
                TimestampMicrosecondArray::from(vec![1_796_212_800_123_456]).with_timezone("UTC"),
            ),
        ),
        (
            "local",
            Arc::new(TimestampMillisecondArray::from(vec![1_796_212_800_500])),
        ),
        ("day", Arc::new(Date32Array::from(vec![20_789]))),
        (
            "price",
            Arc::new(
                Decimal128Array::from(vec![123_456])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
        ),
        (
            "items",
            Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
                Some(vec![Some(1), None, Some(3)]),
            ])),
        ),
        (
            "point",
            Arc::new(StructArray::new(
                point,
                vec![
                    Arc::new(StringArray::from(vec!["a\"b"])),
                    Arc::new(Float64Array::from(vec![0.5])),
                ],
                None,
            )),
        ),
        ("tags", Arc::new(tags)),
        ("blob", Arc::new(BinaryArray::from(vec![&b"\x01\xff"[..]]))),
        ("ok", Arc::new(BooleanArray::from(vec![true]))),
        (
            "when",
            Arc::new(Time32MillisecondArray::from(vec![43_200_250])),
        ),
        ("ratio", Arc::new(Float64Array::from(vec![f64::NAN]))),
        (
            "digest",
            Arc::new(FixedSizeBinaryArray::try_from_iter([[0xab_u8, 0x01]].into_iter()).unwrap()),
        ),
        (
            "paris",
            Arc::new(
                TimestampMillisecondArray::from(vec![1_796_212_800_000])
                    .with_timezone("Europe/Paris"),
            ),
        ),
        ("missing", Arc::new(StringArray::from(vec![None::<&str>]))),
    ];
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut file = Vec::new();
    let mut w = ArrowWriter::try_new(&mut file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();

    let (records, end) = read(file, opts(1 << 20)).await;
    assert_eq!(end.unwrap().records, 1);
    assert_eq!(
        records[0].2,
        json!({
            "at": "2026-12-02T12:00:00.123456Z",
            "local": "2026-12-02T12:00:00.500",
            "day": "2026-12-02",
            "price": 1234.56,
            "items": [1, null, 3],
            "point": {"label": "a\"b", "weight": 0.5},
            "tags": {"clicks": 3},
            "blob": "01ff",
            "ok": true,
            "when": "12:00:00.250",
            "ratio": null,
            "digest": "ab01",
            "paris": "2026-12-02T12:00:00Z",
        })
    );
}

#[tokio::test]
async fn rows_are_numbered_across_row_groups_and_fetched_one_group_at_a_time() {
    let file = simple_file(10_000, 1_000, PageCompression::SNAPPY);
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(&Bytes::from(file.clone()))
        .unwrap();
    assert_eq!(meta.num_row_groups(), 10);
    let groups: Vec<Range<u64>> = meta
        .row_groups()
        .iter()
        .map(|g| {
            let spans = g.columns().iter().map(|c| c.byte_range());
            let start = spans.clone().map(|(s, _)| s).min().unwrap();
            let end = spans.map(|(s, n)| s + n).max().unwrap();
            start..end
        })
        .collect();

    let log = Arc::new(Mutex::new(Vec::new()));
    let mem = Mem {
        log: Arc::clone(&log),
        ..Mem::new(file)
    };
    // Small blocks: the reader waits on the consumer long before the first group is done.
    let mut stream = start(mem, opts(4096), Arc::default()).await.unwrap();
    let ReaderItem::Block(first) = stream.next().await.unwrap() else {
        panic!("a block first")
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let asked = log.lock().unwrap().clone();
    assert!(!asked.is_empty());
    assert!(
        asked
            .iter()
            .all(|r| groups[0].start <= r.start && r.end <= groups[0].end),
        "only the first row group is fetched while its rows wait: {asked:?}"
    );

    let (mut lines, mut ordinals) = (Vec::new(), Vec::new());
    lines.extend(first.records.iter().map(|r| r.line));
    ordinals.extend(first.records.iter().map(|r| r.ordinal));
    let end = loop {
        match stream.next().await.unwrap() {
            ReaderItem::Block(b) => {
                lines.extend(b.records.iter().map(|r| r.line));
                ordinals.extend(b.records.iter().map(|r| r.ordinal));
            }
            ReaderItem::End(end) => break end.unwrap(),
        }
    };
    assert_eq!(lines, (1..=10_000).collect::<Vec<u64>>());
    assert_eq!(ordinals, (0..10_000).collect::<Vec<u64>>());
    assert_eq!((end.records, end.lines, end.errors), (10_000, 10_000, 0));

    // Every range lies inside one row group, and each group's ranges add up to no more than it.
    let asked = log.lock().unwrap().clone();
    let mut per_group = vec![0u64; groups.len()];
    for r in &asked {
        let g = groups
            .iter()
            .position(|g| g.start <= r.start && r.end <= g.end)
            .unwrap_or_else(|| panic!("{r:?} spans row groups {groups:?}"));
        per_group[g] += r.end - r.start;
    }
    for (g, fetched) in groups.iter().zip(&per_group) {
        assert!(
            *fetched > 0 && *fetched <= g.end - g.start,
            "{g:?}: {fetched}"
        );
    }
    assert!(asked.len() >= groups.len(), "{asked:?}");
}

#[tokio::test]
async fn a_file_that_is_not_parquet_ends_at_row_one() {
    for data in [
        b"{\"a\":1}\n{\"a\":2}\n".to_vec(),
        b"PAR1".to_vec(),
        Vec::new(),
    ] {
        let (records, end) = read(data, opts(4096)).await;
        let e = end.unwrap_err();
        assert!(records.is_empty());
        assert_eq!((e.err_code(), e.line()), (codes::INVALID_FILE, 1), "{e}");
        assert!(e.to_string().contains("Parquet"), "{e}");
    }
}

#[tokio::test]
async fn a_corrupt_page_ends_the_object_after_the_rows_before_it() {
    let mut file = simple_file(3_000, 1_000, PageCompression::SNAPPY);
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(&Bytes::from(file.clone()))
        .unwrap();
    // Scribble over the middle of the third row group's first column chunk.
    let (start, len) = meta.row_group(2).column(0).byte_range();
    for b in &mut file[(start + len / 3) as usize..(start + 2 * len / 3) as usize] {
        *b = 0xAB;
    }
    let (records, end) = read(file, opts(4096)).await;
    let e = end.unwrap_err();
    assert_eq!(e.err_code(), codes::INVALID_FILE, "{e}");
    assert_eq!(records.len(), 2_000);
    assert_eq!(e.line(), 2_001, "{e}");
    assert_eq!(records[1_999].2, json!({"i": 1999, "name": "row-1999"}));
}

#[tokio::test]
async fn a_row_over_the_record_limit_is_rejected_alone() {
    let file = simple_file(5, 5, PageCompression::UNCOMPRESSED);
    let mem = Mem::new(file);
    let small = ParquetOptions {
        max_record_bytes: 26,
        ..opts(4096)
    };
    let mut stream = start(mem, small, Arc::default()).await.unwrap();
    let ReaderItem::Block(b) = stream.next().await.unwrap() else {
        panic!()
    };
    // {"i":0,"name":"row-0"} is 22 bytes; none is over 26.
    assert_eq!(b.records.len(), 5);
    assert!(b.errors.is_empty());
    let file = simple_file(12, 12, PageCompression::UNCOMPRESSED);
    let tight = ParquetOptions {
        max_record_bytes: 22,
        ..opts(4096)
    };
    let mut stream = start(Mem::new(file), tight, Arc::default()).await.unwrap();
    let ReaderItem::Block(b) = stream.next().await.unwrap() else {
        panic!()
    };
    // Rows 10 and 11 are a byte longer.
    assert_eq!(b.records.len(), 10);
    let rejected: Vec<(i32, u64, u64)> = b
        .errors
        .iter()
        .map(|e| (e.err_code, e.ordinal, e.line))
        .collect();
    assert_eq!(
        rejected,
        vec![
            (codes::RECORD_TOO_LARGE, 10, 11),
            (codes::RECORD_TOO_LARGE, 11, 12)
        ]
    );
}

#[tokio::test]
async fn a_failed_fetch_is_a_stream_failure_after_the_rows_read() {
    let file = simple_file(5_000, 1_000, PageCompression::SNAPPY);
    // A request per column chunk, two per row group: the fourth group's fail.
    let mem = Mem {
        fail_from: 6,
        ..Mem::new(file)
    };
    let mut stream = start(mem, opts(1 << 20), Arc::default()).await.unwrap();
    let mut records = 0;
    let e = loop {
        match stream.next().await.unwrap() {
            ReaderItem::Block(b) => records += b.records.len() as u64,
            ReaderItem::End(end) => break end.unwrap_err(),
        }
    };
    assert_eq!(e.err_code(), codes::READ_FAILED, "{e}");
    assert!(e.to_string().contains("connection reset"), "{e}");
    assert_eq!((records, e.line()), (3_000, 3_001), "{e}");
}

/// Keeps the records whose ordinal is even: a stand-in for the transform layer.
#[derive(Debug)]
struct EvenOnly;

impl crate::source::reader::BlockHook for EvenOnly {
    fn apply(&self, block: &mut RecordBlock, _spare: &mut RecordBlock) {
        block.records.retain(|r| r.ordinal % 2 == 0);
    }
}

#[tokio::test]
async fn the_hook_runs_on_every_block_the_last_included() {
    // 1,000 rows in small blocks: many full blocks, then the last partial one.
    let file = simple_file(1000, 300, PageCompression::UNCOMPRESSED);
    let (records, end) = read(
        file,
        ParquetOptions {
            hook: Some(Arc::new(EvenOnly)),
            ..opts(2048)
        },
    )
    .await;
    end.expect("reads to its end");
    let ordinals: Vec<u64> = records.iter().map(|(o, _, _)| *o).collect();
    assert_eq!(ordinals, (0..1000).step_by(2).collect::<Vec<u64>>());
}
