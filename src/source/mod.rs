//! Reading staged objects: S3 access, what a key's path says about time, decompression, record
//! framing and the formats, and the reader thread that turns an object into blocks of records.
//! A library: nothing here touches the control database (discovery, which records objects in
//! the ledger, is [`crate::discovery`]).

pub mod decode;
pub mod formats;
pub mod framing;
pub mod json_check;
pub mod layout;
pub mod parquet;
pub mod pointer;
pub mod reader;
pub mod records;
pub mod s3;
