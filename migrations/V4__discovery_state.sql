-- What discovery learned about each pipeline's prefix, kept across restarts: the key layout
-- (which time partitions the keys carry), so the first poll after a restart re-lists only the
-- lookback window instead of the whole prefix. Idempotent, like every migration after V2.
CREATE TABLE IF NOT EXISTS discovery_state (
    pipeline    text NOT NULL,
    bucket      text NOT NULL,
    prefix      text NOT NULL,
    key_layout  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, bucket, prefix)
);
