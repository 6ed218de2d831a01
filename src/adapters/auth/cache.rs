use std::time::Duration;

use async_trait::async_trait;
use moka::future::Cache;
use sha2::{Digest, Sha256};

use crate::domain::access::Identity;
use crate::ports::auth::{TokenVerifier, VerifyError};

/// How long a refused token is refused without asking again (at most the cache TTL).
pub const REFUSAL_TTL: Duration = Duration::from_secs(5);

/// Keeps verified answers for a while (`AUTH_CACHE_TTL_SECONDS`), and refusals for a few
/// seconds ([`REFUSAL_TTL`]), keyed by a SHA-256 of the token so no token is held in memory
/// longer than its request. Concurrent requests with the same token share one
/// verification. Remembered refusals keep a client that retries a bad token from reaching
/// the verifier each time, and a token that becomes valid works within seconds. Failures
/// (verifier down) are never kept: an outage ends with the verifier's.
pub struct CachedVerifier<V> {
    inner: V,
    cache: Option<Cache<[u8; 32], Identity>>,
    refused: Option<Cache<[u8; 32], ()>>,
}

impl<V: TokenVerifier> CachedVerifier<V> {
    /// A zero `ttl` turns the cache off, refusals included; refusals are kept for
    /// [`REFUSAL_TTL`] or `ttl`, whichever is shorter.
    pub fn new(inner: V, ttl: Duration) -> Self {
        Self::with_refusal_ttl(inner, ttl, ttl.min(REFUSAL_TTL))
    }

    /// Chooses how long refusals are kept (zero: not at all).
    pub fn with_refusal_ttl(inner: V, ttl: Duration, refusal_ttl: Duration) -> Self {
        let cache = (!ttl.is_zero()).then(|| Cache::builder().time_to_live(ttl).max_capacity(100_000).build());
        let refused =
            (!refusal_ttl.is_zero()).then(|| Cache::builder().time_to_live(refusal_ttl).max_capacity(100_000).build());
        CachedVerifier { inner, cache, refused }
    }
}

#[async_trait]
impl<V: TokenVerifier> TokenVerifier for CachedVerifier<V> {
    async fn verify(&self, token: &str) -> Result<Identity, VerifyError> {
        if self.cache.is_none() && self.refused.is_none() {
            return self.inner.verify(token).await;
        }
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(refused) = &self.refused
            && refused.contains_key(&key)
        {
            return Err(VerifyError::Invalid);
        }
        let answer = match &self.cache {
            Some(cache) => cache.try_get_with(key, self.inner.verify(token)).await.map_err(|e| (*e).clone()),
            None => self.inner.verify(token).await,
        };
        if let (Err(VerifyError::Invalid), Some(refused)) = (&answer, &self.refused) {
            refused.insert(key, ()).await;
        }
        answer
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

    fn valid() -> Result<Identity, VerifyError> {
        Ok(Identity { account_ids: vec![1], ..Identity::default() })
    }

    #[tokio::test]
    async fn valid_answers_are_kept() {
        let cached = CachedVerifier::new(counting(valid()), Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(cached.verify("t").await.unwrap().account_ids, vec![1]);
        }
        assert_eq!(cached.inner.calls.load(Ordering::SeqCst), 1);
        cached.verify("other").await.unwrap();
        assert_eq!(cached.inner.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn refusals_are_kept_for_a_few_seconds_only() {
        let refusal_ttl = Duration::from_millis(300);
        let cached =
            CachedVerifier::with_refusal_ttl(counting(Err(VerifyError::Invalid)), Duration::from_secs(60), refusal_ttl);
        for _ in 0..5 {
            assert_eq!(cached.verify("t").await, Err(VerifyError::Invalid));
        }
        assert_eq!(cached.inner.calls.load(Ordering::SeqCst), 1, "a refusal is remembered");
        // Another token is asked about: refusals are kept per token.
        assert_eq!(cached.verify("u").await, Err(VerifyError::Invalid));
        assert_eq!(cached.inner.calls.load(Ordering::SeqCst), 2);
        // The token becomes valid: refused until the refusal expires, then valid.
        *cached.inner.answer.lock().unwrap() = valid();
        assert_eq!(cached.verify("t").await, Err(VerifyError::Invalid));
        assert_eq!(cached.inner.calls.load(Ordering::SeqCst), 2);
        tokio::time::sleep(refusal_ttl + Duration::from_millis(200)).await;
        assert_eq!(cached.verify("t").await.unwrap().account_ids, vec![1]);
        assert_eq!(cached.inner.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn failures_are_never_kept() {
        let down = Err(VerifyError::Unavailable("down".into()));
        let cached = CachedVerifier::new(counting(down.clone()), Duration::from_secs(60));
        assert_eq!(cached.verify("t").await, down);
        assert_eq!(cached.verify("t").await, down);
        assert_eq!(cached.inner.calls.load(Ordering::SeqCst), 2, "a failure is not remembered, as valid or refused");
        // The verifier comes back: the next request is answered at once.
        *cached.inner.answer.lock().unwrap() = valid();
        assert_eq!(cached.verify("t").await.unwrap().account_ids, vec![1]);
        assert_eq!(cached.inner.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn the_default_refusal_ttl_is_five_seconds_at_most() {
        let cached = CachedVerifier::new(counting(Err(VerifyError::Invalid)), Duration::from_secs(60));
        let refused = cached.refused.as_ref().unwrap();
        assert_eq!(refused.policy().time_to_live(), Some(REFUSAL_TTL));
        let short = CachedVerifier::new(counting(Err(VerifyError::Invalid)), Duration::from_secs(2));
        assert_eq!(short.refused.as_ref().unwrap().policy().time_to_live(), Some(Duration::from_secs(2)));
    }

    #[tokio::test]
    async fn a_zero_ttl_asks_every_time() {
        let cached = CachedVerifier::new(counting(valid()), Duration::ZERO);
        cached.verify("t").await.unwrap();
        cached.verify("t").await.unwrap();
        assert_eq!(cached.inner.calls.load(Ordering::SeqCst), 2);
        *cached.inner.answer.lock().unwrap() = Err(VerifyError::Invalid);
        assert_eq!(cached.verify("t").await, Err(VerifyError::Invalid));
        assert_eq!(cached.verify("t").await, Err(VerifyError::Invalid));
        assert_eq!(cached.inner.calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn refusals_can_be_kept_without_keeping_valid_answers() {
        let cached = CachedVerifier::with_refusal_ttl(
            counting(Err(VerifyError::Invalid)),
            Duration::ZERO,
            Duration::from_secs(5),
        );
        assert_eq!(cached.verify("t").await, Err(VerifyError::Invalid));
        assert_eq!(cached.verify("t").await, Err(VerifyError::Invalid));
        assert_eq!(cached.inner.calls.load(Ordering::SeqCst), 1);
        *cached.inner.answer.lock().unwrap() = valid();
        cached.verify("u").await.unwrap();
        cached.verify("u").await.unwrap();
        assert_eq!(cached.inner.calls.load(Ordering::SeqCst), 3);
    }
}
