//! Jade's integer ids for Airflow's DAGs and DAG runs (`job_ids`, `job_run_ids`).

use std::collections::HashMap;

use async_trait::async_trait;

use crate::ports::BackendError;

/// A DAG run: (environment id, `dag_run.id`).
pub type RunKey = (i64, i64);
/// A DAG: (environment id, `dag_id`).
pub type JobKey = (i64, String);

/// Ids are assigned once and never change. Assignment MUST be race free across concurrent
/// requests and Jade replicas (one id per key, whoever asks first), and batched: one round
/// trip per call, never one query per key. Failures are `BackendError`.
#[async_trait]
pub trait IdRegistry: Send + Sync + 'static {
    /// For each environment that has registered runs, the highest registered `dag_run.id`.
    async fn run_watermarks(&self, environment_ids: &[i64]) -> Result<HashMap<i64, i64>, BackendError>;

    /// Registers the runs that have no id yet, in the order given (so that ids grow with it).
    async fn register_runs(&self, keys: &[RunKey]) -> Result<(), BackendError>;

    /// The ids of these runs, registering the missing ones in the order given.
    async fn run_ids(&self, keys: &[RunKey]) -> Result<HashMap<RunKey, i64>, BackendError>;

    /// The run an id stands for; `None` for an unknown id.
    async fn run_key(&self, id: i64) -> Result<Option<RunKey>, BackendError>;

    /// The ids of these DAGs, registering the missing ones.
    async fn job_ids(&self, keys: &[JobKey]) -> Result<HashMap<JobKey, i64>, BackendError>;

    /// The DAGs these ids stand for; unknown ids are absent from the answer.
    async fn job_keys(&self, ids: &[i64]) -> Result<HashMap<i64, JobKey>, BackendError>;
}
