//! The source side: S3 access and discovery (listing, and S3 event notifications from SQS),
//! decompression and record framing.

pub mod backfill;
pub mod decode;
pub mod discover;
pub mod events;
pub mod formats;
pub mod framing;
pub mod pointer;
pub mod reader;
pub mod records;
pub mod s3;
pub mod sqs;
