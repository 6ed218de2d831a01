//! Each environment's Airflow REST API: running, cancelling and retrying DAG runs (contract
//! §6b). Jade never writes to an Airflow database; it asks Airflow.

use async_trait::async_trait;

use crate::domain::Fault;
use crate::domain::catalog::Environment;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No credentials for the environment's Airflow API (neither its own nor Jade's).
    #[error("running jobs is not configured for environment {slug}")]
    NotConfigured { slug: String },
    /// Airflow's API cannot be reached, timed out, failed (5xx) or refused Jade's
    /// credentials. The cause is for logs.
    #[error("the Airflow API of environment {slug} is unavailable")]
    Unavailable {
        slug: String,
        #[source]
        cause: Fault,
    },
    /// Airflow refused the request (e.g. 404 DAG not found, 409 conflict, 400): its status
    /// and its reason, passed on to the client.
    #[error("Airflow refused the request ({status}): {reason}")]
    Refused { status: u16, reason: String },
}

/// Every method is bounded in time (`AIRFLOW_API_TIMEOUT_MS`): past it, `Unavailable`.
/// Credentials never reach a log line or an error.
#[async_trait]
pub trait AirflowControl: Send + Sync + 'static {
    /// Asks Airflow for a new run of the DAG with this `conf` and note; answers the new DAG
    /// run's `run_id` (the string, not the row's id).
    async fn trigger(
        &self,
        environment: &Environment,
        dag_id: &str,
        conf: &serde_json::Value,
        note: &str,
    ) -> Result<String, ControlError>;

    /// Asks Airflow to mark the DAG run failed: its unfinished tasks stop.
    async fn cancel(&self, environment: &Environment, dag_id: &str, run_id: &str) -> Result<(), ControlError>;

    /// Asks Airflow to clear the DAG run's failed task instances, so they run again; the DAG
    /// run keeps its id and goes back to queued.
    async fn retry(&self, environment: &Environment, dag_id: &str, run_id: &str) -> Result<(), ControlError>;
}
