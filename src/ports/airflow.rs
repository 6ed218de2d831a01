//! Each environment's Airflow database: DAGs and DAG runs. Read only.

use async_trait::async_trait;

use crate::domain::catalog::Environment;
use crate::domain::job::Dag;
use crate::domain::job_run::{DagRun, DagRunFilter};
use crate::domain::paging::RunOrder;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AirflowError {
    /// Airflow is not enabled for the environment, its settings are unusable, or Airflow is
    /// switched off (`CONNECT_TO_AIRFLOW=false`).
    #[error("Airflow is not available for environment {slug}")]
    NotConfigured { slug: String },
    /// The environment's database cannot be reached or failed. The reason is for logs.
    #[error("Airflow database of environment {slug} failed: {reason}")]
    Unreachable { slug: String, reason: String },
}

/// What one environment's DAG runs are read for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DagRunQuery {
    pub filter: DagRunFilter,
    /// Rows come in [`crate::domain::job_run::compare_dag_runs`] order.
    pub order: RunOrder,
    /// At most this many rows (`None`: all).
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DagRunPage {
    pub runs: Vec<DagRun>,
    /// How many runs match the filter in all.
    pub total: u64,
    /// The highest DAG run id of the environment, whatever the filter (`None`: no runs), so
    /// a caller can tell whether runs were added since it last looked.
    pub newest_id: Option<i64>,
}

/// Every method answers `NotConfigured` for an environment without a usable Airflow
/// database and `Unreachable` when its database cannot be reached; it MUST fail fast (a
/// short connect timeout, and a remembered failure for a while) rather than hang.
/// Not-found is `Ok(None)`.
#[async_trait]
pub trait AirflowRuns: Send + Sync + 'static {
    /// The environment's DAGs, ordered by `dag_id`.
    async fn dags(&self, environment: &Environment) -> Result<Vec<Dag>, AirflowError>;

    async fn dag(&self, environment: &Environment, dag_id: &str) -> Result<Option<Dag>, AirflowError>;

    /// The first `query.limit` runs matching the filter in the query's order, the number of
    /// all matching runs, and the environment's newest run id.
    async fn dag_runs(&self, environment: &Environment, query: &DagRunQuery) -> Result<DagRunPage, AirflowError>;

    /// The ids of the runs whose id is greater than `after`, ascending.
    async fn dag_run_ids_after(&self, environment: &Environment, after: i64) -> Result<Vec<i64>, AirflowError>;

    async fn dag_run(&self, environment: &Environment, id: i64) -> Result<Option<DagRun>, AirflowError>;

    /// The run of `dag_id` whose `run_id` is `run_id`.
    async fn dag_run_by_run_id(
        &self,
        environment: &Environment,
        dag_id: &str,
        run_id: &str,
    ) -> Result<Option<DagRun>, AirflowError>;

    /// The latest run by end date (runs without one last, then by id), optionally only of one
    /// DAG and only successful ones.
    async fn latest_dag_run(
        &self,
        environment: &Environment,
        dag_id: Option<&str>,
        successful_only: bool,
    ) -> Result<Option<DagRun>, AirflowError>;
}
