//! Jade's integer ids for Airflow's DAGs and DAG runs (`job_ids`, `job_run_ids`).

use std::collections::HashMap;

use async_trait::async_trait;

use crate::ports::BackendError;

/// A DAG run of an environment, as the `job_run_ids` registry names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunKey {
    pub environment_id: i64,
    /// Airflow's `dag_run.id`.
    pub dag_run_id: i64,
}

/// A DAG: (environment id, `dag_id`).
pub type JobKey = (i64, String);

/// Ids are assigned once and never change. Assignment MUST be race free across concurrent
/// requests and Jade replicas (one id per key, whoever asks first), and batched: one round
/// trip per call, never one query per key. Failures are `BackendError`.
#[async_trait]
pub trait IdRegistry: Send + Sync + 'static {
    /// Whether the Jade database answers a trivial query (readiness).
    async fn ping(&self) -> Result<(), BackendError>;

    /// The ids of these runs, registering the missing ones. Every key is in the answer.
    async fn run_ids(&self, keys: &[RunKey]) -> Result<HashMap<RunKey, i64>, BackendError>;

    /// The run an id stands for; `None` for an unknown id.
    async fn run_key(&self, id: i64) -> Result<Option<RunKey>, BackendError>;

    /// The ids of these DAGs, registering the missing ones. Every key is in the answer.
    async fn job_ids(&self, keys: &[JobKey]) -> Result<HashMap<JobKey, i64>, BackendError>;

    /// The DAGs these ids stand for; unknown ids are absent from the answer.
    async fn job_keys(&self, ids: &[i64]) -> Result<HashMap<i64, JobKey>, BackendError>;
}
