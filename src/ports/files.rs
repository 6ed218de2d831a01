//! File rows in the Jade database (their bodies are in [`super::storage`]).

use async_trait::async_trait;

use crate::domain::file::{File, FileLookup, NewFile};
use crate::ports::BackendError;

/// Failures are `BackendError`; not-found is `Ok(None)`.
#[async_trait]
pub trait FileStore: Send + Sync + 'static {
    /// Inserts every row in one transaction: all of them or none.
    async fn insert(&self, files: &[NewFile]) -> Result<Vec<File>, BackendError>;

    /// The newest file of the environment that the lookup names (a slug that is not a UUID
    /// names none).
    async fn find(&self, environment_slug: &str, lookup: &FileLookup) -> Result<Option<File>, BackendError>;

    /// Gives the file a new tag, filename and path; `None` when the row no longer exists.
    async fn update(&self, id: i64, tag: &str, filename: &str, path: &str) -> Result<Option<File>, BackendError>;

    /// Deletes every row of the environment stored under `path`; answers how many.
    async fn delete_by_path(&self, environment_slug: &str, path: &str) -> Result<u64, BackendError>;

    /// Whether any row is stored under `path`.
    async fn path_in_use(&self, path: &str) -> Result<bool, BackendError>;
}
