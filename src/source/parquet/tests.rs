//! Tests of Parquet reading.
