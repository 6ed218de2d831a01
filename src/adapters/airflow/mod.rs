//! Each environment's Airflow database, through one lazily opened pool per environment.

use std::time::Duration;

use secrecy::SecretString;

use crate::adapters::pg::Tls;
use crate::config::env::{ConfigError, Env};

#[cfg(feature = "airflow")]
mod databases;
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
            ..AirflowSettings::default()
        })
    }
}
