//! The composition root: builds the adapters the configuration asks for (and the build
//! compiled in), hands them to the use cases and the HTTP adapter. The only module that
//! names every adapter.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::adapters::storage;
use crate::app::Jade;
use crate::config::{Config, ConfigError, LogFormat};
use crate::ports::storage::{BlobStorage, StorageError};

/// Why Jade cannot start; printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// Never printed: a URL may carry a password.
    #[error("configuration: {variable}: is not a valid PostgreSQL URL")]
    DatabaseUrl { variable: &'static str },
    #[error("{0}")]
    DatabasePool(String),
    #[error("{0} (set by DB_URL, or DB_HOST/DB_PORT/DB_USER/DB_PASS/DB_NAME)")]
    JadeDatabase(String),
    #[error("Datacoves database: {0} (set by DATACOVES_DB_URL, or DATACOVES_DB_HOST/_PORT/_USER/_PASS/_NAME)")]
    DatacovesDatabase(String),
    #[error("FERNET_KEY: {0}")]
    FernetKey(String),
    #[error("{0}")]
    VerifyClient(String),
    #[error("the Airflow API client: {0}")]
    AirflowApiClient(String),
    #[error("AUTH_VERIFIER=http needs the Cargo feature `http`")]
    VerifierNeedsHttp,
    #[error(
        "CONNECT_TO_AIRFLOW is on but the Airflow adapter is not compiled in: rebuild with `--features airflow` \
         or set CONNECT_TO_AIRFLOW=false"
    )]
    AirflowNotCompiled,
    #[error("jade serve reads the Jade and Datacoves databases: rebuild with `--features postgres`")]
    PostgresNotCompiled,
    #[error("STORAGE_ADAPTER={adapter} is not compiled into this build: rebuild with `--features {feature}`")]
    StorageNotCompiled { adapter: &'static str, feature: &'static str },
    #[error("STORAGE_ADAPTER={adapter}: {error}")]
    Storage { adapter: &'static str, error: StorageError },
    #[error("FS_STORAGE_ROOT {}: {error}", root.display())]
    FsRoot { root: std::path::PathBuf, error: std::io::Error },
}

/// Driver crates whose own debug or trace output can carry secrets (tokio-postgres logs
/// statement parameters, such as the token the database verifier looks up; the HTTP and
/// cloud SDK stacks log request lines and headers). Whatever `RUST_LOG` says, they log at
/// `info` at most.
const CAPPED_TARGETS: [&str; 19] = [
    "tokio_postgres",
    "postgres_protocol",
    "deadpool_postgres",
    "refinery_core",
    "azure_core",
    "azure_storage",
    "azure_storage_blobs",
    "aws_config",
    "aws_sigv4",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_sdk_s3",
    "minio",
    "reqwest",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
];

/// The log filter: `RUST_LOG` (default `info`), with [`CAPPED_TARGETS`] held at `info`.
pub fn log_filter(
    rust_log: Option<&str>,
) -> impl tracing_subscriber::layer::Filter<tracing_subscriber::Registry> + use<> {
    use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
    let wanted = rust_log
        .and_then(|directives| tracing_subscriber::EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let capped = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(CAPPED_TARGETS.map(|target| (target, LevelFilter::INFO)));
    wanted.and(capped)
}

/// Logs to stderr as text or JSON lines, filtered by [`log_filter`].
pub fn init_tracing(format: LogFormat) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).boxed(),
    };
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let _ = tracing_subscriber::registry().with(layer.with_filter(filter)).try_init();
}

/// A server running in the background (tests and the demo start it this way).
pub struct Running {
    pub address: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Begins shutdown (readiness answers 503), stops accepting, lets requests in flight
    /// finish within the grace, waits for the undo of uploads cut off, and returns.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        (&mut self.task).await.map_err(std::io::Error::other)?
    }

    /// Waits until the server ends (it ends on Ctrl-C or SIGTERM when started by
    /// [`serve_until_signal`]).
    pub async fn wait(mut self) -> std::io::Result<()> {
        (&mut self.task).await.map_err(std::io::Error::other)?
    }
}

/// Starts the HTTP API for `jade` on `address` (port 0 picks a free one).
#[cfg(feature = "http")]
pub async fn spawn(jade: Jade, address: SocketAddr) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let address = listener.local_addr()?;
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let (requests, undo) = jade.shutdown_phases();
    let timeouts = crate::adapters::http::Timeouts {
        header_read: jade.settings().header_read_timeout,
        idle: jade.settings().idle_timeout,
    };
    let app = crate::adapters::http::app(jade.clone());
    let task = tokio::spawn(async move {
        let stopping = jade.clone();
        let signal = async move {
            let _ = stopped.await;
            // Readiness turns 503 before the listener closes.
            stopping.begin_shutdown();
        };
        let served = crate::adapters::http::serve(listener, app, timeouts, signal, requests).await;
        // Requests cut off by the grace left undo tasks behind: they run before Jade exits.
        jade.finish_undo(undo).await;
        served
    });
    Ok(Running { address, shutdown: Some(shutdown), task })
}

/// Serves Prometheus text at `GET /metrics` on `address`, apart from the public port.
#[cfg(feature = "http")]
pub async fn spawn_metrics(address: SocketAddr) -> std::io::Result<Running> {
    let handle = crate::adapters::metrics::handle()
        .ok_or_else(|| std::io::Error::other("another metrics recorder is installed"))?;
    let listener = tokio::net::TcpListener::bind(address).await?;
    let address = listener.local_addr()?;
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = crate::adapters::http::metrics_app(handle);
    let stopped = async move {
        let _ = stopped.await;
    };
    // Scrapers get the public port's client timeouts (10 s for headers, 60 s idle).
    let timeouts = crate::adapters::http::Timeouts {
        header_read: std::time::Duration::from_secs(10),
        idle: std::time::Duration::from_secs(60),
    };
    let serving = crate::adapters::http::serve(listener, app, timeouts, stopped, std::time::Duration::from_secs(1));
    let task = tokio::spawn(serving);
    Ok(Running { address, shutdown: Some(shutdown), task })
}

/// Serves until Ctrl-C or SIGTERM, then shuts down within `SHUTDOWN_GRACE_SECONDS`:
/// readiness answers 503 at once, no new connection is accepted, requests in flight get the
/// grace (less a reserve), and the undo of uploads cut off runs before the process exits.
#[cfg(feature = "http")]
pub async fn serve_until_signal(jade: Jade, address: SocketAddr) -> std::io::Result<()> {
    let mut running = spawn(jade, address).await?;
    tracing::info!(address = %running.address, "Jade is serving");
    tokio::select! {
        result = &mut running.task => return result.map_err(std::io::Error::other)?,
        () = signal() => tracing::info!("shutting down"),
    }
    running.stop().await
}

#[cfg(feature = "http")]
async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// The storage adapter `STORAGE_ADAPTER` names, or a line saying which Cargo feature the
/// build lacks for it.
pub async fn storage(settings: &storage::Settings) -> Result<Arc<dyn BlobStorage>, StartupError> {
    let storage = unmetered_storage(settings).await?;
    Ok(Arc::new(crate::adapters::metrics::MeteredStorage::new(storage)))
}

async fn unmetered_storage(settings: &storage::Settings) -> Result<Arc<dyn BlobStorage>, StartupError> {
    let (adapter, feature) = settings.adapter();
    #[cfg_attr(not(any(feature = "storage-minio", feature = "storage-s3", feature = "storage-blob")), allow(unused))]
    let failed = |error| StartupError::Storage { adapter, error };
    match settings {
        #[cfg(feature = "storage-minio")]
        storage::Settings::Minio(settings) => {
            Ok(Arc::new(storage::minio::MinioStorage::new(settings.clone()).await.map_err(failed)?))
        }
        #[cfg(feature = "storage-s3")]
        storage::Settings::S3(settings) => {
            Ok(Arc::new(storage::s3::S3Storage::new(settings.clone()).await.map_err(failed)?))
        }
        #[cfg(feature = "storage-blob")]
        storage::Settings::Blob(settings) => {
            Ok(Arc::new(storage::blob::AzureBlobStorage::new(settings.clone()).await.map_err(failed)?))
        }
        #[cfg(feature = "storage-fs")]
        storage::Settings::Fs(settings) => Ok(Arc::new(
            storage::fs::FsStorage::new(&settings.root)
                .map_err(|error| StartupError::FsRoot { root: settings.root.clone(), error })?,
        )),
        #[allow(unreachable_patterns)]
        _ => Err(StartupError::StorageNotCompiled { adapter, feature }),
    }
}

/// Builds Jade over the real databases and storage the configuration names, migrating the
/// Jade database first.
#[cfg(feature = "postgres")]
pub async fn build(config: &Config) -> Result<Jade, StartupError> {
    use secrecy::ExposeSecret;

    use crate::adapters::auth::{self, CachedVerifier};
    use crate::adapters::datacoves::DatacovesCatalog;
    use crate::adapters::memory::SystemClock;
    use crate::adapters::pg::{self, OpenError};
    use crate::adapters::postgres::JadeDatabase;

    let open = |settings: &pg::Settings, read_only: bool, variable: &'static str| {
        pg::Database::open(settings, read_only).map_err(|e| match e {
            OpenError::InvalidUrl => StartupError::DatabaseUrl { variable },
            OpenError::Pool(e) => StartupError::DatabasePool(crate::adapters::error_chain(&e)),
        })
    };
    let jade_db = JadeDatabase::new(open(&config.jade_db, false, "DB_URL")?);
    jade_db.migrate().await.map_err(|e| StartupError::JadeDatabase(crate::adapters::error_chain(&e)))?;

    let datacoves_pool = open(&config.datacoves_db, true, "DATACOVES_DB_URL")?;
    crate::adapters::metrics::watch_pool("datacoves_db", datacoves_pool.pool());
    let _connected =
        datacoves_pool.client().await.map_err(|e| StartupError::DatacovesDatabase(crate::adapters::error_chain(&e)))?;
    let fernet_key = config.fernet_key.as_ref().map(|key| key.expose_secret());
    let catalog =
        DatacovesCatalog::new(datacoves_pool, fernet_key).map_err(|e| StartupError::FernetKey(e.to_string()))?;

    let cache_ttl = config.auth.cache_ttl;
    let verifier: Arc<dyn crate::ports::auth::TokenVerifier> = match &config.auth.verifier {
        #[cfg(feature = "http")]
        auth::Verifier::Http { url } => {
            let verifier = auth::VerifyUrl::new(url.clone(), std::time::Duration::from_secs(10))
                .map_err(StartupError::VerifyClient)?;
            Arc::new(CachedVerifier::new(verifier, cache_ttl))
        }
        #[cfg(not(feature = "http"))]
        auth::Verifier::Http { .. } => return Err(StartupError::VerifierNeedsHttp),
        auth::Verifier::Database => {
            // A pool of its own: made-up tokens cannot take the catalog's connections.
            let settings = pg::Settings { pool_size: config.auth.pool_size, ..config.datacoves_db.clone() };
            let auth_pool = open(&settings, true, "DATACOVES_DB_URL")?;
            crate::adapters::metrics::watch_pool("datacoves_auth", auth_pool.pool());
            Arc::new(CachedVerifier::new(auth::DatabaseVerifier::new(auth_pool), cache_ttl))
        }
    };

    let airflow = match &config.airflow {
        Some(settings) => Some(airflow(settings)?),
        None => {
            tracing::info!("CONNECT_TO_AIRFLOW=false: job and run lists are empty");
            None
        }
    };

    let control = match &config.airflow {
        Some(settings) => control(&settings.api)?,
        None => None,
    };

    let storage = storage(&config.storage).await?;
    tracing::info!(
        storage = storage.backend(),
        airflow = airflow.is_some(),
        running_jobs = control.is_some(),
        "adapters ready"
    );
    let jade_db = Arc::new(jade_db);
    let ports = crate::app::Ports {
        catalog: Arc::new(catalog),
        airflow,
        control,
        registry: jade_db.clone(),
        run_index: jade_db.clone(),
        manifests: jade_db.clone(),
        files: jade_db,
        storage,
        verifier,
        clock: Arc::new(SystemClock),
    };
    Ok(Jade::new(ports, config.app.clone()))
}

#[cfg(not(feature = "postgres"))]
pub async fn build(_config: &Config) -> Result<Jade, StartupError> {
    Err(StartupError::PostgresNotCompiled)
}

#[cfg(all(feature = "postgres", feature = "airflow"))]
fn airflow(
    settings: &crate::adapters::airflow::AirflowSettings,
) -> Result<Arc<dyn crate::ports::airflow::AirflowRuns>, StartupError> {
    Ok(Arc::new(crate::adapters::airflow::AirflowDatabases::new(settings.clone())))
}

/// Each environment's Airflow REST API, to run jobs.
#[cfg(all(feature = "postgres", feature = "airflow-api"))]
fn control(
    settings: &crate::adapters::airflow::AirflowApiSettings,
) -> Result<Option<Arc<dyn crate::ports::airflow_api::AirflowControl>>, StartupError> {
    let api = crate::adapters::airflow::AirflowRestApi::new(settings.clone())
        .map_err(|e| StartupError::AirflowApiClient(e.to_string()))?;
    Ok(Some(Arc::new(api)))
}

/// Without the Airflow API client, running jobs answers 503; reads are unaffected.
#[cfg(all(feature = "postgres", not(feature = "airflow-api")))]
fn control(
    _settings: &crate::adapters::airflow::AirflowApiSettings,
) -> Result<Option<Arc<dyn crate::ports::airflow_api::AirflowControl>>, StartupError> {
    tracing::warn!("running jobs needs the Cargo feature `airflow-api`: its routes answer 503");
    Ok(None)
}

#[cfg(all(feature = "postgres", not(feature = "airflow")))]
fn airflow(
    _settings: &crate::adapters::airflow::AirflowSettings,
) -> Result<Arc<dyn crate::ports::airflow::AirflowRuns>, StartupError> {
    Err(StartupError::AirflowNotCompiled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Problem;

    #[test]
    fn each_failure_is_one_line_naming_what_to_change() {
        let line = |error: StartupError| error.to_string();
        assert_eq!(line(ConfigError::new("PORT", Problem::Missing).into()), "configuration: PORT: is required");
        assert_eq!(
            line(StartupError::StorageNotCompiled { adapter: "s3", feature: "storage-s3" }),
            "STORAGE_ADAPTER=s3 is not compiled into this build: rebuild with `--features storage-s3`"
        );
        assert_eq!(
            line(StartupError::DatabaseUrl { variable: "DB_URL" }),
            "configuration: DB_URL: is not a valid PostgreSQL URL"
        );
    }

    /// A root that is a file cannot hold objects; without `storage-fs` the build says so.
    #[tokio::test]
    async fn storage_that_cannot_start_says_why() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let settings = storage::Settings::Fs(storage::fs::FsSettings { root: file.path().to_owned() });
        let error = storage(&settings).await.err().expect("a file is no storage root");
        if cfg!(feature = "storage-fs") {
            assert!(matches!(error, StartupError::FsRoot { .. }), "{error}");
            assert!(error.to_string().starts_with("FS_STORAGE_ROOT /"), "{error}");
        } else {
            assert!(matches!(error, StartupError::StorageNotCompiled { feature: "storage-fs", .. }), "{error}");
        }
    }

    /// Checked before any connection is tried, and the URL (it may carry a password) is not
    /// printed.
    #[cfg(feature = "postgres")]
    #[tokio::test]
    async fn an_invalid_database_url_is_named_never_printed() {
        let vars = [("FERNET_KEY", "k"), ("DATACOVES_VERIFY_URL", "v"), ("DB_URL", "postgres://u:hunter2@h:port/db")];
        let config =
            Config::from_lookup(move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())).unwrap();
        let error = build(&config).await.err().expect("the URL does not parse");
        assert!(matches!(error, StartupError::DatabaseUrl { variable: "DB_URL" }), "{error}");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}
