//! Each environment's Airflow: its database, through one lazily opened pool per environment,
//! and its REST API, to run jobs.

use std::time::Duration;

use secrecy::SecretString;

use crate::adapters::pg::Tls;
use crate::config::env::{ConfigError, Env};

#[cfg(feature = "airflow-api")]
mod api;
#[cfg(feature = "airflow")]
mod databases;
#[cfg(feature = "airflow-api")]
pub use api::AirflowRestApi;
#[cfg(feature = "airflow")]
pub use databases::AirflowDatabases;

#[derive(Debug, Clone)]
pub struct AirflowSettings {
    /// `AIRFLOW_DB_URL_TEMPLATE`: replaces the in-cluster default; `{slug}` is replaced by
    /// the environment's slug.
    pub url_template: Option<SecretString>,
    /// `AIRFLOW_POOL_SIZE`: connections per environment's Airflow database.
    pub pool_size: usize,
    /// `DB_SSL_ENABLED`, as for Jade's own databases.
    pub tls: Tls,
    /// How long connecting may take before the environment counts as unreachable.
    pub connect_timeout: Duration,
    /// How long an unreachable environment is answered as such without trying again.
    pub failure_memory: Duration,
    /// `AIRFLOW_STATEMENT_TIMEOUT_MS`: how long a statement may take; an environment that
    /// takes longer is left out like an unreachable one.
    pub statement_timeout: Duration,
    /// `AIRFLOW_POOL_IDLE_SECONDS`: an environment's pool unused this long is closed.
    pub pool_idle: Duration,
    /// The environments' REST APIs, to run jobs.
    pub api: AirflowApiSettings,
}

/// Where each environment's Airflow REST API is and who Jade is there (contract §6b); an
/// environment's `airflow_config.api` wins over these.
#[derive(Debug, Clone)]
pub struct AirflowApiSettings {
    /// `AIRFLOW_API_URL_TEMPLATE`: the API's base URL, `{slug}` replaced by the
    /// environment's slug (default: the in-cluster Airflow 2 webserver).
    pub url_template: String,
    /// `AIRFLOW_API_USERNAME`.
    pub username: Option<String>,
    /// `AIRFLOW_API_PASSWORD`.
    pub password: Option<SecretString>,
    /// `AIRFLOW_API_TIMEOUT_MS`: how long one run, cancel or retry may take in Airflow's API.
    pub timeout: Duration,
}

impl Default for AirflowApiSettings {
    fn default() -> Self {
        AirflowApiSettings {
            url_template: "http://{slug}-airflow-webserver.dcw-{slug}.svc.cluster.local:8080".into(),
            username: None,
            password: None,
            timeout: Duration::from_secs(10),
        }
    }
}

impl AirflowApiSettings {
    /// The variables above, each defaulting to [`AirflowApiSettings::default`]'s value.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = AirflowApiSettings::default();
        Ok(AirflowApiSettings {
            url_template: env.get_or("AIRFLOW_API_URL_TEMPLATE", &defaults.url_template),
            username: env.get("AIRFLOW_API_USERNAME"),
            password: env.get("AIRFLOW_API_PASSWORD").map(SecretString::from),
            timeout: env.millis("AIRFLOW_API_TIMEOUT_MS", 10_000)?,
        })
    }
}

impl Default for AirflowSettings {
    fn default() -> Self {
        AirflowSettings {
            url_template: None,
            pool_size: 4,
            tls: Tls::None,
            connect_timeout: Duration::from_secs(3),
            failure_memory: Duration::from_secs(15),
            statement_timeout: Duration::from_secs(5),
            pool_idle: Duration::from_secs(300),
            api: AirflowApiSettings::default(),
        }
    }
}

impl AirflowSettings {
    /// The variables above, each defaulting to [`AirflowSettings::default`]'s value.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(AirflowSettings {
            url_template: env.get("AIRFLOW_DB_URL_TEMPLATE").map(SecretString::from),
            pool_size: env.count("AIRFLOW_POOL_SIZE", 4)?,
            tls: Tls::from_env(env)?,
            statement_timeout: env.millis("AIRFLOW_STATEMENT_TIMEOUT_MS", 5000)?,
            pool_idle: env.seconds("AIRFLOW_POOL_IDLE_SECONDS", 300)?,
            api: AirflowApiSettings::from_env(env)?,
            ..AirflowSettings::default()
        })
    }
}
