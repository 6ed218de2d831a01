//! The HTTP adapter: poem + poem-openapi. Routes, DTOs, the auth guard, the error envelope,
//! the OpenAPI document and Swagger UI.

mod artifacts;
mod body;
mod catalog;
mod compress;
mod conditional;
mod datacoves;
mod document;
mod dto;
mod error;
mod extract;
mod observe;
mod params;
mod server;
mod v2;
mod v3;

use poem::endpoint::make_sync;
use poem::middleware::{NormalizePath, TrailingSlash};
use poem::web::Html;

use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route};
use poem_openapi::{OpenApiService, Tags};
use serde_json::Value;

use crate::app::Jade;
use crate::domain::job_run::{ApiCompat, RunStatus};

pub use server::{Timeouts, serve};

#[derive(Tags)]
enum ApiTags {
    /// The dbt Cloud Administrative API v2 clone, and the v3 read routes dbt Cloud clients call.
    #[oai(rename = "dbt-api")]
    DbtApi,
    /// Datacoves' manifests and files.
    #[oai(rename = "datacoves")]
    Datacoves,
}

const SPEC_PATH: &str = "/api/v2/openapi";
const LEGACY_PREFIX: &str = "/api/internal";
/// Swagger UI lists the legacy aliases last, under a tag of their own.
const LEGACY_TAG: &str = "legacy";
/// The probes, also served under the legacy prefix.
const OPERATIONS: [&str; 2] = ["/api/v2/healthcheck", "/api/v2/readyz"];
/// Largest JSON or form body accepted (`DELETE` selectors); uploads have their own limit.
const SMALL_BODY_LIMIT: u64 = 1 << 20;

type Apis = (v2::V2Api, artifacts::ArtifactsApi, datacoves::DatacovesApi, datacoves::HealthApi);

fn service(jade: &Jade) -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            v2::V2Api { jade: jade.clone() },
            artifacts::ArtifactsApi { jade: jade.clone() },
            datacoves::DatacovesApi { jade: jade.clone() },
            datacoves::HealthApi { jade: jade.clone() },
        ),
        "Jade",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "A dbt Cloud Administrative API v2 clone over Datacoves and Airflow, and Datacoves' API for dbt \
         manifests and files. Every route but the healthcheck and readiness needs `Authorization: Bearer <token>`. \
         The Datacoves routes are also served under the legacy prefix `/api/internal`.",
    )
    .url_prefix("/api/v2")
}

fn v3_service(jade: &Jade) -> OpenApiService<v3::V3Api, ()> {
    OpenApiService::new(v3::V3Api { jade: jade.clone() }, "Jade", env!("CARGO_PKG_VERSION")).url_prefix("/api/v3")
}

/// The status codes a run list's `status` filter takes in this compat mode.
fn status_codes(compat: ApiCompat) -> Vec<Value> {
    match compat {
        ApiCompat::Jade => RunStatus::ALL.iter().map(|s| s.code(compat)).collect::<std::collections::BTreeSet<_>>(),
        // dbt Cloud's codes, Starting included (no run has it).
        ApiCompat::DbtCloud => [1, 2, 3, 10, 20, 30].into(),
    }
    .into_iter()
    .map(Value::from)
    .collect()
}

/// The ids in dbt Cloud's paths, the same on every route.
const PATH_IDS: [(&str, &str); 5] = [
    ("account_id", "The account's id (`GET /api/v2/accounts` lists those the token may read)."),
    ("project_id", "The project's id."),
    ("environment_id", "The environment's id."),
    ("job_id", "The job's id (one job per Airflow DAG of an environment)."),
    ("run_id", "The run's id (one run per Airflow DAG run)."),
];

/// Adds what the typed handlers cannot say: the v3 routes (served by their own service),
/// and the `status` filter's codes, which depend on `API_COMPAT`.
fn complete(spec: &mut Value, jade: &Jade) {
    let v3: Value = serde_json::from_str(&v3_service(jade).spec()).expect("poem-openapi emits JSON");
    if let (Some(paths), Some(more)) = (spec["paths"].as_object_mut(), v3["paths"].as_object()) {
        paths.extend(more.clone());
    }
    if let (Some(schemas), Some(more)) =
        (spec["components"]["schemas"].as_object_mut(), v3["components"]["schemas"].as_object())
    {
        for (name, schema) in more {
            schemas.entry(name.clone()).or_insert_with(|| schema.clone());
        }
    }
    let codes = status_codes(jade.settings().compat);
    // A route that reads a multipart body answers any other body 415 (its extractor's).
    let unsupported = serde_json::json!({
        "description": "Unsupported Media Type: the body is not multipart/form-data",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    });
    for operation in spec["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|p| p.values_mut())
        .flat_map(|item| item.as_object_mut().into_iter().flat_map(|methods| methods.values_mut()))
    {
        if operation["requestBody"]["content"].get("multipart/form-data").is_some()
            && let Some(responses) = operation["responses"].as_object_mut()
        {
            responses.entry("415").or_insert_with(|| unsupported.clone());
        }
    }
    for (path, item) in spec["paths"].as_object_mut().into_iter().flatten() {
        for (method, operation) in item.as_object_mut().into_iter().flatten() {
            for parameter in operation.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
                if parameter.get("description").is_none()
                    && let Some(description) = PATH_IDS.iter().find(|(name, _)| parameter["name"] == *name)
                {
                    parameter["description"] = description.1.into();
                }
                // Required, though its absence answers the first Jade's 401 (see the route).
                if path == "/api/v2/datacoves/manifests" && method == "get" && parameter["name"] == "environment_slug" {
                    parameter["required"] = true.into();
                }
            }
        }
    }
    if let Some(paths) = spec["paths"].as_object_mut() {
        for (_, item) in paths.iter_mut().filter(|(path, _)| path.ends_with("/runs")) {
            for parameter in item["get"]["parameters"].as_array_mut().into_iter().flatten() {
                if parameter["name"] == "status" && parameter["in"] == "query" {
                    parameter["schema"]["enum"] = Value::Array(codes.clone());
                }
            }
        }
    }
}

/// The OpenAPI document: generated from the typed handlers, plus the legacy
/// `/api/internal` aliases of the Datacoves routes (marked deprecated).
pub fn openapi_json(jade: &Jade) -> String {
    let mut spec: Value = serde_json::from_str(&service(jade).spec()).expect("poem-openapi emits JSON");
    complete(&mut spec, jade);
    if let Some(paths) = spec.get_mut("paths").and_then(Value::as_object_mut) {
        let aliases: Vec<(String, Value)> = paths
            .iter()
            .filter_map(|(path, item)| {
                let legacy = match path.strip_prefix("/api/v2/datacoves") {
                    Some(rest) => format!("{LEGACY_PREFIX}{rest}"),
                    None if OPERATIONS.contains(&path.as_str()) => path.replacen("/api/v2", LEGACY_PREFIX, 1),
                    None => return None,
                };
                let mut item = item.clone();
                for operation in item.as_object_mut()?.values_mut().filter_map(Value::as_object_mut) {
                    operation.insert("deprecated".into(), Value::Bool(true));
                    operation.insert("tags".into(), serde_json::json!([LEGACY_TAG]));
                    if let Some(Value::String(id)) = operation.get_mut("operationId") {
                        id.push_str("_legacy");
                    }
                }
                Some((legacy, item))
            })
            .collect();
        paths.extend(aliases);
    }
    if let Some(tags) = spec["tags"].as_array_mut() {
        tags.push(serde_json::json!({
            "name": LEGACY_TAG,
            "description": "The Datacoves routes under their old prefix `/api/internal`, for clients of the first Jade.",
        }));
        // Swagger UI shows the tags in this order: the dbt Cloud API first, the legacy aliases last.
        let rank = |tag: &Value| ["dbt-api", "datacoves", LEGACY_TAG].iter().position(|name| tag["name"] == *name);
        tags.sort_by_key(rank);
    }
    artifacts::document_compat(&mut spec, jade.settings().compat);
    serde_json::to_string_pretty(&spec).expect("a JSON value serializes")
}

/// Jade's icon, for browser tabs (Swagger UI's included).
const FAVICON: &str = include_str!("favicon.svg");

/// Swagger UI with its assets compiled in (no CDN), loading the spec from its URL.
fn swagger_ui() -> String {
    let html = OpenApiService::new((), "Jade", "").swagger_ui_html();
    let html = html.replacen("spec: spec,", &format!("url: {SPEC_PATH:?}, validatorUrl: null,"), 1);
    let html = html.replacen("<head>", r#"<head><link rel="icon" type="image/svg+xml" href="/favicon.ico">"#, 1);
    debug_assert!(html.contains(SPEC_PATH), "poem-openapi's Swagger UI template changed");
    html
}

/// The whole HTTP surface as one endpoint.
pub fn app(jade: Jade) -> impl Endpoint<Output = Response> {
    let spec = openapi_json(&jade);
    let ui = swagger_ui();
    let max_upload = jade.settings().max_upload_bytes;
    let compat = jade.settings().compat;
    let about = serde_json::json!({
        "name": "Jade",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "A dbt Cloud Administrative API clone over Datacoves, and Datacoves' API for dbt manifests and files.",
        "links": {"swagger_ui": "/api/v2/swaggerui", "openapi": "/api/v2/openapi"},
    })
    .to_string();
    Route::new()
        .at("/", make_sync(move |_| about.clone().with_content_type("application/json; charset=utf-8").into_response()))
        .nest("/api/v2", service(&jade))
        .nest("/api/v3", v3_service(&jade))
        .at(
            SPEC_PATH,
            make_sync(move |_| spec.clone().with_content_type("application/json; charset=utf-8").into_response()),
        )
        .at("/api/v2/swaggerui", make_sync(move |_| Html(ui.clone())))
        .at("/favicon.ico", make_sync(|_| FAVICON.with_content_type("image/svg+xml").into_response()))
        .around(observe::route_pattern)
        .data(jade)
        .with(error::BodyLimit(SMALL_BODY_LIMIT.min(max_upload)))
        .before(artifacts::nested_paths)
        .with(NormalizePath::new(TrailingSlash::Trim))
        .before(params::refuse_control_characters)
        .before(legacy_paths)
        .with(error::ErrorEnvelope(compat))
        .with(compress::Compression)
        .around(observe::observe)
}

/// `/api/internal/...` is the Datacoves API under its old prefix.
async fn legacy_paths(mut request: Request) -> poem::Result<Request> {
    let path = request.uri().path();
    if let Some(rest) = path.strip_prefix(LEGACY_PREFIX).filter(|r| r.is_empty() || r.starts_with('/')) {
        let target = if OPERATIONS.iter().any(|route| route.strip_prefix("/api/v2") == Some(rest.trim_end_matches('/')))
        {
            format!("/api/v2{rest}")
        } else {
            format!("/api/v2/datacoves{rest}")
        };
        let uri = match request.uri().query() {
            Some(query) => format!("{target}?{query}"),
            None => target,
        };
        *request.uri_mut() = uri.parse().map_err(|_| poem::Error::from_status(poem::http::StatusCode::BAD_REQUEST))?;
    }
    Ok(request)
}

pub use observe::{REQUEST_ID, metrics_app, valid_request_id};
