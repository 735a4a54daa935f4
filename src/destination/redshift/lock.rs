//! What a load transaction `LOCK`s first, so that two loads of one batch (a takeover while the
//! first owner still runs) never both pass the marker check, while pipelines loading different
//! tables of one cluster run their COPYs side by side.
//!
//! Redshift has no advisory locks, and its table locks are the only way to make one
//! transaction wait for another: "The LOCK command obtains a table-level lock in ACCESS
//! EXCLUSIVE mode, waiting if necessary for any conflicting locks to be released"
//! (<https://docs.aws.amazon.com/redshift/latest/dg/r_LOCK.html>). Locking the target table
//! itself would make every reader of it wait for the whole COPY, so each target gets a small
//! table of its own, `stageload_lock_<hash of the target>` beside the marker table, which
//! nothing but the loads ever touches.
//!
//! That lock alone is enough at SNAPSHOT isolation, the default of clusters and workgroups
//! created since 2024, where "concurrent modifications to different rows in the same table
//! would complete successfully" (<https://aws.amazon.com/about-aws/whats-new/2022/05/amazon-redshift-snapshot-isolation-level-support-concurrent-transactions>):
//! loads of different tables insert their own rows into the shared marker tables. At
//! SERIALIZABLE, two transactions that each read and write the marker tables cannot both
//! commit (error 1023), so there the marker table is locked as well, after the target's lock
//! and always in that order, and loads into one cluster run one at a time as before. The
//! level is read from `svv_redshift_databases.database_isolation_level`; when it cannot be
//! read, the marker table is locked too. A user who may not create the lock table keeps the
//! marker table's lock alone.

use super::client::Session;
use super::commit::Tables;
use super::copy::quote_literal;
use super::retry::{Class, RedshiftError};
use std::sync::atomic::{AtomicU8, Ordering};
use tracing::{info, warn};

/// The lock tables of one destination, and what was learnt about the database.
#[derive(Debug)]
pub struct LoadLock {
    /// The marker table, quoted.
    marker: String,
    /// The target's lock table, quoted.
    table: String,
    /// Its name as the catalog spells it.
    table_name: String,
    /// The schema as the catalog spells it.
    schema_name: String,
    /// The target, for the table's comment.
    target: String,
    /// 0: not set up yet; 1: the target's table at SNAPSHOT; 2: both tables; 3: the marker
    /// table alone (the lock table could not be created).
    mode: AtomicU8,
}

/// How the lock was set up, for the log and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only the target's lock table: loads of other tables run alongside.
    PerTarget,
    /// The target's lock table, then the marker table: one load at a time per cluster.
    PerTargetAndMarker,
    /// The marker table alone.
    Marker,
}

impl Mode {
    /// The name the log gives it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::PerTarget => "target_table",
            Mode::PerTargetAndMarker => "target_and_marker_tables",
            Mode::Marker => "marker_table",
        }
    }
}

impl LoadLock {
    /// The lock of loads into `target`, its table beside the marker tables.
    pub fn new(tables: &Tables, target: &str) -> LoadLock {
        let hash = xxhash_rust::xxh3::xxh3_64(target.trim().as_bytes());
        let table_name = format!("stageload_lock_{hash:016x}");
        LoadLock {
            marker: tables.marker.clone(),
            table: format!("{}.\"{table_name}\"", tables.schema),
            table_name,
            schema_name: tables.schema_name.clone(),
            target: target.trim().to_string(),
            mode: AtomicU8::new(0),
        }
    }

    /// The mode chosen by [`LoadLock::set_up`]; the safest one until then.
    pub fn mode(&self) -> Mode {
        match self.mode.load(Ordering::Relaxed) {
            1 => Mode::PerTarget,
            3 => Mode::Marker,
            _ => Mode::PerTargetAndMarker,
        }
    }

    /// The `LOCK` statement a load transaction starts with.
    pub fn statement(&self) -> String {
        match self.mode() {
            Mode::PerTarget => format!("LOCK {}", self.table),
            Mode::PerTargetAndMarker => format!("LOCK {}, {}", self.table, self.marker),
            Mode::Marker => format!("LOCK {}", self.marker),
        }
    }

    fn exists_query(&self) -> String {
        format!(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = {} AND table_name = {}",
            quote_literal(&self.schema_name),
            quote_literal(&self.table_name)
        )
    }

    async fn exists(&self, client: &Session) -> Result<bool, RedshiftError> {
        Ok(client
            .query("find the lock table", &self.exists_query())
            .await?
            .iter()
            .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))))
    }

    /// Creates the lock table when missing and reads the database's isolation level; called
    /// once per destination, before its first load.
    pub async fn set_up(&self, client: &Session, pipeline: &str) -> Result<Mode, RedshiftError> {
        let exists = self.exists(client).await?;
        let mut usable = exists;
        if !exists {
            let ddl = format!(
                "CREATE TABLE IF NOT EXISTS {} (target varchar(512))",
                self.table
            );
            match client.exec("create the lock table", &ddl).await {
                Ok(()) => {
                    usable = true;
                    let comment = format!(
                        "COMMENT ON TABLE {} IS {}",
                        self.table,
                        quote_literal(&format!(
                            "stageload: every load into {} locks this table first",
                            self.target
                        ))
                    );
                    if let Err(e) = client.exec("comment the lock table", &comment).await {
                        info!(pipeline, error = %e, "lock table left without a comment");
                    }
                }
                // Another daemon creating it at the same moment can make this CREATE fail
                // (PostgreSQL's catalog race); a table that is there now is as good.
                Err(e) if e.class() == Class::Permanent => {
                    if self.exists(client).await? {
                        usable = true;
                    } else {
                        warn!(pipeline, table = %self.table, error = %e, "cannot create the lock table: loads lock the marker table and run one at a time on this cluster");
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let mode = if !usable {
            Mode::Marker
        } else if self.snapshot(client, pipeline).await? {
            Mode::PerTarget
        } else {
            Mode::PerTargetAndMarker
        };
        self.mode.store(
            match mode {
                Mode::PerTarget => 1,
                Mode::PerTargetAndMarker => 2,
                Mode::Marker => 3,
            },
            Ordering::Relaxed,
        );
        info!(pipeline, lock = %self.statement(), mode = mode.name(), "load lock chosen");
        Ok(mode)
    }

    /// Whether the database runs at SNAPSHOT isolation.
    async fn snapshot(&self, client: &Session, pipeline: &str) -> Result<bool, RedshiftError> {
        let sql = "SELECT database_isolation_level FROM svv_redshift_databases \
                   WHERE database_name = current_database()";
        match client.query("read the isolation level", sql).await {
            Ok(msgs) => Ok(msgs.iter().any(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    is_snapshot(r.get(0).unwrap_or_default())
                }
                _ => false,
            })),
            Err(e) if e.class() == Class::Permanent => {
                info!(pipeline, error = %e, "isolation level unknown: loads lock the marker table too");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

/// `svv_redshift_databases.database_isolation_level` names SNAPSHOT isolation ("Snapshot
/// Isolation"; the other value is "Serializable").
fn is_snapshot(level: &str) -> bool {
    level.trim().to_ascii_lowercase().starts_with("snapshot")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_lock_table_per_target_and_the_statement_follows_the_mode() {
        let tables = Tables::new("public").unwrap();
        let m = tables.marker.as_str();
        let a = LoadLock::new(&tables, "public.events");
        let b = LoadLock::new(&tables, "public.orders");
        assert_ne!(a.table, b.table);
        assert!(
            a.table.starts_with("\"public\".\"stageload_lock_"),
            "{}",
            a.table
        );
        assert_eq!(a.table, LoadLock::new(&tables, " public.events").table);
        assert!(a.table_name.starts_with("stageload_lock_") && a.table_name.len() == 31);
        // Until set up, both tables, in the one order every load uses.
        assert_eq!(a.statement(), format!("LOCK {}, {m}", a.table));
        a.mode.store(1, Ordering::Relaxed);
        assert_eq!(a.statement(), format!("LOCK {}", a.table));
        a.mode.store(3, Ordering::Relaxed);
        assert_eq!(a.statement(), format!("LOCK {m}"));
    }

    #[test]
    fn reads_the_isolation_level_as_redshift_spells_it() {
        assert!(is_snapshot("Snapshot Isolation"));
        assert!(is_snapshot("snapshot isolation   "));
        assert!(!is_snapshot("Serializable"));
        assert!(!is_snapshot(""));
    }
}
