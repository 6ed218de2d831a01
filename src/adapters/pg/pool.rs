//! Pools whose every statement is bounded in time, and the one place that tells a database
//! that is down or too slow (503, or an Airflow environment left out) from a bug (500).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Timeouts};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement, ToStatement};

use crate::domain::Fault;
use crate::ports::BackendError;

use super::{Connection, Settings, Tls};

/// A pool of connections to one database, every use of it bounded in time:
/// * the server cancels any statement running longer than `statement_timeout` (set on every
///   session, `57014 query_canceled`);
/// * Jade itself gives up on a statement, a connection attempt or a wait for a free
///   connection that got no answer at all within the statement timeout plus a margin (a
///   stalled network or server never answers the cancel either), and drops that connection.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    bound: Duration,
}

/// What Jade waits beyond the server's `statement_timeout` before it stops waiting itself.
fn client_bound(statement_timeout: Duration) -> Duration {
    statement_timeout + statement_timeout.min(Duration::from_secs(1))
}

impl Database {
    /// A pool over `config` (connections open lazily), its statements bounded by
    /// `statement_timeout`.
    pub fn new(
        config: tokio_postgres::Config,
        size: usize,
        tls: Tls,
        statement_timeout: Duration,
    ) -> Result<Self, BackendError> {
        let config = with_option(config, &format!("statement_timeout={}", statement_timeout.as_millis().max(1)));
        let bound = client_bound(statement_timeout);
        let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = match tls {
            Tls::None => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
            Tls::Unverified => Manager::from_config(config, unverified_tls(), manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(size)
            .timeouts(Timeouts { wait: Some(bound), create: Some(bound), recycle: Some(bound) })
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| BackendError::caused_by("building a connection pool", e))?;
        Ok(Database { pool, bound })
    }

    /// A pool over a configured database; `read_only` sessions cannot write.
    pub fn open(settings: &Settings, read_only: bool) -> Result<Self, OpenError> {
        use std::str::FromStr;

        use secrecy::ExposeSecret;
        let mut config = match &settings.connection {
            Connection::Url(url) => {
                tokio_postgres::Config::from_str(url.expose_secret()).map_err(|_| OpenError::InvalidUrl)?
            }
            Connection::Parts { host, port, user, password, database } => {
                let mut config = tokio_postgres::Config::new();
                config.host(host).port(*port).user(user).password(password.expose_secret()).dbname(database);
                config
            }
        };
        if settings.tls == Tls::Unverified {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
        }
        config.connect_timeout(Duration::from_secs(10));
        config.application_name("jade");
        if read_only {
            config = self::read_only(config);
        }
        Ok(Database::new(config, settings.pool_size, settings.tls, settings.statement_timeout)?)
    }

    /// A connection, or an error once the bound passed (no free connection, or none could be
    /// opened).
    pub async fn client(&self) -> Result<Client, PgError> {
        let object = self.pool.get().await?;
        Ok(Client { object: Some(object), bound: self.bound, stalled: AtomicBool::new(false) })
    }

    /// Closes the pool: its idle connections end now, those in use when they come back.
    pub fn close(&self) {
        self.pool.close();
    }

    /// The underlying pool (sizes and waits, for status reports).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// Why a configured database's pool could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Never printed: a URL may carry a password.
    #[error("is not a valid PostgreSQL URL")]
    InvalidUrl,
    #[error(transparent)]
    Pool(#[from] BackendError),
}

/// Why a statement failed: the database's own error, the pool's, or no answer in time.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("no answer from the database within {0:?}")]
    TimedOut(Duration),
}

impl PgError {
    /// The database's SQLSTATE, when it answered with an error.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            PgError::Db(error) => error.code(),
            _ => None,
        }
    }

    /// Whether the database is down, unreachable, shutting down, refusing connections or
    /// too slow (it may come back by itself), rather than Jade asking something wrong.
    pub fn is_unavailable(&self) -> bool {
        match self {
            PgError::TimedOut(_) => true,
            PgError::Pool(PoolError::Backend(error)) => unavailable(error),
            PgError::Pool(PoolError::Timeout(_) | PoolError::Closed) => true,
            PgError::Pool(_) => false,
            PgError::Db(error) => unavailable(error),
        }
    }

    /// The failure as a port's error, marked unavailable when it is.
    pub fn fault(self, context: &str) -> Fault {
        let unavailable = self.is_unavailable();
        let fault = Fault::caused_by(context, self);
        if unavailable { fault.unavailable() } else { fault }
    }
}

fn unavailable(error: &tokio_postgres::Error) -> bool {
    if let Some(code) = error.code() {
        let code = code.code();
        // 08: connection exception; 53: insufficient resources (too many connections);
        // 57014: cancelled (statement_timeout); 57P01-57P03: shutting down, starting up.
        return code.starts_with("08")
            || code.starts_with("53")
            || [
                SqlState::QUERY_CANCELED,
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .iter()
            .any(|state| state.code() == code);
    }
    if error.is_closed() {
        return true;
    }
    // The socket failed (refused, reset, broken pipe), or connecting timed out
    // (`connect_timeout`, an error without a source).
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    error.to_string() == "timeout waiting for server"
}

/// A pooled connection whose statements Jade stops waiting for after the bound; a
/// connection that went unanswered is dropped instead of going back to the pool. Methods
/// not wrapped here reach the connection itself (still bounded by `statement_timeout`).
pub struct Client {
    object: Option<Object>,
    bound: Duration,
    stalled: AtomicBool,
}

async fn bounded<T>(
    bound: Duration,
    stalled: &AtomicBool,
    work: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, PgError> {
    match tokio::time::timeout(bound, work).await {
        Ok(result) => Ok(result?),
        Err(_) => {
            stalled.store(true, Ordering::Relaxed);
            Err(PgError::TimedOut(bound))
        }
    }
}

impl Client {
    fn object(&self) -> &Object {
        self.object.as_ref().expect("a client holds its connection until dropped")
    }

    pub async fn prepare_cached(&self, query: &str) -> Result<Statement, PgError> {
        bounded(self.bound, &self.stalled, self.object().prepare_cached(query)).await
    }

    pub async fn query<T: ?Sized + ToStatement>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PgError> {
        bounded(self.bound, &self.stalled, self.object().query(statement, params)).await
    }

    pub async fn query_one<T: ?Sized + ToStatement>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, PgError> {
        bounded(self.bound, &self.stalled, self.object().query_one(statement, params)).await
    }

    pub async fn query_opt<T: ?Sized + ToStatement>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, PgError> {
        bounded(self.bound, &self.stalled, self.object().query_opt(statement, params)).await
    }

    pub async fn execute<T: ?Sized + ToStatement>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, PgError> {
        bounded(self.bound, &self.stalled, self.object().execute(statement, params)).await
    }

    pub async fn batch_execute(&self, query: &str) -> Result<(), PgError> {
        bounded(self.bound, &self.stalled, self.object().batch_execute(query)).await
    }

    /// A transaction whose statements are bounded the same way.
    pub async fn transaction(&mut self) -> Result<Transaction<'_>, PgError> {
        let Client { object, bound, stalled } = self;
        let object = object.as_mut().expect("a client holds its connection until dropped");
        let inner = bounded(*bound, stalled, object.transaction()).await?;
        Ok(Transaction { inner, bound: *bound, stalled })
    }

    /// The connection itself, unbounded by Jade (migrations wait for other replicas).
    pub fn unbounded(&mut self) -> &mut tokio_postgres::Client {
        self.object.as_mut().expect("a client holds its connection until dropped")
    }

    /// Drops the connection instead of returning it to the pool (a session changed for one
    /// job, e.g. `statement_timeout` lifted for migrations).
    pub fn discard(&mut self) {
        self.stalled.store(true, Ordering::Relaxed);
    }
}

impl std::ops::Deref for Client {
    type Target = Object;

    fn deref(&self) -> &Object {
        self.object()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.stalled.load(Ordering::Relaxed)
            && let Some(object) = self.object.take()
        {
            // Detached from the pool: dropping it ends the connection and its task.
            drop(Object::take(object));
        }
    }
}

/// A transaction on a [`Client`], its statements bounded as the client's.
pub struct Transaction<'a> {
    inner: deadpool_postgres::Transaction<'a>,
    bound: Duration,
    stalled: &'a AtomicBool,
}

impl Transaction<'_> {
    pub async fn query<T: ?Sized + ToStatement>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PgError> {
        bounded(self.bound, self.stalled, self.inner.query(statement, params)).await
    }

    pub async fn query_one<T: ?Sized + ToStatement>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, PgError> {
        bounded(self.bound, self.stalled, self.inner.query_one(statement, params)).await
    }

    pub async fn query_opt<T: ?Sized + ToStatement>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, PgError> {
        bounded(self.bound, self.stalled, self.inner.query_opt(statement, params)).await
    }

    pub async fn execute<T: ?Sized + ToStatement>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, PgError> {
        bounded(self.bound, self.stalled, self.inner.execute(statement, params)).await
    }

    pub async fn commit(self) -> Result<(), PgError> {
        let Transaction { inner, bound, stalled } = self;
        bounded(bound, stalled, inner.commit()).await
    }
}

impl<'a> std::ops::Deref for Transaction<'a> {
    type Target = deadpool_postgres::Transaction<'a>;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

fn unverified_tls() -> tokio_postgres_rustls::MakeRustlsConnect {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    #[derive(Debug)]
    struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

/// Sets `default_transaction_read_only` on every session, so this adapter cannot write.
pub fn read_only(config: tokio_postgres::Config) -> tokio_postgres::Config {
    with_option(config, "default_transaction_read_only=on")
}

/// Adds `-c setting=value` to the options every session starts with.
fn with_option(mut config: tokio_postgres::Config, setting: &str) -> tokio_postgres::Config {
    let options = match config.get_options() {
        Some(options) => format!("{options} -c {setting}"),
        None => format!("-c {setting}"),
    };
    config.options(options);
    config
}
