//! Each environment's Airflow database: DAGs, DAG runs and their task instances. Read only.

use async_trait::async_trait;

use crate::domain::catalog::{Environment, Timestamp};
use crate::domain::job::Dag;
use crate::domain::job_run::{DagRun, TaskInstance};

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

/// Which runs of an environment to read to bring the run index up to date.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DagRunCursor {
    /// Runs with an id above this (0: every run).
    pub after: i64,
    /// Runs with these ids (those the index holds as unfinished).
    pub recheck: Vec<i64>,
    /// Runs Airflow changed at or after this (`dag_run.updated_at`); ignored where the
    /// database does not record it (Airflow before 2.5).
    pub changed_since: Option<Timestamp>,
}

/// What the cursor found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DagRunChanges {
    /// The runs the cursor names, ascending by id.
    pub runs: Vec<DagRun>,
    /// How many runs there are with an id at or below `after`: when it differs from what the
    /// index holds, a run committed late or was deleted.
    pub at_or_below: u64,
    /// Whether the database records when a run changes (`dag_run.updated_at`, Airflow 2.5
    /// and later). Without it, a run that changes after it finished is found only by reading
    /// every run.
    pub tracks_changes: bool,
    /// The latest `updated_at` among `runs` (with `tracks_changes`).
    pub changed_up_to: Option<Timestamp>,
}

/// Every method answers `NotConfigured` for an environment without a usable Airflow
/// database and `Unreachable` when its database cannot be reached; it MUST fail fast (a
/// short connect timeout, and a remembered failure for a while) rather than hang.
/// Not-found is `Ok(None)`. Adapters read Airflow 2 (2.2 and later) and Airflow 3 databases
/// alike, telling them apart by what the database holds.
#[async_trait]
pub trait AirflowRuns: Send + Sync + 'static {
    /// The environment's DAGs, ordered by `dag_id`.
    async fn dags(&self, environment: &Environment) -> Result<Vec<Dag>, AirflowError>;

    async fn dag(&self, environment: &Environment, dag_id: &str) -> Result<Option<Dag>, AirflowError>;

    /// The runs the cursor names, and the count of runs at or below `cursor.after` (see
    /// [`DagRunChanges`]). The default cursor reads every run.
    async fn dag_run_changes(
        &self,
        environment: &Environment,
        cursor: &DagRunCursor,
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

    /// The task instances of these runs, each named by its `(dag_id, run_id)`, in no
    /// particular order.
    async fn task_instances(
        &self,
        environment: &Environment,
        runs: &[(String, String)],
    ) -> Result<Vec<TaskInstance>, AirflowError>;
}
