//! Object storage adapters, one file per backend, all behind
//! [`crate::ports::storage::BlobStorage`].

#[cfg(feature = "storage-blob")]
pub mod blob;
#[cfg(feature = "storage-fs")]
pub mod fs;
#[cfg(feature = "storage-minio")]
pub mod minio;
#[cfg(any(feature = "storage-minio", feature = "storage-s3", feature = "storage-blob"))]
mod remote;
#[cfg(feature = "storage-s3")]
pub mod s3;
