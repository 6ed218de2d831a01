//! The dbt Cloud Administrative API v2 clone (contract §3), read only.

use std::collections::BTreeMap;

use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};
use serde_json::{Value, json};

use super::ApiTags;
use super::document::Document;
use super::dto::{
    AccountDto, Envelope, EnvironmentDto, Extra, JobDto, JobRunDto, ListEnvelope, Pagination, ProjectDto, Status,
};
use super::error::ApiError;
use super::extract::Caller;
use crate::app::{Jade, JobFilter, RunFilter};
use crate::domain::Error;
use crate::domain::access::RequestScope;
use crate::domain::paging::{JobOrder, Listing, Page, RunOrder};

pub struct V2Api {
    pub jade: Jade,
}

type Answer<T> = Result<Document<Envelope<T>>, ApiError>;
type List<T> = Result<Document<ListEnvelope<T>>, ApiError>;

/// Query values as sent: empty ones count as absent, and parse errors answer 400 with the
/// parameter named (never poem's own message).
fn integer(name: &str, value: &Option<String>) -> Result<Option<i64>, ApiError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("{name} must be an integer, not {text:?}"))),
    }
}

fn count(name: &str, value: &Option<String>) -> Result<Option<u64>, ApiError> {
    match integer(name, value)? {
        Some(n) if n < 0 => Err(ApiError::bad_request(format!("{name} must not be negative"))),
        n => Ok(n.map(|n| n as u64)),
    }
}

/// `[1,2]` (as dbt Cloud clients send `__in` filters) or `1,2`.
fn integers(name: &str, value: &Option<String>) -> Result<Option<Vec<i64>>, ApiError> {
    let Some(text) = value.as_deref().map(str::trim).filter(|t| !t.is_empty()) else { return Ok(None) };
    let inner = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
    inner
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| part.trim_matches('"').parse::<i64>())
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
        .map_err(|_| ApiError::bad_request(format!("{name} must be a list of integers such as [1,2], not {text:?}")))
}

/// A filter given both as `x` and `x__in` keeps what both allow.
fn both(single: Option<i64>, list: Option<Vec<i64>>) -> Option<Vec<i64>> {
    match (single, list) {
        (Some(one), Some(list)) => Some(if list.contains(&one) { vec![one] } else { Vec::new() }),
        (Some(one), None) => Some(vec![one]),
        (None, list) => list,
    }
}

/// `include_related=job`, also as `["job"]` or `job,trigger`.
fn includes_job(value: &Option<String>) -> bool {
    value.as_deref().is_some_and(|v| {
        v.trim_matches(|c| c == '[' || c == ']').split(',').any(|part| part.trim().trim_matches(['"', '\'']) == "job")
    })
}

/// The account id in the path, once the caller may read it (the rule parses it).
fn account(caller: &Caller, account_id: &str) -> Result<i64, ApiError> {
    caller.authorize(RequestScope { account_id: Some(account_id), ..Default::default() })?;
    account_id.parse().map_err(|_| ApiError::from(Error::not_found()))
}

/// A path id that is not an integer names nothing.
fn id(value: &str) -> Result<i64, ApiError> {
    value.parse().map_err(|_| ApiError::from(Error::not_found()))
}

fn page(offset: &Option<String>, limit: &Option<String>) -> Result<Page, ApiError> {
    Ok(Page { offset: count("offset", offset)?.unwrap_or(0), limit: count("limit", limit)? })
}

fn listing<T, D: poem_openapi::types::ParseFromJSON + poem_openapi::types::ToJSON>(
    listing: Listing<T>,
    filters: BTreeMap<String, Value>,
    order_by: Option<String>,
    dto: impl Fn(T) -> D,
) -> Document<ListEnvelope<D>> {
    let data: Vec<D> = listing.items.into_iter().map(dto).collect();
    Document(ListEnvelope {
        extra: Extra {
            filters,
            order_by,
            pagination: Pagination { count: data.len() as u64, total_count: listing.total_count },
        },
        data,
        status: Status::ok(),
    })
}

fn filters(account_id: i64, page: Page, given: &[(&str, Option<Value>)]) -> BTreeMap<String, Value> {
    let mut filters =
        BTreeMap::from([("account_id".to_owned(), json!(account_id)), ("offset".to_owned(), json!(page.offset))]);
    if let Some(limit) = page.limit {
        filters.insert("limit".into(), json!(limit));
    }
    for (name, value) in given {
        if let Some(value) = value {
            filters.insert((*name).to_owned(), value.clone());
        }
    }
    filters
}

#[OpenApi(tag = "ApiTags::DbtApi")]
impl V2Api {
    /// The accounts the token may read.
    #[oai(path = "/accounts", method = "get")]
    async fn list_accounts(&self, caller: Caller) -> List<AccountDto> {
        let accounts = self.jade.accounts(&caller.0).await?;
        let total_count = accounts.len() as u64;
        Ok(listing(Listing { items: accounts, total_count }, BTreeMap::new(), None, AccountDto::from))
    }

    /// One account.
    #[oai(path = "/accounts/:account_id", method = "get")]
    async fn get_account(&self, caller: Caller, account_id: Path<String>) -> Answer<AccountDto> {
        let account_id = account(&caller, &account_id)?;
        Ok(Document(Envelope::ok(self.jade.account(account_id).await?.into())))
    }

    /// The account's projects.
    #[oai(path = "/accounts/:account_id/projects", method = "get")]
    async fn list_projects(
        &self,
        caller: Caller,
        account_id: Path<String>,
        /// At most this many projects (default: all).
        limit: Query<Option<String>>,
        /// Skip this many projects.
        offset: Query<Option<String>>,
    ) -> List<ProjectDto> {
        let account_id = account(&caller, &account_id)?;
        let page = page(&offset, &limit)?;
        let projects = self.jade.projects(account_id, page).await?;
        Ok(listing(projects, filters(account_id, page, &[]), None, ProjectDto::from))
    }

    /// One project of the account.
    #[oai(path = "/accounts/:account_id/projects/:project_id", method = "get")]
    async fn get_project(
        &self,
        caller: Caller,
        account_id: Path<String>,
        project_id: Path<String>,
    ) -> Answer<ProjectDto> {
        let account_id = account(&caller, &account_id)?;
        Ok(Document(Envelope::ok(self.jade.project(account_id, id(&project_id)?).await?.into())))
    }

    /// The newest successful run (by end date) across the project's environments.
    #[oai(path = "/accounts/:account_id/projects/:project_id/latest-run", method = "get")]
    async fn latest_run(
        &self,
        caller: Caller,
        account_id: Path<String>,
        project_id: Path<String>,
    ) -> Answer<JobRunDto> {
        let account_id = account(&caller, &account_id)?;
        let run = self.jade.latest_run(account_id, id(&project_id)?).await?;
        Ok(Document(Envelope::ok(JobRunDto::new(&run, self.jade.settings().compat, self.jade.now()))))
    }

    /// The account's environments.
    #[oai(path = "/accounts/:account_id/environments", method = "get")]
    async fn list_environments(
        &self,
        caller: Caller,
        account_id: Path<String>,
        /// Only this project's environments.
        project_id: Query<Option<String>>,
        /// At most this many environments (default: all).
        limit: Query<Option<String>>,
        /// Skip this many environments.
        offset: Query<Option<String>>,
    ) -> List<EnvironmentDto> {
        let account_id = account(&caller, &account_id)?;
        let page = page(&offset, &limit)?;
        let project_id = integer("project_id", &project_id)?;
        let environments = self.jade.environments(account_id, project_id, page).await?;
        let filters = filters(account_id, page, &[("project_id", project_id.map(Value::from))]);
        Ok(listing(environments, filters, None, EnvironmentDto::from))
    }

    /// One environment of the account.
    #[oai(path = "/accounts/:account_id/environments/:environment_id", method = "get")]
    async fn get_environment(
        &self,
        caller: Caller,
        account_id: Path<String>,
        environment_id: Path<String>,
    ) -> Answer<EnvironmentDto> {
        let account_id = account(&caller, &account_id)?;
        Ok(Document(Envelope::ok(self.jade.environment(account_id, id(&environment_id)?).await?.into())))
    }

    /// The account's jobs: one per Airflow DAG of each environment.
    #[oai(path = "/accounts/:account_id/jobs", method = "get")]
    async fn list_jobs(
        &self,
        caller: Caller,
        account_id: Path<String>,
        /// Only jobs of this project.
        project_id: Query<Option<String>>,
        /// Only jobs of this environment.
        environment_id: Query<Option<String>>,
        /// `id`, `name`, `created_at`, `updated_at`; `-` first for descending.
        order_by: Query<Option<String>>,
        /// At most this many jobs (default: all).
        limit: Query<Option<String>>,
        /// Skip this many jobs.
        offset: Query<Option<String>>,
    ) -> List<JobDto> {
        let account_id = account(&caller, &account_id)?;
        let page = page(&offset, &limit)?;
        let filter = JobFilter {
            project_id: integer("project_id", &project_id)?,
            environment_id: integer("environment_id", &environment_id)?,
        };
        let order = match order_by.as_deref().filter(|o| !o.is_empty()) {
            Some(order) => JobOrder::parse(order)?,
            None => JobOrder::default(),
        };
        let jobs = self.jade.jobs(account_id, filter, order, page).await?;
        let filters = filters(
            account_id,
            page,
            &[
                ("project_id", filter.project_id.map(Value::from)),
                ("environment_id", filter.environment_id.map(Value::from)),
            ],
        );
        let (compat, now) = (self.jade.settings().compat, self.jade.now());
        Ok(listing(jobs, filters, Some(order.as_param()), |job| JobDto::new(&job, compat, now)))
    }

    /// One job, with its most recent run and most recent successful run.
    #[oai(path = "/accounts/:account_id/jobs/:job_id", method = "get")]
    async fn get_job(&self, caller: Caller, account_id: Path<String>, job_id: Path<String>) -> Answer<JobDto> {
        let account_id = account(&caller, &account_id)?;
        let job = self.jade.job(account_id, id(&job_id)?).await?;
        Ok(Document(Envelope::ok(JobDto::new(&job, self.jade.settings().compat, self.jade.now()))))
    }

    /// The account's runs, across its environments. Paging with `offset` yields every run
    /// exactly once, in order.
    #[oai(path = "/accounts/:account_id/runs", method = "get")]
    async fn list_runs(
        &self,
        caller: Caller,
        account_id: Path<String>,
        /// Only runs of this job.
        job_definition_id: Query<Option<String>>,
        /// Only runs of these jobs, e.g. `[1,2]`.
        #[oai(name = "job_definition_id__in")]
        job_definition_id_in: Query<Option<String>>,
        /// Only runs of this environment.
        environment_id: Query<Option<String>>,
        /// Only runs of this project.
        project_id: Query<Option<String>>,
        /// Only runs of these projects, e.g. `[1,2]`.
        #[oai(name = "project_id__in")]
        project_id_in: Query<Option<String>>,
        /// Only runs with this status code.
        status: Query<Option<String>>,
        /// Only runs with these status codes, e.g. `[1,2]`.
        #[oai(name = "status__in")]
        status_in: Query<Option<String>>,
        /// `id`, `created_at`, `finished_at`; `-` first for descending (default `id`).
        order_by: Query<Option<String>>,
        /// At most this many runs (default and most: 100).
        limit: Query<Option<String>>,
        /// Skip this many runs.
        offset: Query<Option<String>>,
        /// `job` embeds each run's job.
        include_related: Query<Option<String>>,
    ) -> List<JobRunDto> {
        let account_id = account(&caller, &account_id)?;
        let page = Page::runs(count("offset", &offset)?, count("limit", &limit)?);
        let filter = RunFilter {
            job_definition_ids: both(
                integer("job_definition_id", &job_definition_id)?,
                integers("job_definition_id__in", &job_definition_id_in)?,
            ),
            environment_id: integer("environment_id", &environment_id)?,
            project_ids: both(integer("project_id", &project_id)?, integers("project_id__in", &project_id_in)?),
            statuses: both(integer("status", &status)?, integers("status__in", &status_in)?),
        };
        let order = match order_by.as_deref().filter(|o| !o.is_empty()) {
            Some(order) => RunOrder::parse(order)?,
            None => RunOrder::default(),
        };
        let include_job = includes_job(&include_related);
        let runs = self.jade.runs(account_id, &filter, order, page, include_job).await?;
        let filters = filters(
            account_id,
            page,
            &[
                ("job_definition_id__in", filter.job_definition_ids.as_ref().map(|v| json!(v))),
                ("environment_id", filter.environment_id.map(Value::from)),
                ("project_id__in", filter.project_ids.as_ref().map(|v| json!(v))),
                ("status__in", filter.statuses.as_ref().map(|v| json!(v))),
                ("include_related", include_job.then(|| json!(["job"]))),
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
        account_id: Path<String>,
        run_id: Path<String>,
        /// `job` embeds the run's job.
        include_related: Query<Option<String>>,
    ) -> Answer<JobRunDto> {
        let account_id = account(&caller, &account_id)?;
        let run = self.jade.run(account_id, id(&run_id)?, includes_job(&include_related)).await?;
        Ok(Document(Envelope::ok(JobRunDto::new(&run, self.jade.settings().compat, self.jade.now()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_as_dbt_cloud_clients_send_them() {
        assert_eq!(integers("x", &Some("[1, 2]".into())).unwrap(), Some(vec![1, 2]));
        assert_eq!(integers("x", &Some("3,4".into())).unwrap(), Some(vec![3, 4]));
        assert_eq!(integers("x", &Some("[]".into())).unwrap(), Some(vec![]));
        assert_eq!(integers("x", &Some("".into())).unwrap(), None);
        assert!(integers("x", &Some("[a]".into())).is_err());
        assert_eq!(both(Some(1), Some(vec![1, 2])), Some(vec![1]));
        assert_eq!(both(Some(3), Some(vec![1, 2])), Some(vec![]));
        assert!(includes_job(&Some("[\"job\"]".into())));
        assert!(includes_job(&Some("trigger,job".into())));
        assert!(!includes_job(&Some("".into())));
        assert!(count("limit", &Some("-1".into())).is_err());
        assert_eq!(count("limit", &Some(" 7 ".into())).unwrap(), Some(7));
    }
}
