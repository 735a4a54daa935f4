//! The control database (PostgreSQL): connection pool, migrations, and the queries behind each
//! arrow of the flow. The database is the truth; every state change here is one transaction.

pub mod after_load;
pub mod batches;
pub mod ledger;
pub mod load_errors;
pub mod retention;
pub mod status;
pub mod workers;

use crate::config::ControlConfig;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

refinery::embed_migrations!("migrations");

/// A lock key for migrations, so replicas starting together apply them once.
const MIGRATION_LOCK: i64 = 0x5354_4147_454c_4f44; // "STAGELOD"

/// The highest migration version embedded in this binary.
pub fn binary_schema_version() -> u32 {
    migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// The migration versions recorded in `refinery_schema_history`; empty when the table does not
/// exist yet. Reads only.
async fn applied_versions(conn: &tokio_postgres::Client) -> Result<Vec<u32>, ControlError> {
    let exists: bool = conn
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await
        .map_err(q("look for the schema history"))?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = conn
        .query("SELECT version FROM refinery_schema_history", &[])
        .await
        .map_err(q("read the schema history"))?;
    Ok(rows
        .iter()
        .map(|r| r.get::<_, i32>(0).max(0) as u32)
        .collect())
}

/// A control-database failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A query failed.
    #[error("control database: {what}: {source}")]
    Query {
        /// What was being done.
        what: &'static str,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// No connection could be had from the pool.
    #[error("control database: no connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The URL or pool settings are wrong.
    #[error("control database: {0}")]
    Setup(String),
    /// A migration failed.
    #[error("control database: migration failed: {0}")]
    Migration(String),
    /// The claim's lease token no longer holds the batch: another worker took it over, or it is
    /// settled. The write was refused.
    #[error("control database: batch {batch}: the lease was taken over, write refused")]
    LeaseLost {
        /// The batch.
        batch: i64,
    },
    /// The schema is older than this binary (`stageload migrate` brings it up to date).
    #[error("control database schema is at version {database}, this stageload needs version {binary}: run `stageload migrate` with this binary (or restart a daemon of this version, which migrates on start)")]
    SchemaOlder {
        /// The highest version applied to the database (0: none).
        database: u32,
        /// The highest version embedded in this binary.
        binary: u32,
    },
    /// The schema is newer than this binary: a newer stageload has migrated the database.
    #[error("control database schema is at version {database}, newer than this stageload's version {binary}: use the newer stageload binary (a newer version has migrated this database)")]
    SchemaNewer {
        /// The highest version applied to the database.
        database: u32,
        /// The highest version embedded in this binary.
        binary: u32,
    },
}

impl ControlError {
    /// A schema older or newer than this binary: waiting does not change it.
    pub fn is_schema_mismatch(&self) -> bool {
        matches!(
            self,
            ControlError::SchemaOlder { .. } | ControlError::SchemaNewer { .. }
        )
    }

    /// Whether trying again may succeed: no connection, a connection lost, the server shutting
    /// down or out of resources, a serialization failure. A value the database refuses (an
    /// encoding, a constraint) fails the same way every time.
    pub fn is_transient(&self) -> bool {
        match self {
            ControlError::Pool(_) => true,
            ControlError::Query { source, .. } => match source.code() {
                None => true,
                Some(code) => {
                    let c = code.code();
                    c.starts_with("08")
                        || c.starts_with("53")
                        || c.starts_with("57P")
                        || c == "40001"
                        || c == "40P01"
                        || c == "55P03"
                }
            },
            _ => false,
        }
    }
}

/// Attaches what was being done to a driver error.
pub(crate) fn q(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> ControlError {
    move |source| ControlError::Query { what, source }
}

/// Text as PostgreSQL can store it: NUL, which a `text` value cannot hold, becomes U+FFFD.
/// (A Rust `String` is already valid UTF-8.)
pub fn clean_text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// The control database handle: a connection pool. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    pool: Pool,
    /// For connections outside the pool (a worker's lock, see [`workers`]).
    pg: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl Control {
    /// Builds the pool (connects lazily).
    pub fn new(config: &ControlConfig) -> Result<Control, ControlError> {
        let pg = crate::pgtls::parse_url(config.database_url.expose())
            .map_err(|e| ControlError::Setup(format!("database_url: {e}")))?;
        let tls = crate::pgtls::make_tls(config.ca_file.as_deref()).map_err(ControlError::Setup)?;
        let manager = Manager::from_config(
            pg.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .build()
            .map_err(|e| ControlError::Setup(e.to_string()))?;
        Ok(Control { pool, pg, tls })
    }

    /// A pooled connection.
    pub async fn conn(&self) -> Result<deadpool_postgres::Object, ControlError> {
        Ok(self.pool.get().await?)
    }

    /// Applies pending migrations under an advisory lock; returns how many were applied. A
    /// database already migrated by a newer binary is refused with [`ControlError::SchemaNewer`].
    pub async fn migrate(&self) -> Result<usize, ControlError> {
        let mut conn = self.conn().await?;
        conn.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(q("take migration lock"))?;
        let result = match applied_versions(&conn).await {
            Ok(applied) => match applied.iter().max() {
                Some(&database) if database > binary_schema_version() => {
                    Err(ControlError::SchemaNewer {
                        database,
                        binary: binary_schema_version(),
                    })
                }
                _ => Ok(()),
            },
            Err(e) => Err(e),
        };
        let result = match result {
            Ok(()) => {
                let client: &mut tokio_postgres::Client = &mut conn;
                migrations::runner()
                    .run_async(client)
                    .await
                    .map_err(|e| ControlError::Migration(e.to_string()))
            }
            Err(e) => Err(e),
        };
        conn.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(q("release migration lock"))?;
        Ok(result?.applied_migrations().len())
    }

    /// Checks, without changing anything, that the schema is exactly the one this binary's
    /// migrations end at: for operator commands, which must never migrate a database that
    /// running daemons use.
    pub async fn check_schema(&self) -> Result<(), ControlError> {
        let conn = self.conn().await?;
        let applied = applied_versions(&conn).await?;
        let binary = binary_schema_version();
        let database = applied.iter().copied().max().unwrap_or(0);
        if database > binary {
            return Err(ControlError::SchemaNewer { database, binary });
        }
        let missing = migrations::runner()
            .get_migrations()
            .iter()
            .any(|m| !applied.contains(&m.version()));
        if missing {
            return Err(ControlError::SchemaOlder { database, binary });
        }
        Ok(())
    }

    /// This control database's installation id, generated once by migration V3. Redshift's
    /// commit markers carry it, so a recreated control database never matches old markers.
    pub async fn installation_id(&self) -> Result<String, ControlError> {
        let row = self
            .conn()
            .await?
            .query_one("SELECT id::text FROM installation", &[])
            .await
            .map_err(q("read installation id"))?;
        Ok(row.get(0))
    }

    /// Checks the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), ControlError> {
        self.conn()
            .await?
            .simple_query("SELECT 1")
            .await
            .map_err(q("ping"))?;
        Ok(())
    }
}
