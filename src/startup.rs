//! The composition root: builds the adapters the configuration asks for (and the build
//! compiled in), hands them to the use cases and the HTTP adapter. The only module that
//! names every adapter.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::app::config::{Config, LogFormat, Storage};
use crate::app::{Jade, Settings};
use crate::ports::storage::BlobStorage;

/// Why Jade cannot start; printed as one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartupError(pub String);

impl From<crate::app::config::ConfigError> for StartupError {
    fn from(error: crate::app::config::ConfigError) -> Self {
        StartupError(format!("configuration: {error}"))
    }
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

#[cfg_attr(
    all(feature = "storage-minio", feature = "storage-s3", feature = "storage-blob", feature = "storage-fs"),
    allow(dead_code)
)]
fn missing(adapter: &str, feature: &str) -> StartupError {
    StartupError(format!(
        "STORAGE_ADAPTER={adapter} is not compiled into this build: rebuild with `--features {feature}`"
    ))
}

#[cfg_attr(not(any(feature = "storage-minio", feature = "storage-s3", feature = "storage-blob")), allow(dead_code))]
fn failed(adapter: &str, error: crate::ports::storage::StorageError) -> StartupError {
    StartupError(format!("STORAGE_ADAPTER={adapter}: {error}"))
}

/// The storage adapter `STORAGE_ADAPTER` names, or a line saying which Cargo feature the
/// build lacks for it.
pub async fn storage(config: &Storage) -> Result<Arc<dyn BlobStorage>, StartupError> {
    let storage = unmetered_storage(config).await?;
    Ok(Arc::new(crate::adapters::metrics::MeteredStorage::new(storage)))
}

async fn unmetered_storage(config: &Storage) -> Result<Arc<dyn BlobStorage>, StartupError> {
    match config {
        #[cfg(feature = "storage-minio")]
        Storage::Minio { url, access_key, secret_key, bucket } => {
            use crate::adapters::storage::minio::{MinioSettings, MinioStorage};
            let settings = MinioSettings {
                url: url.clone(),
                access_key: access_key.expose().to_owned(),
                secret_key: secret_key.secret(),
                bucket: bucket.clone(),
            };
            Ok(Arc::new(MinioStorage::new(settings).await.map_err(|e| failed("minio", e))?))
        }
        #[cfg(not(feature = "storage-minio"))]
        Storage::Minio { .. } => Err(missing("minio", "storage-minio")),
        #[cfg(feature = "storage-s3")]
        Storage::S3 { bucket, access_key, secret_key, region, endpoint_url } => {
            use crate::adapters::storage::s3::{S3Settings, S3Storage};
            let settings = S3Settings {
                bucket: bucket.clone(),
                access_key: access_key.expose().to_owned(),
                secret_key: secret_key.secret(),
                region: region.clone(),
                endpoint_url: endpoint_url.clone(),
            };
            Ok(Arc::new(S3Storage::new(settings).await.map_err(|e| failed("s3", e))?))
        }
        #[cfg(not(feature = "storage-s3"))]
        Storage::S3 { .. } => Err(missing("s3", "storage-s3")),
        #[cfg(feature = "storage-blob")]
        Storage::Blob { container, connection } => {
            use crate::adapters::storage::blob::{AzureBlobStorage, BlobConnection, BlobSettings};
            use crate::app::config::BlobConnection as Configured;
            let connection = match connection {
                Configured::ConnectionString(value) => BlobConnection::ConnectionString(value.secret()),
                Configured::AccountKey { account, key } => {
                    BlobConnection::AccountKey { account: account.clone(), key: key.secret() }
                }
            };
            let settings = BlobSettings { container: container.clone(), connection };
            Ok(Arc::new(AzureBlobStorage::new(settings).await.map_err(|e| failed("blob", e))?))
        }
        #[cfg(not(feature = "storage-blob"))]
        Storage::Blob { .. } => Err(missing("blob", "storage-blob")),
        #[cfg(feature = "storage-fs")]
        Storage::Fs { root } => {
            let storage = crate::adapters::storage::fs::FsStorage::new(root)
                .map_err(|e| StartupError(format!("FS_STORAGE_ROOT {}: {e}", root.display())))?;
            Ok(Arc::new(storage))
        }
        #[cfg(not(feature = "storage-fs"))]
        Storage::Fs { .. } => Err(missing("fs", "storage-fs")),
    }
}

/// Builds Jade over the real databases and storage the configuration names, migrating the
/// Jade database first.
#[cfg(feature = "postgres")]
pub async fn build(config: &Config) -> Result<Jade, StartupError> {
    use crate::adapters::auth::CachedVerifier;
    use crate::adapters::datacoves::DatacovesCatalog;
    use crate::adapters::memory::SystemClock;
    use crate::adapters::pg::{self, read_only};
    let bound = config.db_statement_timeout;
    use crate::adapters::postgres::JadeDatabase;
    use crate::app::config::Verifier;

    let jade_db =
        pg::Database::new(pg_config(&config.jade_db, "DB")?, config.jade_db.pool_size, tls(&config.jade_db), bound)
            .map(JadeDatabase::new)
            .map_err(|e| StartupError(crate::adapters::error_chain(&e)))?;
    jade_db.migrate().await.map_err(|e| {
        StartupError(format!(
            "{} (set by DB_URL, or DB_HOST/DB_PORT/DB_USER/DB_PASS/DB_NAME)",
            crate::adapters::error_chain(&e)
        ))
    })?;

    let datacoves_pool = pg::Database::new(
        read_only(pg_config(&config.datacoves_db, "DATACOVES_DB")?),
        config.datacoves_db.pool_size,
        tls(&config.datacoves_db),
        bound,
    )
    .map_err(|e| StartupError(crate::adapters::error_chain(&e)))?;
    crate::adapters::metrics::watch_pool("datacoves_db", datacoves_pool.pool());
    let _connected = datacoves_pool.client().await.map_err(|e| {
        StartupError(format!(
            "Datacoves database: {} (set by DATACOVES_DB_URL, or DATACOVES_DB_HOST/_PORT/_USER/_PASS/_NAME)",
            crate::adapters::error_chain(&e)
        ))
    })?;
    let fernet_key = config.airflow.fernet_key.as_ref().map(|k| k.expose());
    let catalog =
        DatacovesCatalog::new(datacoves_pool, fernet_key).map_err(|e| StartupError(format!("FERNET_KEY: {e}")))?;

    let verifier: Arc<dyn crate::ports::auth::TokenVerifier> = match &config.auth.verifier {
        #[cfg(feature = "http")]
        Verifier::Http { url } => {
            let verifier = crate::adapters::auth::VerifyUrl::new(url.clone(), std::time::Duration::from_secs(10))
                .map_err(StartupError)?;
            Arc::new(CachedVerifier::new(verifier, config.auth.cache_ttl))
        }
        #[cfg(not(feature = "http"))]
        Verifier::Http { .. } => {
            return Err(StartupError("AUTH_VERIFIER=http needs the Cargo feature `http`".into()));
        }
        Verifier::Database => {
            // A pool of its own: made-up tokens cannot take the catalog's connections.
            let auth_pool = pg::Database::new(
                read_only(pg_config(&config.datacoves_db, "DATACOVES_DB")?),
                config.auth.pool_size,
                tls(&config.datacoves_db),
                bound,
            )
            .map_err(|e| StartupError(crate::adapters::error_chain(&e)))?;
            crate::adapters::metrics::watch_pool("datacoves_auth", auth_pool.pool());
            Arc::new(CachedVerifier::new(
                crate::adapters::auth::DatabaseVerifier::new(auth_pool),
                config.auth.cache_ttl,
            ))
        }
    };

    let airflow: Option<Arc<dyn crate::ports::airflow::AirflowRuns>> = if config.airflow.enabled {
        airflow(config)?
    } else {
        tracing::info!("CONNECT_TO_AIRFLOW=false: job and run lists are empty");
        None
    };

    let storage = storage(&config.storage).await?;
    tracing::info!(storage = storage.backend(), airflow = airflow.is_some(), "adapters ready");
    let jade_db = Arc::new(jade_db);
    let ports = crate::app::Ports {
        catalog: Arc::new(catalog),
        airflow,
        registry: jade_db.clone(),
        run_index: jade_db.clone(),
        manifests: jade_db.clone(),
        files: jade_db,
        storage,
        verifier,
        clock: Arc::new(SystemClock),
    };
    Ok(Jade::new(ports, settings(config)))
}

#[cfg(not(feature = "postgres"))]
pub async fn build(_config: &Config) -> Result<Jade, StartupError> {
    Err(StartupError("jade serve reads the Jade and Datacoves databases: rebuild with `--features postgres`".into()))
}

#[cfg(all(feature = "postgres", feature = "airflow"))]
fn airflow(config: &Config) -> Result<Option<Arc<dyn crate::ports::airflow::AirflowRuns>>, StartupError> {
    use crate::adapters::airflow::{AirflowDatabases, AirflowSettings};
    let settings = AirflowSettings {
        url_template: config.airflow.url_template.as_ref().map(|t| t.secret()),
        pool_size: config.airflow.pool_size,
        tls: tls(&config.datacoves_db),
        statement_timeout: config.airflow.statement_timeout,
        pool_idle: config.airflow.pool_idle,
        ..AirflowSettings::default()
    };
    Ok(Some(Arc::new(AirflowDatabases::new(settings))))
}

#[cfg(all(feature = "postgres", not(feature = "airflow")))]
fn airflow(_config: &Config) -> Result<Option<Arc<dyn crate::ports::airflow::AirflowRuns>>, StartupError> {
    Err(StartupError(
        "CONNECT_TO_AIRFLOW is on but the Airflow adapter is not compiled in: rebuild with `--features airflow` \
         or set CONNECT_TO_AIRFLOW=false"
            .into(),
    ))
}

pub fn settings(config: &Config) -> Settings {
    Settings {
        compat: config.compat,
        max_upload_bytes: config.max_upload_bytes,
        spool_dir: None,
        run_index_refresh: config.run_index_refresh,
        airflow_ui_url_template: config.airflow_ui_url_template.clone(),
        max_concurrent_uploads: config.max_concurrent_uploads,
        shutdown_grace: config.shutdown_grace,
        header_read_timeout: config.header_read_timeout,
        idle_timeout: config.idle_timeout,
    }
}

#[cfg(feature = "postgres")]
fn tls(database: &crate::app::config::Database) -> crate::adapters::pg::Tls {
    if database.ssl { crate::adapters::pg::Tls::Unverified } else { crate::adapters::pg::Tls::None }
}

/// A database's connection settings; a URL that does not parse is named, never printed.
#[cfg(feature = "postgres")]
fn pg_config(database: &crate::app::config::Database, prefix: &str) -> Result<tokio_postgres::Config, StartupError> {
    use std::str::FromStr;

    use crate::app::config::Connection;
    let mut config = match &database.connection {
        Connection::Url(url) => tokio_postgres::Config::from_str(url.expose())
            .map_err(|_| StartupError(format!("configuration: {prefix}_URL: is not a valid PostgreSQL URL")))?,
        Connection::Parts { host, port, user, password, database } => {
            let mut config = tokio_postgres::Config::new();
            config.host(host).port(*port).user(user).password(password.expose()).dbname(database);
            config
        }
    };
    if database.ssl {
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
    }
    config.connect_timeout(std::time::Duration::from_secs(10));
    config.application_name("jade");
    Ok(config)
}
