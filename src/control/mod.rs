//! The control database (PostgreSQL): connection pool, migrations, and the queries behind each
//! arrow of the flow. The database is the truth; every state change here is one transaction.

pub mod batches;
pub mod ledger;
pub mod load_errors;
pub mod status;

use crate::config::ControlConfig;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

refinery::embed_migrations!("migrations");

/// A lock key for migrations, so replicas starting together apply them once.
const MIGRATION_LOCK: i64 = 0x5354_4147_454c_4f44; // "STAGELOD"

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
}

/// Attaches what was being done to a driver error.
pub(crate) fn q(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> ControlError {
    move |source| ControlError::Query { what, source }
}

/// The control database handle: a connection pool. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    pool: Pool,
}

impl Control {
    /// Builds the pool (connects lazily).
    pub fn new(config: &ControlConfig) -> Result<Control, ControlError> {
        let pg = crate::pgtls::parse_url(config.database_url.expose())
            .map_err(|e| ControlError::Setup(format!("database_url: {e}")))?;
        let manager = Manager::from_config(
            pg,
            crate::pgtls::make_tls(config.ca_file.as_deref()).map_err(ControlError::Setup)?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .build()
            .map_err(|e| ControlError::Setup(e.to_string()))?;
        Ok(Control { pool })
    }

    /// A pooled connection.
    pub async fn conn(&self) -> Result<deadpool_postgres::Object, ControlError> {
        Ok(self.pool.get().await?)
    }

    /// Applies pending migrations under an advisory lock; returns how many were applied.
    pub async fn migrate(&self) -> Result<usize, ControlError> {
        let mut conn = self.conn().await?;
        conn.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(q("take migration lock"))?;
        let client: &mut tokio_postgres::Client = &mut conn;
        let result = migrations::runner().run_async(client).await;
        conn.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(q("release migration lock"))?;
        let report = result.map_err(|e| ControlError::Migration(e.to_string()))?;
        Ok(report.applied_migrations().len())
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
