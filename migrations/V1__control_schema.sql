-- The control database: the ledger of staged objects, batches, and load_errors.
-- States: objects pending -> batched -> loaded | skipped; batches sealed -> delivering -> loaded | skipped.

CREATE TABLE discovery_cursors (
    pipeline    text NOT NULL,
    bucket      text NOT NULL,
    prefix      text NOT NULL,
    last_key    text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, bucket, prefix)
);

CREATE TABLE staged_objects (
    id             bigserial PRIMARY KEY,
    pipeline       text NOT NULL,
    bucket         text NOT NULL,
    key            text NOT NULL,
    etag           text NOT NULL,
    size           bigint NOT NULL,
    last_modified  timestamptz,
    arrival_time   timestamptz NOT NULL,
    discovered_at  timestamptz NOT NULL DEFAULT now(),
    state          text NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'batched', 'loaded', 'skipped')),
    batch_id       bigint,
    settled_at     timestamptz,
    UNIQUE (pipeline, bucket, key, etag)
);
CREATE INDEX staged_objects_pending ON staged_objects (pipeline, arrival_time, id) WHERE state = 'pending';
CREATE INDEX staged_objects_batch ON staged_objects (batch_id);

CREATE TABLE batches (
    id                 bigserial PRIMARY KEY,
    pipeline           text NOT NULL,
    destination        text NOT NULL,
    state              text NOT NULL DEFAULT 'sealed'
                       CHECK (state IN ('sealed', 'delivering', 'loaded', 'skipped')),
    seal_reason        text NOT NULL,
    object_count       integer NOT NULL,
    total_bytes        bigint NOT NULL,
    sealed_at          timestamptz NOT NULL DEFAULT now(),
    lease_owner        text,
    lease_expires_at   timestamptz,
    attempts           integer NOT NULL DEFAULT 0,
    first_attempt_at   timestamptz,
    last_attempt_at    timestamptz,
    last_error         text,
    records_delivered  bigint NOT NULL DEFAULT 0,
    records_rejected   bigint NOT NULL DEFAULT 0,
    settled_at         timestamptz,
    replay_of          bigint REFERENCES batches (id)
);
CREATE INDEX batches_open ON batches (pipeline, id) WHERE state IN ('sealed', 'delivering');

-- Every object a batch ever held, so a replayed batch keeps its history.
CREATE TABLE batch_objects (
    batch_id   bigint NOT NULL REFERENCES batches (id),
    object_id  bigint NOT NULL REFERENCES staged_objects (id),
    PRIMARY KEY (batch_id, object_id)
);

-- STL_LOAD_ERRORS' column names (char(n) widened to text), plus the loader's own columns.
CREATE TABLE load_errors (
    id                bigserial PRIMARY KEY,
    pipeline          text NOT NULL,
    destination       text NOT NULL,
    target            text NOT NULL DEFAULT '',
    batch_id          bigint REFERENCES batches (id),
    object_id         bigint REFERENCES staged_objects (id),
    starttime         timestamptz NOT NULL DEFAULT now(),
    query             bigint NOT NULL DEFAULT 0,
    filename          text NOT NULL DEFAULT '',
    line_number       bigint NOT NULL DEFAULT 0,
    colname           text NOT NULL DEFAULT '',
    type              text NOT NULL DEFAULT '',
    col_length        text NOT NULL DEFAULT '',
    position          integer NOT NULL DEFAULT 0,
    raw_line          text NOT NULL DEFAULT '',
    raw_field_value   text NOT NULL DEFAULT '',
    err_code          integer NOT NULL,
    err_reason        text NOT NULL,
    is_partial        integer NOT NULL DEFAULT 0,
    start_offset      bigint NOT NULL DEFAULT 0,
    attempts          integer NOT NULL DEFAULT 0,
    first_attempt_at  timestamptz,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    resolution        text CHECK (resolution IN ('replayed', 'ignored')),
    replay_batch_id   bigint REFERENCES batches (id)
);
-- A retried or taken-over batch that meets the same bad record again records it once.
CREATE UNIQUE INDEX load_errors_once ON load_errors (batch_id, filename, line_number, err_code, colname);
CREATE INDEX load_errors_recent ON load_errors (pipeline, recorded_at DESC);
