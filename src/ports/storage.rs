//! Object storage for manifest and file bodies (MinIO, S3, Azure Blob, local disk).

use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// A body to store. Uploads are spooled to a temporary file as they arrive, so adapters can
/// stream them to the server (and re-read them on a retry) without holding them in memory.
#[derive(Debug, Clone)]
pub enum BlobSource {
    Bytes(Bytes),
    /// A file nobody writes to again: an adapter may link it instead of copying it.
    File {
        path: PathBuf,
        len: u64,
    },
}

impl BlobSource {
    pub fn len(&self) -> u64 {
        match self {
            BlobSource::Bytes(bytes) => bytes.len() as u64,
            BlobSource::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A stored body as a stream of chunks. An error while streaming (the server went away
/// mid-body) arrives as an `Err` item; the consumer must then abort the response.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

pub struct Blob {
    /// The body's size when the backend reports it.
    pub len: Option<u64>,
    pub body: ByteStream,
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blob").field("len", &self.len).finish_non_exhaustive()
    }
}

/// What a metadata read tells of a stored object, without reading its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The body's size in bytes.
    pub len: u64,
    /// Identifies the stored bytes (the backend's ETag, or an equivalent): it changes whenever
    /// a put stores different bytes under the key, so two stats with the same version saw the
    /// same body. Opaque; it may hold any printable ASCII.
    pub version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No object under that key.
    #[error("object not found")]
    NotFound,
    /// The key cannot be stored by this backend (e.g. it would leave the storage root).
    #[error("invalid storage key: {0}")]
    InvalidKey(String),
    /// The backend failed or could not be reached. The message is for logs and never
    /// contains credentials.
    #[error("storage backend failed: {0}")]
    Backend(String),
}

/// One bucket or container. Keys are `/`-separated paths as the domain builds them
/// (`accounts/1/environments/dev/manifests/7/manifest.json`,
/// `/environments/dev/files/tag/name.json`); each adapter maps a key to its backend the way
/// the first Jade did (Azure Blob drops a leading `/`).
#[async_trait]
pub trait BlobStorage: Send + Sync + 'static {
    /// Stores `source` under `key`, replacing any object there. MUST be all-or-nothing: when
    /// it fails (server down, connection cut mid-body) the previous object under `key`, or its
    /// absence, is left as it was, and the error is `Backend`.
    async fn put(&self, key: &str, source: BlobSource) -> Result<(), StorageError>;

    /// Opens the object for streaming. MUST answer `NotFound` (before any byte) when no object
    /// is stored under `key`, and `Backend` when the backend cannot be reached.
    async fn get(&self, key: &str) -> Result<Blob, StorageError>;

    /// The object's size and version, from its metadata alone (no byte of the body is read).
    /// MUST answer `NotFound` when no object is stored under `key`, and `Backend` when the
    /// backend cannot be reached.
    async fn stat(&self, key: &str) -> Result<Stat, StorageError>;

    /// Deletes the object. A missing object is success; `Backend` when the backend fails
    /// (the object may then still exist).
    async fn delete(&self, key: &str) -> Result<(), StorageError>;

    /// The keys stored under `prefix` (a key prefix ending in `/`, mapped to the backend as
    /// keys are), each relative to it, sorted: after `put("a/b/c.json")`,
    /// `list("a/")` answers `["b/c.json"]`. Empty when nothing is stored there; `Backend`
    /// when the backend fails. Objects still being written are not listed.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;

    /// Whether the bucket answers: a cheap request that reads no object (readiness). `Backend`
    /// when it cannot be reached or the bucket is missing.
    async fn ping(&self) -> Result<(), StorageError>;

    /// Short name for logs and health output: `minio`, `s3`, `blob`, `fs`, `memory`.
    fn backend(&self) -> &'static str;

    /// Whether `put` keeps a [`BlobSource::File`] as the stored body (links it) and syncs it
    /// to disk. Spool files are then written back to disk while they are being written, so
    /// the sync at the end has little left to wait for.
    fn keeps_spool_files(&self) -> bool {
        false
    }
}
