//! Connection plumbing shared by the PostgreSQL adapters (Jade, Datacoves, Airflow).

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use crate::ports::BackendError;

/// How to secure connections (`DB_SSL_ENABLED`).
#[derive(Clone)]
pub enum Tls {
    None,
    /// TLS without certificate verification, as the first Jade connected.
    Unverified,
}

/// A deadpool pool with fast recycling, shared by every Postgres adapter of the crate.
pub fn pool(config: tokio_postgres::Config, size: usize, tls: Tls) -> Result<Pool, BackendError> {
    let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
    let manager = match tls {
        Tls::None => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
        Tls::Unverified => Manager::from_config(config, unverified_tls(), manager_config),
    };
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(std::time::Duration::from_secs(30)))
        .create_timeout(Some(std::time::Duration::from_secs(10)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| BackendError::caused_by("building a connection pool", e))
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
pub fn read_only(mut config: tokio_postgres::Config) -> tokio_postgres::Config {
    let options = match config.get_options() {
        Some(options) => format!("{options} -c default_transaction_read_only=on"),
        None => "-c default_transaction_read_only=on".to_owned(),
    };
    config.options(options);
    config
}
