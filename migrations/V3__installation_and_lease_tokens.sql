-- One id for this control database, generated once. Redshift's commit markers carry it beside
-- the pipeline and batch id, so a recreated control database (whose batch ids start again at 1)
-- never mistakes the markers of the one before for its own.
CREATE TABLE installation (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at  timestamptz NOT NULL DEFAULT now(),
    singleton   boolean NOT NULL DEFAULT true UNIQUE CHECK (singleton)
);
INSERT INTO installation DEFAULT VALUES;

-- Fencing: every claim draws a fresh token, and renewing, recording attempts and settling must
-- present it, so a worker that was paused past its lease (or a second process with the same
-- worker_id) can no longer touch a batch someone else has taken over.
ALTER TABLE batches ADD COLUMN lease_token uuid;
