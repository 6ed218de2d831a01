//! Token verifiers: the Datacoves verify URL, the Datacoves tables, and a cache in front of
//! either.

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
