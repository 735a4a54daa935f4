//! Lease owners' liveness, as the control database knows it. Each process registers a row in
//! `workers` and holds a session-level advisory lock on its id on one dedicated connection, outside
//! the pool, for as long as it runs. A lock nobody holds means the session is gone (the process
//! was killed, its host died, its connection broke): another process may then mark the worker
//! gone, and its leases are taken over before they end. Marking takes the lock itself, so it can
//! never happen while the owner holds it, and a reconnecting owner that takes its lock back first
//! keeps its identity.

use super::{q, Control, ControlError};
use std::time::Duration;
use tokio_postgres::Client;

/// The first key of every worker's two-key advisory lock ("STLW"): keeps them apart from other
/// advisory locks in the database (the migration lock is a one-key lock, a separate key space).
pub const WORKER_LOCK_SPACE: i32 = 0x5354_4c57;

/// A worker whose lock is free is marked gone only once its last heartbeat is this old. An owner
/// that has not confirmed its lock for [`OWNER_STOP_AFTER`] stops its attempts, so by the time its
/// batches can be taken over it has stopped, and one that takes its lock back sooner keeps its
/// identity (a PostgreSQL restart, a network blip).
pub const GONE_AFTER: Duration = Duration::from_secs(8);

/// How long an owner delivers without a confirmed heartbeat before it stops its attempts.
pub const OWNER_STOP_AFTER: Duration = Duration::from_secs(5);

/// A dedicated connection holding a worker's lock.
pub struct Session {
    /// The connection (its driver task runs beside it and ends when it breaks).
    pub client: Client,
    /// The worker id whose lock this session holds.
    pub worker: i32,
}

/// What taking a worker's lock back on a new connection found.
pub enum Resumed {
    /// The lock is held again and the worker was not marked gone: the identity carries on.
    Live(Session),
    /// Another process marked the worker gone while its lock was free: a new identity is needed.
    Gone,
    /// The lock is held by another session (the old one, not yet ended on the server, or a
    /// process checking it this instant): try again.
    Busy,
}

impl Control {
    /// Opens a connection outside the pool, for a worker's lock: TCP keepalives on, so a
    /// connection whose peer went away is noticed.
    async fn dedicated(&self) -> Result<Client, ControlError> {
        let mut config = self.pg.clone();
        config
            .connect_timeout(Duration::from_secs(5))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(1))
            .keepalives_retries(3);
        let (client, conn) = config
            .connect(self.tls.clone())
            .await
            .map_err(q("open the worker connection"))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "worker connection ended");
            }
        });
        Ok(client)
    }

    /// Registers a new worker named `name` and takes its lock on a dedicated connection; the row
    /// is visible to others only once the lock is held. Also forgets workers gone for a day
    /// that no lease names.
    pub async fn register_worker(&self, name: &str) -> Result<Session, ControlError> {
        let mut client = self.dedicated().await?;
        let tx = client
            .transaction()
            .await
            .map_err(q("begin worker registration"))?;
        let worker: i32 = tx
            .query_one(
                "INSERT INTO workers (name) VALUES ($1) RETURNING id",
                &[&crate::control::clean_text(name).into_owned()],
            )
            .await
            .map_err(q("register worker"))?
            .get(0);
        // A session-level lock taken in a transaction outlives its commit.
        tx.execute(
            "SELECT pg_advisory_lock($1, $2)",
            &[&WORKER_LOCK_SPACE, &worker],
        )
        .await
        .map_err(q("take the worker lock"))?;
        tx.commit().await.map_err(q("commit worker registration"))?;
        client
            .execute(
                "DELETE FROM workers w WHERE gone_at < now() - interval '1 day'
                 AND NOT EXISTS (SELECT 1 FROM batches b
                                 WHERE b.state = 'delivering' AND b.lease_worker = w.id)",
                &[],
            )
            .await
            .map_err(q("forget old workers"))?;
        Ok(Session { client, worker })
    }

    /// Takes a worker's lock back on a new connection after its connection broke.
    pub async fn resume_worker(&self, worker: i32) -> Result<Resumed, ControlError> {
        let client = self.dedicated().await?;
        let locked: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&WORKER_LOCK_SPACE, &worker],
            )
            .await
            .map_err(q("take the worker lock back"))?
            .get(0);
        if !locked {
            return Ok(Resumed::Busy);
        }
        // Whoever marked it gone did so holding the lock and committed before releasing it.
        let session = Session { client, worker };
        Ok(match session.heartbeat().await? {
            true => Resumed::Live(session),
            false => Resumed::Gone,
        })
    }
}

impl Session {
    /// Confirms the worker is alive: its session answers, so it still holds the lock. False
    /// when the row says gone (only an operator marks a worker gone while it holds the lock).
    pub async fn heartbeat(&self) -> Result<bool, ControlError> {
        let n = self
            .client
            .execute(
                "UPDATE workers SET seen_at = now() WHERE id = $1 AND gone_at IS NULL",
                &[&self.worker],
            )
            .await
            .map_err(q("worker heartbeat"))?;
        Ok(n == 1)
    }

    /// Marks gone every other worker whose lock nobody holds and whose last heartbeat is older
    /// than [`GONE_AFTER`]; returns their (id, name). The lock is tried only for those (CASE
    /// fixes the order), is held until this statement commits, and a live owner's lock is never
    /// free, so a live worker is never marked.
    pub async fn sweep(&self) -> Result<Vec<(i32, String)>, ControlError> {
        let rows = self
            .client
            .query(
                "UPDATE workers SET gone_at = clock_timestamp()
                 WHERE CASE WHEN gone_at IS NULL AND id <> $1
                                 AND seen_at < now() - make_interval(secs => $3)
                            THEN pg_try_advisory_xact_lock($2, id) ELSE false END
                 RETURNING id, name",
                &[&self.worker, &WORKER_LOCK_SPACE, &GONE_AFTER.as_secs_f64()],
            )
            .await
            .map_err(q("mark gone workers"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Marks this worker gone at a clean shutdown (its leases were released already).
    pub async fn retire(&self) -> Result<(), ControlError> {
        self.client
            .execute(
                "UPDATE workers SET gone_at = now() WHERE id = $1",
                &[&self.worker],
            )
            .await
            .map_err(q("retire worker"))?;
        Ok(())
    }

    /// Whether the connection has broken (its lock is then gone with it).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}
