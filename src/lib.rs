//! stageload: loads staged S3 objects into Redshift, Elasticsearch/OpenSearch and Splunk HEC,
//! exactly once where the destination allows it, with bounded retry and an error table modelled
//! on Redshift's `STL_LOAD_ERRORS`.
//!
//! # Layout
//!
//! - [`config`]: the TOML file to a validated [`config::Config`] (`${VAR}` expansion, ranges,
//!   redacted secrets); each destination's table is its `config.rs`, compiled here.
//! - [`control`]: the PostgreSQL control database: migrations, the ledger of objects, batches
//!   (seal, claim, lease, settle), `load_errors`, status queries and retention.
//! - [`source`]: reading objects, a library with no control-database imports: S3 access, key
//!   layouts, decompression, record framing, the formats, the reader thread, and the one
//!   record walk ([`source::records::Walk`]) the record-reading destinations consume.
//! - [`transform`]: a pipeline's `[[pipeline.transform]]` steps (jq), run on the reading
//!   threads between the source's framing and the destination.
//! - [`discovery`]: listing, SQS notifications and backfill, recording objects in the ledger.
//! - [`pipeline`]: one pipeline at run time: discovery, sealing, and the dispatcher that claims,
//!   delivers, retries within the budget and settles.
//! - [`aws`]: AWS identities beyond `[s3]`: a pipeline's region and a role assumed through STS.
//! - [`artifacts`]: the error artifacts left in S3 (manifests, Firehose-format failed records).
//! - [`destination`]: the [`destination::Destination`] trait and the file, Redshift,
//!   Elasticsearch and Splunk implementations, each with the same file names for the same jobs
//!   (`mod`, `config`, `attempt`, `give_up`, and `client`, `retry`, `state`, `failed` where
//!   they apply).
//! - [`daemon`]: wires it together and handles signals; [`cli`]: the command line;
//!   [`ops`]: the operator commands (`status`, `errors`, `batches`, `replay`, `ignore`).
//! - [`admin`]: the admin HTTP port (`/healthz`, `/readyz`, `/metrics`, the status page);
//!   [`telemetry`]: metric names; [`notify`]: the systemd notify protocol.
//! - [`pgtls`]: TLS for PostgreSQL-protocol connections (control database and Redshift).
//! - [`model`], [`codes`]: shared types and the loader's own error codes; [`sql`]: SQL quoting.
//! - [`memory`]: returning the buffers of failing batches to the system.

pub mod admin;
pub mod artifacts;
pub mod aws;
pub mod cli;
pub mod codes;
pub mod config;
pub mod control;
pub mod daemon;
pub mod destination;
pub mod discovery;
pub mod memory;
pub mod model;
pub mod notify;
pub mod ops;
pub mod pgtls;
pub mod pipeline;
pub mod source;
pub mod sql;
pub mod telemetry;
pub mod transform;
