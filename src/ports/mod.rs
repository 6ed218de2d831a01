//! The traits the application needs from the world, one per outside dependency. Each method
//! documents what it must do on not-found and on failure; adapters map their own errors to
//! the port's error types, so no adapter error reaches a response.

pub mod airflow;
pub mod auth;
pub mod catalog;
pub mod clock;
pub mod files;
pub mod manifests;
pub mod registry;
pub mod run_index;
pub mod storage;

/// A backing service failed or could not be reached. The message is for logs and never
/// holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

impl BackendError {
    pub fn new(message: impl std::fmt::Display) -> Self {
        BackendError(message.to_string())
    }
}
