//! The Jade database: id registries, manifest and file rows, and its migrations.

mod files;
mod manifests;
mod registry;
mod run_index;

use tokio_postgres::error::SqlState;

use crate::adapters::pg::{self, PgError};
use crate::ports::BackendError;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// A pool of connections to the Jade database. Implements the id registry, the manifest
/// store and the file store.
#[derive(Clone)]
pub struct JadeDatabase {
    pool: pg::Database,
    /// Registry ids already read. An id never changes once assigned, so these stay true and
    /// spare the hot run-list path its lookups.
    run_ids: moka::sync::Cache<crate::ports::registry::RunKey, i64>,
    job_ids: moka::sync::Cache<crate::ports::registry::JobKey, i64>,
    /// Deep-page positions of run lists (see `run_index::Anchors`).
    anchors: moka::sync::Cache<run_index::ListShape, std::sync::Arc<run_index::Anchors>>,
}

/// Key of the session lock that keeps replicas from migrating at the same time.
const MIGRATION_LOCK: i64 = 0x4A41_4445_0001;

impl JadeDatabase {
    /// Over a pool of connections to the Jade database (they open lazily).
    pub fn new(pool: pg::Database) -> Self {
        crate::adapters::metrics::watch_pool("jade_db", pool.pool());
        JadeDatabase {
            pool,
            run_ids: moka::sync::Cache::new(1_000_000),
            job_ids: moka::sync::Cache::new(100_000),
            anchors: moka::sync::Cache::new(1_000),
        }
    }

    /// Runs the migrations: creates the schema on an empty database and adopts one the
    /// first Jade migrated, keeping every row. Safe to run from several replicas at once.
    pub async fn migrate(&self) -> Result<(), BackendError> {
        let mut client = self.client().await?;
        // Waiting for another replica's migration, or migrating a large table, may take
        // longer than a statement may: this session alone is unbounded, and then dropped.
        client.discard();
        let client = client.unbounded();
        client.batch_execute("SET statement_timeout = 0").await.map_err(db)?;
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.map_err(db)?;
        let report = embedded::migrations::runner().set_grouped(true).run_async(client).await;
        let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await;
        let report = report.map_err(|e| BackendError::caused_by("migrating the Jade database", e))?;
        unlocked.map_err(db)?;
        for migration in report.applied_migrations() {
            tracing::info!(migration = %migration, "applied Jade database migration");
        }
        Ok(())
    }

    async fn client(&self) -> Result<pg::Client, BackendError> {
        let started = std::time::Instant::now();
        let client = self.pool.client().await;
        crate::adapters::metrics::pool_wait("jade_db", started);
        client.map_err(db)
    }
}

/// A Jade database failure; unavailable (503) when the database is down or too slow.
fn db(error: impl Into<PgError>) -> BackendError {
    error.into().fault("Jade database")
}

fn is_unique_violation(error: &PgError) -> bool {
    error.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// Ids of the `integer` columns the first Jade created.
fn int4(value: i64) -> Result<i32, BackendError> {
    i32::try_from(value).map_err(|_| BackendError::new(format!("{value} does not fit an integer column")))
}

/// The `timestamp(0)` columns hold UTC without a zone, as Ecto's `:utc_datetime` wrote them.
fn utc(naive: chrono::NaiveDateTime) -> chrono::DateTime<chrono::Utc> {
    naive.and_utc()
}

const NOW: &str = "(now() AT TIME ZONE 'utc')::timestamp(0)";
