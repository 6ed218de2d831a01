//! Each environment's Airflow database: DAGs and DAG runs. Read only.

use async_trait::async_trait;

use crate::domain::catalog::Environment;
use crate::domain::job::Dag;
use crate::domain::job_run::DagRun;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AirflowError {
    /// Airflow is not enabled for the environment, its settings are unusable, or Airflow is
    /// switched off (`CONNECT_TO_AIRFLOW=false`).
    #[error("Airflow is not available for environment {slug}")]
    NotConfigured { slug: String },
    /// The environment's database cannot be reached or failed. The cause is for logs.
    #[error("Airflow database of environment {slug} failed")]
    Unreachable {
        slug: String,
        #[source]
        cause: crate::domain::Fault,
    },
}

/// What changed in an environment's DAG runs since the run index last looked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DagRunChanges {
    /// The runs whose id is above the index's newest or among the ids to check again,
    /// ascending by id.
    pub runs: Vec<DagRun>,
    /// How many runs there are with an id at or below the index's newest: when it differs
    /// from what the index holds, a run committed late or was deleted.
    pub at_or_below: u64,
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

    /// The runs with an id above `after` or in `recheck`, and the count of runs at or below
    /// `after` (see [`DagRunChanges`]). `after` 0 and no `recheck` reads every run.
    async fn dag_run_changes(
        &self,
        environment: &Environment,
        after: i64,
        recheck: &[i64],
    ) -> Result<DagRunChanges, AirflowError>;

    /// The runs with these ids (those that exist), in no particular order.
    async fn dag_runs_by_ids(&self, environment: &Environment, ids: &[i64]) -> Result<Vec<DagRun>, AirflowError>;

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
