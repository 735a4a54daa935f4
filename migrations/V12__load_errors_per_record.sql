-- One load_errors row per record, not per line: json_concat, json_array and CloudTrail objects
-- hold many records on one line, and a write-off must keep a row for each of them.
-- record_ordinal is the record's 0-based position in its object; NULL for rows about a whole
-- object, or a line as the destination reported it (Redshift's STL_LOAD_ERRORS has no such column).
ALTER TABLE load_errors ADD COLUMN IF NOT EXISTS record_ordinal bigint;

-- COALESCE rather than NULLS NOT DISTINCT so the index works on PostgreSQL before 15.
DROP INDEX IF EXISTS load_errors_once;
CREATE UNIQUE INDEX load_errors_once
    ON load_errors (batch_id, filename, line_number, err_code, colname, (COALESCE(record_ordinal, -1)));

CREATE OR REPLACE VIEW stageload_recent_errors AS
SELECT e.id, e.recorded_at, e.pipeline, e.destination, e.target, e.batch_id, b.state AS batch_state,
       e.filename, e.line_number, e.colname, e.type, e.err_code, e.err_reason, e.raw_line,
       e.raw_field_value, e.query, e.attempts, e.first_attempt_at, e.resolution, e.replay_batch_id,
       e.record_ordinal
FROM load_errors e
LEFT JOIN batches b ON b.id = e.batch_id
WHERE e.recorded_at > now() - interval '24 hours';
