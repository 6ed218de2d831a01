//! The dbt Cloud Administrative API v2 clone (contract §3), read only.

use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use serde_json::{Value, json};

use super::ApiTags;
use super::catalog::{self, Answer, EnvironmentQuery, List, ProjectQuery, account, id, listing};
use super::document::Document;
use super::dto::{AccountDto, Envelope, EnvironmentDto, JobDto, JobRunDto, ProjectDto, TriggerRunBody};
use super::error::RunControlError;
use super::extract::Caller;
use super::params::{Count, Int, Ints, Names, OrderBy, PathId, Range, Related, Text, both, filters, page};
use crate::app::{Jade, JobFilter, RunFilter};
use crate::domain::paging::{JobSort, RunSort};

pub struct V2Api {
    pub jade: Jade,
}

fn range(range: &Range) -> Option<Value> {
    range.0.map(|r| {
        json!([
            r.from.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            r.to.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        ])
    })
}

#[OpenApi(tag = "ApiTags::DbtApi")]
impl V2Api {
    /// The accounts the token may read.
    #[oai(path = "/accounts", method = "get")]
    async fn list_accounts(
        &self,
        caller: Caller,
        /// At most this many accounts (default and most: 100).
        limit: Query<Count>,
        /// Skip this many accounts.
        offset: Query<Count>,
    ) -> List<AccountDto> {
        catalog::list_accounts(&self.jade, &caller, &limit, &offset).await
    }

    /// One account.
    #[oai(path = "/accounts/:account_id", method = "get")]
    async fn get_account(&self, caller: Caller, account_id: Path<PathId>) -> Answer<AccountDto> {
        catalog::get_account(&self.jade, &caller, &account_id).await
    }

    /// The account's projects.
    #[oai(path = "/accounts/:account_id/projects", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn list_projects(
        &self,
        caller: Caller,
        account_id: Path<PathId>,
        /// Only projects whose name contains this, ignoring case.
        #[oai(name = "name__icontains")]
        name_icontains: Query<Text>,
        /// Only these projects, e.g. `[1,2]`.
        #[oai(name = "pk__in")]
        pk_in: Query<Ints>,
        /// Only projects in this state (every project is active: 1).
        state: Query<Int>,
        /// At most this many projects (default and most: 100).
        limit: Query<Count>,
        /// Skip this many projects.
        offset: Query<Count>,
    ) -> List<ProjectDto> {
        let query = ProjectQuery {
            name_icontains: &name_icontains,
            pk_in: &pk_in,
            state: state.0.0,
            limit: &limit,
            offset: &offset,
        };
        catalog::list_projects(&self.jade, &caller, &account_id, query).await
    }

    /// One project of the account.
    #[oai(path = "/accounts/:account_id/projects/:project_id", method = "get")]
    async fn get_project(
        &self,
        caller: Caller,
        account_id: Path<PathId>,
        project_id: Path<PathId>,
    ) -> Answer<ProjectDto> {
        catalog::get_project(&self.jade, &caller, &account_id, &project_id).await
    }

    /// The newest successful run (by end date) across the project's environments.
    #[oai(path = "/accounts/:account_id/projects/:project_id/latest-run", method = "get")]
    async fn latest_run(
        &self,
        caller: Caller,
        account_id: Path<PathId>,
        project_id: Path<PathId>,
    ) -> Answer<JobRunDto> {
        let account_id = account(&caller, &account_id)?;
        let run = self.jade.latest_run(account_id, id(&project_id)?).await?;
        Ok(Document(Envelope::ok(JobRunDto::new(&run, self.jade.settings().compat, self.jade.now()))))
    }

    /// The account's environments.
    #[oai(path = "/accounts/:account_id/environments", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn list_environments(
        &self,
        caller: Caller,
        account_id: Path<PathId>,
        /// Only this project's environments.
        project_id: Query<Int>,
        /// Only environments whose name contains this, ignoring case.
        #[oai(name = "name__icontains")]
        name_icontains: Query<Text>,
        /// Only the environment with exactly this name.
        name: Query<Text>,
        /// Only environments in this state (every environment is active: 1).
        state: Query<Int>,
        /// Only environments of this type: `development` or `deployment`.
        #[oai(name = "type")]
        dbt_cloud_type: Query<Text>,
        /// Only environments of these deployment types, e.g. `["production"]`.
        #[oai(name = "deployment_type__in")]
        deployment_type_in: Query<Names>,
        /// At most this many environments (default and most: 100).
        limit: Query<Count>,
        /// Skip this many environments.
        offset: Query<Count>,
    ) -> List<EnvironmentDto> {
        let query = EnvironmentQuery {
            project_id: project_id.0.0,
            name_icontains: &name_icontains,
            name: &name,
            state: state.0.0,
            dbt_cloud_type: &dbt_cloud_type,
            deployment_type_in: &deployment_type_in,
            limit: &limit,
            offset: &offset,
        };
        catalog::list_environments(&self.jade, &caller, &account_id, query).await
    }

    /// One environment of the account.
    #[oai(path = "/accounts/:account_id/environments/:environment_id", method = "get")]
    async fn get_environment(
        &self,
        caller: Caller,
        account_id: Path<PathId>,
        environment_id: Path<PathId>,
    ) -> Answer<EnvironmentDto> {
        let account_id = account(&caller, &account_id)?;
        Ok(Document(Envelope::ok(self.jade.environment(account_id, id(&environment_id)?).await?.into())))
    }

    /// The account's jobs: one per Airflow DAG of each environment.
    #[oai(path = "/accounts/:account_id/jobs", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn list_jobs(
        &self,
        caller: Caller,
        account_id: Path<PathId>,
        /// Only jobs of this project.
        project_id: Query<Int>,
        /// Only jobs of these projects, e.g. `[1,2]`.
        #[oai(name = "project_id__in")]
        project_id_in: Query<Ints>,
        /// Only jobs of this environment.
        environment_id: Query<Int>,
        /// Only jobs whose name contains this, ignoring case.
        #[oai(name = "name__icontains")]
        name_icontains: Query<Text>,
        /// Only active (1) or inactive (2; the first Jade's 0) jobs.
        state: Query<Int>,
        /// `-` first for descending (default `id`).
        order_by: Query<OrderBy<JobSort>>,
        /// At most this many jobs (default and most: 100).
        limit: Query<Count>,
        /// Skip this many jobs.
        offset: Query<Count>,
    ) -> List<JobDto> {
        let account_id = account(&caller, &account_id)?;
        let page = page(&offset, &limit);
        let filter = JobFilter {
            project_ids: both(project_id.0.0, project_id_in.0.0.clone()),
            environment_id: environment_id.0.0,
            name_icontains: name_icontains.0.0.clone(),
            state: state.0.0,
        };
        let order = order_by.or_default();
        let jobs = self.jade.jobs(account_id, &filter, order, page).await?;
        let filters = filters(
            Some(account_id),
            page,
            &[
                ("project_id__in", filter.project_ids.as_ref().map(|v| json!(v))),
                ("environment_id", filter.environment_id.map(Value::from)),
                ("name__icontains", filter.name_icontains.as_ref().map(|v| json!(v))),
                ("state", filter.state.map(Value::from)),
            ],
        );
        let (compat, now) = (self.jade.settings().compat, self.jade.now());
        Ok(listing(jobs, filters, Some(order.as_param()), |job| JobDto::new(&job, compat, now)))
    }

    /// One job, with its most recent run and most recent successful run.
    #[oai(path = "/accounts/:account_id/jobs/:job_id", method = "get")]
    async fn get_job(
        &self,
        caller: Caller,
        account_id: Path<PathId>,
        job_id: Path<PathId>,
        /// Accepted, as dbt Cloud clients send it; the job is answered whole.
        #[oai(name = "include_related")]
        _include_related: Query<Related>,
    ) -> Answer<JobDto> {
        let account_id = account(&caller, &account_id)?;
        let job = self.jade.job(account_id, id(&job_id)?).await?;
        Ok(Document(Envelope::ok(JobDto::new(&job, self.jade.settings().compat, self.jade.now()))))
    }

    /// The account's runs, across its environments.
    ///
    /// Paging with `offset` yields every run exactly once, in order.
    #[oai(path = "/accounts/:account_id/runs", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn list_runs(
        &self,
        caller: Caller,
        account_id: Path<PathId>,
        /// Only runs of this job.
        job_definition_id: Query<Int>,
        /// Only runs of these jobs, e.g. `[1,2]`.
        #[oai(name = "job_definition_id__in")]
        job_definition_id_in: Query<Ints>,
        /// Only runs of this environment.
        environment_id: Query<Int>,
        /// Only runs of this project.
        project_id: Query<Int>,
        /// Only runs of these projects, e.g. `[1,2]`.
        #[oai(name = "project_id__in")]
        project_id_in: Query<Ints>,
        /// Only runs with this status code.
        status: Query<Int>,
        /// Only runs with these status codes, e.g. `[1,2]`.
        #[oai(name = "status__in")]
        status_in: Query<Ints>,
        /// Only runs created (queued) in this range, both ends included.
        #[oai(name = "created_at__range")]
        created_at_range: Query<Range>,
        /// Only runs finished in this range, both ends included.
        #[oai(name = "finished_at__range")]
        finished_at_range: Query<Range>,
        /// `-` first for descending (default `id`).
        order_by: Query<OrderBy<RunSort>>,
        /// At most this many runs (default and most: 100).
        limit: Query<Count>,
        /// Skip this many runs.
        offset: Query<Count>,
        /// `job` embeds each run's job, `run_steps` its steps (its DAG run's task instances).
        include_related: Query<Related>,
    ) -> List<JobRunDto> {
        let account_id = account(&caller, &account_id)?;
        let page = page(&offset, &limit);
        let filter = RunFilter {
            job_definition_ids: both(job_definition_id.0.0, job_definition_id_in.0.0.clone()),
            environment_id: environment_id.0.0,
            project_ids: both(project_id.0.0, project_id_in.0.0.clone()),
            statuses: both(status.0.0, status_in.0.0.clone()),
            created_at: created_at_range.0.0,
            finished_at: finished_at_range.0.0,
        };
        let order = order_by.or_default();
        let embed = include_related.of_runs();
        let runs = self.jade.runs(account_id, &filter, order, page, embed).await?;
        let filters = filters(
            Some(account_id),
            page,
            &[
                ("job_definition_id__in", filter.job_definition_ids.as_ref().map(|v| json!(v))),
                ("environment_id", filter.environment_id.map(Value::from)),
                ("project_id__in", filter.project_ids.as_ref().map(|v| json!(v))),
                ("status__in", filter.statuses.as_ref().map(|v| json!(v))),
                ("created_at__range", range(&created_at_range)),
                ("finished_at__range", range(&finished_at_range)),
                ("include_related", Related::echoed(embed).map(|names| json!(names))),
            ],
        );
        let (compat, now) = (self.jade.settings().compat, self.jade.now());
        Ok(listing(runs, filters, Some(order.as_param()), |run| JobRunDto::new(&run, compat, now)))
    }

    /// One run.
    #[oai(path = "/accounts/:account_id/runs/:run_id", method = "get")]
    async fn get_run(
        &self,
        caller: Caller,
        account_id: Path<PathId>,
        run_id: Path<PathId>,
        /// `job` embeds the run's job, `run_steps` its steps (its DAG run's task instances).
        include_related: Query<Related>,
    ) -> Answer<JobRunDto> {
        let account_id = account(&caller, &account_id)?;
        let run = self.jade.run(account_id, id(&run_id)?, include_related.of_runs()).await?;
        Ok(Document(Envelope::ok(JobRunDto::new(&run, self.jade.settings().compat, self.jade.now()))))
    }

    /// Run a job.
    ///
    /// Its environment's Airflow is asked for a new run of the job's DAG (its `conf` every
    /// field given, its note the cause). The run answered is registered at once: every later
    /// read gives the same id.
    ///
    /// Needs a `write` permission on `workbench:airflow` for the job's environment (its
    /// account, project or the environment itself); 403 otherwise.
    #[oai(path = "/accounts/:account_id/jobs/:job_id/run", method = "post")]
    async fn trigger_job_run(
        &self,
        caller: Caller,
        account_id: Path<PathId>,
        job_id: Path<PathId>,
        body: Json<Option<TriggerRunBody>>,
    ) -> Result<Document<Envelope<JobRunDto>>, RunControlError> {
        let account_id = account(&caller, &account_id)?;
        let request = body.0.unwrap_or_default().into();
        let run = self.jade.trigger_run(&caller.0, account_id, id(&job_id)?, &request).await?;
        Ok(self.answer(&run))
    }

    /// Cancel a run.
    ///
    /// Airflow is asked to mark its DAG run failed (its unfinished tasks stop), and the run is
    /// Cancelled from then on. A finished run is answered as it is.
    #[oai(path = "/accounts/:account_id/runs/:run_id/cancel", method = "post")]
    async fn cancel_run(
        &self,
        caller: Caller,
        account_id: Path<PathId>,
        run_id: Path<PathId>,
    ) -> Result<Document<Envelope<JobRunDto>>, RunControlError> {
        let account_id = account(&caller, &account_id)?;
        let run = self.jade.cancel_run(&caller.0, account_id, id(&run_id)?).await?;
        Ok(self.answer(&run))
    }

    /// Retry a failed run from its failed tasks.
    ///
    /// Airflow is asked to clear them; the run keeps its id and goes back to queued. 400 for a
    /// run that did not fail.
    #[oai(path = "/accounts/:account_id/runs/:run_id/retry", method = "post")]
    async fn retry_run(
        &self,
        caller: Caller,
        account_id: Path<PathId>,
        run_id: Path<PathId>,
    ) -> Result<Document<Envelope<JobRunDto>>, RunControlError> {
        let account_id = account(&caller, &account_id)?;
        let run = self.jade.retry_run(&caller.0, account_id, id(&run_id)?).await?;
        Ok(self.answer(&run))
    }

    /// Retry the job's latest run from its failed tasks, as a run's retry route does.
    #[oai(path = "/accounts/:account_id/jobs/:job_id/rerun", method = "post")]
    async fn rerun_job(
        &self,
        caller: Caller,
        account_id: Path<PathId>,
        job_id: Path<PathId>,
    ) -> Result<Document<Envelope<JobRunDto>>, RunControlError> {
        let account_id = account(&caller, &account_id)?;
        let run = self.jade.rerun_job(&caller.0, account_id, id(&job_id)?).await?;
        Ok(self.answer(&run))
    }
}

impl V2Api {
    fn answer(&self, run: &crate::domain::job_run::JobRun) -> Document<Envelope<JobRunDto>> {
        Document(Envelope::ok(JobRunDto::new(run, self.jade.settings().compat, self.jade.now())))
    }
}
