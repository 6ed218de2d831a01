//! Typed configuration from the environment variables of contract §7. A missing or invalid
//! variable stops start-up with one line naming it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::domain::job_run::ApiCompat;

/// A value that must never be printed: a `secrecy` string (zeroed when dropped, redacted
/// when debug-printed), comparable so configurations can be.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The secret itself, for an adapter's settings.
    pub fn secret(&self) -> SecretString {
        self.0.clone()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: String,
    pub problem: String,
}

impl ConfigError {
    fn new(variable: &str, problem: impl Into<String>) -> Self {
        ConfigError { variable: variable.to_owned(), problem: problem.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub port: u16,
    pub jade_db: Database,
    pub datacoves_db: Database,
    pub airflow: Airflow,
    pub auth: Auth,
    pub storage: Storage,
    pub compat: ApiCompat,
    pub max_upload_bytes: u64,
    pub log_format: LogFormat,
    /// `RUN_INDEX_REFRESH_MS` (default 1000): how long run lists may answer from the run
    /// index before asking an environment's Airflow database what changed.
    pub run_index_refresh: Duration,
    /// `AIRFLOW_UI_URL_TEMPLATE`: a run's page in the Airflow UI, with `{slug}`, `{dag_id}`
    /// and `{run_id}` replaced (dbt Cloud's `href`).
    pub airflow_ui_url_template: Option<String>,
    /// `MAX_CONCURRENT_UPLOADS` (default 8): uploads storing bodies at once; more wait.
    pub max_concurrent_uploads: usize,
    /// `SHUTDOWN_GRACE_SECONDS` (default 30): how long shutdown may take in all.
    pub shutdown_grace: Duration,
    /// `DB_STATEMENT_TIMEOUT_MS` (default 5000): how long a statement on the Jade or
    /// Datacoves database may take before the request answers 503.
    pub db_statement_timeout: Duration,
    /// `HEADER_READ_TIMEOUT_SECONDS` (default 10) and `IDLE_TIMEOUT_SECONDS` (default 60):
    /// a client slower to send its request headers, or idle that long on a keep-alive
    /// connection, is disconnected.
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// `METRICS_ADDR` (default `0.0.0.0:9464`; set empty to turn it off): the listener
    /// serving Prometheus text at `GET /metrics`, apart from the public port.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// A PostgreSQL database: a URL, or parts with the first Jade's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub connection: Connection,
    pub pool_size: usize,
    /// `DB_SSL_ENABLED`: TLS without certificate verification, as the first Jade did.
    pub ssl: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    Url(Secret),
    Parts { host: String, port: u16, user: String, password: Secret, database: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Airflow {
    /// `CONNECT_TO_AIRFLOW` (default true).
    pub enabled: bool,
    /// Decrypts `airflow_config`; required when Airflow is enabled.
    pub fernet_key: Option<Secret>,
    /// `AIRFLOW_DB_URL_TEMPLATE`: replaces the in-cluster default; `{slug}` is replaced.
    pub url_template: Option<Secret>,
    /// `AIRFLOW_POOL_SIZE`: connections per environment's Airflow database (default 4).
    pub pool_size: usize,
    /// `AIRFLOW_STATEMENT_TIMEOUT_MS` (default 5000): an environment slower than this is
    /// left out of lists like an unreachable one.
    pub statement_timeout: Duration,
    /// `AIRFLOW_POOL_IDLE_SECONDS` (default 300): an environment's pool unused this long is
    /// closed.
    pub pool_idle: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub verifier: Verifier,
    pub cache_ttl: Duration,
    /// `AUTH_POOL_SIZE`: the database verifier's own connections to the Datacoves database
    /// (default 2), apart from the catalog's.
    pub pool_size: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verifier {
    /// `GET $DATACOVES_VERIFY_URL`.
    Http { url: String },
    /// The Datacoves tables, read directly.
    Database,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    Minio { url: String, access_key: Secret, secret_key: Secret, bucket: String },
    S3 { bucket: String, access_key: Secret, secret_key: Secret, region: String, endpoint_url: Option<String> },
    Blob { container: String, connection: BlobConnection },
    Fs { root: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobConnection {
    ConnectionString(Secret),
    AccountKey { account: String, key: Secret },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (empty values count as unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String> + 'static) -> Result<Self, ConfigError> {
        let metrics_addr = match lookup("METRICS_ADDR") {
            None => Some(std::net::SocketAddr::from(([0, 0, 0, 0], 9464))),
            Some(value) if value.trim().is_empty() => None,
            Some(value) => Some(
                value
                    .trim()
                    .parse()
                    .map_err(|_| ConfigError::new("METRICS_ADDR", format!("{value:?} is not valid")))?,
            ),
        };
        let env = Env(Box::new(move |name| lookup(name).filter(|v| !v.trim().is_empty())));
        let airflow_enabled = env.flag("CONNECT_TO_AIRFLOW", true)?;
        Ok(Config {
            port: env.parse("PORT", 4000)?,
            jade_db: env.database("DB", "jade_dev")?,
            datacoves_db: env.database("DATACOVES_DB", "datacoves")?,
            airflow: Airflow {
                enabled: airflow_enabled,
                fernet_key: match (airflow_enabled, env.get("FERNET_KEY")) {
                    (true, None) => {
                        return Err(ConfigError::new(
                            "FERNET_KEY",
                            "is required to read the environments' Airflow settings (or set CONNECT_TO_AIRFLOW=false)",
                        ));
                    }
                    (_, key) => key.map(Secret::new),
                },
                url_template: env.get("AIRFLOW_DB_URL_TEMPLATE").map(Secret::new),
                pool_size: match env.parse("AIRFLOW_POOL_SIZE", 4)? {
                    0 => return Err(ConfigError::new("AIRFLOW_POOL_SIZE", "must be at least 1")),
                    size => size,
                },
                statement_timeout: env.millis("AIRFLOW_STATEMENT_TIMEOUT_MS", 5000)?,
                pool_idle: env.seconds("AIRFLOW_POOL_IDLE_SECONDS", 300)?,
            },
            auth: Auth {
                verifier: match env.get("AUTH_VERIFIER").as_deref().unwrap_or("http") {
                    "http" => Verifier::Http { url: env.required("DATACOVES_VERIFY_URL")? },
                    "database" => Verifier::Database,
                    other => {
                        return Err(ConfigError::new(
                            "AUTH_VERIFIER",
                            format!("must be http or database, not {other:?}"),
                        ));
                    }
                },
                cache_ttl: Duration::from_secs(env.parse("AUTH_CACHE_TTL_SECONDS", 60)?),
                pool_size: match env.parse("AUTH_POOL_SIZE", 2)? {
                    0 => return Err(ConfigError::new("AUTH_POOL_SIZE", "must be at least 1")),
                    size => size,
                },
            },
            storage: env.storage()?,
            compat: match env.get("API_COMPAT").as_deref().unwrap_or("jade") {
                "jade" => ApiCompat::Jade,
                "dbt-cloud" => ApiCompat::DbtCloud,
                other => {
                    return Err(ConfigError::new("API_COMPAT", format!("must be jade or dbt-cloud, not {other:?}")));
                }
            },
            max_upload_bytes: env.parse("MAX_UPLOAD_BYTES", 1 << 30)?,
            log_format: match env.get("LOG_FORMAT").as_deref().unwrap_or("text") {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => return Err(ConfigError::new("LOG_FORMAT", format!("must be text or json, not {other:?}"))),
            },
            run_index_refresh: Duration::from_millis(env.parse("RUN_INDEX_REFRESH_MS", 1000)?),
            airflow_ui_url_template: env.get("AIRFLOW_UI_URL_TEMPLATE").filter(|t| !t.trim().is_empty()),
            max_concurrent_uploads: match env.parse("MAX_CONCURRENT_UPLOADS", 8)? {
                0 => return Err(ConfigError::new("MAX_CONCURRENT_UPLOADS", "must be at least 1")),
                bound => bound,
            },
            shutdown_grace: Duration::from_secs(env.parse("SHUTDOWN_GRACE_SECONDS", 30)?),
            db_statement_timeout: env.millis("DB_STATEMENT_TIMEOUT_MS", 5000)?,
            header_read_timeout: env.seconds("HEADER_READ_TIMEOUT_SECONDS", 10)?,
            idle_timeout: env.seconds("IDLE_TIMEOUT_SECONDS", 60)?,
            metrics_addr,
        })
    }
}

type Lookup = Box<dyn Fn(&str) -> Option<String>>;

struct Env(Lookup);

impl Env {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
    }

    fn required(&self, name: &str) -> Result<String, ConfigError> {
        self.get(name).ok_or_else(|| ConfigError::new(name, "is required"))
    }

    fn parse<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(value) => value.trim().parse().map_err(|_| ConfigError::new(name, format!("{value:?} is not valid"))),
        }
    }

    /// A timeout in milliseconds; 0 would turn the bound off, so it is refused.
    fn millis(&self, name: &str, default: u64) -> Result<Duration, ConfigError> {
        match self.parse(name, default)? {
            0 => Err(ConfigError::new(name, "must be at least 1")),
            millis => Ok(Duration::from_millis(millis)),
        }
    }

    /// A timeout in seconds (fractions allowed, e.g. `0.5`); 0 is refused.
    fn seconds(&self, name: &str, default: u64) -> Result<Duration, ConfigError> {
        match self.parse(name, default as f64)? {
            seconds if seconds.is_finite() && seconds > 0.0 && seconds < 1e9 => Ok(Duration::from_secs_f64(seconds)),
            _ => Err(ConfigError::new(name, "must be a positive number of seconds")),
        }
    }

    fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).as_deref().map(str::trim) {
            None => Ok(default),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(ConfigError::new(name, format!("must be true or false, not {other:?}"))),
        }
    }

    /// `{prefix}_URL`, else `{prefix}_HOST/_PORT/_USER/_PASS/_NAME` with the first Jade's
    /// defaults. The pool size is `POOL_SIZE` for the Jade database and
    /// `DATACOVES_POOL_SIZE` for the Datacoves one.
    fn database(&self, prefix: &str, default_name: &str) -> Result<Database, ConfigError> {
        let var = |suffix: &str| format!("{prefix}_{suffix}");
        let connection = match self.get(&var("URL")) {
            Some(url) => Connection::Url(Secret::new(url)),
            None => Connection::Parts {
                host: self.get(&var("HOST")).unwrap_or_else(|| "localhost".into()),
                port: self.parse(&var("PORT"), 5432)?,
                user: self.get(&var("USER")).unwrap_or_else(|| "postgres".into()),
                password: Secret::new(self.get(&var("PASS")).unwrap_or_else(|| "password".into())),
                database: self.get(&var("NAME")).unwrap_or_else(|| default_name.into()),
            },
        };
        let pool_variable = if prefix == "DB" {
            "POOL_SIZE".to_owned()
        } else {
            format!("{}_POOL_SIZE", prefix.trim_end_matches("_DB"))
        };
        let pool_size = self.parse(&pool_variable, 10)?;
        if pool_size == 0 {
            return Err(ConfigError::new(&pool_variable, "must be at least 1"));
        }
        Ok(Database { connection, pool_size, ssl: self.flag("DB_SSL_ENABLED", false)? })
    }

    fn storage(&self) -> Result<Storage, ConfigError> {
        let adapter = self.get("STORAGE_ADAPTER").unwrap_or_else(|| "minio".into());
        Ok(match adapter.as_str() {
            "minio" => Storage::Minio {
                url: self.get("MINIO_URL").unwrap_or_else(|| "http://localhost:9000".into()),
                access_key: Secret::new(self.get("MINIO_ACCESS_KEY").unwrap_or_else(|| "minioadmin".into())),
                secret_key: Secret::new(self.get("MINIO_SECRET_KEY").unwrap_or_else(|| "minioadmin".into())),
                bucket: self.get("MINIO_BUCKET_NAME").unwrap_or_else(|| "jade-dev".into()),
            },
            "s3" => Storage::S3 {
                bucket: self.get("S3_BUCKET_NAME").unwrap_or_else(|| "jade-dev".into()),
                access_key: Secret::new(self.required("S3_ACCESS_KEY")?),
                secret_key: Secret::new(self.required("S3_SECRET_ACCESS_KEY")?),
                region: self.required("S3_REGION")?,
                endpoint_url: self.get("S3_ENDPOINT_URL"),
            },
            "blob" => Storage::Blob {
                container: self.required("BLOB_CONTAINER")?,
                connection: match self.get("BLOB_STORAGE_ACCOUNT_CONNECTION_STRING") {
                    Some(connection_string) => BlobConnection::ConnectionString(Secret::new(connection_string)),
                    None => BlobConnection::AccountKey {
                        account: self.required("BLOB_STORAGE_ACCOUNT_NAME")?,
                        key: Secret::new(self.required("BLOB_STORAGE_ACCOUNT_KEY")?),
                    },
                },
            },
            "fs" => Storage::Fs { root: PathBuf::from(self.required("FS_STORAGE_ROOT")?) },
            other => {
                return Err(ConfigError::new(
                    "STORAGE_ADAPTER",
                    format!("must be minio, s3, blob or fs, not {other:?}"),
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(move |name| vars.get(name).cloned())
    }

    const MINIMAL: &[(&str, &str)] = &[("FERNET_KEY", "k"), ("DATACOVES_VERIFY_URL", "http://verify")];

    #[test]
    fn defaults_are_the_first_jades() {
        let config = config(MINIMAL).unwrap();
        assert_eq!(config.port, 4000);
        assert!(config.airflow.enabled);
        assert_eq!(config.jade_db.pool_size, 10);
        assert_eq!(
            config.datacoves_db.connection,
            Connection::Parts {
                host: "localhost".into(),
                port: 5432,
                user: "postgres".into(),
                password: Secret::new("password"),
                database: "datacoves".into()
            }
        );
        assert!(matches!(config.storage, Storage::Minio { ref bucket, .. } if bucket == "jade-dev"));
        assert_eq!(config.auth.cache_ttl, Duration::from_secs(60));
        assert_eq!(config.run_index_refresh, Duration::from_secs(1));
        assert_eq!(config.auth.pool_size, 2);
        assert_eq!(config.max_upload_bytes, 1 << 30);
        assert_eq!(config.compat, ApiCompat::Jade);
        assert_eq!(config.max_concurrent_uploads, 8);
        assert_eq!(config.shutdown_grace, Duration::from_secs(30));
        assert_eq!(config.db_statement_timeout, Duration::from_secs(5));
        assert_eq!(config.airflow.statement_timeout, Duration::from_secs(5));
        assert_eq!(config.airflow.pool_idle, Duration::from_secs(300));
        assert_eq!(
            (config.header_read_timeout, config.idle_timeout),
            (Duration::from_secs(10), Duration::from_secs(60))
        );
        assert_eq!(config.metrics_addr, Some("0.0.0.0:9464".parse().unwrap()));
    }

    #[test]
    fn an_empty_metrics_address_turns_metrics_off() {
        assert_eq!(config(&[MINIMAL[0], MINIMAL[1], ("METRICS_ADDR", "")]).unwrap().metrics_addr, None);
        let config_with = config(&[MINIMAL[0], MINIMAL[1], ("METRICS_ADDR", "127.0.0.1:9000")]).unwrap();
        assert_eq!(config_with.metrics_addr, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(config(&[MINIMAL[0], MINIMAL[1], ("METRICS_ADDR", "nine")]).unwrap_err().variable, "METRICS_ADDR");
    }

    #[test]
    fn each_problem_names_its_variable() {
        let error = |vars: &[(&str, &str)]| config(vars).unwrap_err().variable;
        assert_eq!(error(&[("DATACOVES_VERIFY_URL", "x")]), "FERNET_KEY");
        assert_eq!(error(&[("FERNET_KEY", "k")]), "DATACOVES_VERIFY_URL");
        assert_eq!(error(&[MINIMAL[0], MINIMAL[1], ("PORT", "http")]), "PORT");
        assert_eq!(error(&[MINIMAL[0], MINIMAL[1], ("STORAGE_ADAPTER", "ftp")]), "STORAGE_ADAPTER");
        assert_eq!(error(&[MINIMAL[0], MINIMAL[1], ("STORAGE_ADAPTER", "s3")]), "S3_ACCESS_KEY");
        assert_eq!(error(&[MINIMAL[0], MINIMAL[1], ("STORAGE_ADAPTER", "fs")]), "FS_STORAGE_ROOT");
        assert_eq!(error(&[MINIMAL[0], MINIMAL[1], ("DATACOVES_POOL_SIZE", "0")]), "DATACOVES_POOL_SIZE");
        assert_eq!(error(&[MINIMAL[0], MINIMAL[1], ("AUTH_POOL_SIZE", "0")]), "AUTH_POOL_SIZE");
        assert_eq!(error(&[MINIMAL[0], MINIMAL[1], ("CONNECT_TO_AIRFLOW", "maybe")]), "CONNECT_TO_AIRFLOW");
        assert_eq!(error(&[MINIMAL[0], MINIMAL[1], ("MAX_CONCURRENT_UPLOADS", "0")]), "MAX_CONCURRENT_UPLOADS");
        assert_eq!(error(&[MINIMAL[0], MINIMAL[1], ("SHUTDOWN_GRACE_SECONDS", "soon")]), "SHUTDOWN_GRACE_SECONDS");
        assert_eq!(error(&[MINIMAL[0], MINIMAL[1], ("DB_STATEMENT_TIMEOUT_MS", "0")]), "DB_STATEMENT_TIMEOUT_MS");
        assert_eq!(error(&[MINIMAL[0], MINIMAL[1], ("AIRFLOW_POOL_IDLE_SECONDS", "-1")]), "AIRFLOW_POOL_IDLE_SECONDS");
        assert_eq!(error(&[MINIMAL[0], MINIMAL[1], ("IDLE_TIMEOUT_SECONDS", "0")]), "IDLE_TIMEOUT_SECONDS");
    }

    #[test]
    fn airflow_off_needs_no_fernet_key_and_database_auth_no_url() {
        let config = config(&[("CONNECT_TO_AIRFLOW", "false"), ("AUTH_VERIFIER", "database")]).unwrap();
        assert!(!config.airflow.enabled);
        assert_eq!(config.auth.verifier, Verifier::Database);
    }

    #[test]
    fn the_blob_connection_string_wins_over_name_and_key() {
        let config = config(&[
            MINIMAL[0],
            MINIMAL[1],
            ("STORAGE_ADAPTER", "blob"),
            ("BLOB_CONTAINER", "c"),
            ("BLOB_STORAGE_ACCOUNT_CONNECTION_STRING", "cs"),
            ("BLOB_STORAGE_ACCOUNT_NAME", "n"),
        ])
        .unwrap();
        assert_eq!(
            config.storage,
            Storage::Blob { container: "c".into(), connection: BlobConnection::ConnectionString(Secret::new("cs")) }
        );
    }

    #[test]
    fn secrets_never_print() {
        let config = config(&[MINIMAL[0], MINIMAL[1], ("DB_URL", "postgres://u:hunter2@h/db")]).unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }
}
