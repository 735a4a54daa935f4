-- `stageload backfill` runs keyed by what was given: an age (`--since 30d`) is kept as written,
-- since it names a later time on every run, and the times it named when the run began are kept
-- here, so a resumed run covers the same range. Idempotent, like every migration after V2.
ALTER TABLE backfills ADD COLUMN IF NOT EXISTS since_at timestamptz;
ALTER TABLE backfills ADD COLUMN IF NOT EXISTS until_at timestamptz;

-- Before, an age was keyed by the time it resolved to (to the nanosecond), which no later run
-- matched: those rows could never resume and stayed open. They are ended. A time given with a
-- fraction of a second looks the same; ending its row only makes a rerun list from the start,
-- which records nothing twice.
UPDATE backfills SET finished_at = updated_at
WHERE finished_at IS NULL
  AND range_key ~ '\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00';
