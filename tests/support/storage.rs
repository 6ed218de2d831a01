//! The object storage a test's Jade writes to, and the test's own client of it.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use jade::ports::storage::{BlobSource, BlobStorage, StorageError};

use super::servers::{self, Server};

/// Which adapter Jade stores bodies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Fs,
    /// The `minio` crate against moto_server.
    Minio,
    /// `aws-sdk-s3` against moto_server (`S3_ENDPOINT_URL`).
    S3,
    /// `azure_storage_blobs` against Azurite.
    Blob,
}

const ACCESS_KEY: &str = "jade-test-access";
const SECRET_KEY: &str = "jade-test-secret-9d2Qx";
const BUCKET: &str = "jade-test";

/// Configuration variables: (name, value).
type Vars = Vec<(&'static str, String)>;

pub struct Storage {
    pub backend: Backend,
    /// The server process of a remote backend; kill it to make storage fail.
    pub server: Option<Server>,
    /// The fs backend's root (unused by the others).
    pub dir: tempfile::TempDir,
    /// A client of the same bucket, for the test's own checks.
    pub client: Arc<dyn BlobStorage>,
    /// The configuration variables that point Jade at it.
    pub vars: Vars,
}

impl Storage {
    pub async fn start(backend: Backend) -> Storage {
        let dir = tempfile::tempdir().unwrap();
        let (server, client, vars): (Option<Server>, Arc<dyn BlobStorage>, Vars) = match backend {
            Backend::Fs => {
                let client = jade::adapters::storage::fs::FsStorage::new(dir.path()).unwrap();
                let vars =
                    vec![("STORAGE_ADAPTER", "fs".into()), ("FS_STORAGE_ROOT", dir.path().display().to_string())];
                (None, Arc::new(client), vars)
            }
            Backend::Minio => {
                use jade::adapters::storage::minio::{MinioSettings, MinioStorage};
                let server = servers::start_moto();
                let settings = MinioSettings {
                    url: server.url(),
                    access_key: ACCESS_KEY.into(),
                    secret_key: SECRET_KEY.into(),
                    bucket: BUCKET.into(),
                };
                let client = MinioStorage::new(settings).await.unwrap();
                client.ensure_bucket().await.unwrap();
                let vars = vec![
                    ("STORAGE_ADAPTER", "minio".into()),
                    ("MINIO_URL", server.url()),
                    ("MINIO_ACCESS_KEY", ACCESS_KEY.into()),
                    ("MINIO_SECRET_KEY", SECRET_KEY.into()),
                    ("MINIO_BUCKET_NAME", BUCKET.into()),
                ];
                (Some(server), Arc::new(client), vars)
            }
            Backend::S3 => {
                use jade::adapters::storage::s3::{S3Settings, S3Storage};
                let server = servers::start_moto();
                let settings = S3Settings {
                    bucket: BUCKET.into(),
                    access_key: ACCESS_KEY.into(),
                    secret_key: SECRET_KEY.into(),
                    region: "us-east-1".into(),
                    endpoint_url: Some(server.url()),
                };
                let client = S3Storage::new(settings).await.unwrap();
                client.ensure_bucket().await.unwrap();
                let vars = vec![
                    ("STORAGE_ADAPTER", "s3".into()),
                    ("S3_BUCKET_NAME", BUCKET.into()),
                    ("S3_ACCESS_KEY", ACCESS_KEY.into()),
                    ("S3_SECRET_ACCESS_KEY", SECRET_KEY.into()),
                    ("S3_REGION", "us-east-1".into()),
                    ("S3_ENDPOINT_URL", server.url()),
                ];
                (Some(server), Arc::new(client), vars)
            }
            Backend::Blob => {
                use jade::adapters::storage::blob::{AzureBlobStorage, BlobConnection, BlobSettings};
                let server = servers::start_azurite();
                let connection = servers::azurite_connection_string(&server);
                let settings = BlobSettings {
                    container: BUCKET.into(),
                    connection: BlobConnection::ConnectionString(connection.clone().into()),
                };
                let client = AzureBlobStorage::new(settings).await.unwrap();
                client.ensure_bucket().await.unwrap();
                let vars = vec![
                    ("STORAGE_ADAPTER", "blob".into()),
                    ("BLOB_CONTAINER", BUCKET.into()),
                    ("BLOB_STORAGE_ACCOUNT_CONNECTION_STRING", connection),
                ];
                (Some(server), Arc::new(client), vars)
            }
        };
        Storage { backend, server, dir, client, vars }
    }

    /// The same, with Jade reaching the server through a proxy the test controls (the test's
    /// own client reaches it directly).
    pub async fn behind_proxy(backend: Backend) -> (Storage, super::proxy::Proxy) {
        let mut storage = Storage::start(backend).await;
        let direct = storage.server.as_ref().expect("a remote backend").url();
        let proxy = super::proxy::Proxy::start(direct.trim_start_matches("http://").to_owned()).await;
        for (_, value) in &mut storage.vars {
            *value = value.replace(&direct, &proxy.url());
        }
        (storage, proxy)
    }

    /// Every key stored under `prefix` (relative to it).
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        self.client.list(prefix).await.unwrap_or_else(|e| panic!("{:?}: listing {prefix}: {e}", self.backend))
    }

    /// The object under `key`, or `None`.
    pub async fn object(&self, key: &str) -> Option<Vec<u8>> {
        let blob = match self.client.get(key).await {
            Ok(blob) => blob,
            Err(StorageError::NotFound) => return None,
            Err(error) => panic!("{:?}: reading {key}: {error}", self.backend),
        };
        let mut body = blob.body;
        let mut data = Vec::new();
        while let Some(chunk) = body.next().await {
            data.extend_from_slice(&chunk.unwrap());
        }
        Some(data)
    }

    pub async fn put(&self, key: &str, body: &[u8]) {
        self.client.put(key, BlobSource::Bytes(Bytes::copy_from_slice(body))).await.unwrap();
    }

    pub async fn delete(&self, key: &str) {
        self.client.delete(key).await.unwrap();
    }

    /// Stops the backend's server: every storage call fails from now on.
    pub fn stop_server(&mut self) {
        self.server.as_mut().expect("a remote backend").kill();
    }
}
