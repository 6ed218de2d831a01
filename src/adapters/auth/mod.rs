//! Token verifiers: the Datacoves verify URL, the Datacoves tables, and a cache in front of
//! either.

use std::time::Duration;

use crate::config::env::{ConfigError, Env};

mod cache;
#[cfg(feature = "postgres")]
mod database;
#[cfg(feature = "http")]
mod verify_url;

pub use cache::CachedVerifier;
#[cfg(feature = "postgres")]
pub use database::DatabaseVerifier;
#[cfg(feature = "http")]
pub use verify_url::VerifyUrl;

/// Which verifier checks tokens, and its cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub verifier: Verifier,
    /// `AUTH_CACHE_TTL_SECONDS` (default 60): how long an answer is remembered.
    pub cache_ttl: Duration,
    /// `AUTH_POOL_SIZE`: the database verifier's own connections to the Datacoves database
    /// (default 2), apart from the catalog's.
    pub pool_size: usize,
}

/// `AUTH_VERIFIER` (default `http`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verifier {
    /// `GET $DATACOVES_VERIFY_URL`.
    Http { url: String },
    /// The Datacoves tables, read directly.
    Database,
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let database = env.choice("AUTH_VERIFIER", "http or database", &[("http", false), ("database", true)])?;
        Ok(Settings {
            verifier: if database {
                Verifier::Database
            } else {
                Verifier::Http { url: env.required("DATACOVES_VERIFY_URL")? }
            },
            cache_ttl: Duration::from_secs(env.parse("AUTH_CACHE_TTL_SECONDS", 60)?),
            pool_size: env.count("AUTH_POOL_SIZE", 2)?,
        })
    }
}
