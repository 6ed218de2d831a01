//! The Datacoves API (contract §4): manifests and files, also served under the legacy
//! prefix `/api/internal`.

use poem::Body;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{Binary, Json, PlainText};
use poem_openapi::registry::{MetaHeader, MetaMediaType, MetaResponses, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiRequest, ApiResponse, Object, OpenApi, Union};
use serde::{Deserialize, Serialize};

use super::ApiTags;
use super::body;
use super::conditional::{self, ETag};
use super::document::Document;
use super::dto::{Data, FileDto};
use super::error::ApiError;
use super::extract::{Caller, Manifest, OptionalBody, Upload};
use crate::app::{FileBody, FileUpload, Jade, ManifestUpload};
use crate::domain::Error;
use crate::domain::access::RequestScope;
use crate::domain::file::FileLookup;
use crate::ports::manifests::ManifestQuery;

pub struct DatacovesApi {
    pub jade: Jade,
}

#[derive(ApiResponse)]
pub enum ManifestCreated {
    /// Stored: the body is the JSON string `"ok"`.
    #[oai(status = 201)]
    Created(Json<String>),
}

#[derive(ApiResponse)]
pub enum ManifestResponse {
    /// The manifest: trimmed (an object of exactly its `metadata` and `nodes`) unless
    /// `trimmed=false`.
    #[oai(status = 200, actual_type = "Json<poem_openapi::types::Any<serde_json::Value>>")]
    Ok(
        Binary<Body>,
        /// A strong entity tag of this answer; send it back in `If-None-Match` to get 304 while
        /// it is unchanged. Answers sent compressed carry it with `-gzip` or `-zstd` appended.
        #[oai(header = "etag")]
        String,
    ),
    /// Not Modified: `If-None-Match` names the current entity tag (or is `*`). No body; the
    /// `ETag` header repeats the tag that matched.
    #[oai(status = 304)]
    NotModified(
        /// The entity tag that matched.
        #[oai(header = "etag")]
        String,
    ),
}

impl ManifestResponse {
    /// 304 when `If-None-Match` names the manifest's version, else its body, opened now.
    async fn of(jade: &Jade, found: crate::app::FoundManifest, if_none_match: Option<&str>) -> Result<Self, ApiError> {
        let etag = ETag::plain(found.version());
        if let Some(matched) = conditional::not_modified(if_none_match, &etag) {
            return Ok(ManifestResponse::NotModified(matched.header()));
        }
        let blob = jade.open_manifest(&found).await?;
        Ok(ManifestResponse::Ok(Binary(body::raw(blob)), etag.header()))
    }
}

#[derive(Union, Serialize)]
#[serde(untagged)]
pub enum FileOrFiles {
    One(FileDto),
    Many(Vec<FileDto>),
}

#[derive(ApiResponse)]
pub enum FilesCreated {
    /// Stored: the file (for `file` + `tag`) or every file (for `files[N][..]`), without
    /// contents.
    #[oai(status = 201)]
    Created(
        Document<Data<FileOrFiles>>,
        /// For one file: where to read it.
        #[oai(header = "location")]
        Option<String>,
    ),
}

#[derive(ApiResponse)]
pub enum FileResponse {
    /// The file with its contents.
    #[oai(status = 200, actual_type = "Document<Data<FileDto>>")]
    Ok(Binary<Body>),
}

/// `GET …/files`: the file with its contents as JSON, or with `Accept:
/// application/octet-stream` its stored bytes exactly; each with its entity tag, or 304.
pub enum FileDownload {
    Json { response: FileResponse, etag: ETag },
    Bytes { body: Body, len: u64, filename: String, etag: ETag },
    NotModified(ETag),
}

const OCTET_STREAM: &str = "application/octet-stream";

impl poem::IntoResponse for FileDownload {
    fn into_response(self) -> poem::Response {
        use poem::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, ETAG};
        match self {
            FileDownload::Json { response, etag } => response.with_header(ETAG, etag.header()).into_response(),
            FileDownload::Bytes { body, len, filename, etag } => poem::Response::builder()
                .content_type(OCTET_STREAM)
                .header(CONTENT_LENGTH, len)
                .header(CONTENT_DISPOSITION, content_disposition(&filename))
                .header(ETAG, etag.header())
                .body(body),
            FileDownload::NotModified(etag) => poem::Response::builder()
                .status(poem::http::StatusCode::NOT_MODIFIED)
                .header(ETAG, etag.header())
                .finish(),
        }
    }
}

impl ApiResponse for FileDownload {
    fn meta() -> MetaResponses {
        let mut meta = FileResponse::meta();
        for response in meta.responses.iter_mut().filter(|r| r.status == Some(200)) {
            response.description = "The file with its contents (JSON), or with `Accept: application/octet-stream` \
                                    its stored bytes exactly.";
            response.content.push(MetaMediaType {
                content_type: OCTET_STREAM,
                schema: <Binary<Body> as poem_openapi::payload::Payload>::schema_ref(),
            });
            let header = |name: &str, description: &str, schema: MetaSchemaRef| MetaHeader {
                name: name.to_owned(),
                description: Some(description.to_owned()),
                required: false,
                deprecated: false,
                schema,
            };
            response.headers.push(header(
                "content-disposition",
                "With `application/octet-stream`: `attachment; filename=\"…\"`.",
                String::schema_ref(),
            ));
            response.headers.push(header(
                "content-length",
                "With `application/octet-stream`: the stored size.",
                u64::schema_ref(),
            ));
            response.headers.push(conditional::etag_header());
        }
        meta.responses.push(conditional::not_modified_response());
        meta
    }

    fn register(registry: &mut Registry) {
        FileResponse::register(registry);
    }
}

/// Whether the `Accept` header prefers the stored bytes: it names
/// `application/octet-stream` with a quality above zero and above `application/json`'s
/// (the first named wins a tie). Wildcards mean JSON, the default.
fn wants_octet_stream(accept: Option<&str>) -> bool {
    // The best quality each is named with, and where.
    type Named = Option<(f32, usize)>;
    let (mut octet, mut json): (Named, Named) = (None, None);
    for (position, entry) in accept.unwrap_or_default().split(',').enumerate() {
        let mut parts = entry.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let quality = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let slot = match media.as_str() {
            OCTET_STREAM => &mut octet,
            "application/json" => &mut json,
            _ => continue,
        };
        if slot.is_none_or(|(best, _)| quality > best) {
            *slot = Some((quality, position));
        }
    }
    match (octet, json) {
        (Some((q, _)), _) if q <= 0.0 => false,
        (Some(_), None) => true,
        (Some((octet_q, octet_at)), Some((json_q, json_at))) => {
            octet_q > json_q || (octet_q == json_q && octet_at < json_at)
        }
        (None, _) => false,
    }
}

/// `attachment; filename="…"` with the file's last path segment; quotes, backslashes and
/// characters outside printable ASCII become `_` there, and a name that is not plain ASCII
/// is also given exactly as `filename*=UTF-8''…` (RFC 6266).
fn content_disposition(filename: &str) -> String {
    let name = filename.rsplit(['/', '\\']).next().unwrap_or(filename);
    let plain: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    if plain == name {
        return format!("attachment; filename=\"{plain}\"");
    }
    let encoded: String = name
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("attachment; filename=\"{plain}\"; filename*=UTF-8''{encoded}")
}

#[derive(ApiResponse)]
pub enum Deleted {
    /// The body, then the row, were removed. Empty body.
    #[oai(status = 200)]
    Ok,
}

/// Which file to delete, as the Datacoves Airflow provider sends it.
#[derive(Object, Deserialize, Debug)]
pub struct FileSelector {
    pub slug: Option<String>,
    pub tag: Option<String>,
}

#[derive(ApiRequest)]
pub enum FileSelectorBody {
    Json(Json<FileSelector>),
    Form(poem_openapi::payload::Form<FileSelector>),
}

/// `trimmed` unless it says false.
fn wants_trimmed(value: &Option<String>) -> bool {
    !matches!(value.as_deref().map(str::trim), Some("false" | "0" | "False" | "FALSE"))
}

fn given(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

fn environment(caller: &Caller, slug: Option<&str>) -> Result<(), ApiError> {
    caller.authorize(RequestScope { environment_slug: slug, ..Default::default() })
}

async fn file_response(file: FileBody) -> Result<FileResponse, ApiError> {
    let FileBody { file, contents, is_json } = file;
    let fields = serde_json::to_value(FileDto::from(file))
        .map_err(|e| ApiError::from(Error::internal("rendering a file", e)))?;
    let contents =
        contents.into_blob().await.map_err(|e| ApiError::from(Error::internal("reading a spooled file", e)))?;
    Ok(FileResponse::Ok(Binary(body::file_with_contents(fields, contents.body, is_json))))
}

#[OpenApi(prefix_path = "/datacoves", tag = "ApiTags::Datacoves")]
impl DatacovesApi {
    /// Upload a manifest.
    ///
    /// Multipart: `file`, `environment_slug`, optional `dag_id` with `run_id`, optional `tag`;
    /// all but `file` may come in the query string instead, a form field winning over the same
    /// query parameter. With both `dag_id` and `run_id`, the DAG run must exist in the
    /// environment's Airflow database; with only one of them the manifest is stored without a
    /// run. A tag is unique per environment.
    #[oai(path = "/manifests", method = "post")]
    async fn create_manifest(
        &self,
        caller: Caller,
        /// The environment (also accepted as a form field, which wins).
        environment_slug: Query<Option<String>>,
        /// The DAG of the run (also accepted as a form field, which wins).
        dag_id: Query<Option<String>>,
        /// The DAG run's `run_id` (also accepted as a form field, which wins).
        run_id: Query<Option<String>>,
        /// The manifest's tag (also accepted as a form field, which wins).
        tag: Query<Option<String>>,
        upload: Upload<Manifest>,
    ) -> Result<ManifestCreated, ApiError> {
        let Upload { mut fields, file, .. } = upload;
        let mut field = |name: &str, query: Option<String>| given(fields.remove(name)).or_else(|| given(query));
        let slug = field("environment_slug", environment_slug.0);
        let (dag_id, run_id, tag) = (field("dag_id", dag_id.0), field("run_id", run_id.0), field("tag", tag.0));
        environment(&caller, slug.as_deref())?;
        let upload = ManifestUpload { environment_slug: slug.unwrap_or_default(), dag_id, run_id, tag, file };
        self.jade.upload_manifest(upload).await?;
        Ok(ManifestCreated::Created(Json("ok".into())))
    }

    /// A manifest of the environment.
    ///
    /// The newest of the DAG (`dag_id`), the tagged one (`tag`), or the environment's newest.
    /// `environment_slug` is required: without it the answer is 401 `Invalid Path. You requested
    /// a non-existent path.`, as the first Jade answered (its clients depend on it).
    #[oai(path = "/manifests", method = "get")]
    async fn get_manifest(
        &self,
        caller: Caller,
        /// The environment's slug (required; without it: 401 `Invalid Path. You requested a
        /// non-existent path.`).
        environment_slug: Query<Option<String>>,
        /// The newest manifest uploaded for a run of this DAG.
        dag_id: Query<Option<String>>,
        /// The manifest uploaded with this tag (when no `dag_id` is given).
        tag: Query<Option<String>>,
        /// `false` for the whole manifest (default: trimmed to `metadata` and `nodes`).
        trimmed: Query<Option<String>>,
        /// Entity tags from earlier answers' `ETag` (comma-separated, or `*`): when one names
        /// the current manifest the answer is 304 with no body, and storage is not read.
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
    ) -> Result<ManifestResponse, ApiError> {
        let slug = given(environment_slug.0);
        environment(&caller, slug.as_deref())?;
        let environment_slug = slug.unwrap_or_default();
        let query = match (given(dag_id.0), given(tag.0)) {
            (Some(dag_id), _) => ManifestQuery::Dag { environment_slug, dag_id },
            (None, Some(tag)) => ManifestQuery::Tag { environment_slug, tag },
            (None, None) => ManifestQuery::Environment { environment_slug },
        };
        let found = self.jade.find_manifest(&query, wants_trimmed(&trimmed.0)).await?;
        ManifestResponse::of(&self.jade, found, if_none_match.as_deref()).await
    }

    /// The newest manifest across the project's environments.
    #[oai(path = "/projects/:project_slug/latest-manifest", method = "get")]
    async fn project_manifest(
        &self,
        caller: Caller,
        /// The project's slug.
        project_slug: Path<String>,
        /// `false` for the whole manifest (default: trimmed).
        trimmed: Query<Option<String>>,
        /// Entity tags from earlier answers' `ETag` (comma-separated, or `*`): when one names
        /// the current manifest the answer is 304 with no body, and storage is not read.
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
    ) -> Result<ManifestResponse, ApiError> {
        caller.authorize(RequestScope { project_slug: Some(&project_slug), ..Default::default() })?;
        let found = self.jade.find_project_manifest(&project_slug, wants_trimmed(&trimmed.0)).await?;
        ManifestResponse::of(&self.jade, found, if_none_match.as_deref()).await
    }

    /// Upload one file or several.
    ///
    /// One file: `file` + `tag`. Several: `files[0][tag]`, `files[0][file]`, `files[1][tag]`, …
    /// All of them are stored or none is.
    #[oai(path = "/environments/:environment_slug/files", method = "post")]
    async fn create_files(
        &self,
        caller: Caller,
        /// The environment's slug.
        environment_slug: Path<String>,
        upload: Upload,
    ) -> Result<FilesCreated, ApiError> {
        environment(&caller, Some(&environment_slug))?;
        let Upload { mut fields, file, indexed, .. } = upload;
        let single = file.is_some() || indexed.is_empty();
        let uploads = if single {
            vec![FileUpload { tag: fields.remove("tag"), file }]
        } else {
            indexed
                .into_values()
                .map(|mut entry| FileUpload { tag: entry.fields.remove("tag"), file: entry.file })
                .collect()
        };
        let mut files = self.jade.create_files(&environment_slug, uploads).await?;
        Ok(if single {
            let file = FileDto::from(files.remove(0));
            let location = format!("/api/v2/datacoves/environments/{}/files/?slug={}", &*environment_slug, file.slug);
            FilesCreated::Created(Document(Data { data: FileOrFiles::One(file) }), Some(location))
        } else {
            let files = files.into_iter().map(FileDto::from).collect();
            FilesCreated::Created(Document(Data { data: FileOrFiles::Many(files) }), None)
        })
    }

    /// A file with its contents.
    ///
    /// The newest file with this `slug`, else `tag`, else `filename`. With
    /// `Accept: application/octet-stream`, its stored bytes exactly (for binary files such as
    /// dbt's `partial_parse.msgpack`).
    #[oai(path = "/environments/:environment_slug/files", method = "get")]
    async fn get_file(
        &self,
        caller: Caller,
        request: &poem::Request,
        /// The environment's slug.
        environment_slug: Path<String>,
        /// The file's slug (a UUID); wins over `tag` and `filename`.
        slug: Query<Option<String>>,
        /// The file's tag; wins over `filename`.
        tag: Query<Option<String>>,
        /// The file's name.
        filename: Query<Option<String>>,
        /// Entity tags from earlier answers' `ETag` (comma-separated, or `*`): when one names
        /// the current file (in the form asked: JSON or bytes) the answer is 304 with no body,
        /// and storage is not read.
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
    ) -> Result<FileDownload, ApiError> {
        environment(&caller, Some(&environment_slug))?;
        let lookup = FileLookup::from_params(slug.as_deref(), tag.as_deref(), filename.as_deref());
        let accept = request.headers().get(poem::http::header::ACCEPT).and_then(|v| v.to_str().ok());
        let octet_stream = wants_octet_stream(accept);
        let file = self.jade.find_file_to_read(&environment_slug, lookup).await?;
        // The JSON answer and the bytes are two representations: two tags.
        let etag = ETag::digest("f", &file.version(), if octet_stream { "b" } else { "j" });
        if let Some(matched) = conditional::not_modified(if_none_match.as_deref(), &etag) {
            return Ok(FileDownload::NotModified(matched));
        }
        if !octet_stream {
            let response = file_response(self.jade.open_file(file).await?).await?;
            return Ok(FileDownload::Json { response, etag });
        }
        let contents = self.jade.open_file_bytes(&file).await?;
        let len = contents.len;
        let blob =
            contents.into_blob().await.map_err(|e| ApiError::from(Error::internal("reading a spooled file", e)))?;
        Ok(FileDownload::Bytes { body: body::raw(blob), len, filename: file.filename, etag })
    }

    /// Replace a file, rename its tag, or both.
    ///
    /// Multipart `file` replaces the contents and filename; form field `tag` renames the tag,
    /// moving the body to the new path. The file is named by `slug` or `tag` in the query, else
    /// by `slug` in the form, else by `tag` in the form (which then names the file instead of
    /// renaming it). `PUT` and `PATCH` do the same.
    #[oai(path = "/environments/:environment_slug/files", method = "put", method = "patch")]
    async fn replace_file(
        &self,
        caller: Caller,
        /// The environment's slug.
        environment_slug: Path<String>,
        /// The file's slug (a UUID); wins over `tag`.
        slug: Query<Option<String>>,
        /// The tag of the file to replace.
        tag: Query<Option<String>>,
        upload: Upload,
    ) -> Result<FileResponse, ApiError> {
        environment(&caller, Some(&environment_slug))?;
        let Upload { mut fields, file, .. } = upload;
        let (form_slug, form_tag) = (given(fields.remove("slug")), given(fields.remove("tag")));
        let (lookup, new_tag) = match FileLookup::slug_or_tag(slug.as_deref(), tag.as_deref()) {
            Some(lookup) => (Some(lookup), form_tag),
            None => match form_slug {
                Some(form_slug) => (Some(FileLookup::Slug(form_slug)), form_tag),
                None => (form_tag.map(FileLookup::Tag), None),
            },
        };
        file_response(self.jade.update_file(&environment_slug, lookup, file, new_tag).await?).await
    }

    /// Delete a file.
    ///
    /// Named by `slug` or `tag`: in the query, a form, or a JSON body `{"tag": ".."}`. Its
    /// body is removed, then its row.
    #[oai(path = "/environments/:environment_slug/files", method = "delete")]
    async fn delete_file(
        &self,
        caller: Caller,
        /// The environment's slug.
        environment_slug: Path<String>,
        /// The file's slug (a UUID); wins over `tag`.
        slug: Query<Option<String>>,
        /// The tag of the file to delete.
        tag: Query<Option<String>>,
        body: OptionalBody<FileSelectorBody>,
    ) -> Result<Deleted, ApiError> {
        environment(&caller, Some(&environment_slug))?;
        let selector = match body.0 {
            Some(
                FileSelectorBody::Json(Json(selector)) | FileSelectorBody::Form(poem_openapi::payload::Form(selector)),
            ) => selector,
            None => FileSelector { slug: None, tag: None },
        };
        for (field, value) in [("slug", &selector.slug), ("tag", &selector.tag)] {
            super::params::plain_text(field, value.as_deref().unwrap_or_default())?;
        }
        let lookup = FileLookup::slug_or_tag(slug.as_deref(), tag.as_deref())
            .or_else(|| FileLookup::slug_or_tag(selector.slug.as_deref(), selector.tag.as_deref()));
        self.jade.delete_file(&environment_slug, lookup).await?;
        Ok(Deleted::Ok)
    }
}

/// Liveness: answers `ok` without authentication.
pub struct HealthApi {
    pub jade: Jade,
}

/// How a part answered the readiness check.
#[derive(poem_openapi::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum PartStatus {
    /// It answered within 2 s.
    Ok,
    /// It failed or did not answer within 2 s.
    Unavailable,
    /// Not asked: shutdown has begun.
    Unchecked,
}

impl From<crate::app::Part> for PartStatus {
    fn from(part: crate::app::Part) -> Self {
        match part {
            crate::app::Part::Ok => PartStatus::Ok,
            crate::app::Part::Unavailable => PartStatus::Unavailable,
            crate::app::Part::Unchecked => PartStatus::Unchecked,
        }
    }
}

/// What Jade needs to serve, each asked with a 2 s bound.
#[derive(Object, Debug)]
pub struct ReadinessDto {
    /// The Jade database.
    pub jade_db: PartStatus,
    /// The Datacoves database.
    pub datacoves_db: PartStatus,
    /// Object storage.
    pub storage: PartStatus,
    /// `in progress` once shutdown has begun.
    #[oai(skip_serializing_if_is_none)]
    pub shutdown: Option<String>,
}

#[derive(ApiResponse)]
pub enum ReadinessResponse {
    /// Every part answered.
    #[oai(status = 200)]
    Ready(Json<ReadinessDto>),
    /// A part failed (named `unavailable`), or shutdown has begun.
    #[oai(status = 503)]
    NotReady(Json<ReadinessDto>),
}

#[derive(ApiResponse)]
pub enum Alive {
    /// `ok`: Jade is serving.
    #[oai(status = 200)]
    Ok(PlainText<&'static str>),
}

#[OpenApi(tag = "ApiTags::Datacoves")]
impl HealthApi {
    /// Liveness: ok while Jade serves.
    ///
    /// Touches no database or storage; needs no token.
    #[oai(path = "/healthcheck", method = "get")]
    async fn healthcheck(&self) -> Alive {
        Alive::Ok(PlainText("ok"))
    }

    /// Readiness: whether Jade can serve now.
    ///
    /// 200 when the Jade database, the Datacoves database and storage each answer within 2 s;
    /// 503 naming the part that did not, and 503 from the moment shutdown begins. Needs no
    /// token.
    #[oai(path = "/readyz", method = "get")]
    async fn readyz(&self) -> ReadinessResponse {
        let readiness = self.jade.readiness().await;
        let dto = ReadinessDto {
            jade_db: readiness.jade_db.into(),
            datacoves_db: readiness.datacoves_db.into(),
            storage: readiness.storage.into(),
            shutdown: readiness.shutting_down.then(|| "in progress".to_owned()),
        };
        if readiness.is_ready() { ReadinessResponse::Ready(Json(dto)) } else { ReadinessResponse::NotReady(Json(dto)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octet_stream_only_when_preferred() {
        for (accept, expected) in [
            (None, false),
            (Some("*/*"), false),
            (Some("application/json"), false),
            (Some("application/octet-stream"), true),
            (Some("Application/Octet-Stream; q=0.8, text/plain"), true),
            (Some("application/octet-stream;q=0"), false),
            (Some("application/json, application/octet-stream"), false),
            (Some("application/octet-stream, application/json"), true),
            (Some("application/json;q=0.5, application/octet-stream"), true),
            (Some("application/json, application/octet-stream;q=0.9"), false),
        ] {
            assert_eq!(wants_octet_stream(accept), expected, "{accept:?}");
        }
    }

    #[test]
    fn content_disposition_names_the_last_segment_safely() {
        assert_eq!(content_disposition("partial_parse.msgpack"), "attachment; filename=\"partial_parse.msgpack\"");
        assert_eq!(content_disposition("dir/my file.json"), "attachment; filename=\"my file.json\"");
        assert_eq!(content_disposition("a\"b\\c.txt"), "attachment; filename=\"c.txt\"");
        assert_eq!(
            content_disposition("q\"uote.txt"),
            "attachment; filename=\"q_uote.txt\"; filename*=UTF-8''q%22uote.txt"
        );
        assert_eq!(
            content_disposition("résumé.pdf"),
            "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
        );
    }
}
