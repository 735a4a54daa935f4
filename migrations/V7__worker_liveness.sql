-- Lease owners' liveness. Each daemon process registers one row here and holds a session-level
-- advisory lock on (stageload's worker namespace, its id) on one dedicated connection for as long
-- as it runs, confirming it every second (`seen_at`). A process whose session is gone (kill -9,
-- a dead host) is marked `gone_at` by any other process, which must take the lock itself to do
-- so: a live owner holds it, so it is never marked. A batch whose lease names a gone worker is
-- taken over at once, before its lease ends; the lease token still fences every write.
CREATE TABLE IF NOT EXISTS workers (
    -- int4: the second key of the two-key advisory lock. Never reused (no CYCLE).
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- `[daemon] worker_id`, or host name and pid: a display name, not unique.
    name        text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    seen_at     timestamptz NOT NULL DEFAULT now(),
    gone_at     timestamptz
);
CREATE INDEX IF NOT EXISTS workers_alive ON workers (id) WHERE gone_at IS NULL;

-- The worker (process) whose lease it is; `lease_owner` keeps the display name and dispatch slot.
ALTER TABLE batches ADD COLUMN IF NOT EXISTS lease_worker integer;
CREATE INDEX IF NOT EXISTS batches_lease_worker ON batches (lease_worker)
    WHERE state = 'delivering';
