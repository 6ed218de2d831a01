//! The JSON shapes of the API, with their OpenAPI schemas. Every dbt Cloud field Jade has
//! no value for is present and `null`, as dbt Cloud clients expect.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::SecondsFormat;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{MaybeUndefined, ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use poem_openapi::{Object, types::Any};
use serde::Serialize;
use serde_json::{Value, json};

use crate::domain::catalog::{self, Account, Environment, Project};
use crate::domain::file::File;
use crate::domain::humanize;
use crate::domain::job::Job;
use crate::domain::job_run::{self, ApiCompat, JobRun, RunStatus, RunStep};
use crate::domain::run_request::RunRequest;

/// A UTC time: as the first Jade rendered it (`2023-12-02T09:49:46Z`), or, on runs and jobs
/// with `API_COMPAT=dbt-cloud`, as dbt Cloud writes it (`2024-05-27 10:42:16.179903+00:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    at: catalog::Timestamp,
    dbt_cloud: bool,
}

impl Time {
    fn text(&self) -> String {
        if self.dbt_cloud {
            self.at.format("%Y-%m-%d %H:%M:%S%.6f%:z").to_string()
        } else {
            self.at.to_rfc3339_opts(SecondsFormat::Secs, true)
        }
    }
}

impl Type for Time {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string_timestamp".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some(
                "A UTC time: `2023-12-02T09:49:46Z`; on runs and jobs with `API_COMPAT=dbt-cloud`, \
                 `2024-05-27 10:42:16.179903+00:00` as dbt Cloud writes it.",
            ),
            ..MetaSchema::new("string")
        }))
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
        Some(Value::String(self.text()))
    }
}

impl Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text())
    }
}

impl ParseFromJSON for Time {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::String(text)) => {
                let dbt_cloud = !text.contains('T');
                let at = if dbt_cloud {
                    chrono::DateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f%:z")?
                } else {
                    chrono::DateTime::parse_from_rfc3339(&text)?
                };
                Ok(Time { at: at.to_utc(), dbt_cloud })
            }
            other => Err(ParseError::expected_type(other.unwrap_or_default())),
        }
    }
}

/// A key only dbt Cloud sends: absent in the first Jade's shape, else the value or `null`.
fn dbt_only<T>(dbt_cloud: bool, value: Option<T>) -> MaybeUndefined<T> {
    if dbt_cloud { MaybeUndefined::from_opt_null(value) } else { MaybeUndefined::Undefined }
}

/// A time as the first Jade rendered it.
fn time(value: Option<catalog::Timestamp>) -> Option<Time> {
    value.map(|at| Time { at, dbt_cloud: false })
}

/// A run's or job's time, in the compat mode's format.
fn stamp(value: Option<catalog::Timestamp>, compat: ApiCompat) -> Option<Time> {
    value.map(|at| Time { at, dbt_cloud: compat == ApiCompat::DbtCloud })
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
    #[oai(nullable)]
    pub name: Option<String>,
    #[oai(nullable)]
    pub state: Option<i32>,
    #[oai(nullable)]
    pub plan: Option<i32>,
    #[oai(nullable)]
    pub pending_cancel: Option<bool>,
    #[oai(nullable)]
    pub run_slots: Option<i32>,
    #[oai(nullable)]
    pub developer_seats: Option<i32>,
    #[oai(nullable)]
    pub it_seats: Option<i32>,
    #[oai(nullable)]
    pub read_only_seats: Option<i32>,
    #[oai(nullable)]
    pub pod_memory_request_mebibytes: Option<i32>,
    #[oai(nullable)]
    pub run_duration_limit_seconds: Option<i32>,
    #[oai(nullable)]
    pub queue_limit: Option<i32>,
    #[oai(nullable)]
    pub stripe_customer_id: Option<i64>,
    #[oai(nullable)]
    pub metronome_customer_id: Option<i64>,
    #[oai(nullable)]
    pub salesforce_customer_id: Option<i64>,
    #[oai(nullable)]
    pub third_party_billing: Option<bool>,
    #[oai(nullable)]
    pub billing_email_address: Option<String>,
    #[oai(nullable)]
    pub locked: Option<bool>,
    #[oai(nullable)]
    pub lock_reason: Option<String>,
    #[oai(nullable)]
    pub lock_cause: Option<String>,
    #[oai(nullable)]
    pub develop_file_system: Option<bool>,
    #[oai(nullable)]
    pub unlocked_at: Option<Time>,
    #[oai(nullable)]
    pub unlock_if_subscription_renewed: Option<bool>,
    #[oai(nullable)]
    pub enterprise_authentication_method: Option<String>,
    #[oai(nullable)]
    pub enterprise_login_slug: Option<String>,
    #[oai(nullable)]
    pub enterprise_unique_identifier: Option<String>,
    #[oai(nullable)]
    pub business_critical: Option<bool>,
    #[oai(nullable)]
    pub created_at: Option<Time>,
    #[oai(nullable)]
    pub updated_at: Option<Time>,
    #[oai(nullable)]
    pub starter_repo_url: Option<String>,
    #[oai(nullable)]
    pub git_auth_level: Option<String>,
    /// The account's slug.
    #[oai(nullable)]
    pub identifier: Option<String>,
    #[oai(nullable)]
    pub trial_end_date: Option<Time>,
    #[oai(nullable)]
    pub static_subdomain: Option<String>,
    #[oai(nullable)]
    pub run_locked_until: Option<Time>,
    #[oai(nullable)]
    pub docs_job_id: Option<i64>,
    #[oai(nullable)]
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
    #[oai(nullable)]
    pub name: Option<String>,
    pub slug: String,
    pub account_id: i64,
    #[oai(nullable)]
    pub connection_id: Option<i64>,
    #[oai(nullable)]
    pub repository_id: Option<i32>,
    #[oai(nullable)]
    pub semantic_layer_id: Option<i64>,
    /// The Datacoves project id.
    pub integration_entity_id: i64,
    pub skipped_setup: bool,
    #[oai(nullable)]
    pub state: Option<i32>,
    #[oai(nullable)]
    pub dbt_project_subdirectory: Option<String>,
    #[oai(nullable)]
    pub docs_job_id: Option<i64>,
    #[oai(nullable)]
    pub freshness_job_id: Option<i64>,
    #[oai(nullable)]
    pub created_at: Option<Time>,
    #[oai(nullable)]
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
    #[oai(nullable)]
    pub credentials_id: Option<i64>,
    #[oai(nullable)]
    pub created_by_id: Option<i64>,
    #[oai(nullable)]
    pub extended_attributes_id: Option<i64>,
    #[oai(nullable)]
    pub repository_id: Option<i64>,
    #[oai(nullable)]
    pub name: Option<String>,
    pub slug: String,
    /// The environment's `dbt_home_path`.
    #[oai(nullable)]
    pub dbt_project_subdirectory: Option<String>,
    pub use_custom_branch: bool,
    #[oai(nullable)]
    pub custom_branch: Option<String>,
    #[oai(nullable)]
    pub dbt_version: Option<String>,
    #[oai(nullable)]
    pub raw_dbt_version: Option<String>,
    #[oai(nullable)]
    pub supports_docs: Option<bool>,
    #[oai(nullable)]
    pub state: Option<i32>,
    /// `development` for a Datacoves `dev` environment, else `deployment`.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub environment_type: String,
    /// `production` for a Datacoves `prod` environment, else null.
    #[oai(nullable)]
    pub deployment_type: Option<String>,
    #[oai(nullable)]
    pub custom_environment_variables: Option<String>,
    #[oai(nullable)]
    pub created_at: Option<Time>,
    #[oai(nullable)]
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
    #[oai(nullable)]
    pub description: Option<String>,
    #[oai(nullable)]
    pub deferring_job_definition_id: Option<i64>,
    #[oai(nullable)]
    pub deferring_environment_id: Option<i64>,
    #[oai(nullable)]
    pub lifecycle_webhooks: Option<bool>,
    #[oai(nullable)]
    pub lifecycle_webhooks_url: Option<String>,
    #[oai(nullable)]
    pub dbt_version: Option<String>,
    #[oai(nullable)]
    pub raw_dbt_version: Option<String>,
    #[oai(nullable)]
    pub triggers: Option<Any<Value>>,
    /// The DAG's last parse time.
    #[oai(nullable)]
    pub created_at: Option<Time>,
    #[oai(nullable)]
    pub updated_at: Option<Time>,
    /// The DAG's schedule interval as Airflow 2 stores it (JSON text such as `"\"@daily\""`;
    /// from Airflow 3's timetable summary written the same way); with `API_COMPAT=dbt-cloud`
    /// dbt Cloud's object `{"cron", "date": {"type", "cron"}, "time": {"type", "interval"}}`.
    #[oai(nullable)]
    pub schedule: Option<Any<Value>>,
    #[oai(nullable)]
    pub settings: Option<Any<Value>>,
    #[oai(nullable)]
    pub execution: Option<Any<Value>>,
    /// 1 when the DAG is active, else 0 (with `API_COMPAT=dbt-cloud`: 2).
    pub state: i32,
    #[oai(nullable)]
    pub generate_docs: Option<bool>,
    #[oai(nullable)]
    pub run_generate_sources: Option<bool>,
    /// Always null, as the first Jade rendered it: the run is in
    /// `most_recent_completed_job_run`.
    #[oai(nullable)]
    pub most_recent_completed_run: Option<i64>,
    /// Always null, as the first Jade rendered it: the run is in `most_recent_job_run`.
    #[oai(nullable)]
    pub most_recent_run: Option<i64>,
    #[oai(nullable)]
    pub is_deferrable: Option<bool>,
    pub deactivated: bool,
    #[oai(nullable)]
    pub run_failure_count: Option<i64>,
    #[oai(nullable)]
    pub job_type: Option<String>,
    pub triggers_on_draft_pr: bool,
    /// On show: the latest run by end date.
    #[oai(nullable)]
    pub most_recent_job_run: Option<Box<JobRunDto>>,
    /// On show: the latest successful run.
    #[oai(nullable)]
    pub most_recent_completed_job_run: Option<Box<JobRunDto>>,
    /// With `API_COMPAT=dbt-cloud`: `[]`.
    #[oai(nullable)]
    #[serde(skip_serializing_if = "MaybeUndefined::is_undefined")]
    pub execute_steps: MaybeUndefined<Vec<String>>,
}

impl JobDto {
    pub fn new(job: &Job, compat: ApiCompat, now: catalog::Timestamp) -> Self {
        let dbt_cloud = compat == ApiCompat::DbtCloud;
        let run = |run: &Option<Box<JobRun>>| run.as_ref().map(|r| Box::new(JobRunDto::new(r, compat, now)));
        let cron = job.cron();
        let dbt_cloud_object = |value: Value| dbt_cloud.then_some(Any(value));
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
            triggers: dbt_cloud_object(json!({
                "github_webhook": false,
                "git_provider_webhook": false,
                "schedule": job.is_scheduled(),
                "on_merge": false,
            })),
            created_at: stamp(job.dag.last_parsed_time, compat),
            updated_at: stamp(job.dag.last_parsed_time, compat),
            schedule: if dbt_cloud {
                Some(Any(json!({
                    "cron": cron,
                    "date": {"type": if cron.is_some() { "custom_cron" } else { "every_day" }, "cron": cron},
                    "time": {"type": "every_hour", "interval": null},
                })))
            } else {
                job.schedule_interval().map(|s| Any(Value::String(s)))
            },
            // dbt Cloud's defaults for a job that sets neither.
            settings: dbt_cloud_object(json!({"threads": 4, "target_name": "default"})),
            execution: dbt_cloud_object(json!({"timeout_seconds": 0})),
            state: match (compat, job.is_active()) {
                (ApiCompat::DbtCloud, false) => 2,
                _ => job.state(),
            },
            generate_docs: None,
            run_generate_sources: None,
            most_recent_completed_run: None,
            most_recent_run: None,
            is_deferrable: None,
            deactivated: !job.is_active(),
            run_failure_count: None,
            job_type: dbt_cloud.then(|| "scheduled".to_owned()),
            triggers_on_draft_pr: false,
            most_recent_job_run: run(&job.most_recent_run),
            most_recent_completed_job_run: run(&job.most_recent_completed_run),
            execute_steps: dbt_only(dbt_cloud, Some(Vec::new())),
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
    #[oai(nullable)]
    pub dag_run_run_id: Option<String>,
    #[oai(nullable)]
    pub trigger_id: Option<i64>,
    pub environment_id: i64,
    pub environment_slug: String,
    pub account_id: i64,
    pub project_id: i64,
    /// Success 1, Error (or cancelled) 2, Queued 3, Running 5 (with `API_COMPAT=dbt-cloud`:
    /// Queued 1, Running 3, Success 10, Error 20, Cancelled 30).
    pub status: i32,
    pub status_humanized: String,
    #[oai(nullable)]
    pub status_message: Option<String>,
    #[oai(nullable)]
    pub dbt_version: Option<String>,
    #[oai(nullable)]
    pub git_branch: Option<String>,
    #[oai(nullable)]
    pub git_sha: Option<String>,
    #[oai(nullable)]
    pub owner_thread_id: Option<String>,
    #[oai(nullable)]
    pub executed_by_thread_id: Option<String>,
    #[oai(nullable)]
    pub deferring_run_id: Option<i64>,
    /// Whether a manifest was uploaded for the run.
    pub artifacts_saved: bool,
    /// Where the run's manifest is stored.
    #[oai(nullable)]
    pub artifact_s3_path: Option<String>,
    pub has_docs_generated: bool,
    pub has_sources_generated: bool,
    pub notifications_sent: bool,
    #[oai(nullable)]
    pub blocked_by: Option<Vec<i64>>,
    /// Always null, as the first Jade rendered it.
    #[oai(nullable)]
    pub scribe_enabled: Option<bool>,
    #[oai(nullable)]
    pub created_at: Option<Time>,
    #[oai(nullable)]
    pub updated_at: Option<Time>,
    #[oai(nullable)]
    pub queued_at: Option<Time>,
    #[oai(nullable)]
    pub dequeued_at: Option<Time>,
    #[oai(nullable)]
    pub started_at: Option<Time>,
    #[oai(nullable)]
    pub finished_at: Option<Time>,
    #[oai(nullable)]
    pub completed_at: Option<Time>,
    #[oai(nullable)]
    pub last_checked_at: Option<Time>,
    #[oai(nullable)]
    pub last_heartbeat_at: Option<Time>,
    #[oai(nullable)]
    pub should_start_at: Option<Time>,
    pub in_progress: bool,
    pub is_complete: bool,
    pub is_success: bool,
    pub is_error: bool,
    /// Whether the run was cancelled through Jade; otherwise null, as the first Jade
    /// rendered it (with `API_COMPAT=dbt-cloud` false).
    #[oai(nullable)]
    pub is_cancelled: Option<bool>,
    pub is_running: bool,
    /// From queued to finished: whole seconds (an integer); with `API_COMPAT=dbt-cloud`
    /// `"HH:MM:SS"` counted to now while unfinished.
    #[oai(nullable)]
    pub duration: Option<Any<Value>>,
    /// From queued to started, as `duration`.
    #[oai(nullable)]
    pub queued_duration: Option<Any<Value>>,
    /// From started to finished, as `duration`.
    #[oai(nullable)]
    pub run_duration: Option<Any<Value>>,
    #[oai(nullable)]
    pub duration_humanized: Option<String>,
    #[oai(nullable)]
    pub queued_duration_humanized: Option<String>,
    #[oai(nullable)]
    pub run_duration_humanized: Option<String>,
    #[oai(nullable)]
    pub created_at_humanized: Option<String>,
    #[oai(nullable)]
    pub finished_at_humanized: Option<String>,
    /// With `include_related=job`; with `API_COMPAT=dbt-cloud` also present (`null`) otherwise.
    #[oai(nullable)]
    #[serde(skip_serializing_if = "MaybeUndefined::is_undefined")]
    pub job: MaybeUndefined<Box<JobDto>>,
    /// With `API_COMPAT=dbt-cloud`: the run's page in the Airflow UI
    /// (`AIRFLOW_UI_URL_TEMPLATE`), `null` when unset.
    #[oai(nullable)]
    #[serde(skip_serializing_if = "MaybeUndefined::is_undefined")]
    pub href: MaybeUndefined<String>,
    /// With `API_COMPAT=dbt-cloud`: `{"cause": <the DAG run's note (the cause it was run
    /// with through Jade), else its run_type>, ..}`.
    #[oai(nullable)]
    #[serde(skip_serializing_if = "MaybeUndefined::is_undefined")]
    pub trigger: MaybeUndefined<Any<Value>>,
    /// With `API_COMPAT=dbt-cloud`: `null`.
    #[oai(nullable)]
    #[serde(skip_serializing_if = "MaybeUndefined::is_undefined")]
    pub environment: MaybeUndefined<Any<Value>>,
    /// With `include_related=run_steps`: the DAG run's task instances; with
    /// `API_COMPAT=dbt-cloud` also present (`[]`) otherwise.
    #[oai(nullable)]
    #[serde(skip_serializing_if = "MaybeUndefined::is_undefined")]
    pub run_steps: MaybeUndefined<Vec<RunStepDto>>,
    /// With `API_COMPAT=dbt-cloud`: `null`.
    #[oai(nullable)]
    #[serde(skip_serializing_if = "MaybeUndefined::is_undefined")]
    pub retrying_run_id: MaybeUndefined<i64>,
    /// With `API_COMPAT=dbt-cloud`: `false`.
    #[oai(nullable)]
    #[serde(skip_serializing_if = "MaybeUndefined::is_undefined")]
    pub can_retry: MaybeUndefined<bool>,
    /// With `API_COMPAT=dbt-cloud`: `null`.
    #[oai(nullable)]
    #[serde(skip_serializing_if = "MaybeUndefined::is_undefined")]
    pub used_repo_cache: MaybeUndefined<bool>,
}

impl JobRunDto {
    pub fn new(run: &JobRun, compat: ApiCompat, now: catalog::Timestamp) -> Self {
        let dbt_cloud = compat == ApiCompat::DbtCloud;
        let status = run.status();
        let dag_run = &run.dag_run;
        let at = |value| stamp(value, compat);
        let ago = |at: Option<catalog::Timestamp>| at.map(|at| humanize::ago((now - at).num_seconds()));
        // dbt Cloud counts an unfinished run's durations to now and writes them HH:MM:SS.
        let (duration, queued_duration, run_duration) = if dbt_cloud {
            let live = run.live_durations(now);
            (live.duration, live.queued_duration, live.run_duration)
        } else {
            (run.duration(), run.queued_duration(), run.run_duration())
        };
        let rendered = |seconds: Option<i64>| {
            seconds.map(|s| Any(if dbt_cloud { Value::String(job_run::clock(s)) } else { Value::from(s) }))
        };
        let job = run.job.as_ref().map(|job| Box::new(JobDto::new(job, compat, now)));
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
            status_message: run.status_message.clone(),
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
            blocked_by: dbt_cloud.then(Vec::new),
            scribe_enabled: None,
            created_at: at(dag_run.queued()),
            updated_at: at(dag_run.queued()),
            queued_at: at(dag_run.queued()),
            dequeued_at: at(dag_run.end_date),
            started_at: at(dag_run.start_date),
            finished_at: at(dag_run.end_date),
            completed_at: at(dag_run.end_date),
            last_checked_at: None,
            last_heartbeat_at: None,
            should_start_at: at(dag_run.queued()),
            // dbt Cloud counts a queued run as in progress too.
            in_progress: if dbt_cloud { !run.is_complete() } else { run.is_running() },
            is_complete: run.is_complete(),
            is_success: status == RunStatus::Success,
            is_error: status == RunStatus::Error,
            is_cancelled: (dbt_cloud || status == RunStatus::Cancelled).then_some(status == RunStatus::Cancelled),
            is_running: run.is_running(),
            duration: rendered(duration),
            queued_duration: rendered(queued_duration),
            run_duration: rendered(run_duration),
            duration_humanized: duration.map(humanize::duration),
            queued_duration_humanized: queued_duration.map(humanize::duration),
            run_duration_humanized: run_duration.map(humanize::duration),
            created_at_humanized: ago(dag_run.queued()),
            finished_at_humanized: ago(dag_run.end_date),
            job: match job {
                Some(job) => MaybeUndefined::Value(job),
                None if dbt_cloud => MaybeUndefined::Null,
                None => MaybeUndefined::Undefined,
            },
            href: dbt_only(dbt_cloud, run.href.clone()),
            trigger: dbt_only(
                dbt_cloud,
                Some(Any(json!({
                    "id": null,
                    "cause": dag_run.note.as_deref().or(dag_run.run_type.as_deref()).unwrap_or("scheduled"),
                    "job_definition_id": run.job_id,
                    "git_branch": null,
                    "git_sha": null,
                    "azure_pull_request_id": null,
                    "github_pull_request_id": null,
                    "gitlab_merge_request_id": null,
                    "schema_override": null,
                    "dbt_version_override": null,
                    "threads_override": null,
                    "target_name_override": null,
                    "generate_docs_override": null,
                    "timeout_seconds_override": null,
                    "steps_override": null,
                    "created_at": at(dag_run.queued()).map(|t| t.text()),
                }))),
            ),
            environment: dbt_only(dbt_cloud, None),
            run_steps: match &run.run_steps {
                Some(steps) => {
                    MaybeUndefined::Value(steps.iter().map(|step| RunStepDto::new(step, run, compat, now)).collect())
                }
                None => dbt_only(dbt_cloud, Some(Vec::new())),
            },
            retrying_run_id: dbt_only(dbt_cloud, None),
            can_retry: dbt_only(dbt_cloud, Some(false)),
            used_repo_cache: dbt_only(dbt_cloud, None),
        }
    }
}

/// `POST …/jobs/{id}/run/`: what to run, as dbt Cloud names it. Every field is optional;
/// each one given goes into the DAG run's `conf`, so the DAG can honour it.
#[derive(Object, Debug, Clone, Default)]
#[oai(rename = "TriggerRun")]
pub struct TriggerRunBody {
    /// Why the job runs (default `Triggered via API`); also the DAG run's note.
    pub cause: Option<String>,
    pub git_sha: Option<String>,
    pub git_branch: Option<String>,
    pub azure_pull_request_id: Option<i64>,
    pub github_pull_request_id: Option<i64>,
    pub gitlab_merge_request_id: Option<i64>,
    pub schema_override: Option<String>,
    pub dbt_version_override: Option<String>,
    pub threads_override: Option<i64>,
    pub target_name_override: Option<String>,
    pub generate_docs_override: Option<bool>,
    pub timeout_seconds_override: Option<i64>,
    pub steps_override: Option<Vec<String>>,
}

impl From<TriggerRunBody> for RunRequest {
    fn from(body: TriggerRunBody) -> Self {
        RunRequest {
            cause: body.cause,
            git_sha: body.git_sha,
            git_branch: body.git_branch,
            azure_pull_request_id: body.azure_pull_request_id,
            github_pull_request_id: body.github_pull_request_id,
            gitlab_merge_request_id: body.gitlab_merge_request_id,
            schema_override: body.schema_override,
            dbt_version_override: body.dbt_version_override,
            threads_override: body.threads_override,
            target_name_override: body.target_name_override,
            generate_docs_override: body.generate_docs_override,
            timeout_seconds_override: body.timeout_seconds_override,
            steps_override: body.steps_override,
        }
    }
}

/// A step of a run: one task instance of its DAG run, keyed as dbt Cloud keys run steps
/// (Airflow keeps the logs elsewhere: they are empty).
#[derive(Object, Serialize, Debug, Clone)]
#[oai(rename = "RunStep")]
pub struct RunStepDto {
    /// The run's id.
    pub run_id: i64,
    pub account_id: i64,
    /// From 1, in start order, then by task id.
    pub index: i64,
    /// The task id, with `[map_index]` for a mapped task.
    pub name: String,
    /// As the run's `status`.
    pub status: i32,
    pub status_humanized: String,
    pub logs: String,
    pub debug_logs: String,
    pub truncated_debug_logs: String,
    #[oai(nullable)]
    pub log_path: Option<String>,
    #[oai(nullable)]
    pub debug_log_path: Option<String>,
    /// When the task started (else when it finished).
    #[oai(nullable)]
    pub created_at: Option<Time>,
    /// When the task finished (else when it started).
    #[oai(nullable)]
    pub updated_at: Option<Time>,
    #[oai(nullable)]
    pub started_at: Option<Time>,
    #[oai(nullable)]
    pub finished_at: Option<Time>,
    /// Whole seconds; with `API_COMPAT=dbt-cloud` `"HH:MM:SS"`, counted to now while running.
    #[oai(nullable)]
    pub duration: Option<Any<Value>>,
    #[oai(nullable)]
    pub duration_humanized: Option<String>,
}

impl RunStepDto {
    fn new(step: &RunStep, run: &JobRun, compat: ApiCompat, now: catalog::Timestamp) -> Self {
        let dbt_cloud = compat == ApiCompat::DbtCloud;
        let duration = step.duration(dbt_cloud.then_some(now));
        RunStepDto {
            run_id: run.id,
            account_id: run.environment.account_id,
            index: step.index as i64,
            name: step.name.clone(),
            status: step.status.code(compat),
            status_humanized: step.status.humanized().to_owned(),
            logs: String::new(),
            debug_logs: String::new(),
            truncated_debug_logs: String::new(),
            log_path: None,
            debug_log_path: None,
            created_at: stamp(step.started_at.or(step.finished_at), compat),
            updated_at: stamp(step.finished_at.or(step.started_at), compat),
            started_at: stamp(step.started_at, compat),
            finished_at: stamp(step.finished_at, compat),
            duration: duration.map(|s| Any(if dbt_cloud { Value::String(job_run::clock(s)) } else { Value::from(s) })),
            duration_humanized: duration.map(humanize::duration),
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
            inserted_at: Time { at: file.inserted_at, dbt_cloud: false },
        }
    }
}
