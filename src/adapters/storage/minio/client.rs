//! [`BlobStorage`] on MinIO (or any S3-compatible server) through the official `minio` crate.
//!
//! Keys are used as object names unchanged. The `minio` crate builds the request path as
//! `/{bucket}` + key when the key starts with `/`, so a leading `/` is effectively dropped
//! by the server: `/environments/dev/files/t/a.json` is stored as
//! `environments/dev/files/t/a.json` (and is the same object as the key without the slash).

use secrecy::ExposeSecret;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use minio::s3::builders::{ObjectContent, Size};
use minio::s3::creds::StaticProvider;
use minio::s3::error::{Error as MinioError, S3ServerError};
use minio::s3::http::BaseUrl;
use minio::s3::minio_error_response::MinioErrorCode;
use minio::s3::types::{BucketName, ObjectKey, S3Api, ToStream};
use minio::s3::{MinioClient, MinioClientBuilder};
use tokio_util::io::ReaderStream;

use crate::ports::storage::{Blob, BlobSource, BlobStorage, Stat, StorageError};

use super::MinioSettings;
use crate::adapters::storage::remote::{chain, idle_timeout, truncate};

/// Part size of multipart uploads: each part is buffered (and hashed) in memory, so this
/// bounds the memory one upload uses. Bodies smaller than this go in one PUT.
const PART_SIZE: u64 = 16 * 1024 * 1024;
/// Chunk size when reading a file source.
const READ_CHUNK: usize = 256 * 1024;
/// Bound on requests without a large body (GET until the headers, DELETE, bucket calls).
/// The `minio` crate offers no connect or read timeout, so every call is wrapped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a whole listing, all its pages together.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);
/// A GET body that delivers nothing for this long fails instead of hanging.
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// An upload may take this long plus one second per MiB (i.e. it fails below ~1 MiB/s).
const UPLOAD_BASE_TIMEOUT: Duration = Duration::from_secs(20);

/// Objects in one MinIO bucket.
#[derive(Clone)]
pub struct MinioStorage {
    client: MinioClient,
    bucket: BucketName,
}

impl fmt::Debug for MinioStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MinioStorage").field("bucket", &self.bucket.as_str()).finish_non_exhaustive()
    }
}

impl MinioStorage {
    /// Builds the client. Makes no request: an unreachable server shows on first use.
    pub async fn new(settings: MinioSettings) -> Result<Self, StorageError> {
        let base_url: BaseUrl =
            settings.url.parse().map_err(|e| StorageError::Backend(format!("invalid MinIO url: {e}")))?;
        let bucket = BucketName::new(&settings.bucket)
            .map_err(|e| StorageError::Backend(format!("invalid MinIO bucket name: {e}")))?;
        let provider =
            StaticProvider::new(settings.access_key.expose_secret(), settings.secret_key.expose_secret(), None);
        let client = MinioClientBuilder::new(base_url)
            .provider(Some(provider))
            // MinIO has no regions; skipping the lookup saves a request per bucket.
            .skip_region_lookup(true)
            .build()
            .map_err(|e| StorageError::Backend(format!("cannot build MinIO client: {e}")))?;
        tracing::debug!(url = %settings.url, bucket = %settings.bucket, "minio storage configured");
        Ok(MinioStorage { client, bucket })
    }

    /// Creates the bucket when it does not exist yet.
    pub async fn ensure_bucket(&self) -> Result<(), StorageError> {
        let exists = timed(REQUEST_TIMEOUT, "bucket exists", async {
            self.client.bucket_exists(&self.bucket).map_err(MinioError::from)?.build().send().await
        })
        .await?
        .exists();
        if exists {
            return Ok(());
        }
        let created = timed(REQUEST_TIMEOUT, "create bucket", async {
            self.client.create_bucket(&self.bucket).map_err(MinioError::from)?.build().send().await
        })
        .await;
        match created {
            Ok(_) => {
                tracing::info!(bucket = %self.bucket.as_str(), "created minio bucket");
                Ok(())
            }
            Err(Failure::Minio(e))
                if matches!(s3_code(&e), Some(MinioErrorCode::BucketAlreadyOwnedByYou))
                    || s3_code(&e) == Some(MinioErrorCode::OtherError("BucketAlreadyExists".into())) =>
            {
                Ok(())
            }
            Err(e) => Err(e.into_storage("create bucket")),
        }
    }

    fn object_key(key: &str) -> Result<ObjectKey, StorageError> {
        ObjectKey::new(key).map_err(|e| StorageError::InvalidKey(truncate(e.to_string())))
    }
}

#[async_trait]
impl BlobStorage for MinioStorage {
    async fn put(&self, key: &str, source: BlobSource) -> Result<(), StorageError> {
        let object = Self::object_key(key)?;
        let len = source.len();
        let content = match source {
            BlobSource::Bytes(bytes) => ObjectContent::from(bytes),
            BlobSource::File { path, len } => {
                let file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| StorageError::Backend(format!("cannot open upload file: {e}")))?;
                ObjectContent::new_from_stream(ReaderStream::with_capacity(file, READ_CHUNK), Size::Known(len))
            }
        };
        // The crate picks a 64 MiB part (held in memory) unless told otherwise; below one
        // part it sends a single PUT of exactly `len` bytes.
        let part_size = if len > PART_SIZE { Size::Known(PART_SIZE) } else { Size::Unknown };
        let timeout = UPLOAD_BASE_TIMEOUT + Duration::from_secs(len / (1024 * 1024));
        timed(timeout, "put", async {
            self.client
                .put_object_content(&self.bucket, object, content)
                .map_err(MinioError::from)?
                .part_size(part_size)
                .build()
                .send()
                .await
        })
        .await
        .map_err(|e| e.into_storage("put"))?;
        tracing::debug!(key, len, "stored object in minio");
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Blob, StorageError> {
        let object = Self::object_key(key)?;
        let response = timed(REQUEST_TIMEOUT, "get", async {
            self.client.get_object(&self.bucket, object).map_err(MinioError::from)?.build().send().await
        })
        .await;
        let response = found(response, "get")?;
        let len = response.object_size().ok();
        let (stream, _) = response
            .content()
            .map_err(|e| Failure::Minio(e).into_storage("get"))?
            .to_stream()
            .await
            .map_err(|e| StorageError::Backend(format!("get: {}", chain(&e))))?;
        let stream = futures::TryStreamExt::map_err(stream, |e| {
            std::io::Error::other(truncate(format!("minio body: {}", chain(&e))))
        });
        Ok(Blob { len, body: idle_timeout(stream.boxed(), BODY_IDLE_TIMEOUT, "minio") })
    }

    async fn stat(&self, key: &str) -> Result<Stat, StorageError> {
        use minio::s3::response_traits::HasS3Fields;
        let object = Self::object_key(key)?;
        let response = timed(REQUEST_TIMEOUT, "stat", async {
            self.client.stat_object(&self.bucket, object).map_err(MinioError::from)?.build().send().await
        })
        .await;
        let response = found(response, "stat")?;
        // Read from the HEAD answer's own headers: an S3 server need not send the
        // `x-amz-object-size` the crate's accessor reads.
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let len = header("content-length").and_then(|l| l.parse().ok()).unwrap_or_default();
        let version = match (header("etag"), header("last-modified")) {
            (Some(etag), _) if !etag.is_empty() => etag.trim_matches('"').to_owned(),
            (_, Some(modified)) => format!("{len}-{modified}"),
            _ => return Err(StorageError::Backend("minio stat: the object has no ETag".into())),
        };
        Ok(Stat { len, version })
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let object = Self::object_key(key)?;
        let deleted = timed(REQUEST_TIMEOUT, "delete", async {
            self.client.delete_object(&self.bucket, object).map_err(MinioError::from)?.build().send().await
        })
        .await;
        match deleted {
            Ok(_) => Ok(()),
            // S3 answers 204 for a missing object; be lenient with servers that say 404.
            Err(e) if e.is_missing() => Ok(()),
            Err(e) => Err(e.into_storage("delete")),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        // Objects were stored without a leading `/` (see the module docs).
        let prefix = prefix.strip_prefix('/').unwrap_or(prefix);
        let listed = async {
            let mut pages = self
                .client
                .list_objects(&self.bucket)
                .map_err(MinioError::from)?
                .prefix(Some(prefix.to_owned()))
                .recursive(true)
                .build()
                .to_stream()
                .await;
            let mut keys = Vec::new();
            while let Some(page) = pages.next().await {
                keys.extend(
                    page?
                        .contents
                        .into_iter()
                        .filter(|entry| !entry.is_prefix)
                        .filter_map(|entry| entry.name.strip_prefix(prefix).map(str::to_owned)),
                );
            }
            Ok(keys)
        };
        let mut keys = timed(LIST_TIMEOUT, "list", listed).await.map_err(|e| e.into_storage("list"))?;
        keys.sort();
        Ok(keys)
    }

    async fn ping(&self) -> Result<(), StorageError> {
        let exists = timed(REQUEST_TIMEOUT, "bucket exists", async {
            self.client.bucket_exists(&self.bucket).map_err(MinioError::from)?.build().send().await
        })
        .await
        .map_err(|e| e.into_storage("bucket exists"))?
        .exists();
        if exists { Ok(()) } else { Err(StorageError::Backend("minio: the bucket does not exist".into())) }
    }

    fn backend(&self) -> &'static str {
        "minio"
    }
}

enum Failure {
    Minio(MinioError),
    TimedOut(&'static str, Duration),
}

impl Failure {
    /// Whether the server said no object is stored under the key.
    fn is_missing(&self) -> bool {
        matches!(self, Failure::Minio(e) if matches!(s3_code(e), Some(MinioErrorCode::NoSuchKey)))
    }

    fn into_storage(self, op: &str) -> StorageError {
        let message = match self {
            Failure::Minio(e) => describe(&e),
            Failure::TimedOut(what, after) => {
                format!("{what} timed out after {}s", after.as_secs())
            }
        };
        tracing::debug!(op, error = %message, "minio request failed");
        StorageError::Backend(truncate(format!("minio {op}: {message}")))
    }
}

/// A request's answer, or `NotFound` when no object is stored under the key.
fn found<T>(answer: Result<T, Failure>, op: &str) -> Result<T, StorageError> {
    answer.map_err(|e| if e.is_missing() { StorageError::NotFound } else { e.into_storage(op) })
}

impl From<Failure> for StorageError {
    fn from(failure: Failure) -> Self {
        failure.into_storage("request")
    }
}

async fn timed<T>(
    limit: Duration,
    what: &'static str,
    future: impl Future<Output = Result<T, MinioError>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(limit, future).await {
        Ok(result) => result.map_err(Failure::Minio),
        Err(_) => Err(Failure::TimedOut(what, limit)),
    }
}

fn s3_code(error: &MinioError) -> Option<MinioErrorCode> {
    match error {
        MinioError::S3Server(S3ServerError::S3Error(response)) => Some(response.code()),
        _ => None,
    }
}

/// A short, credential-free description: the S3 error code and message, or the cause chain.
fn describe(error: &MinioError) -> String {
    match error {
        MinioError::S3Server(S3ServerError::S3Error(response)) => match response.message() {
            Some(message) => format!("{}: {message}", response.code()),
            None => response.code().to_string(),
        },
        MinioError::S3Server(S3ServerError::HttpError(status, _)) => {
            format!("HTTP status {status}")
        }
        MinioError::S3Server(S3ServerError::InvalidServerResponse { http_status_code, .. }) => {
            format!("invalid server response (HTTP status {http_status_code})")
        }
        // The top-level messages ("Validation error occurred") say little; the causes do.
        MinioError::Validation(e) => chain(e),
        MinioError::Network(e) => chain(e),
        MinioError::DriveIo(e) => chain(e),
    }
}
