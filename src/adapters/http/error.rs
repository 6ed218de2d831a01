//! The error envelope: every error a request can end in, whether a use case's, an
//! extractor's or poem's own, is rendered here and only here.

use std::collections::BTreeMap;
use std::fmt;

use poem::error::{MethodNotAllowedError, NotFoundError, ReadBodyError, ResponseError};
use poem::http::StatusCode;
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::Any;
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, Object};
use serde_json::{Value, json};

use super::dto::Status;

use crate::domain::job_run::ApiCompat;
use crate::domain::{Error, FieldErrors};

/// An error on its way to the client: a status and either a message or per-field messages.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    /// dbt Cloud's `status.developer_message`: e.g. why Airflow refused a request.
    pub detail: Option<String>,
}

#[derive(Debug, Clone)]
pub enum ErrorBody {
    Message(String),
    Fields(FieldErrors),
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, body: ErrorBody::Message(message.into()), detail: None }
    }

    /// 400 with `Bad Request: <what is wrong>`.
    pub fn bad_request(message: impl std::fmt::Display) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, format!("Bad Request: {message}"))
    }

    pub fn too_large(limit: u64) -> Self {
        ApiError::from(Error::TooLarge { limit })
    }

    fn message(&self) -> String {
        match &self.body {
            ErrorBody::Message(message) => message.clone(),
            ErrorBody::Fields(fields) => fields
                .iter()
                .map(|(field, messages)| format!("{field} {}", messages.join(", ")))
                .collect::<Vec<_>>()
                .join("; "),
        }
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::NotFound(message) => {
                ApiError::new(StatusCode::NOT_FOUND, message.unwrap_or_else(|| "Not Found".into()))
            }
            Error::Denied(denied) => ApiError::new(StatusCode::UNAUTHORIZED, denied.message()),
            Error::Invalid(fields) => {
                ApiError { status: StatusCode::UNPROCESSABLE_ENTITY, body: ErrorBody::Fields(fields), detail: None }
            }
            Error::Unprocessable(message) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message),
            Error::BadRequest(message) => ApiError::bad_request(message),
            Error::TooLarge { limit } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("The request body is larger than the limit of {limit} bytes."),
            ),
            Error::Unavailable(message) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message),
            Error::NotApplicable(message) => ApiError::new(StatusCode::BAD_REQUEST, message),
            Error::Forbidden(message) => ApiError::new(StatusCode::FORBIDDEN, message),
            Error::Refused { status, message, detail } => ApiError {
                detail: Some(detail),
                ..ApiError::new(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), message)
            },
            Error::Internal(fault) => {
                tracing::error!(error = %crate::adapters::error_chain(&fault), "request failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for ApiError {}

impl ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn as_response(&self) -> Response {
        render(self, None)
    }
}

/// The errors of the routes that run, cancel and retry jobs: those of every route, 403 for a
/// token without the permission, and whatever Airflow refuses with (contract §3).
#[derive(Debug)]
pub struct RunControlError(pub ApiError);

impl From<Error> for RunControlError {
    fn from(error: Error) -> Self {
        RunControlError(ApiError::from(error))
    }
}

impl From<ApiError> for RunControlError {
    fn from(error: ApiError) -> Self {
        RunControlError(error)
    }
}

impl From<RunControlError> for poem::Error {
    fn from(error: RunControlError) -> Self {
        error.0.into()
    }
}

impl ApiResponse for RunControlError {
    fn meta() -> MetaResponses {
        let mut meta = ApiError::meta();
        let like = |status: Option<u16>, range: Option<&str>, description: &'static str| MetaResponse {
            description,
            status,
            status_range: range.map(str::to_owned),
            content: vec![MetaMediaType { content_type: "application/json", schema: ErrorDoc::schema_ref() }],
            headers: vec![],
        };
        meta.responses.extend([
            like(Some(403), None, "Forbidden: the token may read but not run jobs in this environment"),
            like(Some(409), None, "Conflict: Airflow refused the request (its reason in status.developer_message)"),
            like(
                None,
                Some("4XX"),
                "Airflow refused the request with this status (its reason in status.developer_message)",
            ),
        ]);
        meta
    }

    fn register(registry: &mut Registry) {
        ErrorDoc::register(registry);
    }
}

/// `{"errors": {"message": ".."}}`; validation errors name fields instead:
/// `{"errors": {"tag": ["has already been taken"]}}`. The dbt Cloud routes add dbt Cloud's
/// `status` (and, with `API_COMPAT=dbt-cloud`, `"data": null`).
#[derive(Object)]
#[oai(rename = "Error")]
pub struct ErrorDoc {
    /// `message` with what went wrong in the contract's words, or each invalid field with
    /// its messages.
    pub errors: BTreeMap<String, Any<Value>>,
    pub status: Option<Status>,
    #[oai(nullable)]
    pub data: Option<Any<Value>>,
}

/// Documents the error answers a route can give.
impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        let response = |status: u16, description: &'static str| MetaResponse {
            description,
            status: Some(status),
            status_range: None,
            content: vec![MetaMediaType { content_type: "application/json", schema: ErrorDoc::schema_ref() }],
            headers: vec![],
        };
        MetaResponses {
            responses: vec![
                response(400, "Bad Request: a malformed parameter"),
                response(401, "Unauthorized: missing or invalid token, or no access to the path's scope"),
                response(404, "Not Found"),
                response(413, "Payload Too Large"),
                response(422, "Unprocessable Entity: invalid fields, or object storage failed"),
                response(503, "Service Unavailable: token verification or a database is down; retry"),
            ],
        }
    }

    fn register(registry: &mut Registry) {
        ErrorDoc::register(registry);
    }
}

/// The body of an error; on the dbt Cloud routes (`dbt_cloud` is their compat mode) it also
/// carries dbt Cloud's `status`, and with `API_COMPAT=dbt-cloud` `"data": null`.
fn render(error: &ApiError, dbt_cloud: Option<ApiCompat>) -> Response {
    let errors = match &error.body {
        ErrorBody::Message(message) => json!({ "message": message }),
        ErrorBody::Fields(fields) => json!(fields),
    };
    let mut body = json!({ "errors": errors });
    if dbt_cloud == Some(ApiCompat::DbtCloud) {
        body["data"] = Value::Null;
    }
    if dbt_cloud.is_some() {
        body["status"] = json!({
            "code": error.status.as_u16(),
            "is_success": false,
            "user_message": error.message(),
            "developer_message": error.detail,
        });
    }
    poem::web::Json(body).with_status(error.status).into_response()
}

/// Marks a body cut off by [`BodyLimit`].
#[derive(Debug)]
struct BodyTooLarge(u64);

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "body exceeds {} bytes", self.0)
    }
}

impl std::error::Error for BodyTooLarge {}

/// Any error to the status and message the client sees.
fn classify(error: &poem::Error) -> ApiError {
    if let Some(error) = error.downcast_ref::<ApiError>() {
        return error.clone();
    }
    if error.is::<NotFoundError>() {
        return ApiError::new(StatusCode::NOT_FOUND, "Not Found");
    }
    if error.is::<MethodNotAllowedError>() {
        return ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    if let Some(ReadBodyError::Io(io)) = error.downcast_ref::<ReadBodyError>()
        && let Some(BodyTooLarge(limit)) = find_cause::<BodyTooLarge>(io)
    {
        return ApiError::too_large(*limit);
    }
    // A query parameter that does not parse: named, with the reason its type gave.
    if let Some(error) = error.downcast_ref::<poem_openapi::error::ParseParamError>() {
        return ApiError::bad_request(format!("{} {}", error.name, reason(&error.reason)));
    }
    // poem-openapi names path parameters `param0`, … in this error.
    if let Some(error) = error.downcast_ref::<poem_openapi::error::ParsePathError>() {
        return ApiError::bad_request(format!("invalid path parameter: {}", error.reason));
    }
    let status = error.status();
    if status.is_server_error() {
        tracing::error!(%error, "request failed");
        return ApiError::new(status, status.canonical_reason().unwrap_or("Internal Server Error"));
    }
    ApiError::new(status, format!("{}: {error}", status.canonical_reason().unwrap_or("Error")))
}

/// poem-openapi's `failed to parse "<type>": <reason>` to the reason alone.
fn reason(message: &str) -> &str {
    message
        .strip_prefix("failed to parse \"")
        .and_then(|rest| rest.split_once("\": "))
        .map_or(message, |(_, reason)| reason)
}

fn find_cause<'e, T: std::error::Error + 'static>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e T> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        current = match error.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    None
}

/// The outermost middleware: sees the path as sent and every error (and panic) that leaves
/// routing, extractors and handlers, and renders it as the contract's envelope.
/// With `API_COMPAT=dbt-cloud`, the dbt Cloud routes' errors also carry `"data": null`.
pub struct ErrorEnvelope(pub ApiCompat);

impl<E: Endpoint> Middleware<E> for ErrorEnvelope {
    type Output = ErrorEnvelopeEndpoint<E>;

    fn transform(&self, endpoint: E) -> Self::Output {
        ErrorEnvelopeEndpoint(endpoint, self.0)
    }
}

pub struct ErrorEnvelopeEndpoint<E>(E, ApiCompat);

impl<E: Endpoint> Endpoint for ErrorEnvelopeEndpoint<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> Result<Response> {
        use futures::FutureExt;

        let path = request.uri().path();
        let dbt_cloud = ["/api/v2/accounts", "/api/v3/accounts"]
            .iter()
            .any(|prefix| path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
            .then_some(self.1);
        let result = std::panic::AssertUnwindSafe(self.0.call(request)).catch_unwind().await;
        Ok(match result {
            Ok(Ok(response)) => response.into_response(),
            Ok(Err(error)) if error.is_from_response() => error.into_response(),
            Ok(Err(error)) => render(&classify(&error), dbt_cloud),
            Err(_) => {
                tracing::error!("a request handler panicked");
                render(&ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"), dbt_cloud)
            }
        })
    }
}

/// Caps non-multipart bodies (JSON and form bodies of `DELETE`, `PUT`): 413 on a
/// `Content-Length` over the limit before reading, and once a chunked body passes it.
/// Multipart uploads are capped by their own extractor, which streams them to disk.
pub struct BodyLimit(pub u64);

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        BodyLimitEndpoint { inner, max: self.0 }
    }
}

pub struct BodyLimitEndpoint<E> {
    inner: E,
    max: u64,
}

impl<E: Endpoint> Endpoint for BodyLimitEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, mut request: Request) -> Result<E::Output> {
        use futures::StreamExt;

        let multipart =
            request.content_type().is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("multipart/"));
        if !multipart {
            let max = self.max;
            match content_length(&request) {
                Some(length) if length > max => return Err(ApiError::too_large(max).into()),
                Some(_) => {}
                None => {
                    let mut seen = 0u64;
                    let limited = request.take_body().into_bytes_stream().map(move |chunk| {
                        let chunk = chunk?;
                        seen += chunk.len() as u64;
                        if seen > max {
                            return Err(std::io::Error::other(BodyTooLarge(max)));
                        }
                        Ok(chunk)
                    });
                    request.set_body(poem::Body::from_bytes_stream(limited));
                }
            }
        }
        self.inner.call(request).await
    }
}

pub fn content_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}
