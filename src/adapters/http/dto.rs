//! The JSON shapes of the API, with their OpenAPI schemas. Every dbt Cloud field Jade has
//! no value for is present and `null`, as dbt Cloud clients expect.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::SecondsFormat;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use poem_openapi::{Object, types::Any};
use serde::Serialize;
use serde_json::Value;

use crate::domain::catalog::{self, Account, Environment, Project};
use crate::domain::file::File;
use crate::domain::humanize;
use crate::domain::job::Job;
use crate::domain::job_run::{ApiCompat, JobRun};

/// A UTC time as the first Jade rendered it: `2023-12-02T09:49:46Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time(pub catalog::Timestamp);

impl Type for Time {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string_date-time".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("string", "date-time")))
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ToJSON for Time {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.to_rfc3339_opts(SecondsFormat::Secs, true)))
    }
}

impl Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

impl ParseFromJSON for Time {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::String(text)) => Ok(Time(chrono::DateTime::parse_from_rfc3339(&text)?.to_utc())),
            other => Err(ParseError::expected_type(other.unwrap_or_default())),
        }
    }
}

fn time(value: Option<catalog::Timestamp>) -> Option<Time> {
    value.map(Time)
}

/// dbt Cloud's `status` object of every v2 answer.
#[derive(Object, Serialize, Debug, Clone)]
pub struct Status {
    pub code: u16,
    pub is_success: bool,
    #[oai(nullable)]
    pub user_message: Option<String>,
    #[oai(nullable)]
    pub developer_message: Option<String>,
}

impl Status {
    pub fn ok() -> Self {
        Status {
            code: 200,
            is_success: true,
            user_message: Some("Success!".into()),
            developer_message: Some(String::new()),
        }
    }
}

/// `{"data": .., "status": ..}`
#[derive(Object, Serialize, Debug)]
pub struct Envelope<T: ParseFromJSON + ToJSON> {
    pub data: T,
    pub status: Status,
}

impl<T: ParseFromJSON + ToJSON> Envelope<T> {
    pub fn ok(data: T) -> Self {
        Envelope { data, status: Status::ok() }
    }
}

/// `{"data": [..], "status": .., "extra": ..}`
#[derive(Object, Serialize, Debug)]
pub struct ListEnvelope<T: ParseFromJSON + ToJSON> {
    pub data: Vec<T>,
    pub status: Status,
    pub extra: Extra,
}

#[derive(Object, Serialize, Debug, Clone)]
pub struct Extra {
    /// The filters the list applied, as dbt Cloud reports them.
    pub filters: BTreeMap<String, Value>,
    #[oai(nullable)]
    pub order_by: Option<String>,
    pub pagination: Pagination,
}

#[derive(Object, Serialize, Debug, Clone)]
pub struct Pagination {
    /// Items in this page.
    pub count: u64,
    /// Items in the whole list.
    pub total_count: u64,
}

/// `{"data": ..}`, the Datacoves API's envelope.
#[derive(Object, Serialize, Debug)]
pub struct Data<T: ParseFromJSON + ToJSON> {
    pub data: T,
}

/// A dbt Cloud account, from `users_account`.
#[derive(Object, Serialize, Debug, Clone)]
#[oai(rename = "Account")]
pub struct AccountDto {
    pub id: i64,
    pub name: Option<String>,
    pub state: Option<i32>,
    pub plan: Option<i32>,
    pub pending_cancel: Option<bool>,
    pub run_slots: Option<i32>,
    pub developer_seats: Option<i32>,
    pub it_seats: Option<i32>,
    pub read_only_seats: Option<i32>,
    pub pod_memory_request_mebibytes: Option<i32>,
    pub run_duration_limit_seconds: Option<i32>,
    pub queue_limit: Option<i32>,
    pub stripe_customer_id: Option<i64>,
    pub metronome_customer_id: Option<i64>,
    pub salesforce_customer_id: Option<i64>,
    pub third_party_billing: Option<bool>,
    pub billing_email_address: Option<String>,
    pub locked: Option<bool>,
    pub lock_reason: Option<String>,
    pub lock_cause: Option<String>,
    pub develop_file_system: Option<bool>,
    pub unlocked_at: Option<Time>,
    pub unlock_if_subscription_renewed: Option<bool>,
    pub enterprise_authentication_method: Option<String>,
    pub enterprise_login_slug: Option<String>,
    pub enterprise_unique_identifier: Option<String>,
    pub business_critical: Option<bool>,
    pub created_at: Option<Time>,
    pub updated_at: Option<Time>,
    pub starter_repo_url: Option<String>,
    pub git_auth_level: Option<String>,
    /// The account's slug.
    pub identifier: Option<String>,
    pub trial_end_date: Option<Time>,
    pub static_subdomain: Option<String>,
    pub run_locked_until: Option<Time>,
    pub docs_job_id: Option<i64>,
    pub freshness_job_id: Option<i64>,
}

impl From<Account> for AccountDto {
    fn from(account: Account) -> Self {
        AccountDto {
            id: account.id,
            name: account.name,
            state: None,
            plan: account.plan_id,
            pending_cancel: None,
            run_slots: None,
            developer_seats: account.developer_licenses,
            it_seats: None,
            read_only_seats: None,
            pod_memory_request_mebibytes: None,
            run_duration_limit_seconds: None,
            queue_limit: None,
            stripe_customer_id: None,
            metronome_customer_id: None,
            salesforce_customer_id: None,
            third_party_billing: None,
            billing_email_address: None,
            locked: None,
            lock_reason: None,
            lock_cause: None,
            develop_file_system: None,
            unlocked_at: None,
            unlock_if_subscription_renewed: None,
            enterprise_authentication_method: None,
            enterprise_login_slug: None,
            enterprise_unique_identifier: None,
            business_critical: None,
            created_at: time(account.created_at),
            updated_at: time(account.updated_at),
            starter_repo_url: None,
            git_auth_level: None,
            identifier: account.slug,
            trial_end_date: time(account.trial_ends_at),
            static_subdomain: None,
            run_locked_until: None,
            docs_job_id: None,
            freshness_job_id: None,
        }
    }
}

/// A dbt Cloud project, from `projects_project`.
#[derive(Object, Serialize, Debug, Clone)]
#[oai(rename = "Project")]
pub struct ProjectDto {
    pub id: i64,
    pub name: Option<String>,
    pub slug: String,
    pub account_id: i64,
    pub connection_id: Option<i64>,
    pub repository_id: Option<i32>,
    pub semantic_layer_id: Option<i64>,
    /// The Datacoves project id.
    pub integration_entity_id: i64,
    pub skipped_setup: bool,
    pub state: Option<i32>,
    pub dbt_project_subdirectory: Option<String>,
    pub docs_job_id: Option<i64>,
    pub freshness_job_id: Option<i64>,
    pub created_at: Option<Time>,
    pub updated_at: Option<Time>,
}

impl From<Project> for ProjectDto {
    fn from(project: Project) -> Self {
        ProjectDto {
            id: project.id,
            name: project.name,
            slug: project.slug,
            account_id: project.account_id,
            connection_id: None,
            repository_id: project.repository_id,
            semantic_layer_id: None,
            integration_entity_id: project.id,
            skipped_setup: false,
            state: Some(catalog::ACTIVE as i32),
            dbt_project_subdirectory: None,
            docs_job_id: None,
            freshness_job_id: None,
            created_at: time(project.created_at),
            updated_at: time(project.updated_at),
        }
    }
}

/// A dbt Cloud environment, from `projects_environment`.
#[derive(Object, Serialize, Debug, Clone)]
#[oai(rename = "Environment")]
pub struct EnvironmentDto {
    pub id: i64,
    pub account_id: i64,
    pub project_id: i64,
    /// The environment's id.
    pub connection_id: i64,
    pub credentials_id: Option<i64>,
    pub created_by_id: Option<i64>,
    pub extended_attributes_id: Option<i64>,
    pub repository_id: Option<i64>,
    pub name: Option<String>,
    pub slug: String,
    /// The environment's `dbt_home_path`.
    pub dbt_project_subdirectory: Option<String>,
    pub use_custom_branch: bool,
    pub custom_branch: Option<String>,
    pub dbt_version: Option<String>,
    pub raw_dbt_version: Option<String>,
    pub supports_docs: Option<bool>,
    pub state: Option<i32>,
    /// `development` for a Datacoves `dev` environment, else `deployment`.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub environment_type: String,
    /// `production` for a Datacoves `prod` environment, else null.
    #[oai(nullable)]
    pub deployment_type: Option<String>,
    pub custom_environment_variables: Option<String>,
    pub created_at: Option<Time>,
    pub updated_at: Option<Time>,
}

impl From<Environment> for EnvironmentDto {
    fn from(environment: Environment) -> Self {
        let environment_type = environment.dbt_cloud_type().to_owned();
        let deployment_type = environment.deployment_type().map(str::to_owned);
        EnvironmentDto {
            id: environment.id,
            account_id: environment.account_id,
            project_id: environment.project_id,
            connection_id: environment.id,
            credentials_id: None,
            created_by_id: None,
            extended_attributes_id: None,
            repository_id: None,
            name: environment.name,
            slug: environment.slug,
            dbt_project_subdirectory: environment.dbt_home_path,
            use_custom_branch: false,
            custom_branch: None,
            dbt_version: None,
            raw_dbt_version: None,
            supports_docs: None,
            state: Some(catalog::ACTIVE as i32),
            environment_type,
            deployment_type,
            custom_environment_variables: None,
            created_at: time(environment.created_at),
            updated_at: time(environment.updated_at),
        }
    }
}

/// A dbt Cloud job: one Airflow DAG of an environment.
#[derive(Object, Serialize, Debug, Clone)]
#[oai(rename = "Job")]
pub struct JobDto {
    /// Jade's integer id for (environment, DAG).
    pub id: i64,
    pub dbt_job_ext_id: i64,
    pub account_id: i64,
    pub project_id: i64,
    pub environment_id: i64,
    pub dag_id: String,
    /// The DAG id.
    pub name: String,
    pub description: Option<String>,
    pub deferring_job_definition_id: Option<i64>,
    pub deferring_environment_id: Option<i64>,
    pub lifecycle_webhooks: Option<bool>,
    pub lifecycle_webhooks_url: Option<String>,
    pub dbt_version: Option<String>,
    pub raw_dbt_version: Option<String>,
    pub triggers: Option<Any<Value>>,
    /// The DAG's last parse time.
    pub created_at: Option<Time>,
    pub updated_at: Option<Time>,
    /// The DAG's schedule interval.
    pub schedule: Option<String>,
    pub settings: Option<Any<Value>>,
    pub execution: Option<Any<Value>>,
    /// 1 when the DAG is active, else 0.
    pub state: i32,
    pub generate_docs: Option<bool>,
    pub run_generate_sources: Option<bool>,
    /// Always null, as the first Jade rendered it: the run is in
    /// `most_recent_completed_job_run`.
    #[oai(nullable)]
    pub most_recent_completed_run: Option<i64>,
    /// Always null, as the first Jade rendered it: the run is in `most_recent_job_run`.
    #[oai(nullable)]
    pub most_recent_run: Option<i64>,
    pub is_deferrable: Option<bool>,
    pub deactivated: bool,
    pub run_failure_count: Option<i64>,
    pub job_type: Option<String>,
    pub triggers_on_draft_pr: bool,
    /// On show: the latest run by end date.
    pub most_recent_job_run: Option<Box<JobRunDto>>,
    /// On show: the latest successful run.
    pub most_recent_completed_job_run: Option<Box<JobRunDto>>,
}

impl JobDto {
    pub fn new(job: &Job, compat: ApiCompat, now: catalog::Timestamp) -> Self {
        let run = |run: &Option<Box<JobRun>>| run.as_ref().map(|r| Box::new(JobRunDto::new(r, compat, now)));
        JobDto {
            id: job.id,
            dbt_job_ext_id: job.id,
            account_id: job.environment.account_id,
            project_id: job.environment.project_id,
            environment_id: job.environment.id,
            dag_id: job.dag.dag_id.clone(),
            name: job.dag.dag_id.clone(),
            description: job.dag.description.clone(),
            deferring_job_definition_id: None,
            deferring_environment_id: None,
            lifecycle_webhooks: None,
            lifecycle_webhooks_url: None,
            dbt_version: None,
            raw_dbt_version: None,
            triggers: None,
            created_at: time(job.dag.last_parsed_time),
            updated_at: time(job.dag.last_parsed_time),
            schedule: job.dag.schedule_interval.clone(),
            settings: None,
            execution: None,
            state: job.state(),
            generate_docs: None,
            run_generate_sources: None,
            most_recent_completed_run: None,
            most_recent_run: None,
            is_deferrable: None,
            deactivated: !job.is_active(),
            run_failure_count: None,
            job_type: None,
            triggers_on_draft_pr: false,
            most_recent_job_run: run(&job.most_recent_run),
            most_recent_completed_job_run: run(&job.most_recent_completed_run),
        }
    }
}

/// A dbt Cloud run: one Airflow DAG run.
#[derive(Object, Serialize, Debug, Clone)]
#[oai(rename = "JobRun")]
pub struct JobRunDto {
    /// Jade's integer id for (environment, DAG run).
    pub id: i64,
    /// The Airflow DAG run's id.
    pub dbt_job_run_ext_id: i64,
    pub job_id: i64,
    /// The job's id, as dbt Cloud clients filter on it.
    pub job_definition_id: i64,
    pub dag_id: String,
    pub dag_run_id: i64,
    pub dag_run_run_id: Option<String>,
    pub trigger_id: Option<i64>,
    pub environment_id: i64,
    pub environment_slug: String,
    pub account_id: i64,
    pub project_id: i64,
    /// Success 1, Error 2, Queued 3, Running 5 (with `API_COMPAT=dbt-cloud`: Queued 1,
    /// Running 3, Success 10, Error 20).
    pub status: i32,
    pub status_humanized: String,
    pub status_message: Option<String>,
    pub dbt_version: Option<String>,
    pub git_branch: Option<String>,
    pub git_sha: Option<String>,
    pub owner_thread_id: Option<String>,
    pub executed_by_thread_id: Option<String>,
    pub deferring_run_id: Option<i64>,
    /// Whether a manifest was uploaded for the run.
    pub artifacts_saved: bool,
    /// Where the run's manifest is stored.
    pub artifact_s3_path: Option<String>,
    pub has_docs_generated: bool,
    pub has_sources_generated: bool,
    pub notifications_sent: bool,
    pub blocked_by: Option<Vec<i64>>,
    /// Always null, as the first Jade rendered it.
    #[oai(nullable)]
    pub scribe_enabled: Option<bool>,
    pub created_at: Option<Time>,
    pub updated_at: Option<Time>,
    pub queued_at: Option<Time>,
    pub dequeued_at: Option<Time>,
    pub started_at: Option<Time>,
    pub finished_at: Option<Time>,
    pub completed_at: Option<Time>,
    pub last_checked_at: Option<Time>,
    pub last_heartbeat_at: Option<Time>,
    pub should_start_at: Option<Time>,
    pub in_progress: bool,
    pub is_complete: bool,
    pub is_success: bool,
    pub is_error: bool,
    /// Always null, as the first Jade rendered it (Airflow runs are not cancelled).
    #[oai(nullable)]
    pub is_cancelled: Option<bool>,
    pub is_running: bool,
    /// Seconds from queued to finished.
    pub duration: Option<i64>,
    /// Seconds from queued to started.
    pub queued_duration: Option<i64>,
    /// Seconds from started to finished.
    pub run_duration: Option<i64>,
    pub duration_humanized: Option<String>,
    pub queued_duration_humanized: Option<String>,
    pub run_duration_humanized: Option<String>,
    pub created_at_humanized: Option<String>,
    pub finished_at_humanized: Option<String>,
    /// With `include_related=job`.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<Box<JobDto>>,
}

impl JobRunDto {
    pub fn new(run: &JobRun, compat: ApiCompat, now: catalog::Timestamp) -> Self {
        let status = run.status();
        let dag_run = &run.dag_run;
        let ago = |at: Option<catalog::Timestamp>| at.map(|at| humanize::ago((now - at).num_seconds()));
        JobRunDto {
            id: run.id,
            dbt_job_run_ext_id: dag_run.id,
            job_id: run.job_id,
            job_definition_id: run.job_id,
            dag_id: dag_run.dag_id.clone(),
            dag_run_id: dag_run.id,
            dag_run_run_id: dag_run.run_id.clone(),
            trigger_id: None,
            environment_id: run.environment.id,
            environment_slug: run.environment.slug.clone(),
            account_id: run.environment.account_id,
            project_id: run.environment.project_id,
            status: status.code(compat),
            status_humanized: status.humanized().to_owned(),
            status_message: None,
            dbt_version: None,
            git_branch: None,
            git_sha: None,
            owner_thread_id: None,
            executed_by_thread_id: None,
            deferring_run_id: None,
            artifacts_saved: run.artifact_path.is_some(),
            artifact_s3_path: run.artifact_path.clone(),
            has_docs_generated: false,
            has_sources_generated: false,
            notifications_sent: false,
            blocked_by: None,
            scribe_enabled: None,
            created_at: time(dag_run.queued_at),
            updated_at: time(dag_run.queued_at),
            queued_at: time(dag_run.queued_at),
            dequeued_at: time(dag_run.end_date),
            started_at: time(dag_run.start_date),
            finished_at: time(dag_run.end_date),
            completed_at: time(dag_run.end_date),
            last_checked_at: None,
            last_heartbeat_at: None,
            should_start_at: time(dag_run.queued_at),
            in_progress: run.is_running(),
            is_complete: run.is_complete(),
            is_success: status == crate::domain::job_run::RunStatus::Success,
            is_error: status == crate::domain::job_run::RunStatus::Error,
            is_cancelled: None,
            is_running: run.is_running(),
            duration: run.duration(),
            queued_duration: run.queued_duration(),
            run_duration: run.run_duration(),
            duration_humanized: run.duration().map(humanize::duration),
            queued_duration_humanized: run.queued_duration().map(humanize::duration),
            run_duration_humanized: run.run_duration().map(humanize::duration),
            created_at_humanized: ago(dag_run.queued_at),
            finished_at_humanized: ago(dag_run.end_date),
            job: run.job.as_ref().map(|job| Box::new(JobDto::new(job, compat, now))),
        }
    }
}

/// A stored file. `contents` is the stored JSON value, or a string when the body is not
/// JSON; absent on create.
#[derive(Object, Serialize, Debug, Clone)]
#[oai(rename = "File")]
pub struct FileDto {
    pub slug: String,
    pub filename: String,
    pub tag: String,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contents: Option<Any<Value>>,
    pub environment_slug: String,
    pub path: String,
    pub inserted_at: Time,
}

impl From<File> for FileDto {
    fn from(file: File) -> Self {
        FileDto {
            slug: file.slug.to_string(),
            filename: file.filename,
            tag: file.tag,
            contents: None,
            environment_slug: file.environment_slug,
            path: file.path,
            inserted_at: Time(file.inserted_at),
        }
    }
}
