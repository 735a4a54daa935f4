//! Stages two more kinds of source data beside the sample clickstream, for `make demo`:
//!
//! - a CloudTrail log file: one gzip JSON document `{"Records":[...]}` in CloudTrail's
//!   documented record layout, under CloudTrail's key layout
//!   `AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/<account>_CloudTrail_<region>_<YYYYMMDDTHHMMZ>_<id>.json.gz`
//!   (read with `format = "cloudtrail"`);
//! - a Parquet file of orders (`format = "parquet"`): a timestamp, a decimal, a list and a
//!   struct per row, in several row groups.
//!
//! Objects already under either prefix are deleted first, so each run starts clean. Reads the
//! endpoint and keys from `STAGELOAD_S3_ENDPOINT`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`
//! (as `.stack/env` sets them).

#[path = "common/local_s3.rs"]
mod local_s3;

use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{
    ArrayRef, Decimal128Array, Int64Array, RecordBatch, StringArray, StructArray,
    TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Fields};
use aws_sdk_s3::primitives::ByteStream;
use chrono::{Duration, Utc};
use clap::Parser;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::json;

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

/// Stage a CloudTrail log file and a Parquet file.
#[derive(Parser)]
struct Args {
    /// Bucket (created if missing).
    #[arg(long)]
    bucket: String,
    /// Where CloudTrail writes: `AWSLogs/<account>/CloudTrail/`.
    #[arg(long, default_value = "AWSLogs/123456789012/CloudTrail/")]
    cloudtrail_prefix: String,
    /// CloudTrail records in the log file.
    #[arg(long, default_value_t = 40)]
    events: usize,
    /// Prefix of the Parquet file.
    #[arg(long, default_value = "parquet/orders/")]
    parquet_prefix: String,
    /// Rows in the Parquet file.
    #[arg(long, default_value_t = 300)]
    rows: usize,
    /// Rows per Parquet row group.
    #[arg(long, default_value_t = 100)]
    row_group: usize,
}

/// One CloudTrail record, with the fields the CloudTrail record contents page documents.
fn trail_event(i: usize, at: chrono::DateTime<Utc>) -> serde_json::Value {
    let (source, name, params) = match i % 4 {
        0 => (
            "s3.amazonaws.com",
            "GetObject",
            json!({"bucketName": "demo-stage", "key": format!("reports/{i}.csv")}),
        ),
        1 => (
            "ec2.amazonaws.com",
            "DescribeInstances",
            json!({"maxResults": 100}),
        ),
        2 => (
            "iam.amazonaws.com",
            "ListRoles",
            json!({"pathPrefix": "/service-role/"}),
        ),
        _ => (
            "sts.amazonaws.com",
            "AssumeRole",
            json!({"roleArn": format!("arn:aws:iam::{ACCOUNT}:role/demo-loader"),
                   "roleSessionName": format!("session-{i}")}),
        ),
    };
    let user = ["alice", "bob", "ci-deploy"][i % 3];
    json!({
        "eventVersion": "1.10",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": format!("AIDAEXAMPLE{:05}", i % 3),
            "arn": format!("arn:aws:iam::{ACCOUNT}:user/{user}"),
            "accountId": ACCOUNT,
            "accessKeyId": format!("AKIAEXAMPLE{:05}", i % 3),
            "userName": user,
        },
        "eventTime": at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "eventSource": source,
        "eventName": name,
        "awsRegion": REGION,
        "sourceIPAddress": format!("198.51.100.{}", 10 + i % 20),
        "userAgent": "aws-cli/2.15.0 Python/3.11.6 Linux/6.1",
        "requestParameters": params,
        "responseElements": null,
        "requestID": format!("{:08X}-0000-4000-8000-{:012X}", i, i * 7919),
        "eventID": format!("{:08x}-1111-4222-8333-{:012x}", i, i * 104_729),
        "readOnly": name != "AssumeRole",
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
    })
}

/// The orders file: `order_id`, `placed_at` (timestamp, UTC), `total` (decimal(10,2)),
/// `items` (list of strings), `customer` (struct of `id` and `country`).
fn orders_parquet(rows: usize, row_group: usize, start: chrono::DateTime<Utc>) -> Vec<u8> {
    let skus = [
        "sku-kettle",
        "sku-mug",
        "sku-filter",
        "sku-grinder",
        "sku-beans",
    ];
    let countries = ["PT", "DE", "JP", "BR", "CA"];
    let mut items = ListBuilder::new(StringBuilder::new());
    for i in 0..rows {
        for k in 0..=(i % 3) {
            items.values().append_value(skus[(i + k) % skus.len()]);
        }
        items.append(true);
    }
    let customer = StructArray::new(
        Fields::from(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("country", DataType::Utf8, false),
        ]),
        vec![
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("c-{}", 1000 + i % 37)),
            )) as ArrayRef,
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| countries[i % countries.len()]),
            )),
        ],
        None,
    );
    let batch = RecordBatch::try_from_iter(vec![
        (
            "order_id",
            Arc::new(Int64Array::from_iter_values(0..rows as i64)) as ArrayRef,
        ),
        (
            "placed_at",
            Arc::new(
                TimestampMillisecondArray::from_iter_values(
                    (0..rows as i64).map(|i| start.timestamp_millis() + i * 1250),
                )
                .with_timezone("UTC"),
            ),
        ),
        (
            "total",
            Arc::new(
                Decimal128Array::from_iter_values((0..rows as i128).map(|i| 499 + i * 137 % 9000))
                    .with_precision_and_scale(10, 2)
                    .expect("valid decimal"),
            ),
        ),
        ("items", Arc::new(items.finish())),
        ("customer", Arc::new(customer)),
    ])
    .expect("columns of one length");
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(row_group))
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut out = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).expect("arrow schema");
    writer.write(&batch).expect("write orders");
    writer.close().expect("finish the file");
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let s3 = local_s3::client(&args.bucket).await?;
    for prefix in [&args.cloudtrail_prefix, &args.parquet_prefix] {
        let old = s3
            .list_objects_v2()
            .bucket(&args.bucket)
            .prefix(prefix)
            .send()
            .await?;
        for k in old.contents().iter().filter_map(|o| o.key()) {
            s3.delete_object()
                .bucket(&args.bucket)
                .key(k)
                .send()
                .await?;
        }
    }

    let now = Utc::now();
    let start = now - Duration::minutes(5);
    let records: Vec<_> = (0..args.events)
        .map(|i| trail_event(i, start + Duration::seconds(i as i64 * 7)))
        .collect();
    let doc = serde_json::to_vec(&json!({ "Records": records }))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&doc)?;
    let trail_key = format!(
        "{}{REGION}/{}/{ACCOUNT}_CloudTrail_{REGION}_{}_{}.json.gz",
        args.cloudtrail_prefix,
        now.format("%Y/%m/%d"),
        now.format("%Y%m%dT%H%MZ"),
        "Xq2D7sFd0c3Lh9Qz"
    );
    s3.put_object()
        .bucket(&args.bucket)
        .key(&trail_key)
        .content_type("application/json")
        .body(ByteStream::from(gz.finish()?))
        .send()
        .await?;

    let parquet = orders_parquet(args.rows, args.row_group, start);
    let parquet_key = format!(
        "{}orders-{}.parquet",
        args.parquet_prefix,
        now.format("%Y%m%dT%H%M%S")
    );
    let size = parquet.len();
    s3.put_object()
        .bucket(&args.bucket)
        .key(&parquet_key)
        .body(ByteStream::from(parquet))
        .send()
        .await?;
    println!(
        "staged a CloudTrail log file with {} records at {trail_key}\nstaged a Parquet file of {} rows in {} row groups ({size} bytes) at {parquet_key}",
        args.events,
        args.rows,
        args.rows.div_ceil(args.row_group.max(1))
    );
    Ok(())
}
