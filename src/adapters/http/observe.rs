//! Every request's id, log span, access line and metrics (contract §9).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use poem::http::HeaderValue;
use poem::{Endpoint, IntoResponse, Request, Response};
use tracing::Instrument;

pub const REQUEST_ID: &str = "x-request-id";

/// Where the inner middleware leaves the route template the router matched.
#[derive(Clone, Default)]
struct MatchedRoute(Arc<Mutex<Option<Arc<str>>>>);

/// An incoming `X-Request-Id` of 1-64 characters of `[A-Za-z0-9._-]` is kept; any other
/// value, or none, is replaced by a new UUID.
pub fn request_id(request: &Request) -> String {
    request
        .headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| valid_request_id(id))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

pub fn valid_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The outermost middleware: the request id (kept or made, echoed on every response), a
/// `request` span holding it around the whole request, one access line (method, path,
/// status, time: never the query or headers, which may carry secrets) and the request
/// metrics, labelled by route template.
pub async fn observe<E: Endpoint<Output = Response>>(next: Arc<E>, mut request: Request) -> poem::Result<Response> {
    let started = Instant::now();
    let id = request_id(&request);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let matched = MatchedRoute::default();
    request.set_data(matched.clone());
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = async {
        let response = match next.call(request).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        };
        let status = response.status().as_u16();
        let millis = started.elapsed().as_secs_f64() * 1000.0;
        if status >= 500 {
            tracing::warn!(%method, %path, status, millis, "request");
        } else {
            tracing::info!(%method, %path, status, millis, "request");
        }
        response
    }
    .instrument(span)
    .await;
    let route = matched.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let route: Arc<str> = route.unwrap_or_else(|| "unmatched".into());
    let status = response.status().as_u16().to_string();
    let method = method.as_str().to_owned();
    metrics::counter!(
        "jade_http_requests_total",
        "method" => method.clone(), "route" => route.to_string(), "status" => status
    )
    .increment(1);
    metrics::histogram!("jade_http_request_duration_seconds", "method" => method, "route" => route.to_string())
        .record(started.elapsed().as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(response)
}

/// Around the router: notes the route template it matched (poem's `PathPattern`, e.g.
/// `/api/v2/accounts/:param0/runs`: poem-openapi numbers path parameters) for [`observe`].
pub async fn route_pattern<E: Endpoint>(next: Arc<E>, request: Request) -> poem::Result<Response>
where
    E::Output: IntoResponse,
{
    let matched = request.data::<MatchedRoute>().cloned();
    let result = next.call(request).await.map(IntoResponse::into_response);
    if let Some(matched) = matched {
        let pattern = match &result {
            Ok(response) => response.data::<poem::PathPattern>().map(|p| p.0.clone()),
            Err(error) => error.data::<poem::PathPattern>().map(|p| p.0.clone()),
        };
        *matched.0.lock().unwrap_or_else(|e| e.into_inner()) = pattern;
    }
    result
}

/// The metrics listener's one route: `GET /metrics`, Prometheus text.
pub fn metrics_app(handle: metrics_exporter_prometheus::PrometheusHandle) -> impl Endpoint<Output = Response> {
    poem::Route::new().at(
        "/metrics",
        poem::get(poem::endpoint::make_sync(move |_| {
            crate::adapters::metrics::render(&handle).with_content_type("text/plain; version=0.0.4").into_response()
        })),
    )
}
