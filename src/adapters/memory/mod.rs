//! In-memory implementations of every port: for the domain's unit tests and `jade demo`.

mod airflow;
mod catalog;
mod files;
mod manifests;
mod registry;
mod storage;

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

pub use airflow::MemoryAirflow;
pub use catalog::MemoryCatalog;
pub use files::MemoryFileStore;
pub use manifests::MemoryManifestStore;
pub use registry::MemoryRegistry;
pub use storage::MemoryStorage;

use crate::domain::access::Identity;
use crate::domain::catalog::Timestamp;
use crate::ports::auth::{TokenVerifier, VerifyError};
use crate::ports::clock::Clock;

/// Tokens and the identities they stand for.
#[derive(Default)]
pub struct MemoryVerifier {
    tokens: Mutex<HashMap<String, Identity>>,
}

impl MemoryVerifier {
    pub fn insert(&self, token: impl Into<String>, identity: Identity) {
        self.tokens.lock().unwrap().insert(token.into(), identity);
    }
}

#[async_trait]
impl TokenVerifier for MemoryVerifier {
    async fn verify(&self, token: &str) -> Result<Identity, VerifyError> {
        self.tokens.lock().unwrap().get(token).cloned().ok_or(VerifyError::Invalid)
    }
}

/// A clock that reads the system time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        chrono::Utc::now()
    }
}

/// A clock that stands still, for tests.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}
