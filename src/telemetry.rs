//! Metric names and their descriptions, in one place. Call sites use the `metrics` macros with
//! these names and a `pipeline` label; the admin port exports them in Prometheus format.

/// Objects newly recorded in the ledger (counter).
pub const OBJECTS_DISCOVERED: &str = "stageload_objects_discovered_total";
/// Records delivered (counter).
pub const RECORDS_DELIVERED: &str = "stageload_records_delivered_total";
/// Records rejected for good, one `load_errors` row each (counter).
pub const RECORDS_REJECTED: &str = "stageload_records_rejected_total";
/// Delivery attempts by `outcome`: delivered, transient, permanent (counter).
pub const DELIVERY_ATTEMPTS: &str = "stageload_delivery_attempts_total";
/// Batches settled by `state`: loaded, skipped (counter).
pub const BATCHES_SETTLED: &str = "stageload_batches_settled_total";
/// Seconds from a batch's first attempt to its settlement (histogram).
pub const DELIVERY_SECONDS: &str = "stageload_delivery_duration_seconds";
/// Batches whose retry budget ran out (counter).
pub const BUDGET_EXHAUSTED: &str = "stageload_retry_budget_exhausted_total";
/// HEC requests sent again after no acknowledgement came (counter).
pub const HEC_RESENDS: &str = "stageload_hec_resends_total";
/// Delivery attempts that panicked, each counted as a failed attempt (counter).
pub const DELIVERY_PANICS: &str = "stageload_delivery_panics_total";
/// Waits of a batch whose delivery the destination cannot confirm or deny yet (a takeover or a
/// write-off that cannot read the Redshift marker); each is one backoff step (counter).
pub const UNDECIDED_WAITS: &str = "stageload_undecided_waits_total";
/// Live dispatch workers per pipeline (gauge); 0 means nothing delivers.
pub const LIVE_WORKERS: &str = "stageload_live_workers";
/// Batches in each `state`, read from the control database at scrape time (gauge).
pub const BATCHES: &str = "stageload_batches";
/// Age in seconds of the oldest object not yet settled, 0 when none waits (gauge).
pub const FRESHNESS_SECONDS: &str = "stageload_freshness_seconds";
/// Objects and bytes discovered and not yet batched (gauges).
pub const PENDING_OBJECTS: &str = "stageload_pending_objects";
/// Bytes discovered and not yet batched (gauge).
pub const PENDING_BYTES: &str = "stageload_pending_bytes";

/// 1 when the last scrape read the control database, 0 when it could not (gauge, no labels).
pub const CONTROL_DATABASE_UP: &str = "stageload_control_database_up";
/// Each pipeline's `buffer.interval_s`, for alerts on staleness (gauge).
pub const BUFFER_INTERVAL_SECONDS: &str = "stageload_buffer_interval_seconds";
/// After-load actions by outcome: `done`, `superseded`, `gone`, `retried`, `failed` (counter).
pub const AFTER_LOAD_ACTIONS: &str = "stageload_after_load_actions_total";
/// Records through each transform step by `outcome`: `in` (entering it), `out` (leaving it,
/// several per record when it splits), `failed` (rejected there, one `load_errors` row each);
/// labelled `pipeline` and `step` (`transform[0] (jq)`) (counter).
pub const TRANSFORM_RECORDS: &str = "stageload_transform_records_total";
/// Lambda transform invocations by `outcome`: `ok`, `retried` (an attempt that failed and was
/// tried again), `failed` (the last attempt failed: its records are rejected) (counter).
pub const LAMBDA_INVOCATIONS: &str = "stageload_lambda_invocations_total";

/// Every metric the daemon exports (histograms also as `_bucket`, `_sum` and `_count`): what
/// the shipped alert rules and dashboard may refer to.
pub const ALL: &[&str] = &[
    OBJECTS_DISCOVERED,
    RECORDS_DELIVERED,
    RECORDS_REJECTED,
    DELIVERY_ATTEMPTS,
    BATCHES_SETTLED,
    DELIVERY_SECONDS,
    BUDGET_EXHAUSTED,
    HEC_RESENDS,
    DELIVERY_PANICS,
    UNDECIDED_WAITS,
    LIVE_WORKERS,
    BATCHES,
    FRESHNESS_SECONDS,
    PENDING_OBJECTS,
    PENDING_BYTES,
    CONTROL_DATABASE_UP,
    BUFFER_INTERVAL_SECONDS,
    AFTER_LOAD_ACTIONS,
    TRANSFORM_RECORDS,
    LAMBDA_INVOCATIONS,
];

/// Registers the descriptions (shown as `# HELP` lines) with the installed recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(OBJECTS_DISCOVERED, "Objects newly recorded in the ledger");
    describe_counter!(RECORDS_DELIVERED, "Records delivered");
    describe_counter!(
        RECORDS_REJECTED,
        "Records rejected for good (one load_errors row each)"
    );
    describe_counter!(DELIVERY_ATTEMPTS, "Delivery attempts by outcome");
    describe_counter!(BATCHES_SETTLED, "Batches settled by state");
    describe_histogram!(
        DELIVERY_SECONDS,
        Unit::Seconds,
        "Seconds from a batch's first attempt to its settlement"
    );
    describe_counter!(
        AFTER_LOAD_ACTIONS,
        "After-load actions (delete, tag, move) by outcome"
    );
    describe_counter!(
        TRANSFORM_RECORDS,
        "Records through each transform step by outcome (in, out, failed)"
    );
    describe_counter!(
        LAMBDA_INVOCATIONS,
        "Lambda transform invocations by outcome (ok, retried, failed)"
    );
    describe_counter!(BUDGET_EXHAUSTED, "Batches whose retry budget ran out");
    describe_counter!(
        HEC_RESENDS,
        "HEC requests sent again after no acknowledgement"
    );
    describe_counter!(
        DELIVERY_PANICS,
        "Delivery attempts that panicked (each counted as a failed attempt)"
    );
    describe_counter!(
        UNDECIDED_WAITS,
        "Waits of a batch whose delivery cannot be confirmed or denied yet (one backoff step each)"
    );
    describe_gauge!(LIVE_WORKERS, "Live dispatch workers");
    describe_gauge!(BATCHES, "Batches by state");
    describe_gauge!(
        FRESHNESS_SECONDS,
        Unit::Seconds,
        "Age of the oldest object not yet settled"
    );
    describe_gauge!(PENDING_OBJECTS, "Objects discovered and not yet batched");
    describe_gauge!(
        CONTROL_DATABASE_UP,
        "1 when the last scrape read the control database, 0 when it could not"
    );
    describe_gauge!(
        BUFFER_INTERVAL_SECONDS,
        Unit::Seconds,
        "The pipeline's buffer.interval_s"
    );
    describe_gauge!(
        PENDING_BYTES,
        Unit::Bytes,
        "Bytes discovered and not yet batched"
    );
}
