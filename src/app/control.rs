//! Running jobs (contract §3 "Running jobs"): trigger, cancel and retry DAG runs through the
//! environment's Airflow REST API, and the latest artifact of a job. Jade never writes to
//! an Airflow database: it asks Airflow, then reads what Airflow made.

use std::time::Duration;

use super::{Embed, Jade, RunFilter, backend, lookup_failed};
use crate::domain::Error;
use crate::domain::access::{Identity, may_run_jobs};
use crate::domain::catalog::Environment;
use crate::domain::job_run::{DagRun, JobRun, RunStatus};
use crate::domain::paging::{Order, Page, RunSort};
use crate::domain::run_request::RunRequest;
use crate::ports::airflow_api::{AirflowControl, ControlError};
use crate::ports::registry::RunKey;

/// What a paused DAG's new run says while it waits.
const PAUSED: &str = "The DAG is paused: the run stays queued until the DAG is unpaused in Airflow.";

/// How long a triggered run is looked for in the Airflow database (Airflow committed it
/// before answering; a read replica may lag behind).
const FIND_TRIGGERED: [Duration; 4] =
    [Duration::ZERO, Duration::from_millis(50), Duration::from_millis(200), Duration::from_millis(750)];

/// How many of a job's newest successful runs are looked through for an artifact.
const ARTIFACT_RUNS: u64 = 20;

/// A DAG run of an environment, with what running, cancelling and retrying need.
struct Target {
    environment: Environment,
    dag_run: DagRun,
    job_run_id: i64,
}

impl Jade {
    /// Runs a job: asks its environment's Airflow for a new DAG run (its `conf` the request's
    /// fields, its note the cause), registers the run's id at once and answers the run.
    pub async fn trigger_run(
        &self,
        identity: &Identity,
        account_id: i64,
        job_id: i64,
        request: &RunRequest,
    ) -> Result<JobRun, Error> {
        let (environment, dag_id) = self.job_of(account_id, job_id).await?;
        let control = self.may_control(identity, &environment).await?;
        let airflow = self.airflow_for(&environment)?;
        let dag = airflow.dag(&environment, &dag_id).await.map_err(|e| lookup_failed(&environment, e))?;
        let dag = dag.ok_or_else(Error::not_found)?;
        let run_id = control
            .trigger(&environment, &dag_id, &request.conf(), request.cause())
            .await
            .map_err(|e| control_failed(&environment, e))?;
        let dag_run = self.triggered(&environment, &dag_id, &run_id).await?;
        audit(identity, "run", &environment, &dag_id, &run_id);
        let mut run = self.render_runs(account_id, &environment, vec![dag_run]).await?.remove(0);
        if dag.is_paused == Some(true) {
            run.status_message = Some(PAUSED.into());
        }
        Ok(run)
    }

    /// The DAG run Airflow just made, found by its `run_id`.
    async fn triggered(&self, environment: &Environment, dag_id: &str, run_id: &str) -> Result<DagRun, Error> {
        let airflow = self.airflow_for(environment)?;
        for wait in FIND_TRIGGERED {
            tokio::time::sleep(wait).await;
            let found = airflow.dag_run_by_run_id(environment, dag_id, run_id).await;
            if let Some(dag_run) = found.map_err(|e| lookup_failed(environment, e))? {
                return Ok(dag_run);
            }
        }
        Err(Error::Internal(crate::domain::Fault::new(format!(
            "Airflow answered DAG run {run_id} of {dag_id}, which its database does not hold"
        ))))
    }

    /// Cancels a run: Airflow is asked to mark its DAG run failed, and Jade records the
    /// cancellation, so it renders as cancelled from then on. A finished run is answered
    /// as it is.
    pub async fn cancel_run(&self, identity: &Identity, account_id: i64, run_id: i64) -> Result<JobRun, Error> {
        let target = self.target(account_id, run_id).await?;
        let control = self.may_control(identity, &target.environment).await?;
        if RunStatus::from_state(target.dag_run.state.as_deref()).is_finished() {
            return self.run(account_id, run_id, Embed::default()).await;
        }
        let (dag_id, airflow_run_id) = names(&target.dag_run)?;
        control
            .cancel(&target.environment, dag_id, airflow_run_id)
            .await
            .map_err(|e| control_failed(&target.environment, e))?;
        self.ports.run_index.cancel(target.job_run_id, identity.email.as_deref()).await.map_err(backend)?;
        audit(identity, "cancel", &target.environment, dag_id, airflow_run_id);
        self.run(account_id, run_id, Embed::default()).await
    }

    /// Retries a failed run from its failed tasks: Airflow is asked to clear them, and the
    /// DAG run (the same run id) goes back to queued.
    pub async fn retry_run(&self, identity: &Identity, account_id: i64, run_id: i64) -> Result<JobRun, Error> {
        let target = self.target(account_id, run_id).await?;
        self.retry(identity, account_id, target).await
    }

    /// Retries the job's latest run (by end date), when it failed.
    pub async fn rerun_job(&self, identity: &Identity, account_id: i64, job_id: i64) -> Result<JobRun, Error> {
        let (environment, dag_id) = self.job_of(account_id, job_id).await?;
        let airflow = self.airflow_for(&environment)?;
        let latest = airflow.latest_dag_run(&environment, Some(&dag_id), false).await;
        let dag_run = latest
            .map_err(|e| lookup_failed(&environment, e))?
            .ok_or_else(|| Error::NotApplicable(format!("Job {job_id} has no run; nothing to retry.")))?;
        let key = RunKey { environment_id: environment.id, dag_run_id: dag_run.id };
        let ids = self.ports.registry.run_ids(&[key]).await.map_err(backend)?;
        let job_run_id = *ids.get(&key).ok_or_else(|| super::unregistered("job run", key))?;
        self.retry(identity, account_id, Target { environment, dag_run, job_run_id }).await
    }

    async fn retry(&self, identity: &Identity, account_id: i64, target: Target) -> Result<JobRun, Error> {
        let control = self.may_control(identity, &target.environment).await?;
        let cancelled = self.ports.run_index.cancelled(&[target.job_run_id]).await.map_err(backend)?;
        let failed = RunStatus::from_state(target.dag_run.state.as_deref()) == RunStatus::Error
            && !cancelled.contains(&target.job_run_id);
        if !failed {
            return Err(Error::NotApplicable(format!("Run {} did not fail; nothing to retry.", target.job_run_id)));
        }
        let (dag_id, airflow_run_id) = names(&target.dag_run)?;
        control
            .retry(&target.environment, dag_id, airflow_run_id)
            .await
            .map_err(|e| control_failed(&target.environment, e))?;
        audit(identity, "retry", &target.environment, dag_id, airflow_run_id);
        self.run(account_id, target.job_run_id, Embed::default()).await
    }

    /// The id of the job's newest successful run that has the artifact at `path` (404 when
    /// none of its latest successful runs has it).
    pub async fn job_artifact_run(&self, account_id: i64, job_id: i64, path: &str) -> Result<i64, Error> {
        let filter = RunFilter {
            job_definition_ids: Some(vec![job_id]),
            statuses: Some(vec![i64::from(RunStatus::Success.code(self.settings.compat))]),
            ..RunFilter::default()
        };
        let newest_first = Order { field: RunSort::FinishedAt, descending: true };
        let runs = self.runs(account_id, &filter, newest_first, Page::new(None, Some(ARTIFACT_RUNS)), Embed::default());
        for run in runs.await?.items {
            match self.find_artifact(account_id, run.id, path).await {
                Ok(_) => return Ok(run.id),
                Err(Error::NotFound(_)) => continue,
                Err(error) => return Err(error),
            }
        }
        Err(Error::not_found())
    }

    /// The environment's Airflow API, once the identity may run its jobs.
    async fn may_control(&self, identity: &Identity, environment: &Environment) -> Result<&dyn AirflowControl, Error> {
        let (account, project) = futures::try_join!(
            self.account(environment.account_id),
            self.project(environment.account_id, environment.project_id)
        )?;
        let account = account.slug.unwrap_or_default();
        if !may_run_jobs(identity, &account, &project.slug, &environment.slug) {
            return Err(Error::Forbidden("You have no permission to run jobs in this environment.".into()));
        }
        self.ports.control.as_deref().ok_or_else(|| Error::Unavailable(NOT_CONFIGURED.into()))
    }

    /// The account's run `run_id`: its environment, DAG run and id.
    async fn target(&self, account_id: i64, run_id: i64) -> Result<Target, Error> {
        let (environment, dag_run) = self.dag_run_of(account_id, run_id).await?;
        Ok(Target { environment, dag_run, job_run_id: run_id })
    }
}

const NOT_CONFIGURED: &str = "Running jobs is not configured.";

/// The DAG run's `dag_id` and `run_id`, as Airflow's API names a run.
fn names(dag_run: &DagRun) -> Result<(&str, &str), Error> {
    let run_id = dag_run
        .run_id
        .as_deref()
        .ok_or_else(|| Error::Internal(crate::domain::Fault::new(format!("DAG run {} has no run_id", dag_run.id))))?;
    Ok((&dag_run.dag_id, run_id))
}

/// The contract's answers to Airflow's API failing or refusing.
fn control_failed(environment: &Environment, error: ControlError) -> Error {
    match error {
        ControlError::NotConfigured { .. } => Error::Unavailable(NOT_CONFIGURED.into()),
        ControlError::Unavailable { cause, .. } => {
            tracing::warn!(environment = %environment.slug, error = %crate::domain::error::error_chain(&cause), "Airflow API unavailable");
            Error::Unavailable(format!("Airflow for environment {} is unavailable. Please retry.", environment.slug))
        }
        ControlError::Refused { status, reason } => Error::Refused {
            status,
            message: format!("Airflow for environment {} refused the request.", environment.slug),
            detail: reason,
        },
    }
}

/// The audit trail of runs, cancellations and retries (the request id is on the span).
fn audit(identity: &Identity, action: &'static str, environment: &Environment, dag_id: &str, run_id: &str) {
    tracing::info!(
        action,
        user = identity.email.as_deref().unwrap_or("unknown"),
        environment = %environment.slug,
        dag_id,
        dag_run_id = run_id,
        "job {action} asked of Airflow"
    );
}
