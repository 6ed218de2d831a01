//! Accounts, projects and environments as the Datacoves database holds them.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::domain::paging::icontains;

pub type Timestamp = DateTime<Utc>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub name: Option<String>,
    pub slug: Option<String>,
    pub developer_licenses: Option<i32>,
    pub plan_id: Option<i32>,
    pub trial_ends_at: Option<Timestamp>,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: i64,
    pub account_id: i64,
    pub name: Option<String>,
    pub slug: String,
    pub repository_id: Option<i32>,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub id: i64,
    pub account_id: i64,
    pub project_id: i64,
    pub name: Option<String>,
    pub slug: String,
    pub dbt_home_path: Option<String>,
    /// Datacoves' `type`: `dev`, `test`, `prod`, …
    pub kind: Option<String>,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
    /// Where this environment's Airflow database is; `None` when Airflow is not enabled.
    pub airflow: Option<AirflowDatabase>,
    /// Where its Airflow's REST API is, when `airflow_config.api` says (contract §6b).
    pub airflow_api: AirflowApi,
}

/// Projects and environments are always active: dbt Cloud's `state` 1.
pub const ACTIVE: i64 = 1;

impl Environment {
    /// dbt Cloud's `type`: `development` for a Datacoves `dev` environment, else `deployment`.
    pub fn dbt_cloud_type(&self) -> &'static str {
        if self.kind.as_deref() == Some("dev") { "development" } else { "deployment" }
    }

    /// dbt Cloud's `deployment_type`: `production` for a Datacoves `prod` environment.
    pub fn deployment_type(&self) -> Option<&'static str> {
        (self.kind.as_deref() == Some("prod")).then_some("production")
    }
}

/// The filters of a project list, as dbt Cloud names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectFilter {
    /// `name__icontains`
    pub name_icontains: Option<String>,
    /// `pk__in`
    pub ids: Option<Vec<i64>>,
    pub state: Option<i64>,
}

impl ProjectFilter {
    pub fn matches(&self, project: &Project) -> bool {
        self.name_icontains.as_deref().is_none_or(|n| icontains(project.name.as_deref(), n))
            && self.ids.as_ref().is_none_or(|ids| ids.contains(&project.id))
            && self.state.is_none_or(|state| state == ACTIVE)
    }
}

/// The filters of an environment list, as dbt Cloud names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvironmentFilter {
    pub project_id: Option<i64>,
    /// `name__icontains`
    pub name_icontains: Option<String>,
    /// `name`, exact.
    pub name: Option<String>,
    pub state: Option<i64>,
    /// `type`: `development` or `deployment`.
    pub dbt_cloud_type: Option<String>,
    /// `deployment_type__in`, e.g. `["production"]`.
    pub deployment_types: Option<Vec<String>>,
}

impl EnvironmentFilter {
    pub fn matches(&self, environment: &Environment) -> bool {
        self.project_id.is_none_or(|id| environment.project_id == id)
            && self.name_icontains.as_deref().is_none_or(|n| icontains(environment.name.as_deref(), n))
            && self.name.as_deref().is_none_or(|n| environment.name.as_deref() == Some(n))
            && self.state.is_none_or(|state| state == ACTIVE)
            && self.dbt_cloud_type.as_deref().is_none_or(|t| environment.dbt_cloud_type() == t)
            && self
                .deployment_types
                .as_ref()
                .is_none_or(|types| environment.deployment_type().is_some_and(|t| types.iter().any(|x| x == t)))
    }
}

/// An environment's own Airflow REST API settings (`airflow_config.api`); what is unset
/// comes from Jade's (`AIRFLOW_API_URL_TEMPLATE`, `AIRFLOW_API_USERNAME`,
/// `AIRFLOW_API_PASSWORD`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AirflowApi {
    pub url: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

// By hand, so that a password never reaches a log line.
impl fmt::Debug for AirflowApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AirflowApi")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// How to reach an environment's Airflow database (contract §6).
#[derive(Clone, PartialEq, Eq)]
pub enum AirflowDatabase {
    /// `airflow_config.db.external = true`: the database named in the config.
    External { host: String, port: u16, user: String, password: String, database: String },
    /// The in-cluster default for the environment's slug (or `AIRFLOW_DB_URL_TEMPLATE`).
    InCluster,
    /// Airflow is enabled but its config cannot be used (undecryptable, malformed); the
    /// reason is for logs.
    Misconfigured(String),
}

// By hand, so that a password never reaches a log line.
impl fmt::Debug for AirflowDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AirflowDatabase::External { host, port, user, database, .. } => f
                .debug_struct("External")
                .field("host", host)
                .field("port", port)
                .field("user", user)
                .field("password", &"***")
                .field("database", database)
                .finish(),
            AirflowDatabase::InCluster => f.write_str("InCluster"),
            AirflowDatabase::Misconfigured(reason) => f.debug_tuple("Misconfigured").field(reason).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(name: &str, kind: &str) -> Environment {
        Environment {
            id: 1,
            account_id: 1,
            project_id: 10,
            name: Some(name.into()),
            slug: "e".into(),
            dbt_home_path: None,
            kind: Some(kind.into()),
            created_at: None,
            updated_at: None,
            airflow: None,
            airflow_api: AirflowApi::default(),
        }
    }

    #[test]
    fn environments_have_dbt_cloud_types() {
        let (dev, prod, test) = (environment("Dev", "dev"), environment("Prod", "prod"), environment("T", "test"));
        assert_eq!((dev.dbt_cloud_type(), dev.deployment_type()), ("development", None));
        assert_eq!((prod.dbt_cloud_type(), prod.deployment_type()), ("deployment", Some("production")));
        assert_eq!((test.dbt_cloud_type(), test.deployment_type()), ("deployment", None));
    }

    #[test]
    fn environment_filters_narrow() {
        let prod = environment("Production", "prod");
        let all = EnvironmentFilter::default();
        assert!(all.matches(&prod));
        let by = |f: EnvironmentFilter| f.matches(&prod);
        assert!(by(EnvironmentFilter { name_icontains: Some("DUCT".into()), ..Default::default() }));
        assert!(!by(EnvironmentFilter { name: Some("Prod".into()), ..Default::default() }));
        assert!(by(EnvironmentFilter { name: Some("Production".into()), state: Some(1), ..Default::default() }));
        assert!(!by(EnvironmentFilter { state: Some(2), ..Default::default() }));
        assert!(!by(EnvironmentFilter { project_id: Some(11), ..Default::default() }));
        assert!(by(EnvironmentFilter { dbt_cloud_type: Some("deployment".into()), ..Default::default() }));
        assert!(by(EnvironmentFilter { deployment_types: Some(vec!["production".into()]), ..Default::default() }));
        let production = EnvironmentFilter { deployment_types: Some(vec!["production".into()]), ..Default::default() };
        assert!(!production.matches(&environment("D", "dev")));
    }

    #[test]
    fn project_filters_narrow() {
        let project = Project {
            id: 10,
            account_id: 1,
            name: Some("Analytics".into()),
            slug: "analytics".into(),
            repository_id: None,
            created_at: None,
            updated_at: None,
        };
        assert!(ProjectFilter::default().matches(&project));
        assert!(
            ProjectFilter { name_icontains: Some("lyt".into()), ids: Some(vec![10, 11]), state: Some(1) }
                .matches(&project)
        );
        assert!(!ProjectFilter { ids: Some(vec![11]), ..Default::default() }.matches(&project));
        assert!(!ProjectFilter { state: Some(2), ..Default::default() }.matches(&project));
    }

    #[test]
    fn airflow_password_is_never_printed() {
        let db = AirflowDatabase::External {
            host: "h".into(),
            port: 5432,
            user: "u".into(),
            password: "s3cret".into(),
            database: "d".into(),
        };
        let printed = format!("{db:?}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("***"));
    }
}
