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
        PENDING_BYTES,
        Unit::Bytes,
        "Bytes discovered and not yet batched"
    );
}
