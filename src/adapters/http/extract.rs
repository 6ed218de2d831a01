//! Request extractors: the caller's identity, streamed multipart uploads, optional bodies.

use std::collections::BTreeMap;

use futures::FutureExt;
use poem::{Request, RequestBody, Result};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef, MetaSecurityScheme, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use super::error::{ApiError, content_length};
use crate::app::{Jade, Spooled};
use crate::domain::access::Identity;
use crate::domain::artifact::ArtifactPath;
use crate::domain::{Error, access};

const SECURITY_SCHEME: &str = "BearerToken";

fn jade(request: &Request) -> &Jade {
    request.data::<Jade>().expect("the HTTP adapter puts Jade in every request's data")
}

/// The verified caller. Extracted first in every protected route, so a missing or invalid
/// token answers 401 before any parameter is parsed or any body read. Documented as an
/// HTTP bearer scheme; `Authorization: Token <t>` is accepted as well.
pub struct Caller(pub Identity);

impl Caller {
    /// Applies the contract's path rules to the request's scope parameters.
    pub fn authorize(&self, scope: access::RequestScope<'_>) -> Result<(), ApiError> {
        Jade::authorize(&self.0, scope).map_err(ApiError::from)
    }
}

impl<'a> ApiExtractor<'a> for Caller {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        registry.create_security_scheme(
            SECURITY_SCHEME,
            MetaSecurityScheme {
                ty: "http",
                description: Some(
                    "A Datacoves API token. In Swagger UI's Authorize dialog, paste the token alone: Swagger UI \
                     sends `Authorization: Bearer <token>` itself. Other clients send `Authorization: Bearer \
                     <token>` or `Authorization: Token <token>`.",
                ),
                name: None,
                key_in: None,
                scheme: Some("bearer"),
                bearer_format: None,
                flows: None,
                openid_connect_url: None,
            },
        );
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![SECURITY_SCHEME]
    }

    async fn from_request(request: &'a Request, _body: &mut RequestBody, _: ExtractParamOptions<()>) -> Result<Self> {
        // UTF-8, as knox decodes the token: a token with non-ASCII characters is verified
        // (and refused if unknown); a header that is not UTF-8 is malformed.
        let header = request
            .headers()
            .get(poem::http::header::AUTHORIZATION)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok());
        let identity = jade(request).authenticate(header).await.map_err(ApiError::from)?;
        Ok(Caller(identity))
    }
}

/// A `multipart/form-data` body, streamed: each file part is written to a spool file as it
/// arrives (never held in memory), text parts are collected. `files[N][key]` parts are
/// grouped by N whatever their order. The whole body is capped at `MAX_UPLOAD_BYTES`: a
/// larger `Content-Length` answers 413 before anything is read, a longer stream as soon as
/// it passes the cap.
///
/// `P` names the file parts that are manifests: those are validated and trimmed while they
/// arrive (see [`Jade::spool_writer`]).
#[derive(Debug)]
pub struct Upload<P = Files> {
    pub fields: BTreeMap<String, String>,
    /// File parts named `file`.
    pub file: Option<Spooled>,
    /// `files[N][..]` parts by N.
    pub indexed: BTreeMap<usize, Indexed>,
    /// Every other file part, with its field name, in the order they came: parts of other
    /// names, and `file` parts followed by another `file` part (run artifacts take them all).
    pub extra_files: Vec<(String, Spooled)>,
    kind: std::marker::PhantomData<P>,
}

impl<P> Default for Upload<P> {
    fn default() -> Self {
        Upload {
            fields: BTreeMap::new(),
            file: None,
            indexed: BTreeMap::new(),
            extra_files: Vec::new(),
            kind: std::marker::PhantomData,
        }
    }
}

/// Which file parts of an upload are manifests, trimmed as they arrive.
pub trait Parts: Send + Sync + 'static {
    fn trims(field: &str, filename: &str) -> bool;
}

/// Files: no part is a manifest.
#[derive(Debug)]
pub struct Files;

impl Parts for Files {
    fn trims(_: &str, _: &str) -> bool {
        false
    }
}

/// `POST /manifests`: the `file` part.
#[derive(Debug)]
pub struct Manifest;

impl Parts for Manifest {
    fn trims(field: &str, _: &str) -> bool {
        field == "file"
    }
}

/// Run artifacts: the part whose filename is the run's `manifest.json`.
#[derive(Debug)]
pub struct Artifacts;

impl Parts for Artifacts {
    fn trims(field: &str, filename: &str) -> bool {
        ArtifactPath::parse(field, filename).is_ok_and(|path| path.is_manifest())
    }
}

#[derive(Debug, Default)]
pub struct Indexed {
    pub fields: BTreeMap<String, String>,
    pub file: Option<Spooled>,
}

const MAX_TEXT_FIELD: usize = 64 * 1024;

/// `files[3][tag]` -> (3, "tag")
fn indexed_name(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix("files[")?;
    let (index, rest) = rest.split_once(']')?;
    let key = rest.strip_prefix('[')?.strip_suffix(']')?;
    Some((index.parse().ok()?, key))
}

fn property(ty: &'static str, format: Option<&'static str>, description: &'static str) -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema { format, description: Some(description), ..MetaSchema::new(ty) }))
}

/// The documented fields of an upload; each route's description says which it reads.
const UPLOAD_SCHEMA: &str = "Upload";

impl<'a, P: Parts> ApiExtractor<'a> for Upload<P> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        registry.create_schema::<Upload, _>(UPLOAD_SCHEMA.to_owned(), |_| MetaSchema {
            description: Some(
                "A single `file` (with `tag`, and for manifests `environment_slug`, `dag_id`, `run_id`), \
                 or any number of `files[N][file]` / `files[N][tag]` pairs (N = 0, 1, …; parts in any order). \
                 Run artifacts: `environment_slug`, `dag_id`, `run_id` and one `file` part per artifact, \
                 its filename the artifact's path under dbt's `target/`.",
            ),
            properties: vec![
                ("file", property("string", Some("binary"), "The file.")),
                ("tag", property("string", None, "The file's tag.")),
                ("environment_slug", property("string", None, "Manifests and artifacts: the environment.")),
                ("dag_id", property("string", None, "Manifests and artifacts: the DAG of the run (with run_id).")),
                ("run_id", property("string", None, "Manifests and artifacts: the DAG run's run_id (with dag_id).")),
                ("slug", property("string", None, "Updates: the file's slug (instead of the query).")),
                ("files[0][file]", property("string", Some("binary"), "File N of a multi-upload.")),
                ("files[0][tag]", property("string", None, "Tag of file N.")),
            ],
            ..MetaSchema::new("object")
        });
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: Some("multipart/form-data upload, streamed to disk"),
            content: vec![MetaMediaType {
                content_type: "multipart/form-data",
                schema: MetaSchemaRef::Reference(UPLOAD_SCHEMA.to_owned()),
            }],
            required: true,
        })
    }

    async fn from_request(request: &'a Request, body: &mut RequestBody, _: ExtractParamOptions<()>) -> Result<Self> {
        let limit = jade(request).settings().max_upload_bytes;
        if content_length(request).is_some_and(|length| length > limit) {
            return Err(ApiError::too_large(limit).into());
        }
        let content_type = request.content_type().unwrap_or_default();
        if !content_type.to_ascii_lowercase().starts_with("multipart/form-data") {
            return Err(ApiError::new(
                poem::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported Media Type: send multipart/form-data",
            )
            .into());
        }
        let boundary = multer::parse_boundary(content_type).map_err(ApiError::bad_request)?;
        let constraints = multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit));
        let mut stream = Box::pin(body.take()?.into_bytes_stream());
        let mut multipart = multer::Multipart::with_constraints(&mut stream, boundary, constraints);
        let failed = |error: multer::Error| -> poem::Error {
            match error {
                multer::Error::StreamSizeExceeded { .. } => ApiError::too_large(limit).into(),
                error => ApiError::bad_request(format!("invalid multipart body: {error}")).into(),
            }
        };
        let internal = |error: std::io::Error| -> poem::Error {
            ApiError::from(Error::internal("spooling an upload", error)).into()
        };

        let mut upload = Upload::default();
        while let Some(mut field) = multipart.next_field().await.map_err(failed)? {
            let name = field.name().unwrap_or_default().to_owned();
            if let Some(filename) = field.file_name().map(str::to_owned) {
                let mut spool = jade(request).spool_writer(P::trims(&name, &filename)).map_err(internal)?;
                while let Some(chunk) = field.chunk().await.map_err(failed)? {
                    spool.write(chunk).await.map_err(internal)?;
                }
                let spooled = spool.finish(Some(filename)).await.map_err(internal)?;
                match indexed_name(&name) {
                    Some((index, _)) => upload.indexed.entry(index).or_default().file = Some(spooled),
                    None if name == "file" => {
                        if let Some(previous) = upload.file.replace(spooled) {
                            upload.extra_files.push((name, previous));
                        }
                    }
                    None => upload.extra_files.push((name, spooled)),
                }
            } else {
                let mut text = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(failed)? {
                    if text.len() + chunk.len() > MAX_TEXT_FIELD {
                        return Err(ApiError::bad_request(format!("field `{name}` is too long")).into());
                    }
                    text.extend_from_slice(&chunk);
                }
                let text = String::from_utf8(text)
                    .map_err(|_| ApiError::bad_request(format!("field `{name}` is not UTF-8")))?;
                super::params::plain_text(&name, &text)?;
                match indexed_name(&name) {
                    Some((index, key)) => {
                        upload.indexed.entry(index).or_default().fields.insert(key.to_owned(), text);
                    }
                    None => {
                        upload.fields.insert(name, text);
                    }
                }
            }
        }
        drop(multipart);
        // Reads what follows the closing boundary to the body's end: the connection then
        // waits for the answer with nothing left to read, so a client that goes away is seen
        // at once and the request (an upload being stored) is cut off and undone.
        let mut trailing = 0;
        while trailing < MAX_TEXT_FIELD {
            match futures::StreamExt::next(&mut stream).await {
                Some(Ok(chunk)) => trailing += chunk.len(),
                Some(Err(_)) | None => break,
            }
        }
        Ok(upload)
    }
}

/// A request body that may be absent (no `Content-Length` and not chunked, or empty):
/// documented as `T`'s body with `required: false`.
pub struct OptionalBody<T>(pub Option<T>);

impl<'a, T: ApiExtractor<'a>> ApiExtractor<'a> for OptionalBody<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        T::request_meta().map(|mut meta| {
            meta.required = false;
            meta
        })
    }

    async fn from_request(request: &'a Request, body: &mut RequestBody, _: ExtractParamOptions<()>) -> Result<Self> {
        let length = content_length(request);
        let chunked = request.headers().contains_key(poem::http::header::TRANSFER_ENCODING);
        if length == Some(0) || (length.is_none() && !chunked) {
            return Ok(OptionalBody(None));
        }
        // Boxed: awaiting a generic extractor's future here trips rust-lang/rust#100013.
        T::from_request(request, body, ExtractParamOptions::default()).boxed().await.map(|v| OptionalBody(Some(v)))
    }
}
