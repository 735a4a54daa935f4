-- When each pipeline first started: with `source.start_at = "now"`, discovery skips objects
-- whose LastModified is older.
CREATE TABLE IF NOT EXISTS pipeline_starts (
    pipeline    text NOT NULL,
    bucket      text NOT NULL,
    prefix      text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, bucket, prefix)
);

-- `stageload backfill` runs: where each one got to, so an interrupted run resumes.
CREATE TABLE IF NOT EXISTS backfills (
    pipeline     text NOT NULL,
    range_key    text NOT NULL,   -- prefix, since and until, as given
    last_key     text,
    objects      bigint NOT NULL DEFAULT 0,
    recorded     bigint NOT NULL DEFAULT 0,
    bytes        bigint NOT NULL DEFAULT 0,
    started_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    PRIMARY KEY (pipeline, range_key)
);
