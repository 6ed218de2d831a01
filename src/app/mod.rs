//! The use cases: one service over the ports, and their settings.

mod artifacts;
mod catalog;
mod control;
mod files;
mod jobs;
mod manifests;
mod operations;
mod runs;
mod spool;
mod undo;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::Error;
use crate::domain::access::{self, AccessDenied, Identity, RequestScope};
use crate::domain::catalog::Environment;
use crate::domain::job_run::ApiCompat;
use crate::ports::BackendError;
use crate::ports::airflow::{AirflowError, AirflowRuns};
use crate::ports::airflow_api::AirflowControl;
use crate::ports::auth::{TokenVerifier, VerifyError};
use crate::ports::catalog::Catalog;
use crate::ports::clock::Clock;
use crate::ports::files::FileStore;
use crate::ports::manifests::ManifestStore;
use crate::ports::registry::IdRegistry;
use crate::ports::run_index::RunIndex;
use crate::ports::storage::BlobStorage;

pub use artifacts::{ArtifactUpload, FoundArtifact};
pub use files::{FileBody, FileUpload};
pub use jobs::JobFilter;
pub use manifests::{FoundManifest, ManifestUpload};
pub use operations::{Part, Readiness};
pub use runs::{Embed, RunFilter};
pub use spool::{SpoolWriter, Spooled};

/// The adapters the service works through.
#[derive(Clone)]
pub struct Ports {
    pub catalog: Arc<dyn Catalog>,
    /// `None` when Airflow is switched off: job and run lists are empty.
    pub airflow: Option<Arc<dyn AirflowRuns>>,
    /// Each environment's Airflow REST API, to run jobs; `None` when Airflow is switched off
    /// or the build has no API client: running jobs answers 503.
    pub control: Option<Arc<dyn AirflowControl>>,
    pub registry: Arc<dyn IdRegistry>,
    pub run_index: Arc<dyn RunIndex>,
    pub manifests: Arc<dyn ManifestStore>,
    pub files: Arc<dyn FileStore>,
    pub storage: Arc<dyn BlobStorage>,
    pub verifier: Arc<dyn TokenVerifier>,
    pub clock: Arc<dyn Clock>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub compat: ApiCompat,
    /// Bodies larger than this answer 413.
    pub max_upload_bytes: u64,
    /// Where uploads and bodies being checked are spooled (the system temp dir if `None`).
    pub spool_dir: Option<PathBuf>,
    /// How long a run list may answer from an environment's run index without asking its
    /// Airflow database what changed (`RUN_INDEX_REFRESH_MS`).
    pub run_index_refresh: Duration,
    /// A run's page in the Airflow UI, with `{slug}`, `{dag_id}` and `{run_id}`
    /// (`AIRFLOW_UI_URL_TEMPLATE`), rendered as dbt Cloud's `href`.
    pub airflow_ui_url_template: Option<String>,
    /// How many uploads store bodies at once (`MAX_CONCURRENT_UPLOADS`); more wait.
    pub max_concurrent_uploads: usize,
    /// How long shutdown may take in all (`SHUTDOWN_GRACE_SECONDS`): requests in flight get
    /// it less a reserve for undoing the uploads cut off.
    pub shutdown_grace: Duration,
    /// A client slower than this to send its request headers is disconnected
    /// (`HEADER_READ_TIMEOUT_SECONDS`).
    pub header_read_timeout: Duration,
    /// A keep-alive connection idle this long is closed (`IDLE_TIMEOUT_SECONDS`).
    pub idle_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            compat: ApiCompat::Jade,
            max_upload_bytes: 1 << 30,
            spool_dir: None,
            run_index_refresh: Duration::from_secs(1),
            airflow_ui_url_template: None,
            max_concurrent_uploads: 8,
            shutdown_grace: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Jade's use cases. Cheap to clone; every clone shares the same adapters.
#[derive(Clone)]
pub struct Jade {
    ports: Ports,
    settings: Arc<Settings>,
    run_index_freshness: Arc<runs::IndexFreshness>,
    /// Permits to store an upload's bodies (`max_concurrent_uploads`).
    uploads: Arc<tokio::sync::Semaphore>,
    /// The undo tasks of uploads that did not finish; they outlive their requests, and
    /// shutdown waits for them.
    tasks: tokio_util::task::TaskTracker,
    /// Cancelled when shutdown begins: readiness answers 503 from then on.
    shutdown: tokio_util::sync::CancellationToken,
}

impl Jade {
    pub fn new(ports: Ports, settings: Settings) -> Self {
        let uploads = Arc::new(tokio::sync::Semaphore::new(settings.max_concurrent_uploads.max(1)));
        Jade {
            ports,
            settings: Arc::new(settings),
            run_index_freshness: Arc::default(),
            uploads,
            tasks: tokio_util::task::TaskTracker::new(),
            shutdown: tokio_util::sync::CancellationToken::new(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn now(&self) -> crate::domain::catalog::Timestamp {
        self.ports.clock.now()
    }

    /// Who the `Authorization` header's token belongs to.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Identity, Error> {
        let token = access::token_from_header(authorization).map_err(Error::Denied)?;
        match self.ports.verifier.verify(token).await {
            Ok(identity) => Ok(identity),
            Err(VerifyError::Invalid) => Err(Error::Denied(AccessDenied::InvalidToken)),
            Err(VerifyError::Unavailable(reason)) => {
                tracing::error!(%reason, "token verification unavailable");
                Err(Error::Unavailable("Authentication service unavailable. Please retry.".into()))
            }
        }
    }

    /// Applies the path rules of contract §2 to a request's scope parameters.
    pub fn authorize(identity: &Identity, scope: RequestScope<'_>) -> Result<(), Error> {
        access::authorize(identity, scope).map_err(Error::Denied)
    }

    fn airflow(&self) -> Option<&Arc<dyn AirflowRuns>> {
        self.ports.airflow.as_ref()
    }

    /// The DAG run `run_id` of `dag_id` in the environment (404 when Airflow has none) and
    /// its job-run id, registered if new: `(dag_run.id, job-run id)`.
    async fn registered_dag_run(
        &self,
        environment: &Environment,
        dag_id: &str,
        run_id: &str,
    ) -> Result<(i64, i64), Error> {
        let dag_run = self
            .airflow_for(environment)?
            .dag_run_by_run_id(environment, dag_id, run_id)
            .await
            .map_err(|e| lookup_failed(environment, e))?
            .ok_or_else(Error::not_found)?;
        let key = crate::ports::registry::RunKey { environment_id: environment.id, dag_run_id: dag_run.id };
        let ids = self.ports.registry.run_ids(&[key]).await.map_err(backend)?;
        Ok((dag_run.id, *ids.get(&key).ok_or_else(|| unregistered("job run", key))?))
    }

    /// The environment's Airflow database for a direct lookup: a 404 naming the environment
    /// when it has none or cannot be reached.
    fn airflow_for(&self, environment: &Environment) -> Result<&Arc<dyn AirflowRuns>, Error> {
        self.airflow().ok_or_else(|| airflow_not_found(environment))
    }
}

fn airflow_not_found(environment: &Environment) -> Error {
    Error::not_found_with(format!("Airflow Repo for Environment {} not found.", environment.slug))
}

/// Maps an Airflow failure in a direct lookup to the contract's 404.
fn lookup_failed(environment: &Environment, error: AirflowError) -> Error {
    if let AirflowError::Unreachable { cause, .. } = &error {
        tracing::warn!(environment = %environment.slug, error = %crate::domain::error::error_chain(cause), "Airflow database unreachable");
    }
    airflow_not_found(environment)
}

/// Notes an environment a list leaves out: a warning when its database failed, nothing
/// worth one when it simply has no Airflow.
fn left_out(environment: &Environment, error: &AirflowError, list: &'static str) {
    let reason = match error {
        AirflowError::Unreachable { .. } => "unreachable",
        AirflowError::NotConfigured { .. } => "not_configured",
    };
    metrics::counter!("jade_airflow_environments_left_out_total", "list" => list, "reason" => reason).increment(1);
    match error {
        AirflowError::Unreachable { cause, .. } => {
            tracing::warn!(environment = %environment.slug, error = %crate::domain::error::error_chain(cause), list, "Airflow database unreachable; environment left out");
        }
        AirflowError::NotConfigured { .. } => {
            tracing::debug!(environment = %environment.slug, list, "no Airflow; environment left out");
        }
    }
}

/// A registry that left a key without an id broke its port's promise: a 500, not a panic.
fn unregistered(what: &str, key: impl std::fmt::Debug) -> Error {
    Error::Internal(crate::domain::Fault::new(format!("the registry gave no {what} id for {key:?}")))
}

/// A port's backend failing: 503 with the contract's message when it is unavailable (down,
/// unreachable, timed out: it may come back by itself), else 500. Logged either way.
fn backend(error: BackendError) -> Error {
    if error.is_unavailable() {
        tracing::warn!(error = %crate::domain::error::error_chain(&error), "a database is unavailable");
        Error::Unavailable(crate::domain::error::SERVICE_UNAVAILABLE.into())
    } else {
        Error::Internal(error)
    }
}

/// The contract's messages for object storage failing.
const STORAGE_READ_FAILED: &str = "The request to the storage bucket failed.";
const STORAGE_WRITE_FAILED: &str = "File upload failed. Please check the error in the logs.";

/// Runs blocking work (parsing a spooled body) off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(work).await.map_err(|e| Error::internal("a blocking task", e))
}

#[cfg(test)]
mod tests;
