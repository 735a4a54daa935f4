-- Retention (`[control] retention_days`) and status queries that read only open states.
-- Idempotent, like every migration after V2. On a large existing ledger the index builds below
-- take a while once (plain CREATE INDEX: writes wait while it runs).

-- Status: objects not yet settled, per pipeline, without touching settled history.
CREATE INDEX IF NOT EXISTS staged_objects_open ON staged_objects (pipeline, state)
    INCLUDE (size, discovered_at) WHERE state IN ('pending', 'batched');
-- Status: batches not yet settled, per pipeline and state.
CREATE INDEX IF NOT EXISTS batches_open_state ON batches (pipeline, state)
    WHERE state IN ('sealed', 'delivering');
-- The status page's throughput chart and `stageload replay --since` (pipeline, settled since).
CREATE INDEX IF NOT EXISTS batches_settled ON batches (pipeline, settled_at);

-- Retention's walks over settled history, oldest first.
CREATE INDEX IF NOT EXISTS batches_retention ON batches (settled_at)
    WHERE state IN ('loaded', 'skipped');
CREATE INDEX IF NOT EXISTS staged_objects_retention ON staged_objects (settled_at)
    WHERE state IN ('loaded', 'skipped');
-- Foreign keys pointing at rows retention deletes: without these, every deleted batch or object
-- would scan the referencing table to check nothing points at it.
CREATE INDEX IF NOT EXISTS batch_objects_object ON batch_objects (object_id);
CREATE INDEX IF NOT EXISTS batches_replay_of ON batches (replay_of) WHERE replay_of IS NOT NULL;
CREATE INDEX IF NOT EXISTS load_errors_object ON load_errors (object_id) WHERE object_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS load_errors_replay_batch ON load_errors (replay_batch_id)
    WHERE replay_batch_id IS NOT NULL;

-- When an error row was resolved (replayed or ignored): retention keeps a resolved row for the
-- retention period after this. Set by a trigger, so every writer of `resolution` sets it; rows
-- resolved before this migration count as resolved now.
ALTER TABLE load_errors ADD COLUMN IF NOT EXISTS resolved_at timestamptz;
UPDATE load_errors SET resolved_at = now() WHERE resolution IS NOT NULL AND resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS load_errors_resolved ON load_errors (resolved_at)
    WHERE resolution IS NOT NULL;

CREATE OR REPLACE FUNCTION stageload_load_errors_resolved_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.resolution IS NULL THEN
        NEW.resolved_at := NULL;
    ELSIF NEW.resolved_at IS NULL THEN
        NEW.resolved_at := now();
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS load_errors_resolved_at ON load_errors;
CREATE TRIGGER load_errors_resolved_at BEFORE INSERT OR UPDATE OF resolution, resolved_at
    ON load_errors FOR EACH ROW EXECUTE FUNCTION stageload_load_errors_resolved_at();

-- Per pipeline, what settled history used to be counted from: batches ever settled loaded or
-- skipped and the last load. Kept by a trigger on `batches`, so retention deleting old batches
-- does not lower them and a scrape reads one row instead of counting history.
CREATE TABLE IF NOT EXISTS pipeline_totals (
    pipeline         text PRIMARY KEY,
    batches_loaded   bigint NOT NULL DEFAULT 0,
    batches_skipped  bigint NOT NULL DEFAULT 0,
    last_loaded_at   timestamptz
);
INSERT INTO pipeline_totals (pipeline, batches_loaded, batches_skipped, last_loaded_at)
SELECT pipeline, count(*) FILTER (WHERE state = 'loaded'), count(*) FILTER (WHERE state = 'skipped'),
       max(settled_at) FILTER (WHERE state = 'loaded')
FROM batches GROUP BY pipeline
ON CONFLICT (pipeline) DO NOTHING;

CREATE OR REPLACE FUNCTION stageload_pipeline_totals() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IN ('loaded', 'skipped')
       AND (TG_OP = 'INSERT' OR OLD.state IS DISTINCT FROM NEW.state) THEN
        INSERT INTO pipeline_totals AS t (pipeline, batches_loaded, batches_skipped, last_loaded_at)
        VALUES (NEW.pipeline, (NEW.state = 'loaded')::int, (NEW.state = 'skipped')::int,
                CASE WHEN NEW.state = 'loaded' THEN COALESCE(NEW.settled_at, now()) END)
        ON CONFLICT (pipeline) DO UPDATE SET
            batches_loaded = t.batches_loaded + EXCLUDED.batches_loaded,
            batches_skipped = t.batches_skipped + EXCLUDED.batches_skipped,
            last_loaded_at = GREATEST(t.last_loaded_at, EXCLUDED.last_loaded_at);
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS batches_pipeline_totals ON batches;
CREATE TRIGGER batches_pipeline_totals AFTER INSERT OR UPDATE OF state ON batches
    FOR EACH ROW EXECUTE FUNCTION stageload_pipeline_totals();

-- Tombstones: what retention removed from `staged_objects` while discovery could still list it
-- again (README, "Retention"). Discovery records nothing that has one, so an object whose ledger
-- row is gone is not loaded a second time. A tombstone goes once its key is out of discovery's
-- reach: behind the cursor and before the lookback window of a prefix whose keys carry time.
CREATE TABLE IF NOT EXISTS retired_objects (
    pipeline    text NOT NULL,
    bucket      text NOT NULL,
    key         text NOT NULL,
    etag        text NOT NULL,
    retired_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, bucket, key, etag)
);
CREATE INDEX IF NOT EXISTS retired_objects_age ON retired_objects (pipeline, bucket, retired_at);

-- The same columns as V2's view, read from open states and the totals: no scan of history.
CREATE OR REPLACE VIEW stageload_pipeline_status AS
WITH names AS (
    SELECT pipeline FROM pipeline_totals
    UNION SELECT pipeline FROM staged_objects WHERE state IN ('pending', 'batched')
    UNION SELECT pipeline FROM batches WHERE state IN ('sealed', 'delivering')
)
SELECT n.pipeline,
       COALESCE(o.pending_objects, 0) AS pending_objects,
       COALESCE(o.pending_bytes, 0) AS pending_bytes,
       COALESCE(o.batched_objects, 0) AS batched_objects,
       o.oldest_undelivered,
       extract(epoch FROM now() - o.oldest_undelivered)::float8 AS freshness_s,
       COALESCE(b.batches_sealed, 0) AS batches_sealed,
       COALESCE(b.batches_delivering, 0) AS batches_delivering,
       COALESCE(t.batches_loaded, 0) AS batches_loaded,
       COALESCE(t.batches_skipped, 0) AS batches_skipped,
       t.last_loaded_at,
       COALESCE(e.errors_last_hour, 0) AS errors_last_hour
FROM names n
LEFT JOIN pipeline_totals t ON t.pipeline = n.pipeline
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE s.state = 'pending') AS pending_objects,
           COALESCE(sum(s.size) FILTER (WHERE s.state = 'pending'), 0)::bigint AS pending_bytes,
           count(*) FILTER (WHERE s.state = 'batched') AS batched_objects,
           min(s.discovered_at) AS oldest_undelivered
    FROM staged_objects s
    WHERE s.pipeline = n.pipeline AND s.state IN ('pending', 'batched')
) o ON true
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE x.state = 'sealed') AS batches_sealed,
           count(*) FILTER (WHERE x.state = 'delivering') AS batches_delivering
    FROM batches x
    WHERE x.pipeline = n.pipeline AND x.state IN ('sealed', 'delivering')
) b ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS errors_last_hour
    FROM load_errors y
    WHERE y.pipeline = n.pipeline AND y.recorded_at > now() - interval '1 hour'
) e ON true;
