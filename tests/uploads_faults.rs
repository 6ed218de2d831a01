//! Uploads under faults (contract §4, §9), over real HTTP, PostgreSQL and storage servers:
//! storage going away mid-body, clients going away mid-upload, more uploads than the bound,
//! readiness, and SIGTERM against the real `jade serve`. Whatever happens, no row is left
//! without its body, no body without its row, and stored files keep their bytes.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use support::seed::ACME;
use support::{Backend, Scenario, Storage, TestJade};
use tokio::io::AsyncWriteExt;

const FILES: &str = "/api/v2/datacoves/environments/dev123/files";
const ENVIRONMENT_KEYS: &str = "/environments/dev123/";

fn file(bytes: Vec<u8>, filename: &str) -> Part {
    Part::bytes(bytes).file_name(filename.to_owned()).mime_str("application/octet-stream").unwrap()
}

/// `size` bytes that differ from one `seed` to another.
fn body(seed: u8, size: usize) -> Vec<u8> {
    (0..size).map(|i| seed.wrapping_add((i % 251) as u8)).collect()
}

/// A valid manifest of about `size` bytes.
fn large_manifest(size: usize) -> Vec<u8> {
    let filler = "x".repeat(size);
    serde_json::to_vec(&json!({"metadata": {"dbt_version": "1.8.0"}, "nodes": {"model.a": {"sql": filler}}})).unwrap()
}

async fn post(jade: &TestJade, path: &str, form: Form) -> (u16, String) {
    let response = jade.client.post(jade.url(path)).bearer_auth(ACME).multipart(form).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn count(jade: &TestJade, table: &str) -> i64 {
    let client = support::connect(&jade.seeded.jade_db).await;
    client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0)
}

/// Stores a file; answers its slug.
async fn stored_file(jade: &TestJade, tag: &str, bytes: Vec<u8>, filename: &str) -> String {
    let (status, body) =
        post(jade, FILES, Form::new().text("tag", tag.to_owned()).part("file", file(bytes, filename))).await;
    assert_eq!(status, 201, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["data"]["slug"].as_str().unwrap().to_owned()
}

/// A file's stored bytes, read through the API.
async fn read(jade: &TestJade, tag: &str) -> Vec<u8> {
    let response = jade
        .client
        .get(jade.url(&format!("{FILES}?tag={tag}")))
        .bearer_auth(ACME)
        .header("Accept", "application/octet-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "reading {tag}");
    response.bytes().await.unwrap().to_vec()
}

/// The keys the environment's file rows read, and the keys stored under the environment.
async fn rows_and_bodies(jade: &TestJade) -> (BTreeSet<String>, BTreeSet<String>) {
    let client = support::connect(&jade.seeded.jade_db).await;
    let rows = client
        .query("SELECT coalesce(storage_key, path) FROM files WHERE environment_slug = 'dev123'", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let bodies =
        jade.storage.keys(ENVIRONMENT_KEYS).await.into_iter().map(|k| format!("{ENVIRONMENT_KEYS}{k}")).collect();
    (rows, bodies)
}

/// No row without its body, no body without its row.
async fn assert_consistent(jade: &TestJade, context: &str) {
    let (rows, bodies) = rows_and_bodies(jade).await;
    assert_eq!(rows, bodies, "{context}: rows read exactly the stored bodies");
}

/// Polls `check` every 100 ms until it holds, at most `limit`.
async fn eventually<F: AsyncFn() -> bool>(limit: Duration, what: &str, check: F) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

macro_rules! on_remote_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::Backend;
            #[tokio::test]
            async fn minio() { super::bounded(super::$scenario(Backend::Minio)).await }
            #[tokio::test]
            async fn s3() { super::bounded(super::$scenario(Backend::S3)).await }
            #[tokio::test]
            async fn blob() { super::bounded(super::$scenario(Backend::Blob)).await }
        }
    )*};
}

/// Every test ends within two minutes, servers started included.
async fn bounded(test: impl Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(120), test).await.expect("the test did not end within 120 s");
}

on_remote_backends!(
    storage_stopped_mid_upload_leaves_nothing_and_changes_nothing,
    readiness_names_the_storage_when_it_stops
);

/// The storage server goes away in the middle of a body (a large manifest; then a
/// multi-upload whose first files replace stored ones): 422, and once it is back nothing
/// new is stored and the stored files have their bytes.
async fn storage_stopped_mid_upload_leaves_nothing_and_changes_nothing(backend: Backend) {
    let (storage, proxy) = Storage::behind_proxy(backend).await;
    let jade = TestJade::over(Scenario::default(), storage, &[]).await;
    let (a, b) = (body(1, 300 << 10), body(2, 200 << 10));
    stored_file(&jade, "a", a.clone(), "a.bin").await;
    stored_file(&jade, "b", b.clone(), "b.bin").await;

    proxy.cut_after(2 << 20);
    let form =
        Form::new().text("environment_slug", "dev123").part("file", file(large_manifest(8 << 20), "manifest.json"));
    let (status, answer) = post(&jade, "/api/v2/datacoves/manifests", form).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer, r#"{"errors":{"message":"File upload failed. Please check the error in the logs."}}"#);
    proxy.restore();
    assert_eq!(count(&jade, "manifests").await, 0);
    assert_eq!(jade.storage.keys("accounts/").await, Vec::<String>::new(), "no manifest body remains");

    // The first body (replacing `a`) is stored, the second (replacing `b`) is cut off.
    proxy.cut_after((1 << 20) + (512 << 10));
    let form = Form::new()
        .text("files[0][tag]", "a")
        .part("files[0][file]", file(body(11, 1 << 20), "a.bin"))
        .text("files[1][tag]", "b")
        .part("files[1][file]", file(body(12, 1 << 20), "b.bin"))
        .text("files[2][tag]", "c")
        .part("files[2][file]", file(body(13, 1 << 20), "c.bin"));
    let (status, answer) = post(&jade, FILES, form).await;
    assert_eq!(status, 422, "{answer}");
    proxy.restore();
    assert_eq!(count(&jade, "files").await, 2, "no new row");
    assert!(read(&jade, "a").await == a && read(&jade, "b").await == b, "stored files keep their bytes");
    // The first new body could not be removed while storage was gone: it goes once it is back.
    eventually(Duration::from_secs(20), "the new bodies are removed", async || {
        let (rows, bodies) = rows_and_bodies(&jade).await;
        rows == bodies
    })
    .await;
    assert_consistent(&jade, "after the cut multi-upload").await;
    jade.stop().await;
}

/// Readiness: every part ok; the storage server gone (refusing, then not answering): 503
/// naming storage within the 2 s bound, while the healthcheck stays 200.
async fn readiness_names_the_storage_when_it_stops(backend: Backend) {
    let (storage, proxy) = Storage::behind_proxy(backend).await;
    let jade = TestJade::over(Scenario::default(), storage, &[]).await;
    for path in ["/api/v2/readyz", "/api/internal/readyz"] {
        let response = jade.client.get(jade.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({"jade_db": "ok", "datacoves_db": "ok", "storage": "ok"})
        );
    }
    let expected = json!({"jade_db": "ok", "datacoves_db": "ok", "storage": "unavailable"});
    proxy.cut();
    let started = Instant::now();
    let response = jade.client.get(jade.url("/api/v2/readyz")).send().await.unwrap();
    assert_eq!((response.status().as_u16(), response.json::<Value>().await.unwrap()), (503, expected.clone()));
    assert!(started.elapsed() < Duration::from_secs(3), "answered in {:?}", started.elapsed());
    assert_eq!(jade.client.get(jade.url("/api/v2/healthcheck")).send().await.unwrap().status(), 200);

    // Connections open but nothing answers: the 2 s bound.
    proxy.restore();
    proxy.hold_new();
    let started = Instant::now();
    let response = jade.client.get(jade.url("/api/internal/readyz")).send().await.unwrap();
    assert_eq!((response.status().as_u16(), response.json::<Value>().await.unwrap()), (503, expected));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_secs(4), "answered in {took:?}");
    proxy.release();
    jade.stop().await;
}

/// More uploads than `MAX_CONCURRENT_UPLOADS` at once: at most that many talk to storage,
/// the others wait, and all succeed.
#[tokio::test]
async fn uploads_beyond_the_bound_wait_and_all_succeed() {
    bounded(async {
        let (storage, proxy) = Storage::behind_proxy(Backend::S3).await;
        let jade = TestJade::over(Scenario::default(), storage, &[("MAX_CONCURRENT_UPLOADS", "2")]).await;
        proxy.hold_new();
        let uploads: Vec<_> = (0..6u8)
            .map(|n| {
                let (client, url) = (jade.client.clone(), jade.url(FILES));
                tokio::spawn(async move {
                    let form = Form::new().text("tag", format!("t{n}")).part("file", file(body(n, 64 << 10), "f.bin"));
                    let response = client.post(url).bearer_auth(ACME).multipart(form).send().await.unwrap();
                    response.status().as_u16()
                })
            })
            .collect();
        eventually(Duration::from_secs(10), "two uploads reach storage", async || proxy.open_connections() >= 2).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(proxy.open_connections(), 2, "only MAX_CONCURRENT_UPLOADS uploads talk to storage at once");
        proxy.release();
        for upload in uploads {
            assert_eq!(upload.await.unwrap(), 201);
        }
        for n in 0..6u8 {
            assert_eq!(read(&jade, &format!("t{n}")).await, body(n, 64 << 10));
        }
        assert_consistent(&jade, "after the uploads").await;
        jade.stop().await;
    })
    .await;
}

/// A multipart body of files `(tag, filename, bytes)`, as a raw request.
fn raw_upload(host: &str, files: &[(&str, &str, Vec<u8>)]) -> (Vec<u8>, Vec<u8>) {
    let boundary = "jade-test-boundary-7f3a";
    let mut content = Vec::new();
    for (n, (tag, filename, bytes)) in files.iter().enumerate() {
        content.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"files[{n}][tag]\"\r\n\r\n{tag}\r\n")
                .as_bytes(),
        );
        content.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"files[{n}][file]\"; filename=\"{filename}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        content.extend_from_slice(bytes);
        content.extend_from_slice(b"\r\n");
    }
    content.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let head = format!(
        "POST {FILES} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ACME}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        content.len()
    );
    (head.into_bytes(), content)
}

/// A client that goes away mid-upload: while sending its body (nothing stored), and while
/// Jade stores its bodies (storage slowed down, the first body stored, the second on its
/// way): the upload is cut off and undone, nothing new remains (not even the body that was
/// on its way and landed after the cut), stored files keep their bytes.
#[tokio::test]
async fn a_client_that_disconnects_mid_upload_leaves_nothing() {
    bounded(async {
        let (storage, proxy) = Storage::behind_proxy(Backend::S3).await;
        let jade = TestJade::over(Scenario::default(), storage, &[]).await;
        let kept = body(1, 100 << 10);
        stored_file(&jade, "a", kept.clone(), "a.bin").await;
        let files = [
            ("a", "a.bin", body(21, 1 << 20)),
            ("n1", "n1.bin", body(22, 1 << 20)),
            ("n2", "n2.bin", body(23, 1 << 20)),
        ];
        let host = jade.server.address.to_string();
        let (head, content) = raw_upload(&host, &files);

        // Headers and half the body, then gone.
        let mut client = tokio::net::TcpStream::connect(jade.server.address).await.unwrap();
        client.write_all(&head).await.unwrap();
        client.write_all(&content[..content.len() / 2]).await.unwrap();
        drop(client);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(count(&jade, "files").await, 1);
        assert_consistent(&jade, "after a half-sent upload").await;

        // The whole request, then gone while the second body is on its way to storage.
        proxy.rate(512 << 10);
        let before = proxy.upstream_bytes();
        let mut client = tokio::net::TcpStream::connect(jade.server.address).await.unwrap();
        client.write_all(&head).await.unwrap();
        client.write_all(&content).await.unwrap();
        eventually(Duration::from_secs(20), "the second body is being stored", async || {
            proxy.upstream_bytes() > before + (1 << 20) + (256 << 10)
        })
        .await;
        // Gone as a killed client goes: the connection is reset.
        client.set_zero_linger().unwrap();
        drop(client);
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.restore();
        let started = Instant::now();
        loop {
            let (rows, bodies) = rows_and_bodies(&jade).await;
            if rows.len() == 1 && rows == bodies {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "not undone within 20 s: rows {rows:?}, bodies {bodies:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // And it stays so (no upload was still running).
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(count(&jade, "files").await, 1);
        assert_consistent(&jade, "after the cut-off upload").await;
        assert_eq!(read(&jade, "a").await, kept, "the stored file keeps its bytes");
        jade.stop().await;
    })
    .await;
}

/// SIGTERM to `jade serve` while an upload streams to (slowed) storage: readiness answers
/// 503 at once (even a probe already in flight), no new connection is served, the process
/// exits within SHUTDOWN_GRACE_SECONDS, and the upload either finished or left nothing.
#[tokio::test]
async fn sigterm_during_an_upload_exits_within_the_grace_and_leaves_nothing() {
    bounded(async {
        const GRACE: u64 = 8;
        let (storage, proxy) = Storage::behind_proxy(Backend::S3).await;
        let seeded = support::seed::seed(Scenario::default()).await;
        let verify = support::VerifyServer::start(seeded.identities.clone()).await;
        let port = support::servers::free_port();
        let vars = support::variables(
            &seeded,
            &verify,
            &storage,
            &[
                ("PORT", &port.to_string()),
                ("SHUTDOWN_GRACE_SECONDS", &GRACE.to_string()),
                ("RUST_LOG", "info"),
                ("METRICS_ADDR", ""),
            ],
        );
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut jade = tokio::process::Command::new(env!("CARGO_BIN_EXE_jade"))
            .arg("serve")
            .env_clear()
            .envs(&vars)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log.reopen().unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let log_tail = || std::fs::read_to_string(log.path()).unwrap_or_default();
        eventually(
            Duration::from_secs(30),
            "jade serve is ready",
            async || matches!(client.get(format!("{base}/api/v2/readyz")).send().await, Ok(r) if r.status() == 200),
        )
        .await;

        // An upload that needs about 12 s to reach storage.
        proxy.rate(1 << 20);
        let before = proxy.upstream_bytes();
        let upload = {
            let (client, url) = (client.clone(), format!("{base}{FILES}"));
            tokio::spawn(async move {
                let form = Form::new().text("tag", "big").part("file", file(body(7, 12 << 20), "big.bin"));
                client.post(url).bearer_auth(ACME).multipart(form).send().await.map(|r| r.status().as_u16())
            })
        };
        eventually(Duration::from_secs(30), "the upload streams to storage", async || {
            proxy.upstream_bytes() > before + (1 << 20)
        })
        .await;
        // A readiness probe in flight, its storage check held.
        proxy.hold_new();
        let probe = {
            let url = format!("{base}/api/v2/readyz");
            tokio::spawn(async move {
                let response = reqwest::Client::new().get(url).send().await.unwrap();
                (response.status().as_u16(), response.json::<Value>().await.unwrap())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;

        let signalled = Instant::now();
        let pid = jade.id().unwrap().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let (status, answer) = probe.await.unwrap();
        assert_eq!(status, 503, "{answer}");
        assert_eq!(answer["shutdown"], "in progress", "{answer}");
        assert!(signalled.elapsed() < Duration::from_secs(1), "503 at once, not after the storage check");
        proxy.release();
        // No new connection is served: refused, or 503 if it slipped in.
        match client.get(format!("{base}/api/v2/readyz")).send().await {
            Ok(response) => assert_eq!(response.status(), 503),
            Err(error) => assert!(error.is_connect() || error.is_request(), "{error}"),
        }

        let exited = tokio::time::timeout(Duration::from_secs(GRACE) + Duration::from_millis(1500), jade.wait()).await;
        let exited = exited.unwrap_or_else(|_| panic!("jade serve did not exit within the grace:\n{}", log_tail()));
        assert!(exited.unwrap().success(), "{}", log_tail());
        assert!(signalled.elapsed() < Duration::from_secs(GRACE) + Duration::from_millis(1500));

        let finished = matches!(upload.await.unwrap(), Ok(201));
        proxy.restore();
        let db = support::connect(&seeded.jade_db).await;
        let rows: Vec<String> = db
            .query("SELECT coalesce(storage_key, path) FROM files", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let bodies: Vec<String> =
            storage.keys(ENVIRONMENT_KEYS).await.into_iter().map(|k| format!("{ENVIRONMENT_KEYS}{k}")).collect();
        assert_eq!(rows, bodies, "the upload finished whole or left nothing:\n{}", log_tail());
        assert_eq!(rows.len(), usize::from(finished), "finished: {finished}");
        drop(db);
        verify.stop().await;
        seeded.drop_databases().await;
    })
    .await;
}
