//! The Datacoves API over HTTP (contract §4): manifests and files, on real PostgreSQL and each
//! storage backend (local disk, MinIO and S3 adapters against moto_server, Azure Blob against
//! Azurite), exactly as the Datacoves Airflow provider sends its requests.

#[macro_use]
mod support;

use std::path::Path;

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use support::seed::{ACME, GLOBEX};
use support::transfer::{self, answers_not_modified, sent_compressed};
use support::{Backend, Scenario, TestJade, message};

const FIXTURE: &[u8] = include_bytes!("fixtures/manifest.json");

on_every_backend!(
    manifests_for_runs_are_served_whole_trimmed_and_as_artifacts,
    tagged_manifests_are_unique_per_environment,
    manifests_of_the_first_jade_are_served_and_trimmed_once,
    files_are_created_read_replaced_and_deleted,
    several_files_are_stored_together,
    a_new_tag_renames_a_file_and_moves_its_body,
    binary_files_answer_valid_json_or_their_exact_bytes,
    manifests_and_files_are_sent_compressed_and_conditionally,
);

/// A msgpack-like blob, as dbt's `partial_parse.msgpack`: bytes 0x80-0xFF that are not
/// UTF-8, NULs, a valid `é`, and a sequence cut short at the end.
fn binary_blob() -> Vec<u8> {
    let mut blob = vec![0x82, 0xa7];
    blob.extend_from_slice(b"version");
    blob.extend_from_slice(&[0xc4, 0x00, 0x01, 0xff, 0xfe, 0x80, 0x00, 0xc0, 0xc3, 0xa9, 0x22, 0x5c, 0x0a]);
    blob.extend((0u8..=255).rev());
    blob.extend_from_slice(&[0xe2, 0x82]);
    blob
}

fn file(bytes: &[u8], filename: &str) -> Part {
    Part::bytes(bytes.to_vec()).file_name(filename.to_owned()).mime_str("application/octet-stream").unwrap()
}

fn manifest_form(environment: &str, body: &[u8]) -> Form {
    Form::new().text("environment_slug", environment.to_owned()).part("file", file(body, "manifest.json"))
}

fn file_form(tag: &str, body: &[u8], filename: &str) -> Form {
    Form::new().text("tag", tag.to_owned()).part("file", file(body, filename))
}

async fn post(jade: &TestJade, path: &str, form: Form) -> (u16, String, reqwest::header::HeaderMap) {
    let response = jade.client.post(jade.url(path)).bearer_auth(ACME).multipart(form).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.text().await.unwrap(), headers)
}

async fn raw(jade: &TestJade, path: &str) -> (u16, Vec<u8>) {
    let response = jade.get(ACME, path).await;
    (response.status().as_u16(), response.bytes().await.unwrap().to_vec())
}

async fn count(jade: &TestJade, table: &str) -> i64 {
    let client = support::connect(&jade.seeded.jade_db).await;
    client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0)
}

/// Every object under a directory, as keys (for the fs backend's root).
fn stored(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

async fn manifests_for_runs_are_served_whole_trimmed_and_as_artifacts(backend: Backend) {
    let jade = TestJade::with_storage(Scenario::default(), backend, &[]).await;
    let runs = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&order_by=id", 200).await;
    let run = runs["data"][1].clone();
    let run_id = run["dag_run_run_id"].as_str().unwrap().to_owned();

    let form = manifest_form("dev123", FIXTURE).text("dag_id", "daily").text("run_id", run_id.clone());
    let (status, body, _) = post(&jade, "/api/v2/datacoves/manifests", form).await;
    assert_eq!((status, body.as_str()), (201, "\"ok\""));

    let safe_run = run_id.replace(['_', ':', '.', '+'], "-");
    let key = format!("accounts/1/environments/dev123/dags/daily/dag_runs/{safe_run}/manifest.json");
    assert_eq!(jade.storage.object(&key).await.as_deref(), Some(FIXTURE));

    let full: Value = serde_json::from_slice(FIXTURE).unwrap();
    let (status, whole) =
        raw(&jade, "/api/v2/datacoves/manifests?environment_slug=dev123&dag_id=daily&trimmed=false").await;
    assert_eq!(status, 200);
    assert!(whole == FIXTURE, "the full manifest round-trips byte for byte");
    // Both bodies announce their stored length.
    for trimmed in ["false", "true"] {
        let path = format!("/api/v2/datacoves/manifests?environment_slug=dev123&dag_id=daily&trimmed={trimmed}");
        let response = jade.get(ACME, &path).await;
        let length = response.headers().get("content-length").map(|v| v.to_str().unwrap().to_owned());
        let body = response.bytes().await.unwrap();
        assert_eq!(length, Some(body.len().to_string()), "trimmed={trimmed}");
    }
    let trimmed = jade.json(ACME, "/api/v2/datacoves/manifests?environment_slug=dev123&dag_id=daily", 200).await;
    assert_eq!(trimmed.as_object().unwrap().keys().collect::<Vec<_>>(), ["metadata", "nodes"]);
    assert_eq!(trimmed["metadata"], full["metadata"]);
    assert_eq!(trimmed["nodes"], full["nodes"]);
    let newest = jade.json(ACME, "/api/internal/manifests?environment_slug=dev123", 200).await;
    assert_eq!(newest, trimmed);
    let of_project = jade.json(ACME, "/api/v2/datacoves/projects/analytics/latest-manifest?trimmed=false", 200).await;
    assert_eq!(of_project, full);
    // The same DAG in another environment has no manifest: no reads across environments.
    let other = jade.json(ACME, "/api/v2/datacoves/manifests?environment_slug=prod123&dag_id=daily", 404).await;
    assert_eq!(message(&other), "Not Found");

    let shown = jade.json(ACME, &format!("/api/v2/accounts/1/runs/{}", run["id"]), 200).await;
    assert_eq!(shown["data"]["artifacts_saved"], true);
    assert_eq!(shown["data"]["artifact_s3_path"], key);
    let artifact =
        jade.json(ACME, &format!("/api/v2/accounts/1/runs/{}/artifacts/manifest.json", run["id"]), 200).await;
    assert!(artifact["data"].as_str().unwrap().as_bytes() == FIXTURE);
    let other_artifact = format!("/api/v2/accounts/1/runs/{}/artifacts/run_results.json", run["id"]);
    assert_eq!(message(&jade.json(ACME, &other_artifact, 404).await), "Not Found");
    jade.stop().await;
}

async fn tagged_manifests_are_unique_per_environment(backend: Backend) {
    let jade = TestJade::with_storage(Scenario::default(), backend, &[]).await;
    let small = br#"{"metadata": {"v": 1}, "nodes": {"a": {}}, "macros": {"m": 1}}"#;
    let (status, ..) =
        post(&jade, "/api/internal/manifests", manifest_form("dev123", small).text("tag", "release 1.0")).await;
    assert_eq!(status, 201);
    let (status, ..) = post(&jade, "/api/v2/datacoves/manifests", manifest_form("dev123", FIXTURE)).await;
    assert_eq!(status, 201);
    let tagged = jade.json(ACME, "/api/v2/datacoves/manifests?environment_slug=dev123&tag=release%201.0", 200).await;
    assert_eq!(tagged, json!({"metadata": {"v": 1}, "nodes": {"a": {}}}));
    let (status, body, _) =
        post(&jade, "/api/v2/datacoves/manifests", manifest_form("dev123", small).text("tag", "release 1.0")).await;
    assert_eq!(status, 422);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), json!({"errors": {"tag": ["has already been taken"]}}));
    // The same tag in another environment is fine.
    let (status, ..) =
        post(&jade, "/api/v2/datacoves/manifests", manifest_form("prod123", small).text("tag", "release 1.0")).await;
    assert_eq!(status, 201);
    // Without a tag or DAG the newest manifest of the environment is read.
    let newest = jade.json(ACME, "/api/v2/datacoves/manifests?environment_slug=dev123&trimmed=false", 200).await;
    assert_eq!(newest, serde_json::from_slice::<Value>(FIXTURE).unwrap());
    assert_eq!(count(&jade, "manifests").await, 3);
    jade.stop().await;
}

async fn manifests_of_the_first_jade_are_served_and_trimmed_once(backend: Backend) {
    let jade = TestJade::with_storage(Scenario::default(), backend, &[]).await;
    let db = support::connect(&jade.seeded.jade_db).await;
    let content: Value = serde_json::from_slice(FIXTURE).unwrap();
    // Row 901: body in storage and parsed content in the row, as the first Jade wrote them.
    // Row 902: only the row's content (its body never reached storage).
    db.execute(
        "INSERT INTO manifests (id, account_id, project_id, environment_slug, content, inserted_at, updated_at)
         VALUES (901, 1, 10, 'dev123', $1, '2024-01-01', '2024-01-01'), (902, 1, 11, 'mkt123', $1, '2024-01-01', '2024-01-01')",
        &[&content],
    )
    .await
    .unwrap();
    let directory = "accounts/1/environments/dev123/manifests/901";
    jade.storage.put(&format!("{directory}/manifest.json"), FIXTURE).await;

    let trimmed = jade.json(ACME, "/api/v2/datacoves/manifests?environment_slug=dev123", 200).await;
    assert_eq!((&trimmed["metadata"], &trimmed["nodes"]), (&content["metadata"], &content["nodes"]));
    let kept =
        jade.storage.object(&format!("{directory}/manifest.trimmed.json")).await.expect("the trimmed form is kept");
    assert_eq!(serde_json::from_slice::<Value>(&kept).unwrap(), trimmed);
    assert!(raw(&jade, "/api/v2/datacoves/manifests?environment_slug=dev123&trimmed=false").await.1 == FIXTURE);

    let from_row = jade.json(ACME, "/api/v2/datacoves/manifests?environment_slug=mkt123&trimmed=false", 200).await;
    assert_eq!(from_row, content);
    let trimmed = jade.json(ACME, "/api/v2/datacoves/projects/marketing/latest-manifest", 200).await;
    assert_eq!(trimmed.as_object().unwrap().len(), 2);
    assert_eq!(trimmed["nodes"], content["nodes"]);
    jade.stop().await;
}

async fn files_are_created_read_replaced_and_deleted(backend: Backend) {
    let jade = TestJade::with_storage(Scenario::default(), backend, &[]).await;
    let base = "/api/v2/datacoves/environments/dev123/files";

    let (status, body, headers) =
        post(&jade, base, file_form("daily run:v1.2+x", br#"{"rows": [1, 2]}"#, "my results_1.json")).await;
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    let data = &created["data"];
    let path = "/environments/dev123/files/daily-run-v1-2-x/my-results-1.json";
    assert_eq!(data["path"], path);
    assert_eq!(
        (data["tag"].as_str(), data["filename"].as_str()),
        (Some("daily run:v1.2+x"), Some("my results_1.json"))
    );
    assert_eq!(data["environment_slug"], "dev123");
    assert!(data.get("contents").is_none(), "no contents on create");
    let slug = data["slug"].as_str().unwrap().to_owned();
    assert_eq!(headers["location"], format!("/api/v2/datacoves/environments/dev123/files/?slug={slug}").as_str());
    let first_key = jade.body_key(&slug).await.unwrap();
    assert_eq!(jade.storage.object(&first_key).await.as_deref(), Some(br#"{"rows": [1, 2]}"#.as_slice()));

    for query in [format!("slug={slug}"), "tag=daily%20run:v1.2%2Bx".into(), "filename=my%20results_1.json".into()] {
        let file = jade.json(ACME, &format!("{base}?{query}"), 200).await;
        assert_eq!(file["data"]["contents"], json!({"rows": [1, 2]}), "{query}");
        assert_eq!(file["data"]["slug"], slug.as_str());
        assert!(file["data"]["inserted_at"].as_str().unwrap().ends_with('Z'));
    }
    // A body that is not JSON comes back as a string.
    let (status, ..) = post(&jade, base, file_form("notes", b"line one\nline \"two\"", "notes.txt")).await;
    assert_eq!(status, 201);
    let notes = jade.json(ACME, &format!("{base}/?tag=notes"), 200).await;
    assert_eq!(notes["data"]["contents"], "line one\nline \"two\"");
    let bad = jade.json(ACME, base, 400).await;
    assert!(message(&bad).contains("slug, tag or filename"));

    // The same tag again: a new version, the newest wins.
    let (status, ..) = post(&jade, base, file_form("notes", b"{\"v\": 2}", "notes.txt")).await;
    assert_eq!(status, 201);
    assert_eq!(jade.json(ACME, &format!("{base}?tag=notes"), 200).await["data"]["contents"], json!({"v": 2}));

    // Replace by slug (PUT, query) and by tag (PATCH, form field, legacy prefix).
    let form = Form::new().part("file", file(b"[3]", "renamed.json"));
    let url = jade.url(&format!("{base}?slug={slug}"));
    let response = jade.client.put(url).bearer_auth(ACME).multipart(form).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let replaced: Value = response.json().await.unwrap();
    assert_eq!(replaced["data"]["filename"], "renamed.json");
    assert_eq!(replaced["data"]["contents"], json!([3]));
    let renamed = "/environments/dev123/files/daily-run-v1-2-x/renamed.json";
    assert_eq!(replaced["data"]["path"], renamed);
    let form = Form::new().text("tag", "daily run:v1.2+x").part("file", file(b"plain", "renamed.json"));
    let url = jade.url("/api/internal/environments/dev123/files");
    let response = jade.client.patch(url).bearer_auth(ACME).multipart(form).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["data"]["contents"], "plain");
    assert_eq!(jade.storage.object(&first_key).await, None, "the old filename's body is gone");
    let renamed_key = jade.body_key(&slug).await.unwrap();
    assert_eq!(jade.storage.object(&renamed_key).await.as_deref(), Some(b"plain".as_slice()));
    let notes_slug =
        jade.json(ACME, &format!("{base}?tag=notes"), 200).await["data"]["slug"].as_str().unwrap().to_owned();
    let notes_key = jade.body_key(&notes_slug).await.unwrap();

    // Delete with a JSON body, as the provider sends it; by slug in the query; by form.
    let response =
        jade.client.delete(jade.url(base)).bearer_auth(ACME).json(&json!({"tag": "notes"})).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "");
    assert_eq!(message(&jade.json(ACME, &format!("{base}?tag=notes"), 404).await), "Not Found");
    assert_eq!(jade.storage.object(&notes_key).await, None);
    let response = jade.client.delete(jade.url(&format!("{base}?slug={slug}"))).bearer_auth(ACME).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(jade.storage.object(&renamed_key).await, None);
    let response = jade.client.delete(jade.url(base)).bearer_auth(ACME).form(&[("tag", "gone")]).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(count(&jade, "files").await, 0);
    jade.stop().await;
}

async fn several_files_are_stored_together(backend: Backend) {
    let jade = TestJade::with_storage(Scenario::default(), backend, &[]).await;
    let base = "/api/v2/datacoves/environments/prod123/files";
    // Parts in any order, as multipart clients may send them.
    let form = Form::new()
        .part("files[1][file]", file(b"{\"b\": 1}", "b.json"))
        .text("files[0][tag]", "first")
        .text("files[1][tag]", "second")
        .part("files[0][file]", file(b"a", "a.txt"));
    let (status, body, headers) = post(&jade, base, form).await;
    assert_eq!(status, 201, "{body}");
    assert!(headers.get("location").is_none());
    let created: Value = serde_json::from_str(&body).unwrap();
    let tags: Vec<&str> = created["data"].as_array().unwrap().iter().map(|f| f["tag"].as_str().unwrap()).collect();
    assert_eq!(tags, vec!["first", "second"]);
    assert_eq!(jade.json(ACME, &format!("{base}?tag=second"), 200).await["data"]["contents"], json!({"b": 1}));

    // One bad name refuses the whole upload before anything is stored.
    for (tag, filename, field) in
        [("ok", "../../etc/passwd", "filename"), ("../x", "x.json", "tag"), ("a//b", "x", "tag"), ("", "x", "tag")]
    {
        let form = Form::new()
            .text("files[0][tag]", "fine")
            .part("files[0][file]", file(b"1", "fine.json"))
            .text("files[1][tag]", tag.to_owned())
            .part("files[1][file]", file(b"2", filename));
        let (status, body, _) = post(&jade, base, form).await;
        assert_eq!(status, 422, "{tag} {filename}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert!(body["errors"][field].is_array(), "{body}");
    }
    let (status, body, _) = post(&jade, base, Form::new().part("file", file(b"1", "x.json"))).await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (422, json!({"errors": {"tag": ["can't be blank"]}}))
    );
    assert_eq!(count(&jade, "files").await, 2);
    assert_eq!(jade.storage.client.list("/environments/prod123/").await.unwrap().len(), 2, "only the stored bodies");

    // A row whose body is gone.
    let first = created["data"][0]["slug"].as_str().unwrap();
    jade.storage.delete(&jade.body_key(first).await.unwrap()).await;
    let missing = jade.json(ACME, &format!("{base}?tag=first"), 404).await;
    assert_eq!(message(&missing), "File found but could not download contents from storage bucket.");
    jade.stop().await;
}

/// `PUT`/`PATCH` with a `tag` form field other than the file's renames the tag and moves the
/// body to the new path, as the first Jade did; with a new `file` the body is replaced too.
async fn a_new_tag_renames_a_file_and_moves_its_body(backend: Backend) {
    let jade = TestJade::with_storage(Scenario::default(), backend, &[]).await;
    let base = "/api/v2/datacoves/environments/dev123/files";
    let send = |method: reqwest::Method, query: &str, form: Form| {
        let url = jade.url(&format!("{base}{query}"));
        jade.client.request(method, url).bearer_auth(ACME).multipart(form).send()
    };
    let (status, body, _) = post(&jade, base, file_form("nightly", br#"{"v": 1}"#, "state.json")).await;
    assert_eq!(status, 201, "{body}");
    let slug = serde_json::from_str::<Value>(&body).unwrap()["data"]["slug"].as_str().unwrap().to_owned();
    let old_key = jade.body_key(&slug).await.unwrap();

    // By slug in the query, a new tag and a new file in the form.
    let form = Form::new().text("tag", "weekly run").part("file", file(br#"{"v": 2}"#, "state_2.json"));
    let response = send(reqwest::Method::PUT, &format!("?slug={slug}"), form).await.unwrap();
    assert_eq!(response.status(), 200);
    let renamed: Value = response.json().await.unwrap();
    let new_path = "/environments/dev123/files/weekly-run/state-2.json";
    assert_eq!(
        (&renamed["data"]["tag"], &renamed["data"]["filename"], &renamed["data"]["path"]),
        (&json!("weekly run"), &json!("state_2.json"), &json!(new_path))
    );
    assert_eq!(renamed["data"]["slug"], slug.as_str());
    assert_eq!(renamed["data"]["contents"], json!({"v": 2}));
    assert_eq!(jade.storage.object(&old_key).await, None, "the old path's body is gone");
    let new_key = jade.body_key(&slug).await.unwrap();
    assert_eq!(jade.storage.object(&new_key).await.as_deref(), Some(br#"{"v": 2}"#.as_slice()));
    assert_eq!(message(&jade.json(ACME, &format!("{base}?tag=nightly"), 404).await), "Not Found");
    let read = jade.json(ACME, &format!("{base}?tag=weekly%20run"), 200).await;
    assert_eq!((&read["data"]["slug"], &read["data"]["contents"]), (&json!(slug), &json!({"v": 2})));

    // By the old tag in the query (legacy prefix, PATCH), only a new tag in the form: the
    // stored body moves as it is.
    let form = Form::new().text("tag", "monthly");
    let response = send(reqwest::Method::PATCH, "?tag=weekly%20run", form).await.unwrap();
    assert_eq!(response.status(), 200);
    let moved: Value = response.json().await.unwrap();
    let moved_path = "/environments/dev123/files/monthly/state-2.json";
    assert_eq!((&moved["data"]["tag"], &moved["data"]["path"]), (&json!("monthly"), &json!(moved_path)));
    assert_eq!(moved["data"]["contents"], json!({"v": 2}));
    assert_eq!(jade.storage.object(&new_key).await, None);
    let moved_key = jade.body_key(&slug).await.unwrap();
    assert_eq!(jade.storage.object(&moved_key).await.as_deref(), Some(br#"{"v": 2}"#.as_slice()));

    // By slug in the form, with a tag that could escape the environment: refused, unchanged.
    let form = Form::new().text("slug", slug.clone()).text("tag", "../other").part("file", file(b"x", "x.json"));
    let response = send(reqwest::Method::PUT, "", form).await.unwrap();
    assert_eq!(response.status(), 422);
    assert!(response.json::<Value>().await.unwrap()["errors"]["tag"].is_array());
    let unchanged = jade.json(ACME, &format!("{base}?slug={slug}"), 200).await;
    assert_eq!((&unchanged["data"]["tag"], &unchanged["data"]["path"]), (&json!("monthly"), &json!(moved_path)));
    assert_eq!(count(&jade, "files").await, 1);
    jade.stop().await;
}

/// Bytes that are not UTF-8 still answer valid JSON (`contents` a string with U+FFFD where the
/// bytes were not UTF-8); `Accept: application/octet-stream` answers the stored bytes exactly.
async fn binary_files_answer_valid_json_or_their_exact_bytes(backend: Backend) {
    let jade = TestJade::with_storage(Scenario::default(), backend, &[]).await;
    let base = "/api/v2/datacoves/environments/dev123/files";
    let blob = binary_blob();
    // Also large enough to cross the chunk boundaries of every backend's stream.
    let mut big = Vec::new();
    while big.len() < 3 << 20 {
        big.extend_from_slice(&blob);
    }
    // Looks like JSON but a string holds bytes that are not UTF-8: not JSON.
    let almost_json = b"{\"a\": \"\xff\xfe\"}".to_vec();
    let cases = [
        ("msgpack", "partial_parse.msgpack", blob.clone()),
        ("pickle", "graph.gpickle", big),
        ("almost", "almost.json", almost_json),
    ];
    for (tag, filename, bytes) in &cases {
        let (status, body, _) = post(&jade, base, file_form(tag, bytes, filename)).await;
        assert_eq!(status, 201, "{body}");
    }
    for (tag, filename, bytes) in &cases {
        let response = jade.get(ACME, &format!("{base}?tag={tag}")).await;
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let text = response.bytes().await.unwrap();
        let parsed: Value = serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{tag}: not valid JSON: {e}"));
        let expected = String::from_utf8_lossy(bytes);
        assert!(parsed["data"]["contents"].as_str() == Some(&*expected), "{tag}: contents differ");
        assert_eq!(parsed["data"]["filename"], *filename);

        let url = jade.url(&format!("{base}?tag={tag}"));
        let response =
            jade.client.get(url).bearer_auth(ACME).header("Accept", "application/octet-stream").send().await.unwrap();
        assert_eq!(response.status(), 200);
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "application/octet-stream");
        assert_eq!(headers["content-length"].to_str().unwrap(), bytes.len().to_string(), "{tag}");
        assert_eq!(headers["content-disposition"].to_str().unwrap(), format!("attachment; filename=\"{filename}\""));
        let got = response.bytes().await.unwrap();
        assert!(got.as_ref() == bytes.as_slice(), "{tag}: the stored bytes exactly ({} of {})", got.len(), bytes.len());
    }
    // A JSON file is served as its bytes too, by slug; a client preferring JSON gets JSON.
    let (status, body, _) = post(&jade, base, file_form("json", br#"{"a": [1]}"#, "dir/my file.json")).await;
    assert_eq!(status, 201);
    let slug = serde_json::from_str::<Value>(&body).unwrap()["data"]["slug"].as_str().unwrap().to_owned();
    let download = |accept: &'static str| {
        jade.client.get(jade.url(&format!("{base}?slug={slug}"))).bearer_auth(ACME).header("Accept", accept).send()
    };
    let response = download("application/octet-stream;q=0.9, text/plain;q=0.1").await.unwrap();
    assert_eq!(response.headers()["content-disposition"], "attachment; filename=\"my file.json\"");
    assert_eq!(response.bytes().await.unwrap().as_ref(), br#"{"a": [1]}"#);
    let response = download("application/json, application/octet-stream;q=0.5").await.unwrap();
    assert_eq!(response.json::<Value>().await.unwrap()["data"]["contents"], json!({"a": [1]}));
    let response = download("*/*").await.unwrap();
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    // Errors stay JSON.
    let response = jade
        .client
        .get(jade.url(&format!("{base}?tag=none")))
        .bearer_auth(ACME)
        .header("Accept", "application/octet-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(message(&response.json().await.unwrap()), "Not Found");
    jade.stop().await;
}

/// A rename whose new body cannot be stored leaves the file as it was and nothing at the
/// new path.
#[tokio::test]
async fn a_rename_that_cannot_store_its_body_changes_nothing() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    let root = jade.storage.dir.path();
    let base = "/api/v2/datacoves/environments/dev123/files";
    let (status, body, _) = post(&jade, base, file_form("nightly", b"old", "state.txt")).await;
    assert_eq!(status, 201);
    let slug = serde_json::from_str::<Value>(&body).unwrap()["data"]["slug"].as_str().unwrap().to_owned();
    let key = jade.body_key(&slug).await.unwrap();
    // A file where the new path's bodies would go: they cannot be written.
    std::fs::create_dir_all(root.join("environments/dev123/file-versions")).unwrap();
    std::fs::write(root.join("environments/dev123/file-versions/weekly"), b"blocker").unwrap();
    for form in
        [Form::new().text("tag", "weekly"), Form::new().text("tag", "weekly").part("file", file(b"new", "state.txt"))]
    {
        let url = jade.url(&format!("{base}?tag=nightly"));
        let response = jade.client.put(url).bearer_auth(ACME).multipart(form).send().await.unwrap();
        assert_eq!(response.status(), 422);
        assert_eq!(message(&response.json().await.unwrap()), "File upload failed. Please check the error in the logs.");
        let kept = jade.json(ACME, &format!("{base}?tag=nightly"), 200).await;
        assert_eq!(
            (&kept["data"]["contents"], &kept["data"]["path"]),
            (&json!("old"), &json!("/environments/dev123/files/nightly/state.txt"))
        );
        assert_eq!(message(&jade.json(ACME, &format!("{base}?tag=weekly"), 404).await), "Not Found");
    }
    assert_eq!(
        stored(root),
        vec![key.trim_start_matches('/').to_owned(), "environments/dev123/file-versions/weekly".to_owned()],
        "only the original body (and the blocker) is stored"
    );
    assert_eq!(count(&jade, "files").await, 1);
    jade.stop().await;
}

/// Replacements and uploads that meet on one path, at the same time, all succeed (none
/// deadlocks on the other's locks), and leave every row of the path on one stored body.
#[tokio::test]
async fn writers_meeting_on_one_path_all_succeed() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    let base = "/api/v2/datacoves/environments/dev123/files";
    let mut slugs = Vec::new();
    for body in [b"one", b"two"] {
        let (status, body, _) = post(&jade, base, file_form("shared", body, "same.json")).await;
        assert_eq!(status, 201, "{body}");
        slugs.push(serde_json::from_str::<Value>(&body).unwrap()["data"]["slug"].as_str().unwrap().to_owned());
    }
    for round in 0..15 {
        let replace = |slug: &String, method: reqwest::Method| {
            let form = Form::new().part("file", file(format!("{slug} {round}").as_bytes(), "same.json"));
            jade.client
                .request(method, jade.url(&format!("{base}?slug={slug}")))
                .bearer_auth(ACME)
                .multipart(form)
                .send()
        };
        let (a, b, c, d) = tokio::join!(
            replace(&slugs[0], reqwest::Method::PUT),
            replace(&slugs[1], reqwest::Method::PATCH),
            jade.client
                .post(jade.url(base))
                .bearer_auth(ACME)
                .multipart(file_form("shared", b"new", "same.json"))
                .send(),
            replace(&slugs[0], reqwest::Method::PUT),
        );
        for response in [a, b, c, d] {
            let response = response.unwrap();
            let status = response.status();
            assert!(status.is_success(), "round {round}: {status} {}", response.text().await.unwrap());
        }
    }
    let client = support::connect(&jade.seeded.jade_db).await;
    let keys = client
        .query("SELECT DISTINCT coalesce(storage_key, path) FROM files WHERE path = '/environments/dev123/files/shared/same.json'", &[])
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "every row of the path reads one body");
    let key: String = keys[0].get(0);
    assert!(jade.storage.object(&key).await.is_some());
    assert_eq!(stored(jade.storage.dir.path()), vec![key.trim_start_matches('/').to_owned()], "no body left behind");
    jade.stop().await;
}

#[tokio::test]
async fn refused_manifests_leave_no_row_and_no_object() {
    let jade = TestJade::start(Scenario::default(), &[("MAX_UPLOAD_BYTES", "4096")]).await;
    let cases: Vec<(Form, u16, Value)> = vec![
        (manifest_form("dev123", b"this is not json"), 422, Value::Null),
        (manifest_form("dev123", b"[1, 2, 3]"), 422, Value::Null),
        (
            manifest_form("dev123", b"{}").text("dag_id", "daily").text("run_id", "no-such-run"),
            404,
            json!({"errors": {"message": "Not Found"}}),
        ),
        (Form::new().text("environment_slug", "dev123"), 422, json!({"errors": {"file": ["can't be blank"]}})),
    ];
    for (form, status, expected) in cases {
        let (got, body, _) = post(&jade, "/api/v2/datacoves/manifests", form).await;
        assert_eq!(got, status, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        if expected.is_null() {
            assert!(body["errors"]["file"][0].as_str().unwrap().contains("JSON"), "{body}");
        } else {
            assert_eq!(body, expected);
        }
    }
    // Over MAX_UPLOAD_BYTES: 413 before the body is read.
    let big = vec![b' '; 10_000];
    let (status, body, _) = post(&jade, "/api/v2/datacoves/manifests", manifest_form("dev123", &big)).await;
    assert_eq!(status, 413, "{body}");
    assert!(message(&serde_json::from_str(&body).unwrap()).contains("4096"));
    assert_eq!(count(&jade, "manifests").await, 0);
    assert!(stored(jade.storage.dir.path()).is_empty());
    jade.stop().await;
}

/// The trimmed form as a reference computes it: each kept member's value, byte for byte, in
/// the order `members` names them.
fn reference_trim(body: &[u8], members: [&str; 2]) -> Vec<u8> {
    let parsed: std::collections::HashMap<String, &serde_json::value::RawValue> = serde_json::from_slice(body).unwrap();
    let kept: Vec<String> = members.iter().map(|m| format!("\"{m}\":{}", parsed[*m].get())).collect();
    format!("{{{}}}", kept.join(",")).into_bytes()
}

#[tokio::test]
async fn trimmed_manifests_are_byte_identical_to_a_reference_trim_and_bad_bodies_store_nothing() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    let crafted = format!(
        r#"{{ "macros": {{"m": "{{{{ x }}}}"}}, "nodes" :
            {{"model.a\"b": {{"sql": "select \"x\" -- \u00e9\ud83d\ude00 \\", "deep": {deep}, "n": -1.5e+3}}}},
            "child_map": {{}}, "metadata"  :  {{"dbt_version": "1.7.0", "note": "caf\u00e9 \"quoted\"", "empty": []}} }}"#
    );
    let cases: [(&[u8], [&str; 2]); 2] =
        [(FIXTURE, ["metadata", "nodes"]), (crafted.as_bytes(), ["nodes", "metadata"])];
    for (n, (body, order)) in cases.into_iter().enumerate() {
        let tag = format!("reference-{n}");
        let (status, answer, _) =
            post(&jade, "/api/v2/datacoves/manifests", manifest_form("dev123", body).text("tag", tag.clone())).await;
        assert_eq!(status, 201, "{answer}");
        let (status, trimmed) =
            raw(&jade, &format!("/api/v2/datacoves/manifests?environment_slug=dev123&tag={tag}")).await;
        assert_eq!(status, 200);
        assert!(
            trimmed == reference_trim(body, order),
            "case {n}: {}",
            String::from_utf8_lossy(&trimmed[..200.min(trimmed.len())])
        );
    }
    let objects = stored(jade.storage.dir.path());
    let rows = count(&jade, "manifests").await;
    // Cut short, or followed by more than whitespace: 422, nothing stored.
    for body in [&FIXTURE[..FIXTURE.len() - 10], &[FIXTURE, b" x"].concat()[..], &[FIXTURE, b"{}"].concat()[..]] {
        let (status, answer, _) = post(&jade, "/api/v2/datacoves/manifests", manifest_form("dev123", body)).await;
        assert_eq!(status, 422, "{answer}");
        assert!(answer.contains("is not valid JSON"), "{answer}");
    }
    assert_eq!(count(&jade, "manifests").await, rows);
    assert_eq!(stored(jade.storage.dir.path()), objects);
    jade.stop().await;
}

/// `POST …/manifests` with `query` in the query string and `form` as the body, as `token`.
async fn post_manifest(jade: &TestJade, token: &str, path: &str, query: &[(&str, &str)], form: Form) -> (u16, String) {
    let response =
        jade.client.post(jade.url(path)).query(query).bearer_auth(token).multipart(form).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn run_key(dag_id: &str, run_id: &str) -> String {
    let safe_run = run_id.replace(['_', ':', '.', '+'], "-");
    format!("accounts/1/environments/dev123/dags/{dag_id}/dag_runs/{safe_run}/manifest.json")
}

/// The first Jade read `environment_slug`, `dag_id`, `run_id` and `tag` from the query string
/// as well as from the form (the form wins), and the Datacoves clients that send them there
/// rely on the manifest being linked to its run.
#[tokio::test]
async fn manifest_fields_may_come_in_the_query_string() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    let runs = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&order_by=id", 200).await;
    let run = |n: usize| {
        let run = &runs["data"][n];
        (
            run["id"].as_i64().unwrap(),
            run["dag_id"].as_str().unwrap().to_owned(),
            run["dag_run_run_id"].as_str().unwrap().to_owned(),
        )
    };
    let only_file = || Form::new().part("file", file(FIXTURE, "manifest.json"));
    let artifact = |id: i64| format!("/api/v2/accounts/1/runs/{id}/artifacts/manifest.json");

    // Everything in the query string, only the file in the form.
    let (first, dag, run_id) = run(1);
    let query = [("environment_slug", "dev123"), ("dag_id", dag.as_str()), ("run_id", run_id.as_str())];
    let (status, body) = post_manifest(&jade, ACME, "/api/v2/datacoves/manifests", &query, only_file()).await;
    assert_eq!((status, body.as_str()), (201, "\"ok\""));
    assert!(jade.storage.object(&run_key(&dag, &run_id)).await.as_deref() == Some(FIXTURE), "stored with its run");
    let served = jade.json(ACME, &artifact(first), 200).await;
    assert!(served["data"].as_str().unwrap().as_bytes() == FIXTURE);
    let shown = jade.json(ACME, &format!("/api/v2/accounts/1/runs/{first}"), 200).await;
    assert_eq!(shown["data"]["artifacts_saved"], true);

    // Run and tag in the query, environment in the form, on the legacy prefix.
    let (second, dag, run_id) = run(0);
    let query = [("dag_id", dag.as_str()), ("run_id", run_id.as_str()), ("tag", "nightly")];
    let form = only_file().text("environment_slug", "dev123");
    let (status, body) = post_manifest(&jade, ACME, "/api/internal/manifests", &query, form).await;
    assert_eq!(status, 201, "{body}");
    assert!(jade.json(ACME, &artifact(second), 200).await["data"].as_str().unwrap().as_bytes() == FIXTURE);
    let tagged =
        jade.json(ACME, "/api/v2/datacoves/manifests?environment_slug=dev123&tag=nightly&trimmed=false", 200).await;
    assert_eq!(tagged, serde_json::from_slice::<Value>(FIXTURE).unwrap());

    // A form field wins over the same query parameter: the query names a run that does not
    // exist and an environment the token may not use, the form the real ones.
    let (third, dag, run_id) = run(2);
    let query =
        [("environment_slug", "globex123"), ("dag_id", "no-such-dag"), ("run_id", "no-such-run"), ("tag", "taken?")];
    let form = only_file()
        .text("environment_slug", "dev123")
        .text("dag_id", dag.clone())
        .text("run_id", run_id.clone())
        .text("tag", "from the form");
    let (status, body) = post_manifest(&jade, ACME, "/api/v2/datacoves/manifests", &query, form).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(jade.json(ACME, &artifact(third), 200).await["data"].as_str().map(str::len), Some(FIXTURE.len()));
    jade.json(ACME, "/api/v2/datacoves/manifests?environment_slug=dev123&tag=from%20the%20form", 200).await;
    jade.json(ACME, "/api/v2/datacoves/manifests?environment_slug=dev123&tag=taken%3F", 404).await;

    // Authorization sees the query string's environment.
    let (status, body) =
        post_manifest(&jade, GLOBEX, "/api/v2/datacoves/manifests", &[("environment_slug", "dev123")], only_file())
            .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        message(&serde_json::from_str(&body).unwrap()),
        "Invalid Environment in Path. You have no accces to this environment."
    );
    let (status, body) =
        post_manifest(&jade, GLOBEX, "/api/internal/manifests", &[("environment_slug", "globex123")], only_file())
            .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(count(&jade, "manifests").await, 4);
    jade.stop().await;
}

/// Only one of `dag_id` and `run_id` (in the form or the query): stored without a run, as the
/// first Jade did.
#[tokio::test]
async fn a_manifest_with_half_a_run_is_stored_without_one() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    let runs = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&order_by=id", 200).await;
    let run_id = runs["data"][1]["dag_run_run_id"].as_str().unwrap().to_owned();
    let cases: Vec<(Vec<(&str, &str)>, Form)> = vec![
        (vec![], manifest_form("dev123", FIXTURE).text("dag_id", "daily")),
        (vec![], manifest_form("dev123", FIXTURE).text("run_id", run_id.clone())),
        (vec![("dag_id", "daily")], manifest_form("dev123", FIXTURE)),
        (
            vec![("environment_slug", "dev123"), ("run_id", run_id.as_str())],
            Form::new().part("file", file(FIXTURE, "manifest.json")),
        ),
    ];
    for (query, form) in cases {
        let (status, body) = post_manifest(&jade, ACME, "/api/v2/datacoves/manifests", &query, form).await;
        assert_eq!((status, body.as_str()), (201, "\"ok\""), "{query:?}");
    }
    let db = support::connect(&jade.seeded.jade_db).await;
    let rows = db.query("SELECT id, dag_id, dag_run_run_id, job_run_id FROM manifests ORDER BY id", &[]).await.unwrap();
    assert_eq!(rows.len(), 4);
    for row in &rows {
        let id: i64 = row.get(0);
        assert!(row.get::<_, Option<String>>(1).is_none() && row.get::<_, Option<String>>(2).is_none());
        assert!(row.get::<_, Option<i64>>(3).is_none());
        let key = format!("accounts/1/environments/dev123/manifests/{id}/manifest.json");
        assert!(jade.storage.object(&key).await.as_deref() == Some(FIXTURE), "{key}");
    }
    assert!(jade.storage.object(&run_key("daily", &run_id)).await.is_none(), "nothing stored for the run");
    let artifact = format!("/api/v2/accounts/1/runs/{}/artifacts/manifest.json", runs["data"][1]["id"]);
    assert_eq!(message(&jade.json(ACME, &artifact, 404).await), "Not Found");
    let newest = jade.json(ACME, "/api/v2/datacoves/manifests?environment_slug=dev123&trimmed=false", 200).await;
    assert_eq!(newest, serde_json::from_slice::<Value>(FIXTURE).unwrap());
    jade.stop().await;
}

/// A storage write failing halfway through a request (here: something already squats the
/// second key) leaves neither rows nor the objects written before it.
#[tokio::test]
async fn a_storage_failure_mid_upload_leaves_nothing_behind() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    let root = jade.storage.dir.path();
    // Manifests: the full body is stored, the trimmed one cannot be.
    let runs = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&order_by=id", 200).await;
    let run_id = runs["data"][0]["dag_run_run_id"].as_str().unwrap().to_owned();
    let directory = root.join(format!(
        "accounts/1/environments/dev123/dags/hourly/dag_runs/{}",
        run_id.replace(['_', ':', '.', '+'], "-")
    ));
    std::fs::create_dir_all(directory.join("manifest.trimmed.json/blocked")).unwrap();
    let form = manifest_form("dev123", FIXTURE).text("dag_id", "hourly").text("run_id", run_id);
    let (status, body, _) = post(&jade, "/api/v2/datacoves/manifests", form).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        message(&serde_json::from_str(&body).unwrap()),
        "File upload failed. Please check the error in the logs."
    );
    assert!(!directory.join("manifest.json").exists(), "the full body was removed again");
    assert_eq!(count(&jade, "manifests").await, 0);

    // Files: the first of two is stored, the second cannot be.
    std::fs::create_dir_all(root.join("environments/dev123/file-versions")).unwrap();
    std::fs::write(root.join("environments/dev123/file-versions/second"), b"blocker").unwrap();
    let form = Form::new()
        .text("files[0][tag]", "first")
        .part("files[0][file]", file(b"a", "a.json"))
        .text("files[1][tag]", "second")
        .part("files[1][file]", file(b"b", "b.json"));
    let (status, body, _) = post(&jade, "/api/v2/datacoves/environments/dev123/files", form).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        !stored(root).iter().any(|key| key.contains("file-versions/first/")),
        "the first file was removed again: {:?}",
        stored(root)
    );
    assert_eq!(count(&jade, "files").await, 0);
    jade.stop().await;
}

/// The storage server going away: every route answers the contract's storage message and no
/// row is written without its body.
async fn a_stopped_storage_server_answers_422_and_writes_no_row(backend: Backend) {
    let mut jade = TestJade::with_storage(Scenario::default(), backend, &[]).await;
    let base = "/api/v2/datacoves/environments/dev123/files";
    let (status, ..) = post(&jade, base, file_form("kept", b"{}", "kept.json")).await;
    assert_eq!(status, 201);
    jade.storage.stop_server();

    let (status, body, _) = post(&jade, base, file_form("new", b"{}", "new.json")).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        message(&serde_json::from_str(&body).unwrap()),
        "File upload failed. Please check the error in the logs."
    );
    let (status, body, _) = post(&jade, "/api/v2/datacoves/manifests", manifest_form("dev123", FIXTURE)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(count(&jade, "files").await, 1);
    assert_eq!(count(&jade, "manifests").await, 0);

    let read = jade.json(ACME, &format!("{base}?tag=kept"), 422).await;
    assert_eq!(message(&read), "The request to the storage bucket failed.");
    let response = jade.client.delete(jade.url(&format!("{base}?tag=kept"))).bearer_auth(ACME).send().await.unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(
        message(&response.json().await.unwrap()),
        "Deletion of file contents from storage failed. File record and contents remain."
    );
    assert_eq!(count(&jade, "files").await, 1, "the record remains");
    jade.stop().await;
}

mod a_stopped_storage_server_answers_422_and_writes_no_row {
    use super::Backend;
    #[tokio::test]
    async fn minio() {
        super::a_stopped_storage_server_answers_422_and_writes_no_row(Backend::Minio).await
    }
    #[tokio::test]
    async fn s3() {
        super::a_stopped_storage_server_answers_422_and_writes_no_row(Backend::S3).await
    }
    #[tokio::test]
    async fn blob() {
        super::a_stopped_storage_server_answers_422_and_writes_no_row(Backend::Blob).await
    }
}

/// The id of the newest manifest row.
async fn newest_manifest(jade: &TestJade) -> i64 {
    let client = support::connect(&jade.seeded.jade_db).await;
    client.query_one("SELECT max(id) FROM manifests", &[]).await.unwrap().get(0)
}

/// Contract §8: manifests and files over 1 KiB go out compressed as asked (the stored bytes
/// again once decoded), smaller ones as they are; each carries a strong ETag, and
/// `If-None-Match` with it answers 304 from the row alone: with the stored bodies removed
/// behind Jade's back, the 304 still comes.
async fn manifests_and_files_are_sent_compressed_and_conditionally(backend: Backend) {
    let jade = TestJade::with_storage(Scenario::default(), backend, &[]).await;
    let (status, ..) = post(&jade, "/api/v2/datacoves/manifests", manifest_form("dev123", FIXTURE)).await;
    assert_eq!(status, 201);
    let id = newest_manifest(&jade).await;
    let directory = format!("accounts/1/environments/dev123/manifests/{id}");
    let full = jade.storage.object(&format!("{directory}/manifest.json")).await.unwrap();
    let trimmed = jade.storage.object(&format!("{directory}/manifest.trimmed.json")).await.unwrap();
    assert!(full == FIXTURE);

    let reads = [
        ("/api/v2/datacoves/manifests?environment_slug=dev123&trimmed=false", &full, "f"),
        ("/api/v2/datacoves/manifests?environment_slug=dev123", &trimmed, "t"),
        ("/api/internal/manifests?environment_slug=dev123&trimmed=false", &full, "f"),
        ("/api/v2/datacoves/projects/analytics/latest-manifest", &trimmed, "t"),
        ("/api/internal/projects/analytics/latest-manifest?trimmed=false", &full, "f"),
    ];
    for (path, stored, form) in &reads {
        let etag = sent_compressed(&jade, ACME, path, &[], stored).await;
        assert_eq!(etag, format!("\"m{id}-{form}\""), "{path}");
        answers_not_modified(&jade, ACME, path, &[], &etag).await;
    }
    // Small answers go out as they are, though they vary.
    let small = br#"{"metadata": {"v": 1}, "nodes": {}}"#;
    let (status, ..) = post(&jade, "/api/v2/datacoves/manifests", manifest_form("prod123", small)).await;
    assert_eq!(status, 201);
    let answer = transfer::get(
        &jade,
        ACME,
        "/api/v2/datacoves/manifests?environment_slug=prod123",
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!((answer.status, answer.header("content-encoding")), (200, None));
    assert!(answer.varies_by_encoding());
    assert_eq!(serde_json::from_slice::<Value>(&answer.wire).unwrap(), json!({"metadata": {"v": 1}, "nodes": {}}));

    // A new upload is a new ETag; the old one no longer answers 304.
    let old = format!("\"m{id}-t\"");
    let (status, ..) = post(&jade, "/api/v2/datacoves/manifests", manifest_form("dev123", FIXTURE)).await;
    assert_eq!(status, 201);
    let newer = newest_manifest(&jade).await;
    let path = "/api/v2/datacoves/manifests?environment_slug=dev123";
    let answer = transfer::conditional(&jade, ACME, path, &[], &old).await;
    assert_eq!((answer.status, answer.etag()), (200, format!("\"m{newer}-t\"").as_str()));
    assert!(answer.wire == trimmed.as_slice());

    // 304 reads nothing from storage: the bodies are gone, the row still answers.
    let directory = format!("accounts/1/environments/dev123/manifests/{newer}");
    for key in ["manifest.json", "manifest.trimmed.json"] {
        jade.storage.delete(&format!("{directory}/{key}")).await;
    }
    for (path, form) in [(path, "t"), ("/api/v2/datacoves/projects/analytics/latest-manifest?trimmed=false", "f")] {
        let etag = format!("\"m{newer}-{form}\"");
        assert_eq!(transfer::conditional(&jade, ACME, path, &[], &etag).await.status, 304, "{path}");
        assert_eq!(transfer::get(&jade, ACME, path, &[]).await.status, 404, "{path}: the body is gone");
    }

    // Files: a large JSON file, as JSON and as its bytes (two representations, two tags).
    let base = "/api/v2/datacoves/environments/dev123/files";
    let (status, body, _) = post(&jade, base, file_form("big", FIXTURE, "manifest.json")).await;
    assert_eq!(status, 201, "{body}");
    let slug = serde_json::from_str::<Value>(&body).unwrap()["data"]["slug"].as_str().unwrap().to_owned();
    let octet = [("accept", "application/octet-stream")];
    let url = format!("{base}?tag=big");
    let bytes_etag = sent_compressed(&jade, ACME, &url, &octet, FIXTURE).await;
    let as_json = transfer::get(&jade, ACME, &url, &[]).await;
    let parsed: Value = serde_json::from_slice(&as_json.wire).unwrap();
    assert_eq!(parsed["data"]["contents"], serde_json::from_slice::<Value>(FIXTURE).unwrap());
    let json_etag = sent_compressed(&jade, ACME, &url, &[], &as_json.wire).await;
    assert_ne!(bytes_etag, json_etag);
    answers_not_modified(&jade, ACME, &url, &octet, &bytes_etag).await;
    answers_not_modified(&jade, ACME, &format!("{base}?slug={slug}"), &[], &json_etag).await;
    let crossed = transfer::conditional(&jade, ACME, &url, &[], &bytes_etag).await;
    assert_eq!((crossed.status, crossed.etag()), (200, json_etag.as_str()), "the bytes' tag is not the JSON's");

    // A small file goes out as it is, its length declared.
    let blob = binary_blob();
    let (status, ..) = post(&jade, base, file_form("small", &blob, "partial_parse.msgpack")).await;
    assert_eq!(status, 201);
    let answer =
        transfer::get(&jade, ACME, &format!("{base}?tag=small"), &[octet[0], ("accept-encoding", "zstd")]).await;
    assert_eq!((answer.status, answer.header("content-encoding")), (200, None));
    assert_eq!(answer.header("content-length"), Some(blob.len().to_string().as_str()));
    assert!(answer.wire == blob && answer.varies_by_encoding());

    // A new version of the tag: new tags; the old ones answer 200.
    let changed = [FIXTURE, b"\n"].concat();
    let (status, ..) = post(&jade, base, file_form("big", &changed, "manifest.json")).await;
    assert_eq!(status, 201);
    for (old, extra) in [(&bytes_etag, &octet[..]), (&json_etag, &[][..])] {
        let answer = transfer::conditional(&jade, ACME, &url, extra, old).await;
        assert_eq!(answer.status, 200);
        assert_ne!(answer.etag(), old.as_str());
    }
    let current = transfer::get(&jade, ACME, &url, &octet).await;
    assert!(current.wire == changed);
    let current_etag = current.etag().to_owned();

    // 304 reads nothing from storage: the body is gone, the row still answers.
    let new_slug = serde_json::from_slice::<Value>(&transfer::get(&jade, ACME, &url, &[]).await.wire).unwrap()["data"]
        ["slug"]
        .as_str()
        .unwrap()
        .to_owned();
    jade.storage.delete(&jade.body_key(&new_slug).await.unwrap()).await;
    assert_eq!(transfer::conditional(&jade, ACME, &url, &octet, &current_etag).await.status, 304);
    let gone = transfer::get(&jade, ACME, &url, &octet).await;
    assert_eq!(gone.status, 404);
    jade.stop().await;
}
