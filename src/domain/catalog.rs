//! Accounts, projects and environments as the Datacoves database holds them.

use std::fmt;

use chrono::{DateTime, Utc};

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
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
    /// Where this environment's Airflow database is; `None` when Airflow is not enabled.
    pub airflow: Option<AirflowDatabase>,
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
