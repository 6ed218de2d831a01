//! File rows in the Jade database (their bodies are in [`super::storage`]).
//!
//! Every row of one (environment, path) reads the same body (the newest upload's): a write
//! switches them all to its new key in the transaction that writes the row, and answers the
//! keys no row reads any more, whose bodies the caller then removes.

use async_trait::async_trait;

use crate::domain::file::{File, FileLookup, NewFile};
use crate::ports::BackendError;

/// Rows written, and the storage keys they released.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Written<T> {
    pub rows: T,
    /// Keys that no row reads any more (the bodies the write replaced).
    pub released: Vec<String>,
}

/// Failures are `BackendError`; not-found is `Ok(None)`.
#[async_trait]
pub trait FileStore: Send + Sync + 'static {
    /// Inserts every row in one transaction, all of them or none, and points the earlier
    /// rows of each path at its new key (the last one given for a path wins).
    async fn insert(&self, files: &[NewFile]) -> Result<Written<Vec<File>>, BackendError>;

    /// The newest file of the environment that the lookup names (a slug that is not a UUID
    /// names none).
    async fn find(&self, environment_slug: &str, lookup: &FileLookup) -> Result<Option<File>, BackendError>;

    /// Gives the file a new tag, filename, path and key, and points the other rows of the
    /// new path at that key, in one transaction; `None` when the row no longer exists.
    async fn update(&self, id: i64, new: &NewFile) -> Result<Option<Written<File>>, BackendError>;

    /// Deletes every row of the environment stored under `path` that reads its body from
    /// `key`; answers how many.
    async fn delete_by_path(&self, environment_slug: &str, path: &str, key: &str) -> Result<u64, BackendError>;

    /// Whether any row reads its body from `key`.
    async fn key_in_use(&self, key: &str) -> Result<bool, BackendError>;

    /// The keys the rows of these paths of the environment read now (what writing new
    /// bodies for them would release).
    async fn keys_of_paths(&self, environment_slug: &str, paths: &[&str]) -> Result<Vec<String>, BackendError>;
}
