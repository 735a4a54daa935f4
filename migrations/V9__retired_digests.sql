-- What retention removed from `staged_objects`, kept for good as one 16-byte digest per object
-- (the first 128 bits of SHA-256 over pipeline, bucket, key and etag). V5's tombstones were
-- pruned once live listing could no longer reach a key, but `stageload backfill`, a reload that
-- widens the prefix and a longer `lookback_s` still could, and loaded that history a second
-- time. Every path that records objects consults this table; only `stageload backfill --reload`
-- takes digests out. Idempotent, like every migration after V2.

-- Each part is preceded by its length, so no two (pipeline, bucket, key, etag) share an input.
-- sha256() rather than md5(): md5() is refused by PostgreSQL built against a FIPS-mode OpenSSL.
CREATE OR REPLACE FUNCTION stageload_object_digest(pipeline text, bucket text, key text, etag text)
RETURNS uuid LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT encode(substring(sha256(convert_to(
        length(pipeline) || ':' || pipeline || length(bucket) || ':' || bucket
        || length(key) || ':' || key || etag, 'UTF8')) FROM 1 FOR 16), 'hex')::uuid
$$;

CREATE TABLE IF NOT EXISTS retired_digests (
    digest  uuid PRIMARY KEY
);

-- V5's tombstones become digests, and the table goes: nothing prunes the memory any more.
DO $$
BEGIN
    IF to_regclass('retired_objects') IS NOT NULL THEN
        INSERT INTO retired_digests (digest)
        SELECT stageload_object_digest(pipeline, bucket, key, etag) FROM retired_objects
        ON CONFLICT DO NOTHING;
        DROP TABLE retired_objects;
    END IF;
END $$;
