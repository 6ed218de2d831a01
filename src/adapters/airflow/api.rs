//! Each environment's Airflow REST API, to run, cancel and retry DAG runs (contract §6b):
//! Airflow 2's `/api/v1` with HTTP basic auth, Airflow 3's `/api/v2` with a bearer JWT from
//! `POST /auth/token`. Which one an environment's server speaks is asked of the server itself
//! (`GET /api/v2/version`, else `/api/v1/version`) and remembered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::AirflowApiSettings;
use crate::domain::Fault;
use crate::domain::catalog::Environment;
use crate::ports::airflow_api::{AirflowControl, ControlError};

/// A token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(60);
/// How long a token whose expiry cannot be read is used.
const UNKNOWN_EXPIRY: Duration = Duration::from_secs(300);

/// Which REST API a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// Airflow 2: `/api/v1`, basic auth.
    V1,
    /// Airflow 3: `/api/v2`, a bearer token.
    V2,
}

/// Where an environment's API is and who Jade is there. The password is a secret.
struct Target {
    slug: String,
    base: String,
    username: String,
    password: SecretString,
}

/// An Airflow 3 access token and when to stop using it.
struct Token {
    value: SecretString,
    renew_at: Instant,
}

/// One HTTP client for every environment (TLS through rustls), the API versions servers
/// answered, and Airflow 3 tokens until shortly before they expire.
pub struct AirflowRestApi {
    settings: AirflowApiSettings,
    http: reqwest::Client,
    versions: moka::sync::Cache<String, Version>,
    tokens: moka::future::Cache<(String, String), Arc<Token>>,
}

impl AirflowRestApi {
    pub fn new(settings: AirflowApiSettings) -> Result<Self, Fault> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .build()
            .map_err(|e| Fault::caused_by("building the Airflow API client", e))?;
        Ok(AirflowRestApi {
            settings,
            http,
            versions: moka::sync::Cache::builder().max_capacity(10_000).build(),
            tokens: moka::future::Cache::builder().max_capacity(10_000).build(),
        })
    }

    /// The environment's API and credentials: its own (`airflow_config.api`), else Jade's.
    fn target(&self, environment: &Environment) -> Result<Target, ControlError> {
        let own = &environment.airflow_api;
        let base = match &own.url {
            Some(url) => url.clone(),
            None => self.settings.url_template.replace("{slug}", &environment.slug),
        };
        let (username, password) = match (&own.username, &own.password) {
            (Some(username), Some(password)) => (username.clone(), SecretString::from(password.clone())),
            _ => match (&self.settings.username, &self.settings.password) {
                (Some(username), Some(password)) => (username.clone(), password.clone()),
                _ => return Err(ControlError::NotConfigured { slug: environment.slug.clone() }),
            },
        };
        Ok(Target { slug: environment.slug.clone(), base: base.trim_end_matches('/').to_owned(), username, password })
    }

    /// Runs `call` on the environment's API within `AIRFLOW_API_TIMEOUT_MS` in all.
    async fn bounded<T>(
        &self,
        environment: &Environment,
        call: impl Future<Output = Result<T, ControlError>>,
    ) -> Result<T, ControlError> {
        match tokio::time::timeout(self.settings.timeout, call).await {
            Ok(result) => result,
            Err(_) => {
                Err(unavailable(&environment.slug, Fault::new(format!("no answer within {:?}", self.settings.timeout))))
            }
        }
    }

    /// Which API the target's server speaks: Airflow 3's when `/api/v2/version` answers.
    async fn version(&self, target: &Target) -> Result<Version, ControlError> {
        if let Some(version) = self.versions.get(&target.base) {
            return Ok(version);
        }
        let mut found = None;
        for (version, path) in [(Version::V2, "/api/v2/version"), (Version::V1, "/api/v1/version")] {
            let request = self.http.get(format!("{}{path}", target.base));
            let request = if version == Version::V1 {
                request.basic_auth(&target.username, Some(target.password.expose_secret()))
            } else {
                request
            };
            let response = request.send().await.map_err(|e| sent_nothing(target, e))?;
            if response.status().is_success() {
                found = Some(version);
                break;
            }
        }
        let version = found.ok_or_else(|| {
            unavailable(
                &target.slug,
                Fault::new("neither /api/v2/version nor /api/v1/version answers: not an Airflow API"),
            )
        })?;
        self.versions.insert(target.base.clone(), version);
        Ok(version)
    }

    /// An Airflow 3 access token for the target's user: the one cached, or a new one.
    async fn token(&self, target: &Target) -> Result<Arc<Token>, ControlError> {
        let key = (target.base.clone(), target.username.clone());
        if let Some(token) = self.tokens.get(&key).await.filter(|t| Instant::now() < t.renew_at) {
            return Ok(token);
        }
        let response = self
            .http
            .post(format!("{}/auth/token", target.base))
            .json(&json!({"username": target.username, "password": target.password.expose_secret()}))
            .send()
            .await
            .map_err(|e| sent_nothing(target, e))?;
        let status = response.status();
        if !status.is_success() {
            let cause = Fault::new(format!("POST /auth/token answered {status}: Jade's credentials are refused"));
            return Err(unavailable(&target.slug, cause));
        }
        let body: Value = response.json().await.map_err(|e| sent_nothing(target, e))?;
        let value = body["access_token"]
            .as_str()
            .ok_or_else(|| unavailable(&target.slug, Fault::new("POST /auth/token answered no access_token")))?;
        let lifetime = expires_in(value).unwrap_or(UNKNOWN_EXPIRY);
        let token = Arc::new(Token {
            value: SecretString::from(value.to_owned()),
            renew_at: Instant::now() + lifetime.saturating_sub(RENEW_BEFORE),
        });
        self.tokens.insert(key, Arc::clone(&token)).await;
        Ok(token)
    }

    /// One call of the environment's API (`path` after `/api/v1` or `/api/v2`), answering its
    /// JSON body. A token Airflow 3 no longer takes is renewed once; a 404 has the server asked
    /// again which API it speaks (upgraded from Airflow 2 to 3 while Jade runs), and the call
    /// made again when that changed.
    async fn call(
        &self,
        environment: &Environment,
        method: Method,
        path: &str,
        body: impl Fn(Version) -> Value,
    ) -> Result<Value, ControlError> {
        let target = self.target(environment)?;
        self.bounded(environment, async {
            let (mut renewed, mut asked_again) = (false, false);
            loop {
                let version = self.version(&target).await?;
                let url = match version {
                    Version::V1 => format!("{}/api/v1{path}", target.base),
                    Version::V2 => format!("{}/api/v2{path}", target.base),
                };
                let request = self.http.request(method.clone(), &url).json(&body(version));
                let request = match version {
                    Version::V1 => request.basic_auth(&target.username, Some(target.password.expose_secret())),
                    Version::V2 => request.bearer_auth(self.token(&target).await?.value.expose_secret()),
                };
                let response = request.send().await.map_err(|e| sent_nothing(&target, e))?;
                let status = response.status();
                if status == StatusCode::UNAUTHORIZED && version == Version::V2 && !renewed {
                    self.tokens.invalidate(&(target.base.clone(), target.username.clone())).await;
                    renewed = true;
                    continue;
                }
                if status == StatusCode::NOT_FOUND && !asked_again {
                    asked_again = true;
                    self.versions.invalidate(&target.base);
                    if self.version(&target).await? != version {
                        continue;
                    }
                }
                let text = response.text().await.map_err(|e| sent_nothing(&target, e))?;
                return answer(&target, status, &text);
            }
        })
        .await
    }
}

/// Airflow's answer: its JSON body on success; 401 and 403 (Jade's credentials refused) and
/// 5xx as unavailable; any other refusal passed on with Airflow's reason.
fn answer(target: &Target, status: StatusCode, text: &str) -> Result<Value, ControlError> {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let reason = ["detail", "title"]
        .iter()
        .find_map(|key| body[*key].as_str().map(str::to_owned))
        .or_else(|| (!body["detail"].is_null()).then(|| body["detail"].to_string()))
        .unwrap_or_else(|| text.chars().take(500).collect());
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN || status.is_server_error() {
        let cause = Fault::new(format!("Airflow answered {status}: {reason}"));
        return Err(unavailable(&target.slug, cause));
    }
    Err(ControlError::Refused { status: status.as_u16(), reason })
}

fn unavailable(slug: &str, cause: Fault) -> ControlError {
    ControlError::Unavailable { slug: slug.to_owned(), cause }
}

/// The request did not get an answer (refused, reset, timed out, not HTTP). The error names
/// the URL, never the credentials.
fn sent_nothing(target: &Target, error: reqwest::Error) -> ControlError {
    unavailable(&target.slug, Fault::caused_by("the Airflow API did not answer", error.without_url()))
}

/// How long a JWT is good for, from its `exp` claim (read, not verified: Airflow checks it).
fn expires_in(jwt: &str) -> Option<Duration> {
    let payload = jwt.split('.').nth(1)?;
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    let exp = claims["exp"].as_i64()?;
    let left = exp - chrono::Utc::now().timestamp();
    Some(Duration::from_secs(u64::try_from(left).unwrap_or(0)))
}

/// What a path segment keeps as it is: RFC 3986's unreserved characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// A path segment: DAG and run ids hold `:`, `+` and other characters a path must escape.
fn segment(value: &str) -> String {
    utf8_percent_encode(value, UNRESERVED).to_string()
}

#[async_trait]
impl AirflowControl for AirflowRestApi {
    async fn trigger(
        &self,
        environment: &Environment,
        dag_id: &str,
        conf: &Value,
        note: &str,
    ) -> Result<String, ControlError> {
        let path = format!("/dags/{}/dagRuns", segment(dag_id));
        let body = |version| match version {
            // Airflow 3 requires the logical date; null runs the DAG now, as a manual run.
            Version::V2 => json!({"logical_date": null, "conf": conf, "note": note}),
            Version::V1 => json!({"conf": conf, "note": note}),
        };
        let answer = self.call(environment, Method::POST, &path, body).await?;
        answer["dag_run_id"].as_str().map(str::to_owned).ok_or_else(|| {
            unavailable(&environment.slug, Fault::new("Airflow created a DAG run but answered no dag_run_id"))
        })
    }

    async fn cancel(&self, environment: &Environment, dag_id: &str, run_id: &str) -> Result<(), ControlError> {
        let path = format!("/dags/{}/dagRuns/{}", segment(dag_id), segment(run_id));
        self.call(environment, Method::PATCH, &path, |_| json!({"state": "failed"})).await.map(drop)
    }

    async fn retry(&self, environment: &Environment, dag_id: &str, run_id: &str) -> Result<(), ControlError> {
        let path = format!("/dags/{}/clearTaskInstances", segment(dag_id));
        // Airflow 3 answers what it would clear unless told `dry_run: false`.
        let body = |_| json!({"dag_run_id": run_id, "only_failed": true, "reset_dag_runs": true, "dry_run": false});
        self.call(environment, Method::POST, &path, body).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalog::AirflowApi;

    fn settings(username: Option<&str>) -> AirflowApiSettings {
        AirflowApiSettings {
            username: username.map(str::to_owned),
            password: username.map(|_| SecretString::from("jade-password")),
            ..AirflowApiSettings::default()
        }
    }

    fn environment(api: AirflowApi) -> Environment {
        Environment {
            id: 1,
            account_id: 1,
            project_id: 1,
            name: None,
            slug: "dev123".into(),
            dbt_home_path: None,
            kind: None,
            created_at: None,
            updated_at: None,
            airflow: None,
            airflow_api: api,
        }
    }

    #[test]
    fn an_environments_own_api_settings_win() {
        let api = AirflowRestApi::new(settings(Some("jade"))).unwrap();
        let target = api.target(&environment(AirflowApi::default())).unwrap();
        assert_eq!(target.base, "http://dev123-airflow-webserver.dcw-dev123.svc.cluster.local:8080");
        assert_eq!(target.username, "jade");
        let own = AirflowApi {
            url: Some("https://airflow.example/".into()),
            username: Some("me".into()),
            password: Some("mine".into()),
        };
        let target = api.target(&environment(own)).unwrap();
        assert_eq!((target.base.as_str(), target.username.as_str()), ("https://airflow.example", "me"));
        assert_eq!(target.password.expose_secret(), "mine");
        // A username without a password is no credential: Jade's own are used.
        let half = AirflowApi { username: Some("me".into()), ..AirflowApi::default() };
        assert_eq!(api.target(&environment(half)).unwrap().username, "jade");
    }

    #[test]
    fn without_credentials_running_jobs_is_not_configured() {
        let api = AirflowRestApi::new(settings(None)).unwrap();
        assert!(matches!(api.target(&environment(AirflowApi::default())), Err(ControlError::NotConfigured { .. })));
    }

    #[test]
    fn a_tokens_lifetime_is_read_from_its_exp_claim() {
        let encode = |claims: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
        let in_an_hour = chrono::Utc::now().timestamp() + 3600;
        let jwt = format!("{}.{}.signature", encode(json!({"alg": "HS512"})), encode(json!({"exp": in_an_hour})));
        let left = expires_in(&jwt).unwrap();
        assert!(left > Duration::from_secs(3590) && left <= Duration::from_secs(3600), "{left:?}");
        assert_eq!(expires_in("not a jwt"), None);
    }

    /// An Airflow whose API is Airflow 2's until `upgraded`, then Airflow 3's.
    #[cfg(feature = "http")]
    async fn upgradable_airflow(upgraded: Arc<std::sync::atomic::AtomicBool>) -> String {
        use poem::web::{Data, Json};
        use poem::{EndpointExt, Route, handler};
        use std::sync::atomic::{AtomicBool, Ordering};

        #[handler]
        fn api(request: &poem::Request, upgraded: Data<&Arc<AtomicBool>>) -> poem::Response {
            use poem::IntoResponse;
            let prefix = if upgraded.load(Ordering::SeqCst) { "/api/v2/" } else { "/api/v1/" };
            let path = request.uri().path();
            if path == "/auth/token" {
                return Json(json!({"access_token": "not-a-jwt"})).into_response();
            }
            if !path.starts_with(prefix) {
                return poem::http::StatusCode::NOT_FOUND.into_response();
            }
            Json(json!({"version": prefix, "dag_run_id": format!("manual__{prefix}")})).into_response()
        }

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
        let app = Route::new().at("/*path", api).data(upgraded);
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
        format!("http://{address}")
    }

    #[cfg(feature = "http")]
    #[tokio::test]
    async fn a_server_upgraded_to_airflow_3_is_asked_again_which_api_it_speaks() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let upgraded = Arc::new(AtomicBool::new(false));
        let url = upgradable_airflow(Arc::clone(&upgraded)).await;
        let api = AirflowRestApi::new(settings(Some("jade"))).unwrap();
        let own = AirflowApi { url: Some(url), ..AirflowApi::default() };
        let environment = environment(own);
        assert_eq!(api.trigger(&environment, "d", &json!({}), "n").await.unwrap(), "manual__/api/v1/");
        upgraded.store(true, Ordering::SeqCst);
        assert_eq!(api.trigger(&environment, "d", &json!({}), "n").await.unwrap(), "manual__/api/v2/");
    }

    #[test]
    fn refusals_are_passed_on_and_failures_are_unavailable() {
        let target =
            AirflowRestApi::new(settings(Some("jade"))).unwrap().target(&environment(AirflowApi::default())).unwrap();
        let refused = answer(&target, StatusCode::NOT_FOUND, r#"{"detail": "Dag with dag_id: 'x' not found"}"#);
        assert_eq!(
            refused,
            Err(ControlError::Refused { status: 404, reason: "Dag with dag_id: 'x' not found".into() })
        );
        let conflict = answer(&target, StatusCode::CONFLICT, r#"{"title": "Conflict", "status": 409}"#);
        assert!(matches!(conflict, Err(ControlError::Refused { status: 409, .. })));
        for status in [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN, StatusCode::BAD_GATEWAY] {
            assert!(matches!(answer(&target, status, "{}"), Err(ControlError::Unavailable { .. })), "{status}");
        }
        assert_eq!(answer(&target, StatusCode::OK, r#"{"dag_run_id": "r"}"#).unwrap()["dag_run_id"], "r");
        assert_eq!(
            segment("manual__2026-12-03T12:46:06.185157+00:00"),
            "manual__2026-12-03T12%3A46%3A06.185157%2B00%3A00"
        );
    }
}
