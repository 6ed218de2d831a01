use std::time::Duration;

use async_trait::async_trait;

use crate::domain::access::Identity;
use crate::ports::auth::{TokenVerifier, VerifyError};

/// Asks the Datacoves verify service: `GET <url>` with `Authorization: Token <token>`. A 2xx
/// answer is the identity; 404 or any other status from 400 on means the token is invalid;
/// no answer in time means the service is unavailable.
pub struct VerifyUrl {
    client: reqwest::Client,
    url: String,
}

impl VerifyUrl {
    pub fn new(url: impl Into<String>, timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| format!("building the verify client: {e}"))?;
        Ok(VerifyUrl { client, url: url.into() })
    }
}

#[async_trait]
impl TokenVerifier for VerifyUrl {
    async fn verify(&self, token: &str) -> Result<Identity, VerifyError> {
        let response = self
            .client
            .get(&self.url)
            .header(reqwest::header::AUTHORIZATION, format!("Token {token}"))
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            // Without the URL: it carries no token, but keep log lines short.
            .map_err(|e| VerifyError::Unavailable(e.without_url().to_string()))?;
        let status = response.status();
        if status.as_u16() >= 400 {
            tracing::info!(status = status.as_u16(), "verify service refused a token");
            return Err(VerifyError::Invalid);
        }
        response.json::<Identity>().await.map_err(|e| {
            VerifyError::Unavailable(format!("unreadable answer from the verify service: {}", e.without_url()))
        })
    }
}
