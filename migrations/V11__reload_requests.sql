-- `stageload backfill --reload`: the objects an operator asked by name to load again. The
-- destinations that remember what they hold (Redshift's `stageload_loaded_objects`, the file
-- directory's companion files) would otherwise leave them out as already delivered; a claim
-- hands them the ids of these objects, which they load anyway.
ALTER TABLE staged_objects ADD COLUMN IF NOT EXISTS reload boolean NOT NULL DEFAULT false;
