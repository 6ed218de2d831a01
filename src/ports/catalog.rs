//! The Datacoves database: accounts, projects, environments. Read only.

use async_trait::async_trait;

use crate::domain::catalog::{Account, Environment, Project};
use crate::ports::BackendError;

/// Every method answers `Ok(None)` or an empty list when nothing matches, and
/// `Err(BackendError)` only when the database fails.
#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    /// Whether the database answers a trivial query (readiness).
    async fn ping(&self) -> Result<(), BackendError>;

    /// The account with this id.
    async fn account(&self, id: i64) -> Result<Option<Account>, BackendError>;

    /// The accounts among `ids` that exist, ordered by id.
    async fn accounts(&self, ids: &[i64]) -> Result<Vec<Account>, BackendError>;

    /// The account's projects, ordered by id.
    async fn projects(&self, account_id: i64) -> Result<Vec<Project>, BackendError>;

    /// The project with this id if it belongs to the account.
    async fn project(&self, account_id: i64, id: i64) -> Result<Option<Project>, BackendError>;

    /// The project with this slug, whatever its account.
    async fn project_by_slug(&self, slug: &str) -> Result<Option<Project>, BackendError>;

    /// The environments of the account's projects, ordered by id, each with its Airflow
    /// database settings decrypted (`Misconfigured` when they cannot be).
    async fn environments(&self, account_id: i64) -> Result<Vec<Environment>, BackendError>;

    /// The environment with this id if its project belongs to the account.
    async fn environment(&self, account_id: i64, id: i64) -> Result<Option<Environment>, BackendError>;

    /// The environment with this slug, whatever its account.
    async fn environment_by_slug(&self, slug: &str) -> Result<Option<Environment>, BackendError>;
}
