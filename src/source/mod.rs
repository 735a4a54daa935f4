//! The source side: S3 access and discovery, decompression and record framing.

pub mod decode;
pub mod framing;
pub mod reader;
