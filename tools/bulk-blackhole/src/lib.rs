//! `bulk-blackhole`: a dev-only Elasticsearch/OpenSearch `_bulk` endpoint for benchmarks. It
//! answers every bulk request with a correct, fully successful response (one item per action,
//! `_index` and `_id` taken from the action line) and stores nothing.
//!
//! Layout: [`bulk`] parses action lines and writes the answer; [`filter`] is `filter_path`; [`server`] holds the HTTP routes
//! and the counters; `main.rs` is the command line and the listener.

pub mod bulk;
pub mod filter;
pub mod server;
