//! Object storage adapters, one module per backend, all behind
//! [`crate::ports::storage::BlobStorage`]. Each backend's settings are read whatever the
//! build, so start-up can name the Cargo feature a build lacks; its client is compiled in by
//! its feature.

pub mod blob;
pub mod fs;
pub mod minio;
#[cfg(any(feature = "storage-minio", feature = "storage-s3", feature = "storage-blob"))]
mod remote;
pub mod s3;

use crate::config::env::{ConfigError, Env};

/// The backend `STORAGE_ADAPTER` names (default `minio`), with its settings.
#[derive(Debug, Clone)]
pub enum Settings {
    Minio(minio::MinioSettings),
    S3(s3::S3Settings),
    Blob(blob::BlobSettings),
    Fs(fs::FsSettings),
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let adapter = env.choice(
            "STORAGE_ADAPTER",
            "minio, s3, blob or fs",
            &[("minio", "minio"), ("s3", "s3"), ("blob", "blob"), ("fs", "fs")],
        )?;
        Ok(match adapter {
            "minio" => Settings::Minio(minio::MinioSettings::from_env(env)),
            "s3" => Settings::S3(s3::S3Settings::from_env(env)?),
            "blob" => Settings::Blob(blob::BlobSettings::from_env(env)?),
            _ => Settings::Fs(fs::FsSettings::from_env(env)?),
        })
    }

    /// The `STORAGE_ADAPTER` value and the Cargo feature that compiles the backend in.
    pub fn adapter(&self) -> (&'static str, &'static str) {
        match self {
            Settings::Minio(_) => ("minio", "storage-minio"),
            Settings::S3(_) => ("s3", "storage-s3"),
            Settings::Blob(_) => ("blob", "storage-blob"),
            Settings::Fs(_) => ("fs", "storage-fs"),
        }
    }
}
