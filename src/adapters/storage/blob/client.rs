//! [`BlobStorage`] on Azure Blob Storage (or Azurite), through `azure_storage_blobs`.
//!
//! A key maps to a block blob named like the key minus one leading `/`
//! (`/environments/dev/files/t/a.json` → `environments/dev/files/t/a.json`), as the first
//! Jade did. Bodies up to [`BLOCK_SIZE`] go in one `Put Blob`; larger ones are read in
//! blocks of that size, sent with `Put Block` and committed with one `Put Block List`, so
//! a failed upload leaves the previous blob untouched.

use secrecy::ExposeSecret;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::prelude::{IfMatchCondition, Range};
use azure_core::{
    ClientOptions, Context, ExponentialRetryOptions, Policy, PolicyResult, Request, RetryOptions, StatusCode,
};
use azure_storage::{CloudLocation, ConnectionString, StorageCredentials};
use azure_storage_blobs::prelude::{BlobBlockType, BlobClient, BlockId, BlockList, ClientBuilder, ContainerClient};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncReadExt;

use crate::ports::storage::{Blob, BlobSource, BlobStorage, Stat, StorageError};

use super::{BlobConnection, BlobSettings};
use crate::adapters::storage::remote::{chain, idle_timeout, truncate};

/// Largest body sent in one request, and the block size of larger uploads (one block is
/// held in memory at a time).
pub const BLOCK_SIZE: u64 = 8 * 1024 * 1024;
/// Size of the ranged GETs a download is split into.
const GET_CHUNK: u64 = 8 * 1024 * 1024;
/// Per-attempt bound on a request until its response headers arrive (the SDK's HTTP client
/// has no connect or read timeout): this much plus one second per 256 KiB of request body.
const ATTEMPT_BASE_TIMEOUT: Duration = Duration::from_secs(20);
/// A GET body that delivers nothing for this long fails instead of hanging.
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Blobs in one container.
#[derive(Clone)]
pub struct AzureBlobStorage {
    container: ContainerClient,
}

impl fmt::Debug for AzureBlobStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureBlobStorage").field("container", &self.container.container_name()).finish_non_exhaustive()
    }
}

impl AzureBlobStorage {
    /// Builds the client. Makes no request: an unreachable service shows on first use.
    pub async fn new(settings: BlobSettings) -> Result<Self, StorageError> {
        if settings.container.is_empty() {
            return Err(StorageError::Backend("blob container name is empty".into()));
        }
        let (location, credentials) = match &settings.connection {
            BlobConnection::ConnectionString(connection_string) => {
                parse_connection_string(connection_string.expose_secret())?
            }
            BlobConnection::AccountKey { account, key } => (
                CloudLocation::Public { account: account.clone() },
                StorageCredentials::access_key(account.clone(), key.expose_secret().to_owned()),
            ),
        };
        tracing::debug!(
            account = %location.account(),
            container = %settings.container,
            custom_endpoint = matches!(location, CloudLocation::Custom { .. }),
            "blob storage configured"
        );
        let options = ClientOptions::default()
            .retry(RetryOptions::exponential(
                ExponentialRetryOptions::default()
                    .max_retries(2u32)
                    .initial_delay(Duration::from_millis(200))
                    .max_delay(Duration::from_secs(2))
                    .max_total_elapsed(Duration::from_secs(10)),
            ))
            .per_retry_policies(vec![Arc::new(AttemptTimeout) as Arc<dyn Policy>]);
        let container = ClientBuilder::with_location(location, credentials)
            .client_options(options)
            .container_client(settings.container);
        Ok(AzureBlobStorage { container })
    }

    /// Creates the container when it does not exist yet.
    pub async fn ensure_bucket(&self) -> Result<(), StorageError> {
        match self.container.create().await {
            Ok(_) => {
                tracing::info!(container = %self.container.container_name(), "created blob container");
                Ok(())
            }
            Err(e) if matches!(e.kind(), ErrorKind::HttpResponse { error_code: Some(code), .. } if code == "ContainerAlreadyExists") => {
                Ok(())
            }
            Err(e) => Err(backend("create container", &e)),
        }
    }

    fn blob_client(&self, key: &str) -> Result<BlobClient, StorageError> {
        let name = key.strip_prefix('/').unwrap_or(key);
        if name.is_empty() {
            return Err(StorageError::InvalidKey("empty key".into()));
        }
        if name.len() > 1024 {
            return Err(StorageError::InvalidKey("key longer than 1024 bytes".into()));
        }
        Ok(self.container.blob_client(name))
    }

    async fn put_blocks_from_file(blob: &BlobClient, path: &std::path::Path, len: u64) -> Result<(), StorageError> {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| StorageError::Backend(format!("cannot open upload file: {e}")))?;
        let upload = uuid::Uuid::new_v4().simple().to_string();
        let mut blocks = Vec::new();
        let mut sent = 0u64;
        while sent < len {
            let want = (len - sent).min(BLOCK_SIZE);
            let mut buffer = Vec::with_capacity(want as usize);
            (&mut file)
                .take(want)
                .read_to_end(&mut buffer)
                .await
                .map_err(|e| StorageError::Backend(format!("cannot read upload file: {e}")))?;
            if buffer.len() as u64 != want {
                return Err(StorageError::Backend("upload file is shorter than its stated length".into()));
            }
            sent += want;
            blocks.push(Self::put_block(blob, &upload, blocks.len(), Bytes::from(buffer)).await?);
        }
        Self::commit(blob, blocks).await
    }

    async fn put_blocks_from_bytes(blob: &BlobClient, bytes: Bytes) -> Result<(), StorageError> {
        let upload = uuid::Uuid::new_v4().simple().to_string();
        let mut blocks = Vec::new();
        for start in (0..bytes.len()).step_by(BLOCK_SIZE as usize) {
            let end = (start + BLOCK_SIZE as usize).min(bytes.len());
            blocks.push(Self::put_block(blob, &upload, blocks.len(), bytes.slice(start..end)).await?);
        }
        Self::commit(blob, blocks).await
    }

    async fn put_block(blob: &BlobClient, upload: &str, index: usize, body: Bytes) -> Result<BlockId, StorageError> {
        // Same length for every block of a blob, unique per upload so that concurrent
        // uploads to one key do not overwrite each other's uncommitted blocks.
        let id = BlockId::new(format!("{upload}-{index:08}"));
        blob.put_block(id.clone(), body).await.map_err(|e| backend("put block", &e))?;
        Ok(id)
    }

    async fn commit(blob: &BlobClient, blocks: Vec<BlockId>) -> Result<(), StorageError> {
        let list = BlockList { blocks: blocks.into_iter().map(BlobBlockType::Uncommitted).collect() };
        blob.put_block_list(list).await.map_err(|e| backend("put block list", &e))?;
        Ok(())
    }
}

fn parse_connection_string(connection_string: &str) -> Result<(CloudLocation, StorageCredentials), StorageError> {
    // The parser's messages quote the whole string, key included: never pass them on.
    let parsed = ConnectionString::new(connection_string)
        .map_err(|_| StorageError::Backend("invalid Azure storage connection string".into()))?;
    if parsed.use_development_storage == Some(true) {
        return Ok((
            CloudLocation::Emulator { address: "127.0.0.1".into(), port: 10000 },
            StorageCredentials::emulator(),
        ));
    }
    let credentials = parsed.storage_credentials().map_err(|_| {
        StorageError::Backend(
            "Azure storage connection string has neither AccountName+AccountKey nor SharedAccessSignature".into(),
        )
    })?;
    let account = parsed.account_name.unwrap_or_default().to_owned();
    let location = match (parsed.blob_endpoint, parsed.endpoint_suffix) {
        (Some(endpoint), _) => CloudLocation::Custom { account, uri: endpoint.trim_end_matches('/').to_owned() },
        _ if account.is_empty() => {
            return Err(StorageError::Backend(
                "Azure storage connection string has neither AccountName nor BlobEndpoint".into(),
            ));
        }
        (None, None | Some("core.windows.net")) => CloudLocation::Public { account },
        (None, Some(suffix)) => {
            let protocol = parsed.default_endpoints_protocol.map(|p| p.to_string()).unwrap_or_else(|| "https".into());
            CloudLocation::Custom { uri: format!("{protocol}://{account}.blob.{suffix}"), account }
        }
    };
    Ok((location, credentials))
}

#[async_trait]
impl BlobStorage for AzureBlobStorage {
    async fn put(&self, key: &str, source: BlobSource) -> Result<(), StorageError> {
        let blob = self.blob_client(key)?;
        let len = source.len();
        match source {
            BlobSource::Bytes(bytes) if len <= BLOCK_SIZE => {
                blob.put_block_blob(bytes).await.map_err(|e| backend("put", &e))?;
            }
            BlobSource::Bytes(bytes) => Self::put_blocks_from_bytes(&blob, bytes).await?,
            BlobSource::File { path, len } if len <= BLOCK_SIZE => {
                let bytes = tokio::fs::read(&path)
                    .await
                    .map_err(|e| StorageError::Backend(format!("cannot read upload file: {e}")))?;
                if bytes.len() as u64 != len {
                    return Err(StorageError::Backend("upload file size differs from its stated length".into()));
                }
                blob.put_block_blob(bytes).await.map_err(|e| backend("put", &e))?;
            }
            BlobSource::File { path, len } => Self::put_blocks_from_file(&blob, &path, len).await?,
        }
        tracing::debug!(key, len, "stored blob");
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Blob, StorageError> {
        let blob = self.blob_client(key)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let properties = match blob.get_properties().await {
                Ok(response) => response.blob.properties,
                Err(e) if is_blob_not_found(&e) => return Err(StorageError::NotFound),
                Err(e) => return Err(backend("get properties", &e)),
            };
            let len = properties.content_length;
            if len == 0 {
                return Ok(Blob { len: Some(0), body: futures::stream::empty().boxed() });
            }
            // Every range request is pinned to the version seen above: when the blob is
            // replaced mid-download the stream fails (412) instead of mixing two bodies.
            let mut pages = blob
                .get()
                .range(Range::new(0, len))
                .if_match(IfMatchCondition::Match(properties.etag.to_string()))
                .chunk_size(GET_CHUNK)
                .into_stream();
            // Fetch the first range now, so that failures show before the caller sends anything.
            let first = match pages.next().await {
                Some(Ok(page)) => page,
                Some(Err(e)) if is_blob_not_found(&e) => return Err(StorageError::NotFound),
                // Replaced between the two requests: look again.
                Some(Err(e)) if http_status(&e) == Some(412) && attempt < 3 => continue,
                Some(Err(e)) => return Err(backend("get", &e)),
                None => return Err(StorageError::Backend("blob get: empty response".into())),
            };
            let chunks = futures::stream::once(async move { Ok(first) })
                .chain(pages)
                .map_ok(|page| page.data)
                .try_flatten()
                .map_err(|e| std::io::Error::other(truncate(format!("blob body: {}", describe(&e)))));
            return Ok(Blob { len: Some(len), body: idle_timeout(chunks.boxed(), BODY_IDLE_TIMEOUT, "blob") });
        }
    }

    async fn stat(&self, key: &str) -> Result<Stat, StorageError> {
        let blob = self.blob_client(key)?;
        match blob.get_properties().await {
            Ok(response) => {
                let properties = response.blob.properties;
                let version = properties.etag.to_string().trim_matches('"').to_owned();
                Ok(Stat { len: properties.content_length, version })
            }
            Err(e) if is_blob_not_found(&e) => Err(StorageError::NotFound),
            Err(e) => Err(backend("get properties", &e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let blob = self.blob_client(key)?;
        match blob.delete().await {
            Ok(_) => Ok(()),
            Err(e) if is_blob_not_found(&e) => Ok(()),
            Err(e) => Err(backend("delete", &e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        // Blob names carry no leading `/` (see the module docs).
        let prefix = prefix.strip_prefix('/').unwrap_or(prefix);
        if prefix.is_empty() {
            return Err(StorageError::InvalidKey("empty prefix".into()));
        }
        let mut pages = self.container.list_blobs().prefix(prefix.to_owned()).into_stream();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| backend("list", &e))?;
            keys.extend(page.blobs.blobs().filter_map(|blob| blob.name.strip_prefix(prefix)).map(str::to_owned));
        }
        keys.sort();
        Ok(keys)
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.container.get_properties().await.map_err(|e| backend("container properties", &e))?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "blob"
    }
}

/// Fails an attempt (connect, send, until the response headers) that takes too long; the
/// HTTP client the SDK builds has no timeouts of its own.
#[derive(Debug)]
struct AttemptTimeout;

#[async_trait]
impl Policy for AttemptTimeout {
    async fn send(&self, ctx: &Context, request: &mut Request, next: &[Arc<dyn Policy>]) -> PolicyResult {
        let body_len = match request.body() {
            azure_core::Body::Bytes(bytes) => bytes.len() as u64,
            _ => BLOCK_SIZE,
        };
        let limit = ATTEMPT_BASE_TIMEOUT + Duration::from_secs(body_len / (256 * 1024));
        match tokio::time::timeout(limit, next[0].send(ctx, request, &next[1..])).await {
            Ok(result) => result,
            // Not `Io`: a request that hung is not retried.
            Err(_) => Err(azure_core::Error::with_message(ErrorKind::Other, || {
                format!("request timed out after {}s", limit.as_secs())
            })),
        }
    }
}

fn http_status(error: &azure_core::Error) -> Option<u16> {
    match error.kind() {
        ErrorKind::HttpResponse { status, .. } => Some(*status as u16),
        _ => None,
    }
}

/// 404 for the blob itself (a missing container is a backend failure).
fn is_blob_not_found(error: &azure_core::Error) -> bool {
    match error.kind() {
        ErrorKind::HttpResponse { status: StatusCode::NotFound, error_code } => {
            matches!(error_code.as_deref(), None | Some("BlobNotFound"))
        }
        _ => false,
    }
}

fn backend(op: &str, error: &azure_core::Error) -> StorageError {
    let message = describe(error);
    tracing::debug!(op, error = %message, "blob request failed");
    StorageError::Backend(truncate(format!("blob {op}: {message}")))
}

/// A short message: status and error code (never the full response dump), or the cause
/// chain, with URLs cut to their host (a query may hold a SAS token).
fn describe(error: &azure_core::Error) -> String {
    match error.kind() {
        ErrorKind::HttpResponse { status, error_code } => {
            let status = *status as u16;
            let summary =
                error.as_http_error().and_then(|e| e.error_message()).and_then(|m| m.lines().next()).map(str::to_owned);
            match (error_code, summary) {
                (Some(code), Some(summary)) => format!("HTTP {status} {code}: {summary}"),
                (Some(code), None) => format!("HTTP {status} {code}"),
                (None, _) => format!("HTTP {status}"),
            }
        }
        _ => chain(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_string_with_blob_endpoint_is_a_custom_location() {
        let (location, _) = parse_connection_string(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;\
             BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1/;",
        )
        .expect("parse");
        match location {
            CloudLocation::Custom { account, uri } => {
                assert_eq!(account, "devstoreaccount1");
                assert_eq!(uri, "http://127.0.0.1:10000/devstoreaccount1");
            }
            other => panic!("{other:?}"),
        }
        let (location, _) = parse_connection_string(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net",
        )
        .expect("parse");
        assert!(matches!(location, CloudLocation::Public { account } if account == "acct"));
    }
}
