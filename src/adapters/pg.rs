//! Connection plumbing shared by the PostgreSQL adapters (Jade, Datacoves, Airflow): a
//! database's settings (read whatever the build), and pools whose every statement is bounded
//! in time.

use std::time::Duration;

use secrecy::SecretString;

use crate::config::env::{ConfigError, Env};

#[cfg(any(feature = "postgres", feature = "airflow"))]
mod pool;
#[cfg(any(feature = "postgres", feature = "airflow"))]
pub use pool::*;

/// How to secure connections (`DB_SSL_ENABLED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    None,
    /// TLS without certificate verification, as the first Jade connected.
    Unverified,
}

impl Tls {
    /// `DB_SSL_ENABLED` (default false), for every database Jade connects to.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(if env.flag("DB_SSL_ENABLED", false)? { Tls::Unverified } else { Tls::None })
    }
}

/// A PostgreSQL database: where it is, and its pool.
#[derive(Debug, Clone)]
pub struct Settings {
    pub connection: Connection,
    pub pool_size: usize,
    pub tls: Tls,
    /// `DB_STATEMENT_TIMEOUT_MS` (default 5000): how long a statement may take before the
    /// request answers 503.
    pub statement_timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum Connection {
    Url(SecretString),
    Parts { host: String, port: u16, user: String, password: SecretString, database: String },
}

impl Settings {
    /// `{prefix}_URL`, else `{prefix}_HOST/_PORT/_USER/_PASS/_NAME` with the first Jade's
    /// defaults. The pool size is `POOL_SIZE` for the Jade database (`DB`) and
    /// `DATACOVES_POOL_SIZE` for the Datacoves one (`DATACOVES_DB`), 10 by default.
    pub fn from_env(env: &Env, prefix: &str, default_name: &str) -> Result<Self, ConfigError> {
        let var = |suffix: &str| format!("{prefix}_{suffix}");
        let connection = match env.get(&var("URL")) {
            Some(url) => Connection::Url(url.into()),
            None => Connection::Parts {
                host: env.get_or(&var("HOST"), "localhost"),
                port: env.parse(&var("PORT"), 5432)?,
                user: env.get_or(&var("USER"), "postgres"),
                password: env.get_or(&var("PASS"), "password").into(),
                database: env.get_or(&var("NAME"), default_name),
            },
        };
        let pool_variable = match prefix.strip_suffix("_DB") {
            Some(name) => format!("{name}_POOL_SIZE"),
            None => "POOL_SIZE".to_owned(),
        };
        Ok(Settings {
            connection,
            pool_size: env.count(&pool_variable, 10)?,
            tls: Tls::from_env(env)?,
            statement_timeout: env.millis("DB_STATEMENT_TIMEOUT_MS", 5000)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn settings(vars: &[(&'static str, &'static str)], prefix: &str) -> Result<Settings, ConfigError> {
        let vars = vars.to_vec();
        let env = Env::new(move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()));
        Settings::from_env(&env, prefix, "datacoves")
    }

    #[test]
    fn a_url_wins_over_parts_and_each_database_has_its_pool_size() {
        let vars = [("DB_URL", "postgres://u:p@h/jade"), ("DB_HOST", "ignored"), ("DATACOVES_POOL_SIZE", "3")];
        let jade = settings(&vars, "DB").unwrap();
        assert!(matches!(&jade.connection, Connection::Url(url) if url.expose_secret() == "postgres://u:p@h/jade"));
        assert_eq!((jade.pool_size, jade.tls), (10, Tls::None));
        let datacoves = settings(&vars, "DATACOVES_DB").unwrap();
        assert_eq!(datacoves.pool_size, 3);
        assert!(matches!(datacoves.connection, Connection::Parts { ref host, port: 5432, .. } if host == "localhost"));
        assert_eq!(settings(&[("POOL_SIZE", "0")], "DB").unwrap_err().variable, "POOL_SIZE");
        assert_eq!(settings(&[("DB_SSL_ENABLED", "1")], "DB").unwrap().tls, Tls::Unverified);
    }
}
