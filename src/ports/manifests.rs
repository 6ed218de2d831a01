//! Manifest rows in the Jade database (their bodies are in [`super::storage`]).

use std::collections::HashMap;

use async_trait::async_trait;
use bytes::Bytes;

use crate::domain::manifest::{Manifest, ManifestRun};
use crate::ports::BackendError;

/// A manifest row to insert, with an id reserved beforehand (its storage key needs it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewManifest {
    pub id: i64,
    pub account_id: i64,
    pub project_id: i64,
    pub environment_slug: String,
    pub tag: Option<String>,
    pub run: Option<ManifestRun>,
}

/// Which manifest a read asks for; the newest match wins (by insertion time, then id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestQuery {
    Environment { environment_slug: String },
    Dag { environment_slug: String, dag_id: String },
    Tag { environment_slug: String, tag: String },
    Project { project_id: i64 },
    JobRun { account_id: i64, job_run_id: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InsertManifestError {
    /// Another manifest of the environment has this tag.
    #[error("tag has already been taken")]
    TagTaken,
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Failures are `BackendError`; not-found is `Ok(None)`.
#[async_trait]
pub trait ManifestStore: Send + Sync + 'static {
    /// A new manifest id, never handed out before.
    async fn reserve_id(&self) -> Result<i64, BackendError>;

    /// Inserts the row; `TagTaken` when (environment, tag) exists, leaving nothing behind.
    async fn insert(&self, manifest: NewManifest) -> Result<Manifest, InsertManifestError>;

    /// Deletes the row with this id, if any (undoing an upload that did not finish).
    async fn delete(&self, id: i64) -> Result<(), BackendError>;

    /// Whether a manifest of the environment has this tag.
    async fn tag_taken(&self, environment_slug: &str, tag: &str) -> Result<bool, BackendError>;

    /// How many manifests were uploaded for this run (they share its storage key).
    async fn count_for_run(&self, environment_slug: &str, dag_id: &str, run_id: &str) -> Result<u64, BackendError>;

    async fn find(&self, query: &ManifestQuery) -> Result<Option<Manifest>, BackendError>;

    /// The newest manifest of each of these job runs of the account that has one.
    async fn for_job_runs(&self, account_id: i64, job_run_ids: &[i64]) -> Result<HashMap<i64, Manifest>, BackendError>;

    /// What the first Jade kept in the row's `content` column, as JSON text: the whole
    /// manifest, or (`trimmed`) an object of its `metadata` and `nodes`. `None` when the
    /// column is empty.
    async fn legacy_content(&self, id: i64, trimmed: bool) -> Result<Option<Bytes>, BackendError>;
}
