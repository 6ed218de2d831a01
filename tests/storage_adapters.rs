//! One behaviour suite for every object-storage adapter, run against real servers:
//! `moto_server` (S3 API) for the minio and s3 adapters, Azurite for the blob adapter, a
//! temporary directory for fs.
//!
//! The servers are started per test on free loopback ports (`support/servers.rs`); a missing
//! server binary fails the test, it is never skipped.

#![allow(dead_code)]

#[path = "support/servers.rs"]
mod servers;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use jade::ports::storage::{BlobSource, BlobStorage, StorageError};
use servers::*;

/// The secret every test configures; no error message may contain it.
const SECRET_KEY: &str = "jade-test-secret-Zq9xW3v";
const ACCESS_KEY: &str = "jade-test-access";
/// How long a failing call may take once its server is gone.
const FAIL_FAST: Duration = Duration::from_secs(10);
/// A body larger than every adapter's single-request / part / block size.
const BIG_LEN: usize = 20 * 1024 * 1024 + 4321;

// ------------------------------------------------------------------------------------------
// The shared suite
// ------------------------------------------------------------------------------------------

/// Deterministic, incompressible test data.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn write_file(dir: &Path, name: &str, data: &[u8]) -> BlobSource {
    let path = dir.join(name);
    std::fs::write(&path, data).expect("write upload file");
    BlobSource::File { path, len: data.len() as u64 }
}

/// Reads the object back: its bytes and how many chunks they came in.
async fn read(storage: &dyn BlobStorage, key: &str) -> Result<(Vec<u8>, usize), StorageError> {
    let blob = storage.get(key).await?;
    let mut body = blob.body;
    let mut data = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("{key}: body failed: {e}"));
        chunks += 1;
        data.extend_from_slice(&chunk);
    }
    if let Some(len) = blob.len {
        assert_eq!(len, data.len() as u64, "{key}: reported length");
    }
    Ok((data, chunks))
}

async fn assert_content(storage: &dyn BlobStorage, key: &str, expected: &[u8]) -> usize {
    let (data, chunks) = read(storage, key).await.unwrap_or_else(|e| panic!("{}: get {key}: {e}", storage.backend()));
    assert!(
        data.len() == expected.len() && data == expected,
        "{}: {key}: got {} bytes, expected {} (contents differ)",
        storage.backend(),
        data.len(),
        expected.len()
    );
    chunks
}

async fn assert_not_found(storage: &dyn BlobStorage, key: &str) {
    match storage.get(key).await {
        Err(StorageError::NotFound) => {}
        Err(e) => panic!("{}: get {key}: expected NotFound, got {e:?}", storage.backend()),
        Ok(_) => panic!("{}: get {key}: expected NotFound, got a body", storage.backend()),
    }
}

async fn put(storage: &dyn BlobStorage, key: &str, source: BlobSource) {
    storage.put(key, source).await.unwrap_or_else(|e| panic!("{}: put {key}: {e}", storage.backend()));
}

async fn delete(storage: &dyn BlobStorage, key: &str) {
    storage.delete(key).await.unwrap_or_else(|e| panic!("{}: delete {key}: {e}", storage.backend()));
}

/// What every adapter must do.
async fn behaviour_suite(storage: &dyn BlobStorage) {
    let name = storage.backend();
    let files = tempfile::tempdir().expect("tempdir");
    storage.ping().await.unwrap_or_else(|e| panic!("{name}: ping: {e}"));

    // Missing objects.
    assert_not_found(storage, "accounts/1/environments/dev/manifests/404/manifest.json").await;
    delete(storage, "accounts/1/environments/dev/manifests/404/manifest.json").await;

    // Bytes round trip, overwrite, delete, delete again.
    let key = "accounts/1/environments/dev/manifests/7/manifest.json";
    put(storage, key, BlobSource::Bytes(Bytes::from_static(b"{\"v\":1}"))).await;
    assert_content(storage, key, b"{\"v\":1}").await;
    let second = pattern(3000, 7);
    put(storage, key, BlobSource::Bytes(Bytes::from(second.clone()))).await;
    assert_content(storage, key, &second).await;
    let shorter = b"short".to_vec();
    put(storage, key, write_file(files.path(), "short", &shorter)).await;
    assert_content(storage, key, &shorter).await;
    delete(storage, key).await;
    assert_not_found(storage, key).await;
    delete(storage, key).await;

    stat(storage).await;

    // Empty body.
    let key = "accounts/1/empty.json";
    put(storage, key, BlobSource::Bytes(Bytes::new())).await;
    assert_content(storage, key, b"").await;
    put(storage, key, write_file(files.path(), "empty", b"")).await;
    assert_content(storage, key, b"").await;
    delete(storage, key).await;

    // A small file source.
    let key = "accounts/1/environments/dev/files/tag/small.json";
    let small = pattern(1234, 3);
    put(storage, key, write_file(files.path(), "small", &small)).await;
    assert_content(storage, key, &small).await;
    delete(storage, key).await;

    // A multi-megabyte file, compared byte for byte; it must come back in several chunks.
    let key = "accounts/1/environments/dev/files/tag/big.bin";
    let big = pattern(BIG_LEN, 11);
    let started = Instant::now();
    put(storage, key, write_file(files.path(), "big", &big)).await;
    let put_ms = started.elapsed().as_millis();
    let started = Instant::now();
    let chunks = assert_content(storage, key, &big).await;
    eprintln!(
        "{name}: {} MiB file put in {put_ms} ms, read back in {} ms as {chunks} chunks",
        BIG_LEN >> 20,
        started.elapsed().as_millis()
    );
    assert!(chunks > 1, "{name}: the body came as one chunk");
    // Overwrite the big object with a big in-memory body of another size.
    let big2 = pattern(9 * 1024 * 1024 + 17, 12);
    put(storage, key, BlobSource::Bytes(Bytes::from(big2.clone()))).await;
    assert_content(storage, key, &big2).await;
    delete(storage, key).await;
    assert_not_found(storage, key).await;

    // Keys as the domain builds them: leading `/`, spaces, dashes, dots, unicode.
    for key in [
        "/environments/dev/files/t/a.json",
        "/environments/dev-2/files/my tag/some file-name v1.2.json",
        "accounts/1/environments/dev-ops/files/tag with space/näme-ü.json",
    ] {
        let body = pattern(100 + key.len(), key.len() as u64);
        put(storage, key, BlobSource::Bytes(Bytes::from(body.clone()))).await;
        assert_content(storage, key, &body).await;
        delete(storage, key).await;
        assert_not_found(storage, key).await;
    }

    listing(storage).await;
}

/// `stat(key)`: the size and a version from metadata alone; a put of other bytes changes the
/// version, reading does not; a missing key is `NotFound`.
async fn stat(storage: &dyn BlobStorage) {
    let name = storage.backend();
    let files = tempfile::tempdir().expect("tempdir");
    let key = "/environments/dev/files/t/stat me.json";
    match storage.stat(key).await {
        Err(StorageError::NotFound) => {}
        other => panic!("{name}: stat of a missing key: {other:?}"),
    }
    let stat = |what: &'static str| async move {
        storage.stat(key).await.unwrap_or_else(|e| panic!("{name}: stat {what}: {e}"))
    };
    put(storage, key, BlobSource::Bytes(Bytes::from_static(b"{\"v\":1}"))).await;
    let first = stat("after a put").await;
    assert_eq!(first.len, 7, "{name}");
    assert!(!first.version.is_empty(), "{name}: an empty version");
    assert_content(storage, key, b"{\"v\":1}").await;
    assert_eq!(stat("after a read").await, first, "{name}: a read changed the version");
    // Other bytes of the same size, then of another size from a file.
    put(storage, key, BlobSource::Bytes(Bytes::from_static(b"{\"v\":2}"))).await;
    let second = stat("after a second put").await;
    assert_eq!(second.len, 7, "{name}");
    assert_ne!(second.version, first.version, "{name}: the version did not change with the bytes");
    let body = pattern(5000, 9);
    put(storage, key, write_file(files.path(), "stat", &body)).await;
    let third = stat("after a put of a file").await;
    assert_eq!(third.len, 5000, "{name}");
    assert!(third.version != first.version && third.version != second.version, "{name}");
    delete(storage, key).await;
    match storage.stat(key).await {
        Err(StorageError::NotFound) => {}
        other => panic!("{name}: stat after delete: {other:?}"),
    }
}

/// `list(prefix)`: every key below the prefix, relative to it, sorted; nested keys included,
/// a sibling whose name merely starts like the prefix left out; an empty prefix is empty.
async fn listing(storage: &dyn BlobStorage) {
    let name = storage.backend();
    let run = "accounts/1/environments/dev/dags/d/dag_runs/r-1/";
    let keys = ["run_results.json", "manifest.json", "compiled/a/b.sql", "compiled/a/c d.sql", "catalog.json"];
    for key in keys {
        put(storage, &format!("{run}{key}"), BlobSource::Bytes(Bytes::from(key.as_bytes().to_vec()))).await;
    }
    let sibling = "accounts/1/environments/dev/dags/d/dag_runs/r-10/other.json";
    put(storage, sibling, BlobSource::Bytes(Bytes::from_static(b"x"))).await;
    let listed = storage.list(run).await.unwrap_or_else(|e| panic!("{name}: list: {e}"));
    let mut expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected, "{name}: list {run}");
    // A re-put lists once.
    put(storage, &format!("{run}catalog.json"), BlobSource::Bytes(Bytes::from_static(b"again"))).await;
    assert_eq!(storage.list(run).await.unwrap(), expected, "{name}: list after a re-put");
    let empty = storage.list("accounts/1/environments/dev/dags/d/dag_runs/none/").await;
    assert_eq!(empty.unwrap_or_else(|e| panic!("{name}: list of nothing: {e}")), Vec::<String>::new());
    // A key with a leading `/` lists under a prefix with one.
    put(storage, "/environments/dev/files/t/a.json", BlobSource::Bytes(Bytes::from_static(b"a"))).await;
    assert_eq!(storage.list("/environments/dev/files/t/").await.unwrap(), ["a.json"], "{name}: leading /");
    delete(storage, "/environments/dev/files/t/a.json").await;
    for key in keys {
        delete(storage, &format!("{run}{key}")).await;
    }
    delete(storage, sibling).await;
    assert_eq!(storage.list(run).await.unwrap(), Vec::<String>::new(), "{name}: list after deleting");
}

/// What the remote adapters must do beyond the suite: refuse an empty key, keep secrets out
/// of `Debug` (secrecy redacts them).
async fn remote_extras(storage: &dyn BlobStorage, settings_debug: &str) {
    assert!(
        !settings_debug.contains(SECRET_KEY) && settings_debug.contains("[REDACTED]"),
        "settings Debug shows the secret: {settings_debug}"
    );
    match storage.put("", BlobSource::Bytes(Bytes::from_static(b"x"))).await {
        Err(StorageError::InvalidKey(_)) => {}
        other => panic!("{}: put of empty key: {other:?}", storage.backend()),
    }
}

/// Stores an object, kills the server, then every call must fail with `Backend` quickly
/// and without the secret in its message.
async fn server_stopped(storage: &dyn BlobStorage, server: &mut Server, secret: &str) {
    let name = storage.backend();
    let files = tempfile::tempdir().expect("tempdir");
    let key = "/environments/dev/files/t/stopped.json";
    put(storage, key, BlobSource::Bytes(Bytes::from_static(b"before"))).await;
    assert_content(storage, key, b"before").await;
    server.kill();

    let file = write_file(files.path(), "after", &pattern(2 * 1024 * 1024, 5));
    let calls: Vec<(&str, futures::future::BoxFuture<'_, Result<(), StorageError>>)> = vec![
        ("put bytes", Box::pin(storage.put(key, BlobSource::Bytes(Bytes::from_static(b"after"))))),
        ("put file", Box::pin(storage.put(key, file))),
        ("get", Box::pin(async { storage.get(key).await.map(|_| ()) })),
        ("stat", Box::pin(async { storage.stat(key).await.map(|_| ()) })),
        ("delete", Box::pin(storage.delete(key))),
        ("list", Box::pin(async { storage.list("/environments/dev/files/t/").await.map(|_| ()) })),
        ("ping", Box::pin(storage.ping())),
    ];
    for (op, call) in calls {
        let started = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(60), call)
            .await
            .unwrap_or_else(|_| panic!("{name}: {op} hung after the server stopped"));
        let took = started.elapsed();
        match result {
            Err(StorageError::Backend(message)) => {
                eprintln!("{name}: {op} after stop: {} ms: {message}", took.as_millis());
                assert!(!message.contains(secret), "{name}: {op}: secret in {message}");
                assert!(message.len() < 1000, "{name}: {op}: message too long: {message}");
            }
            other => {
                panic!("{name}: {op} after the server stopped: expected Backend, got {other:?}")
            }
        }
        assert!(took < FAIL_FAST, "{name}: {op} took {took:?} to fail after the server stopped");
    }
}

// ------------------------------------------------------------------------------------------
// Backends
// ------------------------------------------------------------------------------------------

#[cfg(feature = "storage-fs")]
mod fs {
    use super::*;
    use jade::adapters::storage::fs::FsStorage;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fs_behaviour() {
        let root = tempfile::tempdir().expect("tempdir");
        let storage = FsStorage::new(root.path().join("store")).expect("FsStorage::new");
        behaviour_suite(&storage).await;
        // Its root gone: not ready.
        std::fs::remove_dir_all(root.path().join("store")).unwrap();
        assert!(matches!(storage.ping().await, Err(StorageError::Backend(_))));
    }
}

/// Lists the keys in a bucket of the moto server (it answers unsigned requests).
#[cfg(any(feature = "storage-minio", feature = "storage-s3"))]
async fn moto_keys(server: &Server, bucket: &str) -> Vec<String> {
    let xml = reqwest::get(format!("{}/{bucket}?list-type=2", server.url()))
        .await
        .and_then(|r| r.error_for_status())
        .expect("list objects")
        .text()
        .await
        .expect("list objects body");
    xml.split("<Key>").skip(1).filter_map(|part| part.split("</Key>").next()).map(str::to_string).collect()
}

#[cfg(feature = "storage-minio")]
mod minio {
    use super::*;
    use jade::adapters::storage::minio::{MinioSettings, MinioStorage};

    const BUCKET: &str = "jade-minio-test";

    async fn storage(server: &Server) -> (MinioStorage, String) {
        let settings = MinioSettings {
            url: server.url(),
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
            bucket: BUCKET.into(),
        };
        let debug = format!("{settings:?}");
        let storage = MinioStorage::new(settings).await.expect("MinioStorage::new");
        storage.ensure_bucket().await.expect("ensure_bucket");
        storage.ensure_bucket().await.expect("ensure_bucket twice");
        (storage, debug)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn minio_behaviour() {
        let server = start_moto();
        let (storage, debug) = storage(&server).await;
        assert_eq!(storage.backend(), "minio");
        remote_extras(&storage, &debug).await;
        behaviour_suite(&storage).await;
    }

    /// The `minio` crate drops a leading `/`: `/a/b` and `a/b` are one object, stored as `a/b`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn minio_leading_slash() {
        let server = start_moto();
        let (storage, _) = storage(&server).await;
        put(&storage, "/environments/dev/files/t/a.json", BlobSource::Bytes(Bytes::from_static(b"a"))).await;
        assert_eq!(moto_keys(&server, BUCKET).await, ["environments/dev/files/t/a.json"]);
        assert_content(&storage, "environments/dev/files/t/a.json", b"a").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn minio_server_stopped() {
        let mut server = start_moto();
        let (storage, _) = storage(&server).await;
        server_stopped(&storage, &mut server, SECRET_KEY).await;
    }
}

#[cfg(feature = "storage-s3")]
mod s3 {
    use super::*;
    use jade::adapters::storage::s3::{S3Settings, S3Storage};

    const BUCKET: &str = "jade-s3-test";

    async fn storage(server: &Server) -> (S3Storage, String) {
        let settings = S3Settings {
            bucket: BUCKET.into(),
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
            region: "eu-west-1".into(),
            endpoint_url: Some(server.url()),
        };
        let debug = format!("{settings:?}");
        let storage = S3Storage::new(settings).await.expect("S3Storage::new");
        storage.ensure_bucket().await.expect("ensure_bucket");
        storage.ensure_bucket().await.expect("ensure_bucket twice");
        (storage, debug)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn s3_behaviour() {
        let server = start_moto();
        let (storage, debug) = storage(&server).await;
        assert_eq!(storage.backend(), "s3");
        remote_extras(&storage, &debug).await;
        behaviour_suite(&storage).await;
    }

    /// `aws-sdk-s3` keeps a leading `/`: `/a/b` is stored as `/a/b`, distinct from `a/b`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn s3_leading_slash() {
        let server = start_moto();
        let (storage, _) = storage(&server).await;
        put(&storage, "/environments/dev/files/t/a.json", BlobSource::Bytes(Bytes::from_static(b"a"))).await;
        assert_eq!(moto_keys(&server, BUCKET).await, ["/environments/dev/files/t/a.json"]);
        assert_not_found(&storage, "environments/dev/files/t/a.json").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn s3_server_stopped() {
        let mut server = start_moto();
        let (storage, _) = storage(&server).await;
        server_stopped(&storage, &mut server, SECRET_KEY).await;
    }
}

#[cfg(feature = "storage-blob")]
mod blob {
    use super::*;
    use jade::adapters::storage::blob::{AzureBlobStorage, BlobConnection, BlobSettings};

    async fn storage(server: &Server) -> (AzureBlobStorage, String) {
        let connection_string = azurite_connection_string(server);
        let settings = BlobSettings {
            container: "jade-blob-test".into(),
            connection: BlobConnection::ConnectionString(connection_string.into()),
        };
        let debug = format!("{settings:?}");
        assert!(!debug.contains(AZURITE_KEY), "settings Debug shows the key: {debug}");
        let storage = AzureBlobStorage::new(settings).await.expect("AzureBlobStorage::new");
        storage.ensure_bucket().await.expect("ensure_bucket");
        storage.ensure_bucket().await.expect("ensure_bucket twice");
        (storage, debug)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blob_behaviour() {
        let server = start_azurite();
        let (storage, debug) = storage(&server).await;
        assert_eq!(storage.backend(), "blob");
        remote_extras(&storage, &debug).await;
        behaviour_suite(&storage).await;
    }

    /// A leading `/` is dropped: `/a/b` and `a/b` are one blob.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blob_leading_slash() {
        let server = start_azurite();
        let (storage, _) = storage(&server).await;
        put(&storage, "/environments/dev/files/t/a.json", BlobSource::Bytes(Bytes::from_static(b"a"))).await;
        assert_content(&storage, "environments/dev/files/t/a.json", b"a").await;
        delete(&storage, "environments/dev/files/t/a.json").await;
        assert_not_found(&storage, "/environments/dev/files/t/a.json").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blob_server_stopped() {
        let mut server = start_azurite();
        let (storage, _) = storage(&server).await;
        server_stopped(&storage, &mut server, AZURITE_KEY).await;
    }

    #[tokio::test]
    async fn blob_settings_are_checked_without_leaking() {
        // Malformed: the parser's own message would quote the key.
        let settings = BlobSettings {
            container: "c".into(),
            connection: BlobConnection::ConnectionString(format!("AccountKey={AZURITE_KEY};junk").into()),
        };
        match AzureBlobStorage::new(settings).await {
            Err(StorageError::Backend(message)) => assert!(!message.contains(AZURITE_KEY)),
            other => panic!("malformed connection string: {other:?}"),
        }
        // Account + key builds a client for the public cloud without any request.
        let settings = BlobSettings {
            container: "c".into(),
            connection: BlobConnection::AccountKey { account: "jadeaccount".into(), key: AZURITE_KEY.into() },
        };
        assert!(!format!("{settings:?}").contains(AZURITE_KEY));
        AzureBlobStorage::new(settings).await.expect("account + key");
    }
}
