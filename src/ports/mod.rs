//! The traits the application needs from the world, one per outside dependency. Each method
//! documents what it must do on not-found and on failure; adapters map their own errors to
//! the port's error types, so no adapter error reaches a response.

pub mod airflow;
pub mod airflow_api;
pub mod auth;
pub mod catalog;
pub mod clock;
pub mod files;
pub mod manifests;
pub mod registry;
pub mod run_index;
pub mod storage;

/// A backing service failed or could not be reached: what was being done and the driver's
/// error with its causes, for logs; never a secret.
pub type BackendError = crate::domain::Fault;
