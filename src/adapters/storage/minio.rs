//! MinIO (`STORAGE_ADAPTER=minio`, the default).

use secrecy::SecretString;

use crate::config::env::Env;

#[cfg(feature = "storage-minio")]
mod client;
#[cfg(feature = "storage-minio")]
pub use client::MinioStorage;

/// Where the MinIO server is and how to sign in.
#[derive(Clone, Debug)]
pub struct MinioSettings {
    /// Base URL, e.g. `http://minio:9000` (`https://` for TLS).
    pub url: String,
    pub access_key: SecretString,
    pub secret_key: SecretString,
    pub bucket: String,
}

impl MinioSettings {
    /// `MINIO_URL`, `MINIO_ACCESS_KEY`, `MINIO_SECRET_KEY`, `MINIO_BUCKET_NAME`, each with the
    /// first Jade's development default.
    pub fn from_env(env: &Env) -> Self {
        MinioSettings {
            url: env.get_or("MINIO_URL", "http://localhost:9000"),
            access_key: env.get_or("MINIO_ACCESS_KEY", "minioadmin").into(),
            secret_key: env.get_or("MINIO_SECRET_KEY", "minioadmin").into(),
            bucket: env.get_or("MINIO_BUCKET_NAME", "jade-dev"),
        }
    }
}
