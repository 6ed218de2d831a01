//! Object storage adapters, one file per backend, all behind
//! [`crate::ports::storage::BlobStorage`].

#[cfg(feature = "storage-blob")]
pub mod blob;
#[cfg(feature = "storage-fs")]
pub mod fs;
#[cfg(feature = "storage-minio")]
pub mod minio;
#[cfg(feature = "storage-s3")]
pub mod s3;
