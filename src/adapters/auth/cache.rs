use std::time::Duration;

use async_trait::async_trait;
use moka::future::Cache;
use sha2::{Digest, Sha256};

use crate::domain::access::Identity;
use crate::ports::auth::{TokenVerifier, VerifyError};

/// Keeps verified answers for a while (`AUTH_CACHE_TTL_SECONDS`), keyed by a SHA-256 of the
/// token so no token is held in memory longer than its request. Concurrent requests with
/// the same token share one verification. Refusals and failures are not kept: a token
/// that becomes valid works at once, and an outage ends with the verifier's.
pub struct CachedVerifier<V> {
    inner: V,
    cache: Option<Cache<[u8; 32], Identity>>,
}

impl<V: TokenVerifier> CachedVerifier<V> {
    /// A zero `ttl` turns the cache off.
    pub fn new(inner: V, ttl: Duration) -> Self {
        let cache = (!ttl.is_zero()).then(|| Cache::builder().time_to_live(ttl).max_capacity(100_000).build());
        CachedVerifier { inner, cache }
    }
}

#[async_trait]
impl<V: TokenVerifier> TokenVerifier for CachedVerifier<V> {
    async fn verify(&self, token: &str) -> Result<Identity, VerifyError> {
        let Some(cache) = &self.cache else { return self.inner.verify(token).await };
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        cache.try_get_with(key, self.inner.verify(token)).await.map_err(|e| (*e).clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Counting {
        calls: AtomicUsize,
        answer: Mutex<Result<Identity, VerifyError>>,
    }

    #[async_trait]
    impl TokenVerifier for Counting {
        async fn verify(&self, _token: &str) -> Result<Identity, VerifyError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.answer.lock().unwrap().clone()
        }
    }

    fn counting(answer: Result<Identity, VerifyError>) -> Counting {
        Counting { calls: AtomicUsize::new(0), answer: Mutex::new(answer) }
    }

    #[tokio::test]
    async fn valid_answers_are_kept_refusals_are_not() {
        let cached = CachedVerifier::new(counting(Err(VerifyError::Invalid)), Duration::from_secs(60));
        assert_eq!(cached.verify("t").await, Err(VerifyError::Invalid));
        assert_eq!(cached.verify("t").await, Err(VerifyError::Invalid));
        assert_eq!(cached.inner.calls.load(Ordering::SeqCst), 2);
        *cached.inner.answer.lock().unwrap() = Ok(Identity { account_ids: vec![1], ..Identity::default() });
        for _ in 0..3 {
            assert_eq!(cached.verify("t").await.unwrap().account_ids, vec![1]);
        }
        assert_eq!(cached.inner.calls.load(Ordering::SeqCst), 3);
        cached.verify("other").await.unwrap();
        assert_eq!(cached.inner.calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_zero_ttl_asks_every_time() {
        let cached = CachedVerifier::new(counting(Ok(Identity::default())), Duration::ZERO);
        cached.verify("t").await.unwrap();
        cached.verify("t").await.unwrap();
        assert_eq!(cached.inner.calls.load(Ordering::SeqCst), 2);
    }
}
