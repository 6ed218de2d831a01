//! Token verification: who a token belongs to and what it may reach.

use async_trait::async_trait;

use crate::domain::access::Identity;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The token is unknown, revoked, or its user deactivated.
    #[error("invalid token")]
    Invalid,
    /// The verifier could not answer (down, timing out, malformed answer). The reason is for
    /// logs and never holds the token.
    #[error("token verification unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait TokenVerifier: Send + Sync + 'static {
    /// The identity behind `token`. MUST NOT log the token.
    async fn verify(&self, token: &str) -> Result<Identity, VerifyError>;
}
