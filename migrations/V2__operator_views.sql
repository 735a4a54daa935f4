-- Views for operators who prefer psql (README, "Operating it").

-- Recent errors joined to their batch: what failed, where, and what became of the batch.
CREATE VIEW stageload_recent_errors AS
SELECT e.id, e.recorded_at, e.pipeline, e.destination, e.target, e.batch_id, b.state AS batch_state,
       e.filename, e.line_number, e.colname, e.type, e.err_code, e.err_reason, e.raw_line,
       e.raw_field_value, e.query, e.attempts, e.first_attempt_at, e.resolution, e.replay_batch_id
FROM load_errors e
LEFT JOIN batches b ON b.id = e.batch_id
WHERE e.recorded_at > now() - interval '24 hours';

-- Per pipeline: what waits, how old the oldest undelivered object is, batches by state, the last
-- successful delivery and the errors of the last hour.
CREATE VIEW stageload_pipeline_status AS
WITH names AS (
    SELECT pipeline FROM staged_objects UNION SELECT pipeline FROM batches
), objects AS (
    SELECT pipeline,
           count(*) FILTER (WHERE state = 'pending') AS pending_objects,
           COALESCE(sum(size) FILTER (WHERE state = 'pending'), 0)::bigint AS pending_bytes,
           count(*) FILTER (WHERE state = 'batched') AS batched_objects,
           min(discovered_at) FILTER (WHERE state IN ('pending', 'batched')) AS oldest_undelivered
    FROM staged_objects GROUP BY pipeline
), batch_states AS (
    SELECT pipeline,
           count(*) FILTER (WHERE state = 'sealed') AS batches_sealed,
           count(*) FILTER (WHERE state = 'delivering') AS batches_delivering,
           count(*) FILTER (WHERE state = 'loaded') AS batches_loaded,
           count(*) FILTER (WHERE state = 'skipped') AS batches_skipped,
           max(settled_at) FILTER (WHERE state = 'loaded') AS last_loaded_at
    FROM batches GROUP BY pipeline
), errors AS (
    SELECT pipeline, count(*) AS errors_last_hour
    FROM load_errors WHERE recorded_at > now() - interval '1 hour' GROUP BY pipeline
)
SELECT n.pipeline,
       COALESCE(o.pending_objects, 0) AS pending_objects,
       COALESCE(o.pending_bytes, 0) AS pending_bytes,
       COALESCE(o.batched_objects, 0) AS batched_objects,
       o.oldest_undelivered,
       extract(epoch FROM now() - o.oldest_undelivered)::float8 AS freshness_s,
       COALESCE(b.batches_sealed, 0) AS batches_sealed,
       COALESCE(b.batches_delivering, 0) AS batches_delivering,
       COALESCE(b.batches_loaded, 0) AS batches_loaded,
       COALESCE(b.batches_skipped, 0) AS batches_skipped,
       b.last_loaded_at,
       COALESCE(e.errors_last_hour, 0) AS errors_last_hour
FROM names n
LEFT JOIN objects o USING (pipeline)
LEFT JOIN batch_states b USING (pipeline)
LEFT JOIN errors e USING (pipeline);
