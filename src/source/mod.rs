//! The source side: S3 access and discovery, decompression and record framing.

pub mod decode;
pub mod discover;
pub mod framing;
pub mod pointer;
pub mod reader;
pub mod records;
pub mod s3;
