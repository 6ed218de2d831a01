//! Run artifacts (contract §3, "Artifacts" and "dbt Cloud clients"): listed and served on
//! the dbt Cloud routes `…/runs/:job_run_id/artifacts[/*path]`, uploaded on the Datacoves
//! route `POST /datacoves/artifacts` (also under the legacy prefix `/api/internal`).

use poem::http::StatusCode;
use poem::{Body, IntoResponse, Request, Response};
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{Binary, Payload, PlainText};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::{ApiResponse, OpenApi};
use serde_json::Value;

use super::ApiTags;
use super::body;
use super::catalog::{account, id};
use super::conditional::{self, ETag};
use super::document::Document;
use super::dto::{Data, Envelope};
use super::error::ApiError;
use super::extract::{Artifacts, Caller, Upload};
use super::params::PathId;
use crate::app::{ArtifactUpload, Jade};
use crate::domain::access::RequestScope;
use crate::domain::job_run::ApiCompat;

pub struct ArtifactsApi {
    pub jade: Jade,
}

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const OCTET_STREAM: &str = "application/octet-stream";

/// The paths of the artifact routes in the OpenAPI document.
const ARTIFACT_ROUTES: [&str; 2] = [
    "/api/v2/accounts/{account_id}/runs/{run_id}/artifacts/{path}",
    "/api/v2/accounts/{account_id}/jobs/{job_id}/artifacts/{path}",
];

/// How an artifact is sent as itself (`API_COMPAT=dbt-cloud`), by its extension.
fn content_type(path: &str) -> &'static str {
    let extension = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match extension.as_str() {
        "json" => JSON,
        "sql" | "txt" | "log" | "md" | "csv" | "yml" | "yaml" | "py" => TEXT,
        "html" | "htm" => HTML,
        _ => OCTET_STREAM,
    }
}

/// One artifact: `{"data": "<the file as a string>"}` (`API_COMPAT=jade`), or the file
/// itself with a content type by its extension (`API_COMPAT=dbt-cloud`); with its entity tag,
/// or 304.
pub enum ArtifactBody {
    Ok { body: Body, content_type: &'static str, etag: ETag },
    NotModified(ETag),
}

impl IntoResponse for ArtifactBody {
    fn into_response(self) -> Response {
        use poem::http::header::ETAG;
        match self {
            ArtifactBody::Ok { body, content_type, etag } => {
                Response::builder().content_type(content_type).header(ETAG, etag.header()).body(body)
            }
            ArtifactBody::NotModified(etag) => {
                Response::builder().status(StatusCode::NOT_MODIFIED).header(ETAG, etag.header()).finish()
            }
        }
    }
}

impl ApiResponse for ArtifactBody {
    fn meta() -> MetaResponses {
        let media = |content_type, schema| MetaMediaType { content_type, schema };
        MetaResponses {
            responses: vec![
                MetaResponse {
                    description: "With `API_COMPAT=jade`: `{\"data\": \"<the file as a string>\"}`. With \
                              `API_COMPAT=dbt-cloud`: the file itself, JSON artifacts as `application/json`, \
                              others as text or bytes by their extension.",
                    status: Some(200),
                    status_range: None,
                    content: vec![
                        media(JSON, <Document<Data<String>> as Payload>::schema_ref()),
                        media(TEXT, <PlainText<String> as Payload>::schema_ref()),
                        media(HTML, <PlainText<String> as Payload>::schema_ref()),
                        media(OCTET_STREAM, <Binary<Body> as Payload>::schema_ref()),
                    ],
                    headers: vec![conditional::etag_header()],
                },
                conditional::not_modified_response(),
            ],
        }
    }

    fn register(registry: &mut Registry) {
        <Document<Data<String>> as Payload>::register(registry);
    }
}

/// In `API_COMPAT=dbt-cloud` a JSON artifact is sent as itself: the document then declares
/// any JSON value for the artifact route instead of `{"data": "<string>"}`.
pub fn document_compat(spec: &mut Value, compat: ApiCompat) {
    if compat != ApiCompat::DbtCloud {
        return;
    }
    for route in ARTIFACT_ROUTES {
        if let Some(schema) = spec
            .pointer_mut(&format!("/paths/{}/get/responses/200/content", route.replace('/', "~1")))
            .and_then(|content| content.get_mut(JSON))
            .and_then(|media| media.get_mut("schema"))
        {
            *schema = serde_json::json!({ "description": "The JSON artifact itself." });
        }
    }
}

/// (Its 415 is declared with every multipart route's, in `http::complete`.)
#[derive(ApiResponse)]
pub enum ArtifactsCreated {
    /// Stored: the paths of this upload, sorted.
    #[oai(status = 201)]
    Created(Document<Data<Vec<String>>>),
}

fn given(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

#[OpenApi]
impl ArtifactsApi {
    /// The paths of a run's stored artifacts.
    ///
    /// `manifest.json`, `run_results.json`, `compiled/…`, sorted; empty when none. Also answers
    /// with a trailing slash.
    #[oai(path = "/accounts/:account_id/runs/:run_id/artifacts", method = "get", tag = "ApiTags::DbtApi")]
    async fn list_artifacts(
        &self,
        caller: Caller,
        account_id: Path<PathId>,
        run_id: Path<PathId>,
        /// Accepted and ignored (dbt Cloud's run step).
        #[oai(name = "step")]
        _step: Query<Option<String>>,
    ) -> Result<Document<Envelope<Vec<String>>>, ApiError> {
        let account_id = account(&caller, &account_id)?;
        let paths = self.jade.artifacts(account_id, id(&run_id)?).await?;
        Ok(Document(Envelope::ok(paths)))
    }

    /// One of a run's artifacts.
    ///
    /// By its path under dbt's `target/`: nested paths such as `compiled/a/b.sql` are sent as
    /// they are or with `/` as `%2F`. `manifest.json` is the manifest uploaded for the run.
    #[oai(path = "/accounts/:account_id/runs/:run_id/artifacts/:path", method = "get", tag = "ApiTags::DbtApi")]
    async fn get_artifact(
        &self,
        caller: Caller,
        account_id: Path<PathId>,
        run_id: Path<PathId>,
        /// The artifact's path, e.g. `manifest.json` or `compiled/a/b.sql`.
        path: Path<String>,
        /// Accepted and ignored (dbt Cloud's run step).
        #[oai(name = "step")]
        _step: Query<Option<String>>,
        /// Entity tags from earlier answers' `ETag` (comma-separated, or `*`): when one names
        /// the current artifact the answer is 304 with no body, and its body is not read.
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
    ) -> Result<ArtifactBody, ApiError> {
        let account_id = account(&caller, &account_id)?;
        self.serve(account_id, id(&run_id)?, &path, if_none_match.as_deref()).await
    }

    /// One artifact of the job's latest successful run that has it.
    ///
    /// As `…/runs/{run_id}/artifacts/{path}` answers it for that run (Prefect reads a job's
    /// manifest this way); 404 when none of the job's latest successful runs has it.
    #[oai(path = "/accounts/:account_id/jobs/:job_id/artifacts/:path", method = "get", tag = "ApiTags::DbtApi")]
    async fn get_job_artifact(
        &self,
        caller: Caller,
        account_id: Path<PathId>,
        job_id: Path<PathId>,
        /// The artifact's path, e.g. `manifest.json` or `compiled/a/b.sql`.
        path: Path<String>,
        /// Accepted and ignored (dbt Cloud's run step).
        #[oai(name = "step")]
        _step: Query<Option<String>>,
        /// As for a run's artifact.
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
    ) -> Result<ArtifactBody, ApiError> {
        let account_id = account(&caller, &account_id)?;
        let run_id = self.jade.job_artifact_run(account_id, id(&job_id)?, &path).await?;
        self.serve(account_id, run_id, &path, if_none_match.as_deref()).await
    }

    /// Upload a run's artifacts.
    ///
    /// Multipart: `environment_slug`, `dag_id`, `run_id`, each also accepted in the query
    /// string, a form field winning; and one file part per artifact, its filename the artifact's
    /// path under dbt's `target/`. The DAG run must exist in the environment's Airflow database.
    /// `manifest.json` is stored as the run's manifest, as `POST /manifests` stores it. A path
    /// uploaded again is replaced. All or nothing.
    #[oai(path = "/datacoves/artifacts", method = "post", tag = "ApiTags::Datacoves")]
    async fn upload_artifacts(
        &self,
        caller: Caller,
        /// The environment (also accepted as a form field, which wins).
        environment_slug: Query<Option<String>>,
        /// The DAG of the run (also accepted as a form field, which wins).
        dag_id: Query<Option<String>>,
        /// The DAG run's `run_id` (also accepted as a form field, which wins).
        run_id: Query<Option<String>>,
        upload: Upload<Artifacts>,
    ) -> Result<ArtifactsCreated, ApiError> {
        let Upload { mut fields, file, indexed, mut extra_files, .. } = upload;
        let mut field = |name: &str, query: Option<String>| given(fields.remove(name)).or_else(|| given(query));
        let slug = field("environment_slug", environment_slug.0);
        let (dag_id, run_id) = (field("dag_id", dag_id.0), field("run_id", run_id.0));
        caller.authorize(RequestScope { environment_slug: slug.as_deref(), ..Default::default() })?;
        extra_files.extend(file.map(|file| ("file".to_owned(), file)));
        for (index, entry) in indexed {
            extra_files.extend(entry.file.map(|file| (format!("files[{index}][file]"), file)));
        }
        let upload = ArtifactUpload { environment_slug: slug.unwrap_or_default(), dag_id, run_id, files: extra_files };
        let paths = self.jade.upload_artifacts(upload).await?;
        Ok(ArtifactsCreated::Created(Document(Data { data: paths })))
    }
}

impl ArtifactsApi {
    /// A run's artifact, or 304 when `If-None-Match` names it.
    async fn serve(
        &self,
        account_id: i64,
        run_id: i64,
        path: &str,
        if_none_match: Option<&str>,
    ) -> Result<ArtifactBody, ApiError> {
        let found = self.jade.find_artifact(account_id, run_id, path).await?;
        let compat = self.jade.settings().compat;
        // `{"data": …}` and the file itself are two representations: two tags.
        let etag = ETag::digest(
            "a",
            &found.version(),
            match compat {
                ApiCompat::Jade => "d",
                ApiCompat::DbtCloud => "r",
            },
        );
        if let Some(matched) = conditional::not_modified(if_none_match, &etag) {
            return Ok(ArtifactBody::NotModified(matched));
        }
        let blob = self.jade.open_artifact(&found).await?;
        Ok(match compat {
            ApiCompat::Jade => ArtifactBody::Ok { body: body::data_string(blob.body), content_type: JSON, etag },
            ApiCompat::DbtCloud => ArtifactBody::Ok { body: body::raw(blob), content_type: content_type(path), etag },
        })
    }
}

/// `…/runs/:id/artifacts/a/b.sql` (and `…/jobs/:id/artifacts/a/b.sql`) reaches the artifact
/// route with its path as one segment (`a%2Fb.sql`, decoded again by the router). Runs after
/// the path was normalized.
pub async fn nested_paths(mut request: Request) -> poem::Result<Request> {
    let path = request.uri().path();
    let Some(rest) = path.strip_prefix("/api/v2/accounts/") else { return Ok(request) };
    let parts: Vec<&str> = rest.splitn(5, '/').collect();
    let [account_id, owner @ ("runs" | "jobs"), owner_id, "artifacts", artifact] = parts.as_slice() else {
        return Ok(request);
    };
    if !artifact.contains('/') {
        return Ok(request);
    }
    let target = format!("/api/v2/accounts/{account_id}/{owner}/{owner_id}/artifacts/{}", artifact.replace('/', "%2F"));
    let uri = match request.uri().query() {
        Some(query) => format!("{target}?{query}"),
        None => target,
    };
    *request.uri_mut() = uri.parse().map_err(|_| poem::Error::from_status(StatusCode::BAD_REQUEST))?;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_go_out_by_their_extension() {
        assert_eq!(content_type("run_results.json"), JSON);
        assert_eq!(content_type("compiled/a/B.SQL"), TEXT);
        assert_eq!(content_type("index.html"), HTML);
        assert_eq!(content_type("graph.gpickle"), OCTET_STREAM);
        assert_eq!(content_type("noextension"), OCTET_STREAM);
    }

    #[tokio::test]
    async fn nested_artifact_paths_become_one_segment() {
        let rewrite = |uri: &str| {
            let request = Request::builder().uri(uri.parse().unwrap()).finish();
            async move { nested_paths(request).await.unwrap().uri().to_string() }
        };
        assert_eq!(
            rewrite("/api/v2/accounts/1/runs/7/artifacts/compiled/a/b.sql?step=1").await,
            "/api/v2/accounts/1/runs/7/artifacts/compiled%2Fa%2Fb.sql?step=1"
        );
        assert_eq!(
            rewrite("/api/v2/accounts/1/runs/7/artifacts/run_results.json").await,
            "/api/v2/accounts/1/runs/7/artifacts/run_results.json"
        );
        assert_eq!(rewrite("/api/v2/accounts/1/runs/7").await, "/api/v2/accounts/1/runs/7");
        assert_eq!(
            rewrite("/api/v2/accounts/1/jobs/7/artifacts/a/b").await,
            "/api/v2/accounts/1/jobs/7/artifacts/a%2Fb"
        );
        assert_eq!(
            rewrite("/api/v2/accounts/1/projects/7/artifacts/a/b").await,
            "/api/v2/accounts/1/projects/7/artifacts/a/b"
        );
    }
}
