//! Typed configuration from the environment variables of contract §7: Jade's own settings
//! here, each adapter's settings read by the adapter (through [`env::Env`]) into the type it
//! is built from. A missing or invalid variable stops start-up with one line naming it.

pub mod env;

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;

use self::env::Env;
pub use self::env::{ConfigError, Problem};
use crate::adapters::airflow::AirflowSettings;
use crate::adapters::{auth, pg, storage};
use crate::app::Settings;
use crate::domain::job_run::ApiCompat;

#[derive(Debug, Clone)]
pub struct Config {
    /// `PORT` (default 4000).
    pub port: u16,
    pub log_format: LogFormat,
    /// `METRICS_ADDR` (default `0.0.0.0:9464`; set empty to turn it off): the listener
    /// serving Prometheus text at `GET /metrics`, apart from the public port.
    pub metrics_addr: Option<SocketAddr>,
    /// `DB_*`: the Jade database.
    pub jade_db: pg::Settings,
    /// `DATACOVES_DB_*`: the Datacoves database, read-only.
    pub datacoves_db: pg::Settings,
    /// `FERNET_KEY`: decrypts the environments' `airflow_config`; required when Airflow is
    /// enabled.
    pub fernet_key: Option<SecretString>,
    /// `None` when `CONNECT_TO_AIRFLOW` (default true) is false.
    pub airflow: Option<AirflowSettings>,
    pub auth: auth::Settings,
    pub storage: storage::Settings,
    /// The use cases' settings.
    pub app: Settings,
}

/// `LOG_FORMAT` (default `text`).
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

    /// Reads variables through `lookup` (empty values count as unset, but an empty
    /// `METRICS_ADDR` turns metrics off).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String> + 'static) -> Result<Self, ConfigError> {
        let metrics_addr = match lookup("METRICS_ADDR") {
            None => Some(SocketAddr::from(([0, 0, 0, 0], 9464))),
            Some(value) if value.trim().is_empty() => None,
            Some(value) => {
                Some(value.trim().parse().map_err(|_| ConfigError::new("METRICS_ADDR", Problem::Invalid(value)))?)
            }
        };
        let env = Env::new(lookup);
        let airflow_enabled = env.flag("CONNECT_TO_AIRFLOW", true)?;
        Ok(Config {
            port: env.parse("PORT", 4000)?,
            jade_db: pg::Settings::from_env(&env, "DB", "jade_dev")?,
            datacoves_db: pg::Settings::from_env(&env, "DATACOVES_DB", "datacoves")?,
            fernet_key: match (airflow_enabled, env.get("FERNET_KEY")) {
                (true, None) => return Err(ConfigError::new("FERNET_KEY", Problem::FernetKeyForAirflow)),
                (_, key) => key.map(SecretString::from),
            },
            // Read even when off, so a wrong value is reported either way.
            airflow: Some(AirflowSettings::from_env(&env)?).filter(|_| airflow_enabled),
            auth: auth::Settings::from_env(&env)?,
            storage: storage::Settings::from_env(&env)?,
            app: app_settings(&env)?,
            log_format: env.choice(
                "LOG_FORMAT",
                "text or json",
                &[("text", LogFormat::Text), ("json", LogFormat::Json)],
            )?,
            metrics_addr,
        })
    }
}

fn app_settings(env: &Env) -> Result<Settings, ConfigError> {
    Ok(Settings {
        compat: env.choice(
            "API_COMPAT",
            "jade or dbt-cloud",
            &[("jade", ApiCompat::Jade), ("dbt-cloud", ApiCompat::DbtCloud)],
        )?,
        max_upload_bytes: env.parse("MAX_UPLOAD_BYTES", 1 << 30)?,
        spool_dir: None,
        run_index_refresh: Duration::from_millis(env.parse("RUN_INDEX_REFRESH_MS", 1000)?),
        airflow_ui_url_template: env.get("AIRFLOW_UI_URL_TEMPLATE"),
        max_concurrent_uploads: env.count("MAX_CONCURRENT_UPLOADS", 8)?,
        shutdown_grace: Duration::from_secs(env.parse("SHUTDOWN_GRACE_SECONDS", 30)?),
        header_read_timeout: env.seconds("HEADER_READ_TIMEOUT_SECONDS", 10)?,
        idle_timeout: env.seconds("IDLE_TIMEOUT_SECONDS", 60)?,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use secrecy::ExposeSecret;

    use super::*;
    use crate::adapters::storage::blob::BlobConnection;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(move |name| vars.get(name).cloned())
    }

    const MINIMAL: &[(&str, &str)] = &[("FERNET_KEY", "k"), ("DATACOVES_VERIFY_URL", "http://verify")];

    fn with(vars: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        config(&[MINIMAL, vars].concat())
    }

    #[test]
    fn defaults_are_the_first_jades() {
        let config = config(MINIMAL).unwrap();
        assert_eq!(config.port, 4000);
        assert_eq!(config.jade_db.pool_size, 10);
        assert_eq!(config.jade_db.tls, pg::Tls::None);
        match &config.datacoves_db.connection {
            pg::Connection::Parts { host, port, user, password, database } => {
                assert_eq!((host.as_str(), *port, user.as_str()), ("localhost", 5432, "postgres"));
                assert_eq!((password.expose_secret(), database.as_str()), ("password", "datacoves"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&config.jade_db.connection, pg::Connection::Parts { database, .. } if database == "jade_dev"));
        match &config.storage {
            storage::Settings::Minio(minio) => {
                assert_eq!((minio.url.as_str(), minio.bucket.as_str()), ("http://localhost:9000", "jade-dev"));
                assert_eq!(
                    (minio.access_key.expose_secret(), minio.secret_key.expose_secret()),
                    ("minioadmin", "minioadmin")
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(config.auth.verifier, auth::Verifier::Http { url: "http://verify".into() });
        assert_eq!(config.auth.cache_ttl, Duration::from_secs(60));
        assert_eq!(config.auth.pool_size, 2);
        assert_eq!(config.app.run_index_refresh, Duration::from_secs(1));
        assert_eq!(config.app.max_upload_bytes, 1 << 30);
        assert_eq!(config.app.compat, ApiCompat::Jade);
        assert_eq!(config.app.max_concurrent_uploads, 8);
        assert_eq!(config.app.shutdown_grace, Duration::from_secs(30));
        assert_eq!(config.jade_db.statement_timeout, Duration::from_secs(5));
        assert_eq!(config.datacoves_db.statement_timeout, Duration::from_secs(5));
        let airflow = config.airflow.expect("Airflow is on by default");
        assert_eq!((airflow.pool_size, airflow.tls), (4, pg::Tls::None));
        assert_eq!(airflow.statement_timeout, Duration::from_secs(5));
        assert_eq!(airflow.pool_idle, Duration::from_secs(300));
        assert_eq!(airflow.api.url_template, "http://{slug}-airflow-webserver.dcw-{slug}.svc.cluster.local:8080");
        assert_eq!((airflow.api.username, airflow.api.timeout), (None, Duration::from_secs(10)));
        assert_eq!(
            (config.app.header_read_timeout, config.app.idle_timeout),
            (Duration::from_secs(10), Duration::from_secs(60))
        );
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.metrics_addr, Some("0.0.0.0:9464".parse().unwrap()));
    }

    #[test]
    fn variables_reach_the_adapters_settings() {
        let config = with(&[
            ("DB_SSL_ENABLED", "true"),
            ("DB_STATEMENT_TIMEOUT_MS", "250"),
            ("AIRFLOW_DB_URL_TEMPLATE", "postgres://a/{slug}"),
            ("AIRFLOW_POOL_SIZE", "2"),
            ("AIRFLOW_POOL_IDLE_SECONDS", "0.5"),
            ("AUTH_CACHE_TTL_SECONDS", "5"),
            ("STORAGE_ADAPTER", "s3"),
            ("S3_ACCESS_KEY", "ak"),
            ("S3_SECRET_ACCESS_KEY", "sk"),
            ("S3_REGION", "eu-west-1"),
            ("S3_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("API_COMPAT", "dbt-cloud"),
            ("LOG_FORMAT", "json"),
        ])
        .unwrap();
        assert_eq!((config.jade_db.tls, config.datacoves_db.tls), (pg::Tls::Unverified, pg::Tls::Unverified));
        assert_eq!(config.datacoves_db.statement_timeout, Duration::from_millis(250));
        let airflow = config.airflow.unwrap();
        assert_eq!(airflow.url_template.unwrap().expose_secret(), "postgres://a/{slug}");
        assert_eq!((airflow.pool_size, airflow.tls), (2, pg::Tls::Unverified));
        assert_eq!(airflow.pool_idle, Duration::from_millis(500));
        assert_eq!(config.auth.cache_ttl, Duration::from_secs(5));
        let storage::Settings::S3(s3) = config.storage else { panic!("{:?}", config.storage) };
        assert_eq!((s3.bucket.as_str(), s3.region.as_str()), ("jade-dev", "eu-west-1"));
        assert_eq!((s3.access_key.expose_secret(), s3.secret_key.expose_secret()), ("ak", "sk"));
        assert_eq!(s3.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(config.app.compat, ApiCompat::DbtCloud);
        assert_eq!(config.log_format, LogFormat::Json);
        let fs = with(&[("STORAGE_ADAPTER", "fs"), ("FS_STORAGE_ROOT", "/var/jade")]).unwrap();
        assert!(matches!(fs.storage, storage::Settings::Fs(ref fs) if fs.root == std::path::Path::new("/var/jade")));
    }

    #[test]
    fn an_empty_metrics_address_turns_metrics_off() {
        assert_eq!(with(&[("METRICS_ADDR", "")]).unwrap().metrics_addr, None);
        let config_with = with(&[("METRICS_ADDR", "127.0.0.1:9000")]).unwrap();
        assert_eq!(config_with.metrics_addr, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(with(&[("METRICS_ADDR", "nine")]).unwrap_err().variable, "METRICS_ADDR");
    }

    #[test]
    fn each_problem_names_its_variable() {
        let error = |vars: &[(&'static str, &'static str)]| with(vars).unwrap_err().variable;
        assert_eq!(config(&[("DATACOVES_VERIFY_URL", "x")]).unwrap_err().variable, "FERNET_KEY");
        assert_eq!(config(&[("FERNET_KEY", "k")]).unwrap_err().variable, "DATACOVES_VERIFY_URL");
        assert_eq!(error(&[("PORT", "http")]), "PORT");
        assert_eq!(error(&[("STORAGE_ADAPTER", "ftp")]), "STORAGE_ADAPTER");
        assert_eq!(error(&[("STORAGE_ADAPTER", "s3")]), "S3_ACCESS_KEY");
        assert_eq!(error(&[("STORAGE_ADAPTER", "fs")]), "FS_STORAGE_ROOT");
        assert_eq!(error(&[("STORAGE_ADAPTER", "blob")]), "BLOB_CONTAINER");
        assert_eq!(error(&[("STORAGE_ADAPTER", "blob"), ("BLOB_CONTAINER", "c")]), "BLOB_STORAGE_ACCOUNT_NAME");
        assert_eq!(error(&[("DATACOVES_POOL_SIZE", "0")]), "DATACOVES_POOL_SIZE");
        assert_eq!(error(&[("POOL_SIZE", "0")]), "POOL_SIZE");
        assert_eq!(error(&[("DB_PORT", "x")]), "DB_PORT");
        assert_eq!(error(&[("AUTH_POOL_SIZE", "0")]), "AUTH_POOL_SIZE");
        assert_eq!(error(&[("AUTH_VERIFIER", "ldap")]), "AUTH_VERIFIER");
        assert_eq!(error(&[("AIRFLOW_POOL_SIZE", "0")]), "AIRFLOW_POOL_SIZE");
        assert_eq!(error(&[("CONNECT_TO_AIRFLOW", "maybe")]), "CONNECT_TO_AIRFLOW");
        assert_eq!(error(&[("DB_SSL_ENABLED", "yes")]), "DB_SSL_ENABLED");
        assert_eq!(error(&[("MAX_CONCURRENT_UPLOADS", "0")]), "MAX_CONCURRENT_UPLOADS");
        assert_eq!(error(&[("SHUTDOWN_GRACE_SECONDS", "soon")]), "SHUTDOWN_GRACE_SECONDS");
        assert_eq!(error(&[("DB_STATEMENT_TIMEOUT_MS", "0")]), "DB_STATEMENT_TIMEOUT_MS");
        assert_eq!(error(&[("AIRFLOW_POOL_IDLE_SECONDS", "-1")]), "AIRFLOW_POOL_IDLE_SECONDS");
        assert_eq!(error(&[("IDLE_TIMEOUT_SECONDS", "0")]), "IDLE_TIMEOUT_SECONDS");
        assert_eq!(error(&[("API_COMPAT", "v3")]), "API_COMPAT");
        assert_eq!(error(&[("LOG_FORMAT", "xml")]), "LOG_FORMAT");
    }

    #[test]
    fn each_problem_is_one_line_as_before() {
        let line = |vars: &[(&'static str, &'static str)]| with(vars).unwrap_err().to_string();
        assert_eq!(
            config(&[("DATACOVES_VERIFY_URL", "x")]).unwrap_err().to_string(),
            "FERNET_KEY: is required to read the environments' Airflow settings (or set CONNECT_TO_AIRFLOW=false)"
        );
        assert_eq!(line(&[("STORAGE_ADAPTER", "ftp")]), "STORAGE_ADAPTER: must be minio, s3, blob or fs, not \"ftp\"");
        assert_eq!(line(&[("AUTH_VERIFIER", "ldap")]), "AUTH_VERIFIER: must be http or database, not \"ldap\"");
        assert_eq!(line(&[("API_COMPAT", "v3")]), "API_COMPAT: must be jade or dbt-cloud, not \"v3\"");
        assert_eq!(line(&[("STORAGE_ADAPTER", "s3")]), "S3_ACCESS_KEY: is required");
        assert_eq!(line(&[("PORT", "http")]), "PORT: \"http\" is not valid");
        assert_eq!(line(&[("METRICS_ADDR", "nine")]), "METRICS_ADDR: \"nine\" is not valid");
    }

    #[test]
    fn airflow_off_needs_no_fernet_key_and_database_auth_no_url() {
        let config = config(&[("CONNECT_TO_AIRFLOW", "false"), ("AUTH_VERIFIER", "database")]).unwrap();
        assert!(config.airflow.is_none());
        assert!(config.fernet_key.is_none());
        assert_eq!(config.auth.verifier, auth::Verifier::Database);
    }

    #[test]
    fn the_blob_connection_string_wins_over_name_and_key() {
        let blob = |vars: &[(&'static str, &'static str)]| match with(
            &[&[("STORAGE_ADAPTER", "blob"), ("BLOB_CONTAINER", "c")], vars].concat(),
        )
        .unwrap()
        .storage
        {
            storage::Settings::Blob(blob) => blob,
            other => panic!("{other:?}"),
        };
        let settings = blob(&[("BLOB_STORAGE_ACCOUNT_CONNECTION_STRING", "cs"), ("BLOB_STORAGE_ACCOUNT_NAME", "n")]);
        assert_eq!(settings.container, "c");
        assert!(matches!(settings.connection, BlobConnection::ConnectionString(ref cs) if cs.expose_secret() == "cs"));
        let settings = blob(&[("BLOB_STORAGE_ACCOUNT_NAME", "n"), ("BLOB_STORAGE_ACCOUNT_KEY", "key")]);
        assert!(matches!(settings.connection,
            BlobConnection::AccountKey { ref account, ref key } if account == "n" && key.expose_secret() == "key"));
    }

    /// Every secret variable, in each shape it can take, is held redacted: printing the
    /// configuration (as a panic or a debug log would) shows none of them.
    #[test]
    fn secrets_never_print() {
        let secret_variables: &[&[(&'static str, &'static str)]] = &[
            &[("DB_URL", "postgres://u:hunter2@h/db"), ("DATACOVES_DB_PASS", "hunter3"), ("FERNET_KEY", "hunter4")],
            &[("AIRFLOW_DB_URL_TEMPLATE", "postgres://u:hunter5@{slug}/airflow")],
            &[("AIRFLOW_API_USERNAME", "jade"), ("AIRFLOW_API_PASSWORD", "hunter12")],
            &[("STORAGE_ADAPTER", "minio"), ("MINIO_ACCESS_KEY", "hunter6"), ("MINIO_SECRET_KEY", "hunter7")],
            &[
                ("STORAGE_ADAPTER", "s3"),
                ("S3_ACCESS_KEY", "hunter8"),
                ("S3_SECRET_ACCESS_KEY", "hunter9"),
                ("S3_REGION", "r"),
            ],
            &[
                ("STORAGE_ADAPTER", "blob"),
                ("BLOB_CONTAINER", "c"),
                ("BLOB_STORAGE_ACCOUNT_CONNECTION_STRING", "AccountKey=hunter10"),
            ],
            &[
                ("STORAGE_ADAPTER", "blob"),
                ("BLOB_CONTAINER", "c"),
                ("BLOB_STORAGE_ACCOUNT_NAME", "n"),
                ("BLOB_STORAGE_ACCOUNT_KEY", "hunter11"),
            ],
        ];
        for vars in secret_variables {
            let config = with(vars).unwrap();
            let printed = format!("{config:?} {config:#?}");
            assert!(!printed.contains("hunter"), "{printed}");
            // The settings were read (the test would pass vacuously otherwise).
            assert!(printed.contains("REDACTED"), "{printed}");
        }
    }
}
