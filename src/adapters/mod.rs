//! Adapters: the outside world behind the ports. Each is compiled in by its Cargo feature;
//! none imports another. Each reads its own settings from the environment whatever the
//! build (so start-up can name the feature a build lacks).

pub mod airflow;
pub mod auth;
#[cfg(feature = "postgres")]
pub mod datacoves;
#[cfg(feature = "http")]
pub mod http;
pub mod memory;
pub mod metrics;
pub mod pg;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod storage;

/// An error with its causes, for one log line or `Backend` message (each cause once).
#[cfg_attr(
    not(any(
        feature = "http",
        feature = "postgres",
        feature = "airflow",
        feature = "storage-minio",
        feature = "storage-s3",
        feature = "storage-blob"
    )),
    allow(unused_imports)
)]
pub(crate) use crate::domain::error::error_chain;
