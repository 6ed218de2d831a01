//! Amazon S3 or an S3-compatible server (`STORAGE_ADAPTER=s3`).

use secrecy::SecretString;

use crate::config::env::{ConfigError, Env};

#[cfg(feature = "storage-s3")]
mod client;
#[cfg(feature = "storage-s3")]
pub use client::S3Storage;

/// Bucket, credentials and where the server is.
#[derive(Clone, Debug)]
pub struct S3Settings {
    pub bucket: String,
    pub access_key: SecretString,
    pub secret_key: SecretString,
    pub region: String,
    /// Custom endpoint of an S3-compatible server (`http://127.0.0.1:9000`); requests then
    /// use path-style addressing. `None` for AWS.
    pub endpoint_url: Option<String>,
}

impl S3Settings {
    /// `S3_BUCKET_NAME` (default `jade-dev`), `S3_ACCESS_KEY`, `S3_SECRET_ACCESS_KEY`,
    /// `S3_REGION` (required) and `S3_ENDPOINT_URL`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(S3Settings {
            bucket: env.get_or("S3_BUCKET_NAME", "jade-dev"),
            access_key: env.required("S3_ACCESS_KEY")?.into(),
            secret_key: env.required("S3_SECRET_ACCESS_KEY")?.into(),
            region: env.required("S3_REGION")?,
            endpoint_url: env.get("S3_ENDPOINT_URL"),
        })
    }
}
