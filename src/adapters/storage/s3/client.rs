//! [`BlobStorage`] on Amazon S3 or an S3-compatible server, through `aws-sdk-s3`.
//!
//! Keys are used as object keys unchanged; a leading `/` is kept (S3 stores the key
//! `/environments/dev/...` as given, distinct from `environments/dev/...`).

use secrecy::ExposeSecret;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream as S3Body, Length};
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use futures::StreamExt;

use crate::ports::storage::{Blob, BlobSource, BlobStorage, Stat, StorageError};

use super::S3Settings;
use crate::adapters::storage::remote::{chain, idle_timeout, truncate};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time from sending a request until the response headers arrive, per attempt. For a PUT
/// this includes sending the body, so uploads get `UPLOAD_BASE_TIMEOUT` plus one second per
/// MiB instead.
const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// All attempts of a request other than a PUT, until the response headers (a GET body
/// streams afterwards, bounded by `BODY_IDLE_TIMEOUT`).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
const UPLOAD_BASE_TIMEOUT: Duration = Duration::from_secs(20);
/// A GET body that delivers nothing for this long fails instead of hanging (the SDK's
/// stalled-stream protection usually fires first).
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts per request (connection failures and 5xx are retried with a short backoff).
const MAX_ATTEMPTS: u32 = 3;
const READ_BUFFER: usize = 256 * 1024;

/// Objects in one S3 bucket.
#[derive(Clone)]
pub struct S3Storage {
    client: Client,
    bucket: String,
    region: String,
}

impl fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Storage").field("bucket", &self.bucket).field("region", &self.region).finish_non_exhaustive()
    }
}

impl S3Storage {
    /// Builds the client from the settings alone (no environment, profile or instance
    /// metadata lookups). Makes no request.
    pub async fn new(settings: S3Settings) -> Result<Self, StorageError> {
        if settings.bucket.is_empty() {
            return Err(StorageError::Backend("S3 bucket name is empty".into()));
        }
        let credentials = Credentials::new(
            settings.access_key.expose_secret(),
            settings.secret_key.expose_secret(),
            None,
            None,
            "jade-settings",
        );
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            // S3-compatible servers mostly ignore the region, but signing needs one.
            .region(Region::new(if settings.region.is_empty() {
                "us-east-1".to_owned()
            } else {
                settings.region.clone()
            }))
            .credentials_provider(credentials)
            .timeout_config(timeouts())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(2)),
            )
            // Checksums only where S3 requires them: S3-compatible servers differ in their
            // support of the newer default (CRC32 trailers with aws-chunked bodies).
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = settings.endpoint_url.as_deref().filter(|e| !e.is_empty()) {
            config = config.endpoint_url(endpoint).force_path_style(true);
        }
        tracing::debug!(
            bucket = %settings.bucket,
            region = %settings.region,
            endpoint = ?settings.endpoint_url,
            "s3 storage configured"
        );
        Ok(S3Storage { client: Client::from_conf(config.build()), bucket: settings.bucket, region: settings.region })
    }

    /// Creates the bucket when it does not exist yet.
    pub async fn ensure_bucket(&self) -> Result<(), StorageError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => return Ok(()),
            Err(e) if http_status(&e) == Some(404) => {}
            Err(e) => return Err(backend("head bucket", &e)),
        }
        let mut request = self.client.create_bucket().bucket(&self.bucket);
        if self.region != "us-east-1" && !self.region.is_empty() {
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                    .build(),
            );
        }
        match request.send().await {
            Ok(_) => {
                tracing::info!(bucket = %self.bucket, "created s3 bucket");
                Ok(())
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_bucket_already_owned_by_you() || se.is_bucket_already_exists()) =>
            {
                Ok(())
            }
            Err(e) => Err(backend("create bucket", &e)),
        }
    }
}

fn check_key(key: &str) -> Result<(), StorageError> {
    if key.is_empty() {
        return Err(StorageError::InvalidKey("empty key".into()));
    }
    if key.len() > 1024 {
        return Err(StorageError::InvalidKey("key longer than 1024 bytes".into()));
    }
    Ok(())
}

fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// A PUT sends its body before the response comes: each attempt may take as long as
/// `upload`, and all attempts together twice that.
fn upload_timeouts(upload: Duration) -> TimeoutConfig {
    TimeoutConfig::builder().connect_timeout(CONNECT_TIMEOUT).read_timeout(upload).operation_timeout(upload * 2).build()
}

#[async_trait]
impl BlobStorage for S3Storage {
    async fn put(&self, key: &str, source: BlobSource) -> Result<(), StorageError> {
        check_key(key)?;
        let len = source.len();
        let body = match source {
            BlobSource::Bytes(bytes) => S3Body::from(bytes),
            // Streams the file (re-opened on a retry); S3 takes up to 5 GiB in one PUT.
            BlobSource::File { path, len } => S3Body::read_from()
                .path(&path)
                .length(Length::Exact(len))
                .buffer_size(READ_BUFFER)
                .build()
                .await
                .map_err(|e| StorageError::Backend(format!("cannot open upload file: {e}")))?,
        };
        let upload_timeout = UPLOAD_BASE_TIMEOUT + Duration::from_secs(len / (1024 * 1024));
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(len as i64)
            .body(body)
            .customize()
            .config_override(aws_sdk_s3::Config::builder().timeout_config(upload_timeouts(upload_timeout)))
            .send()
            .await
            .map_err(|e| backend("put", &e))?;
        tracing::debug!(key, len, "stored object in s3");
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Blob, StorageError> {
        check_key(key)?;
        let output = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(output) => output,
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => {
                return Err(StorageError::NotFound);
            }
            Err(e) => return Err(backend("get", &e)),
        };
        let len = output.content_length().and_then(|l| u64::try_from(l).ok());
        let body = futures::stream::unfold(output.body, |mut body| async move {
            match body.next().await {
                Some(Ok(chunk)) => Some((Ok(chunk), body)),
                Some(Err(e)) => Some((Err(std::io::Error::other(truncate(format!("s3 body: {}", chain(&e))))), body)),
                None => None,
            }
        });
        Ok(Blob { len, body: idle_timeout(body.boxed(), BODY_IDLE_TIMEOUT, "s3") })
    }

    async fn stat(&self, key: &str) -> Result<Stat, StorageError> {
        check_key(key)?;
        let output = match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(output) => output,
            // A HEAD answer has no body, so no error code: its 404 is the object missing.
            Err(e) if e.as_service_error().is_some_and(|se| se.is_not_found()) || http_status(&e) == Some(404) => {
                return Err(StorageError::NotFound);
            }
            Err(e) => return Err(backend("head", &e)),
        };
        let len = output.content_length().and_then(|l| u64::try_from(l).ok()).unwrap_or_default();
        let version = match (output.e_tag(), output.last_modified()) {
            (Some(etag), _) => etag.trim_matches('"').to_owned(),
            (None, Some(modified)) => format!("{len}-{modified}"),
            (None, None) => return Err(StorageError::Backend("s3 head: the object has no ETag".into())),
        };
        Ok(Stat { len, version })
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        match self.client.delete_object().bucket(&self.bucket).key(key).send().await {
            Ok(_) => Ok(()),
            // S3 answers 204 for a missing object; be lenient with servers that say 404.
            Err(e) if e.code() == Some("NoSuchKey") => Ok(()),
            Err(e) => Err(backend("delete", &e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        check_key(prefix)?;
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| backend("list", &e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|object| object.key()?.strip_prefix(prefix))
                    .filter(|key| !key.is_empty())
                    .map(str::to_owned),
            );
        }
        keys.sort();
        Ok(keys)
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.client.head_bucket().bucket(&self.bucket).send().await.map_err(|e| backend("head bucket", &e))?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "s3"
    }
}

fn http_status<E>(error: &SdkError<E, HttpResponse>) -> Option<u16> {
    error.raw_response().map(|r| r.status().as_u16())
}

/// Maps an SDK error to a short `Backend` message: the service's error code and message
/// when the server answered, the cause chain (e.g. `connection refused`) when it did not.
fn backend<E>(op: &str, error: &SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    let message = match error {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let err = service.err();
            match (err.code(), err.message()) {
                (Some(code), Some(message)) => format!("{code}: {message} (HTTP {status})"),
                (Some(code), None) => format!("{code} (HTTP {status})"),
                _ => format!("HTTP {status}"),
            }
        }
        other => chain(other),
    };
    tracing::debug!(op, error = %message, "s3 request failed");
    StorageError::Backend(truncate(format!("s3 {op}: {message}")))
}
