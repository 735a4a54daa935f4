-- After-load actions (`[pipeline.source] after_load`): what was done to an object once its batch
-- settled loaded. NULL: nothing to do (keep, or a skipped object). pending: due, at
-- after_load_next_at. done: applied. superseded: the key holds a newer object (another ETag), which
-- was left alone. gone: the object was no longer there. failed: given up after the retry budget.
-- Re-applying this file is harmless (the schema test does).
ALTER TABLE staged_objects ADD COLUMN IF NOT EXISTS after_load_state text
    CHECK (after_load_state IN ('pending', 'done', 'superseded', 'gone', 'failed'));
ALTER TABLE staged_objects ADD COLUMN IF NOT EXISTS after_load_action text;
ALTER TABLE staged_objects ADD COLUMN IF NOT EXISTS after_load_key text;
ALTER TABLE staged_objects ADD COLUMN IF NOT EXISTS after_load_attempts integer NOT NULL DEFAULT 0;
ALTER TABLE staged_objects ADD COLUMN IF NOT EXISTS after_load_error text;
ALTER TABLE staged_objects ADD COLUMN IF NOT EXISTS after_load_next_at timestamptz;
ALTER TABLE staged_objects ADD COLUMN IF NOT EXISTS after_load_at timestamptz;
CREATE INDEX IF NOT EXISTS staged_objects_after_load
    ON staged_objects (pipeline, after_load_next_at) WHERE after_load_state = 'pending';
CREATE INDEX IF NOT EXISTS staged_objects_after_load_failed
    ON staged_objects (pipeline) WHERE after_load_state = 'failed';
