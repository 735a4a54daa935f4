//! Shared by the benchmarks (`ledger_bench`, `path_bench`): settled history in a migrated
//! control database, filled with `INSERT ... SELECT generate_series` so ten million rows take
//! minutes, not hours.

/// Where the settled history says it came from and went.
pub struct History<'a> {
    /// `batches.destination`.
    pub destination: &'a str,
    /// `staged_objects.bucket`.
    pub bucket: &'a str,
    /// Keys are `<key_prefix><10-digit id>.json`.
    pub key_prefix: &'a str,
}

/// Settled history of pipeline `bench`: `size` loaded objects in batches of `per_batch`, about a
/// month old, with their `batch_objects` rows, then VACUUM ANALYZE. In steps of a million rows.
pub async fn fill(
    db: &tokio_postgres::Client,
    size: i64,
    per_batch: i64,
    h: &History<'_>,
) -> anyhow::Result<()> {
    db.batch_execute("SET synchronous_commit = off").await?;
    let batches = (size + per_batch - 1) / per_batch;
    db.execute(
        "INSERT INTO batches (id, pipeline, destination, state, seal_reason, object_count, total_bytes,
                              sealed_at, settled_at, attempts, records_delivered)
         SELECT g, 'bench', $3, 'loaded', 'size', $2, $2 * 1000,
                now() - interval '30 days' + g * interval '1 second', now() - interval '30 days' + g * interval '1 second', 1, $2 * 100
         FROM generate_series(1, $1::bigint) g",
        &[&batches, &(per_batch as i32), &h.destination],
    )
    .await?;
    let step = 1_000_000i64;
    let mut from = 1i64;
    while from <= size {
        let to = (from + step - 1).min(size);
        db.execute(
            "INSERT INTO staged_objects (id, pipeline, bucket, key, etag, size, last_modified, arrival_time,
                                         discovered_at, state, batch_id, settled_at)
             SELECT g, 'bench', $4, $5 || lpad(g::text, 10, '0') || '.json', md5(g::text), 1000,
                    now() - interval '30 days', now() - interval '30 days', now() - interval '30 days',
                    'loaded', (g - 1) / $3 + 1, now() - interval '29 days'
             FROM generate_series($1::bigint, $2::bigint) g",
            &[&from, &to, &per_batch, &h.bucket, &h.key_prefix],
        )
        .await?;
        db.execute(
            "INSERT INTO batch_objects (batch_id, object_id)
             SELECT (g - 1) / $3 + 1, g FROM generate_series($1::bigint, $2::bigint) g",
            &[&from, &to, &per_batch],
        )
        .await?;
        from = to + 1;
    }
    db.batch_execute(
        "SELECT setval('staged_objects_id_seq', (SELECT max(id) FROM staged_objects));
         SELECT setval('batches_id_seq', (SELECT max(id) FROM batches))",
    )
    .await?;
    db.batch_execute("VACUUM ANALYZE staged_objects, batches, batch_objects, pipeline_totals")
        .await?;
    Ok(())
}
