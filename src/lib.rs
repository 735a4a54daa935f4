//! stageload: loads staged S3 objects into Redshift, Elasticsearch/OpenSearch and Splunk HEC,
//! exactly once where the destination allows it, with bounded retry and an error table modelled
//! on Redshift's `STL_LOAD_ERRORS`.
//!
//! # Layout
//!
//! - [`config`]: the TOML file to a validated [`config::Config`] (`${VAR}` expansion, ranges,
//!   redacted secrets).
//! - [`control`]: the PostgreSQL control database: migrations, the ledger of objects, batches
//!   (seal, claim, lease, settle) and `load_errors`.
//! - [`source`]: S3 access, discovery, decompression and record framing.
//! - [`pipeline`]: one pipeline at run time: discovery, sealing, and the dispatcher that claims,
//!   delivers, retries within the budget and settles.
//! - [`destination`]: the [`destination::Destination`] trait and the file, Redshift,
//!   Elasticsearch and Splunk implementations.
//! - [`daemon`]: wires it together and handles signals; [`cli`]: the command line.
//! - [`model`], [`codes`]: shared types and the loader's own error codes.
//! - [`memory`]: returning the buffers of failing batches to the system.

pub mod admin;
pub mod cli;
pub mod codes;
pub mod config;
pub mod control;
pub mod daemon;
pub mod destination;
pub mod memory;
pub mod model;
pub mod notify;
pub mod ops;
pub mod pgtls;
pub mod pipeline;
pub mod source;
pub mod telemetry;
