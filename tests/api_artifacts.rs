//! Run artifacts over HTTP (contract §3, "Artifacts" and "dbt Cloud clients"): a dbt
//! `target/` set uploaded with `POST /datacoves/artifacts`, listed and served on the dbt
//! Cloud artifact routes in both `API_COMPAT` modes, on real PostgreSQL and each storage
//! backend (local disk, MinIO and S3 adapters against moto_server, Azure Blob against
//! Azurite).

#[macro_use]
mod support;

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use support::seed::{ACME, GLOBEX};
use support::transfer::{self, answers_not_modified, sent_compressed};
use support::{Backend, Scenario, TestJade, message};

const FIXTURE: &[u8] = include_bytes!("fixtures/manifest.json");
const RUN_RESULTS: &[u8] =
    br#"{"metadata": {"dbt_version": "1.7.4"}, "results": [{"unique_id": "model.a", "status": "success"}]}"#;
const CATALOG: &[u8] = br#"{"metadata": {}, "nodes": {"model.a": {"columns": {}}}, "sources": {}}"#;
const COMPILED: &[u8] = b"select \"id\",\n\t'\xc3\xa9t\xc3\xa9' as summer\nfrom raw.orders -- \\ done\n";

on_every_backend!(
    a_target_directory_is_uploaded_listed_served_and_replaced,
    artifacts_are_sent_compressed_and_conditionally,
);

/// The dbt `target/` set every test uploads: (path, body).
fn target() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("manifest.json", FIXTURE),
        ("run_results.json", RUN_RESULTS),
        ("catalog.json", CATALOG),
        ("compiled/analytics/models/orders.sql", COMPILED),
    ]
}

fn sorted_paths(files: &[(&str, &[u8])]) -> Vec<String> {
    let mut paths: Vec<String> = files.iter().map(|(path, _)| path.to_string()).collect();
    paths.sort();
    paths
}

fn part(body: &[u8], path: &str) -> Part {
    Part::bytes(body.to_vec()).file_name(path.to_owned()).mime_str("application/octet-stream").unwrap()
}

/// The form the Datacoves Airflow provider sends: the run, then one `file` part per artifact.
fn form(environment: &str, dag_id: &str, run_id: &str, files: &[(&str, &[u8])]) -> Form {
    let mut form = Form::new()
        .text("environment_slug", environment.to_owned())
        .text("dag_id", dag_id.to_owned())
        .text("run_id", run_id.to_owned());
    for (path, body) in files {
        form = form.part("file", part(body, path));
    }
    form
}

async fn post(jade: &TestJade, token: &str, path: &str, form: Form) -> (u16, Value) {
    let response = jade.client.post(jade.url(path)).bearer_auth(token).multipart(form).send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("POST {path}: not JSON ({e}): {body}")))
}

/// `GET path`: status, content type and body bytes.
async fn raw(jade: &TestJade, path: &str) -> (u16, String, Vec<u8>) {
    let response = jade.get(ACME, path).await;
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, content_type, response.bytes().await.unwrap().to_vec())
}

/// A run of `dev123` (environment 100): its job-run id, dag_id and run_id.
async fn a_run(jade: &TestJade, index: usize) -> (i64, String, String) {
    let runs = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&order_by=id", 200).await;
    let run = &runs["data"][index];
    (
        run["id"].as_i64().unwrap(),
        run["dag_id"].as_str().unwrap().to_owned(),
        run["dag_run_run_id"].as_str().unwrap().to_owned(),
    )
}

fn run_key(dag_id: &str, run_id: &str, path: &str) -> String {
    let safe_run = run_id.replace(['_', ':', '.', '+'], "-");
    format!("accounts/1/environments/dev123/dags/{dag_id}/dag_runs/{safe_run}/{path}")
}

async fn manifest_rows(jade: &TestJade) -> i64 {
    let client = support::connect(&jade.seeded.jade_db).await;
    client.query_one("SELECT count(*) FROM manifests", &[]).await.unwrap().get(0)
}

async fn a_target_directory_is_uploaded_listed_served_and_replaced(backend: Backend) {
    let jade = TestJade::with_storage(Scenario::default(), backend, &[]).await;
    let (id, dag_id, run_id) = a_run(&jade, 1).await;
    let files = target();
    let expected = sorted_paths(&files);

    // Nothing yet: an empty list, with and without the trailing slash.
    for suffix in ["", "/"] {
        let listed = jade.json(ACME, &format!("/api/v2/accounts/1/runs/{id}/artifacts{suffix}"), 200).await;
        assert_eq!(listed["data"], json!([]), "{backend:?}");
    }

    let (status, body) =
        post(&jade, ACME, "/api/v2/datacoves/artifacts", form("dev123", &dag_id, &run_id, &files)).await;
    assert_eq!(status, 201, "{backend:?}: {body}");
    assert_eq!(body, json!({ "data": expected }));

    // Stored next to the run's manifest, byte for byte.
    for (path, content) in &files {
        let key = run_key(&dag_id, &run_id, path);
        assert_eq!(jade.storage.object(&key).await.as_deref(), Some(*content), "{backend:?}: {key}");
    }
    // The manifest part is the run's manifest: a row, a trimmed form, the run marked.
    assert_eq!(manifest_rows(&jade).await, 1);
    assert!(jade.storage.object(&run_key(&dag_id, &run_id, "manifest.trimmed.json")).await.is_some());
    let trimmed =
        jade.json(ACME, &format!("/api/v2/datacoves/manifests?environment_slug=dev123&dag_id={dag_id}"), 200).await;
    assert_eq!(trimmed.as_object().unwrap().len(), 2);
    let run = jade.json(ACME, &format!("/api/v2/accounts/1/runs/{id}"), 200).await;
    assert_eq!(run["data"]["artifacts_saved"], true);

    // Listed (the trimmed manifest is Jade's own, never listed), both slash forms, `step` ignored.
    for suffix in ["", "/", "?step=1", "/?step=2"] {
        let listed = jade.json(ACME, &format!("/api/v2/accounts/1/runs/{id}/artifacts{suffix}"), 200).await;
        assert_eq!(listed["data"], json!(expected), "{backend:?}: artifacts{suffix}");
        assert_eq!(listed["status"]["is_success"], true);
    }

    // Served as `{"data": "<file as a string>"}`, nested paths as sent or with `%2F`.
    for (path, content) in &files {
        let mut urls = vec![format!("/api/v2/accounts/1/runs/{id}/artifacts/{path}")];
        urls.push(format!("/api/v2/accounts/1/runs/{id}/artifacts/{}?step=1", path.replace('/', "%2F")));
        for url in urls {
            let (status, content_type, body) = raw(&jade, &url).await;
            assert_eq!(status, 200, "{backend:?}: {url}: {}", String::from_utf8_lossy(&body));
            assert!(content_type.starts_with("application/json"), "{url}: {content_type}");
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["data"].as_str().unwrap().as_bytes(), *content, "{backend:?}: {url}");
        }
    }
    for missing in ["nothing.json", "compiled/analytics/other.sql", "manifest.trimmed.json", "compiled/..%2F..%2Fx"] {
        let url = format!("/api/v2/accounts/1/runs/{id}/artifacts/{missing}");
        assert_eq!(message(&jade.json(ACME, &url, 404).await), "Not Found", "{backend:?}: {url}");
    }

    // A path uploaded again is replaced; the others stay; the legacy prefix works too.
    let again: &[(&str, &[u8])] = &[("run_results.json", b"{\"results\": []}")];
    let (status, body) = post(&jade, ACME, "/api/internal/artifacts", form("dev123", &dag_id, &run_id, again)).await;
    assert_eq!((status, body), (201, json!({ "data": ["run_results.json"] })));
    let read = jade.json(ACME, &format!("/api/v2/accounts/1/runs/{id}/artifacts/run_results.json"), 200).await;
    assert_eq!(read["data"], "{\"results\": []}");
    let listed = jade.json(ACME, &format!("/api/v2/accounts/1/runs/{id}/artifacts"), 200).await;
    assert_eq!(listed["data"], json!(expected));

    // Another run of the environment has none of them.
    let (other, _, _) = a_run(&jade, 2).await;
    let listed = jade.json(ACME, &format!("/api/v2/accounts/1/runs/{other}/artifacts/"), 200).await;
    assert_eq!(listed["data"], json!([]));
    let url = format!("/api/v2/accounts/1/runs/{other}/artifacts/run_results.json");
    assert_eq!(message(&jade.json(ACME, &url, 404).await), "Not Found");
    jade.stop().await;
}

/// Contract §8 for artifacts: over 1 KiB compressed as asked, a strong ETag from the stored
/// object's version (the manifest's from its row), 304 for it, a new one after a re-upload.
async fn artifacts_are_sent_compressed_and_conditionally(backend: Backend) {
    let jade = TestJade::with_storage(Scenario::default(), backend, &[]).await;
    let (id, dag_id, run_id) = a_run(&jade, 1).await;
    let mut files = target();
    files.push(("catalog_big.json", FIXTURE));
    let (status, body) =
        post(&jade, ACME, "/api/v2/datacoves/artifacts", form("dev123", &dag_id, &run_id, &files)).await;
    assert_eq!(status, 201, "{body}");

    let mut tags = Vec::new();
    for path in ["catalog_big.json", "manifest.json"] {
        let url = format!("/api/v2/accounts/1/runs/{id}/artifacts/{path}");
        // `{"data": "<the file>"}`: what the identity answer holds, compared byte for byte.
        let plain = transfer::get(&jade, ACME, &url, &[]).await;
        let wrapped: Value = serde_json::from_slice(&plain.wire).unwrap();
        assert!(wrapped["data"].as_str().unwrap().as_bytes() == FIXTURE, "{backend:?}: {path}");
        let etag = sent_compressed(&jade, ACME, &url, &[], &plain.wire).await;
        answers_not_modified(&jade, ACME, &url, &[], &etag).await;
        tags.push(etag);
    }
    assert_ne!(tags[0], tags[1]);
    // The run's manifest as an artifact is another representation than on the manifest route.
    let manifest =
        transfer::get(&jade, ACME, "/api/v2/datacoves/manifests?environment_slug=dev123&trimmed=false", &[]).await;
    assert_ne!(manifest.etag(), tags[1]);
    // Small artifacts go out as they are.
    let url = format!("/api/v2/accounts/1/runs/{id}/artifacts/run_results.json");
    let small = transfer::get(&jade, ACME, &url, &[("accept-encoding", "gzip, zstd")]).await;
    assert_eq!((small.status, small.header("content-encoding")), (200, None));
    assert!(small.varies_by_encoding());
    let small_etag = small.etag().to_owned();
    answers_not_modified(&jade, ACME, &url, &[], &small_etag).await;

    // Uploaded again with other bytes: a new tag, the old one answers 200 with the new body.
    let url = format!("/api/v2/accounts/1/runs/{id}/artifacts/catalog_big.json");
    let changed = [FIXTURE, b" "].concat();
    let again: &[(&str, &[u8])] = &[("catalog_big.json", &changed)];
    let (status, _) = post(&jade, ACME, "/api/v2/datacoves/artifacts", form("dev123", &dag_id, &run_id, again)).await;
    assert_eq!(status, 201);
    let answer = transfer::conditional(&jade, ACME, &url, &[], &tags[0]).await;
    assert_eq!(answer.status, 200, "{backend:?}: the old tag still matched");
    assert_ne!(answer.etag(), tags[0]);
    let wrapped: Value = serde_json::from_slice(&answer.wire).unwrap();
    assert!(wrapped["data"].as_str().unwrap().as_bytes() == changed.as_slice());
    let current = answer.etag().to_owned();
    assert_eq!(transfer::conditional(&jade, ACME, &url, &[], &current).await.status, 304);
    // Removed behind Jade's back: the stat finds nothing, so no 304 but 404.
    jade.storage.delete(&run_key(&dag_id, &run_id, "catalog_big.json")).await;
    assert_eq!(transfer::conditional(&jade, ACME, &url, &[], &current).await.status, 404);
    // Errors answer no ETag.
    let missing = transfer::conditional(&jade, ACME, &url, &[], "*").await;
    assert_eq!((missing.status, missing.header("etag")), (404, None));
    jade.stop().await;
}

#[tokio::test]
async fn artifacts_are_the_files_themselves_in_dbt_cloud_mode() {
    let jade = TestJade::with_storage(Scenario::default(), Backend::S3, &[("API_COMPAT", "dbt-cloud")]).await;
    let (id, dag_id, run_id) = a_run(&jade, 1).await;
    let mut files = target();
    files.push(("graph.gpickle", b"\x80\x04\x95\xff\x00binary"));
    let (status, body) =
        post(&jade, ACME, "/api/v2/datacoves/artifacts", form("dev123", &dag_id, &run_id, &files)).await;
    assert_eq!(status, 201, "{body}");
    for (path, content) in &files {
        let (status, content_type, body) = raw(&jade, &format!("/api/v2/accounts/1/runs/{id}/artifacts/{path}")).await;
        assert_eq!(status, 200, "{path}");
        assert!(body == *content, "{path}: the artifact itself, byte for byte");
        let expected_type = match path.rsplit('.').next().unwrap() {
            "json" => "application/json",
            "sql" => "text/plain",
            _ => "application/octet-stream",
        };
        assert!(content_type.starts_with(expected_type), "{path}: {content_type}");
    }
    // Compressed, they decode to the stored bytes exactly; a 304 for their tag.
    let url = format!("/api/v2/accounts/1/runs/{id}/artifacts/manifest.json");
    let etag = sent_compressed(&jade, ACME, &url, &[], FIXTURE).await;
    answers_not_modified(&jade, ACME, &url, &[], &etag).await;
    let url = format!("/api/v2/accounts/1/runs/{id}/artifacts/graph.gpickle");
    let small = transfer::get(&jade, ACME, &url, &[("accept-encoding", "zstd")]).await;
    assert_eq!(small.header("content-encoding"), None);
    answers_not_modified(&jade, ACME, &url, &[], small.etag()).await;
    // JSON artifacts decode as themselves, as dbtc and Airflow's operator read them.
    let (_, _, body) = raw(&jade, &format!("/api/v2/accounts/1/runs/{id}/artifacts/run_results.json")).await;
    let decoded: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(decoded["results"][0]["status"], "success");
    // The list keeps the envelope; errors carry dbt Cloud's status and `data: null`.
    let listed = jade.json(ACME, &format!("/api/v2/accounts/1/runs/{id}/artifacts"), 200).await;
    assert_eq!(listed["data"], json!(sorted_paths(&files)));
    let missing = jade.json(ACME, &format!("/api/v2/accounts/1/runs/{id}/artifacts/nope.json"), 404).await;
    assert_eq!(missing["status"]["code"], 404);
    // The document declares the artifact itself for JSON artifacts in this mode.
    let spec = jade.json(ACME, "/api/v2/openapi", 200).await;
    let route = &spec["paths"]["/api/v2/accounts/{account_id}/runs/{run_id}/artifacts/{path}"]["get"];
    let schema = &route["responses"]["200"]["content"]["application/json"]["schema"];
    assert!(schema.get("$ref").is_none(), "{schema}");
    jade.stop().await;
}

#[tokio::test]
async fn bad_paths_and_failed_parts_answer_422_and_store_nothing() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    let (id, dag_id, run_id) = a_run(&jade, 1).await;
    let good: (&str, &[u8]) = ("run_results.json", RUN_RESULTS);
    let list_url = format!("/api/v2/accounts/1/runs/{id}/artifacts");

    for bad in [
        "",
        ".",
        "..",
        "../escape.json",
        "compiled/../../x.sql",
        "a//b.sql",
        "/absolute.json",
        "compiled\\a.sql",
        "dir/",
        "tab\there.json",
        "manifest.trimmed.json",
    ] {
        let files = [good, (bad, b"x".as_slice())];
        let (status, body) =
            post(&jade, ACME, "/api/v2/datacoves/artifacts", form("dev123", &dag_id, &run_id, &files)).await;
        assert_eq!(status, 422, "{bad:?}: {body}");
        assert!(body["errors"]["file"].is_array(), "{bad:?}: {body}");
    }
    // The same path twice.
    let files = [good, good];
    let (status, body) =
        post(&jade, ACME, "/api/v2/datacoves/artifacts", form("dev123", &dag_id, &run_id, &files)).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["errors"]["file"][0].as_str().unwrap().contains("twice"), "{body}");
    // No file at all; no run.
    let (status, body) = post(&jade, ACME, "/api/v2/datacoves/artifacts", form("dev123", &dag_id, &run_id, &[])).await;
    assert_eq!((status, body), (422, json!({"errors": {"file": ["can't be blank"]}})));
    let no_run = Form::new().text("environment_slug", "dev123").part("file", part(RUN_RESULTS, "run_results.json"));
    let (status, body) = post(&jade, ACME, "/api/v2/datacoves/artifacts", no_run).await;
    assert_eq!((status, body), (422, json!({"errors": {"dag_id": ["can't be blank"]}})));
    assert_eq!(jade.json(ACME, &list_url, 200).await["data"], json!([]));

    // A manifest that is not JSON fails the whole upload: the artifacts written before it
    // are removed again, no manifest row remains.
    let files = [good, ("compiled/a.sql", b"select 1".as_slice()), ("manifest.json", b"not json".as_slice())];
    let (status, body) =
        post(&jade, ACME, "/api/v2/datacoves/artifacts", form("dev123", &dag_id, &run_id, &files)).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["errors"]["file"].is_array(), "{body}");
    assert_eq!(jade.json(ACME, &list_url, 200).await["data"], json!([]));
    assert_eq!(manifest_rows(&jade).await, 0);
    for path in ["run_results.json", "compiled/a.sql", "manifest.json"] {
        assert_eq!(jade.storage.object(&run_key(&dag_id, &run_id, path)).await, None, "{path}");
    }

    // The form wins over the query string; the query string alone works.
    let encoded = run_id.replace('+', "%2B").replace(':', "%3A");
    let query = format!("/api/v2/datacoves/artifacts?environment_slug=dev123&dag_id={dag_id}&run_id={encoded}");
    let only_files = Form::new().part("file", part(RUN_RESULTS, "run_results.json"));
    let (status, body) = post(&jade, ACME, &query, only_files).await;
    assert_eq!((status, body), (201, json!({"data": ["run_results.json"]})));
    let overridden = form("dev123", &dag_id, "no-such-run", &[good]);
    let (status, _) = post(&jade, ACME, &query, overridden).await;
    assert_eq!(status, 404);
    // Not multipart.
    let response = jade
        .client
        .post(jade.url("/api/v2/datacoves/artifacts"))
        .bearer_auth(ACME)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    jade.stop().await;
}

#[tokio::test]
async fn unknown_runs_and_other_accounts_answer_404_or_401() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    let (id, dag_id, run_id) = a_run(&jade, 1).await;
    let files: &[(&str, &[u8])] = &[("run_results.json", RUN_RESULTS)];

    // A run that is not in the environment's Airflow.
    let (status, body) =
        post(&jade, ACME, "/api/v2/datacoves/artifacts", form("dev123", &dag_id, "manual__1999", files)).await;
    assert_eq!((status, message(&body)), (404, "Not Found"));
    let (status, body) =
        post(&jade, ACME, "/api/v2/datacoves/artifacts", form("dev123", "no_such_dag", &run_id, files)).await;
    assert_eq!(status, 404, "{body}");
    // Another tenant's environment, an unknown one, none.
    let (status, body) =
        post(&jade, ACME, "/api/v2/datacoves/artifacts", form("globex123", &dag_id, &run_id, files)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(message(&body), "Invalid Environment in Path. You have no accces to this environment.");
    let no_slug = Form::new().text("dag_id", dag_id.clone()).part("file", part(RUN_RESULTS, "run_results.json"));
    let (status, _) = post(&jade, ACME, "/api/v2/datacoves/artifacts", no_slug).await;
    assert_eq!(status, 401);

    let (status, body) =
        post(&jade, ACME, "/api/v2/datacoves/artifacts", form("dev123", &dag_id, &run_id, files)).await;
    assert_eq!(status, 201, "{body}");

    // Reading: unknown run ids and ids that are not integers are 404.
    for path in ["/api/v2/accounts/1/runs/999999/artifacts", "/api/v2/accounts/1/runs/x/artifacts/"] {
        assert_eq!(message(&jade.json(ACME, path, 404).await), "Not Found", "{path}");
    }
    assert_eq!(
        message(&jade.json(ACME, "/api/v2/accounts/1/runs/999999/artifacts/run_results.json", 404).await),
        "Not Found"
    );
    // Another account in the path: 401; Acme's run under Globex's own account: 404.
    for path in [
        format!("/api/v2/accounts/2/runs/{id}/artifacts"),
        format!("/api/v2/accounts/2/runs/{id}/artifacts/run_results.json"),
    ] {
        let body = jade.json(ACME, &path, 401).await;
        assert_eq!(message(&body), "Invalid Account in Path. You have no accces to this account.");
        assert_eq!(body["status"]["code"], 401);
    }
    for path in [
        format!("/api/v2/accounts/2/runs/{id}/artifacts"),
        format!("/api/v2/accounts/2/runs/{id}/artifacts/run_results.json"),
        format!("/api/v2/accounts/2/runs/{id}/artifacts/compiled/a/b.sql"),
    ] {
        assert_eq!(message(&jade.json(GLOBEX, &path, 404).await), "Not Found", "{path}");
    }
    // No token.
    let response = jade.client.get(jade.url(&format!("/api/v2/accounts/1/runs/{id}/artifacts"))).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    jade.stop().await;
}

#[tokio::test]
async fn the_document_declares_every_artifact_route_and_status() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    let spec = jade.json(ACME, "/api/v2/openapi", 200).await;
    let statuses = |path: &str, method: &str| -> Vec<String> {
        let operation = &spec["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not in the document");
        let mut statuses: Vec<String> = operation["responses"].as_object().unwrap().keys().cloned().collect();
        statuses.sort();
        statuses
    };
    let reads = ["200", "400", "401", "404", "413", "422", "503"];
    assert_eq!(statuses("/api/v2/accounts/{account_id}/runs/{run_id}/artifacts", "get"), reads);
    let conditional = ["200", "304", "400", "401", "404", "413", "422", "503"];
    assert_eq!(statuses("/api/v2/accounts/{account_id}/runs/{run_id}/artifacts/{path}", "get"), conditional);
    let upload = ["201", "400", "401", "404", "413", "415", "422", "503"];
    assert_eq!(statuses("/api/v2/datacoves/artifacts", "post"), upload);
    assert_eq!(statuses("/api/internal/artifacts", "post"), upload);
    let route = &spec["paths"]["/api/v2/accounts/{account_id}/runs/{run_id}/artifacts/{path}"]["get"];
    let content = route["responses"]["200"]["content"].as_object().unwrap();
    assert!(content.contains_key("application/json") && content.contains_key("text/plain; charset=utf-8"));
    // Conditional reads: the request header, the tag, and 304 with it.
    let parameter = route["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "If-None-Match").unwrap();
    assert_eq!(parameter["in"], "header");
    assert!(parameter["description"].as_str().unwrap().contains("304"));
    for status in ["200", "304"] {
        assert!(route["responses"][status]["headers"]["etag"]["description"].is_string(), "{status}");
    }
    jade.stop().await;
}

#[tokio::test]
async fn a_jobs_artifact_is_its_latest_successful_runs_that_has_one() {
    let scenario = Scenario { runs_per_environment: 12, ..Scenario::default() };
    let jade = TestJade::start(scenario, &[("API_COMPAT", "dbt-cloud")]).await;
    // In dev123, DAG runs 1 and 7 of `hourly` succeeded (7 later); `daily` never did.
    let runs = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&status=10&order_by=id", 200).await;
    let runs: Vec<&Value> = runs["data"].as_array().unwrap().iter().collect();
    assert_eq!(runs.iter().map(|r| r["dag_run_id"].as_i64().unwrap()).collect::<Vec<_>>(), [1, 7]);
    let job = runs[0]["job_definition_id"].as_i64().unwrap();
    let upload = |run: &Value, files: Vec<(&'static str, &'static [u8])>| {
        form("dev123", run["dag_id"].as_str().unwrap(), run["dag_run_run_id"].as_str().unwrap(), &files)
    };
    let older: &[u8] = br#"{"results": [], "run": "older"}"#;
    let newer: &[u8] = br#"{"results": [], "run": "newer"}"#;
    let files = vec![("run_results.json", older), ("catalog.json", CATALOG), ("compiled/a/b.sql", COMPILED)];
    assert_eq!(post(&jade, ACME, "/api/v2/datacoves/artifacts", upload(runs[0], files)).await.0, 201);
    assert_eq!(
        post(&jade, ACME, "/api/v2/datacoves/artifacts", upload(runs[1], vec![("run_results.json", newer)])).await.0,
        201
    );
    let artifact = |path: &str| {
        let url = format!("/api/v2/accounts/1/jobs/{job}/artifacts/{path}");
        let jade = &jade;
        async move { raw(jade, &url).await }
    };
    assert_eq!(artifact("run_results.json").await.2, newer, "the latest successful run's");
    assert_eq!(artifact("catalog.json").await.2, CATALOG, "the latest successful run that has it");
    assert_eq!(artifact("compiled/a/b.sql").await.2, COMPILED, "nested paths");
    assert_eq!(artifact("nope.json").await.0, 404);
    // A job without a successful run, another account's job, a job that does not exist.
    let jobs = jade.json(ACME, "/api/v2/accounts/1/jobs?environment_id=100", 200).await;
    let daily = jobs["data"].as_array().unwrap().iter().find(|j| j["dag_id"] == "daily").unwrap()["id"].clone();
    assert_eq!(raw(&jade, &format!("/api/v2/accounts/1/jobs/{daily}/artifacts/run_results.json")).await.0, 404);
    assert_eq!(raw(&jade, "/api/v2/accounts/1/jobs/999999/artifacts/run_results.json").await.0, 404);
    let other = jade.get(GLOBEX, &format!("/api/v2/accounts/1/jobs/{job}/artifacts/run_results.json")).await;
    assert_eq!(other.status(), 401);
    jade.stop().await;
}
