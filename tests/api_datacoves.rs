//! The Datacoves API over HTTP (contract §4): manifests and files, on real PostgreSQL and
//! local-disk storage, exactly as the Datacoves Airflow provider sends its requests.

mod support;

use std::path::Path;

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use support::seed::ACME;
use support::{Scenario, TestJade, message};

const FIXTURE: &[u8] = include_bytes!("fixtures/manifest.json");

fn file(bytes: &[u8], filename: &str) -> Part {
    Part::bytes(bytes.to_vec()).file_name(filename.to_owned()).mime_str("application/octet-stream").unwrap()
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

/// Every stored object under the fs storage root, as keys.
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

async fn count(jade: &TestJade, table: &str) -> i64 {
    let client = support::connect(&jade.seeded.jade_db).await;
    client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0)
}

fn manifest_form(environment: &str, body: &[u8]) -> Form {
    Form::new().text("environment_slug", environment.to_owned()).part("file", file(body, "manifest.json"))
}

#[tokio::test]
async fn a_manifest_uploaded_for_a_run_is_served_whole_trimmed_and_as_the_runs_artifact() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    let runs = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&order_by=id", 200).await;
    let run = runs["data"][1].clone();
    let run_id = run["dag_run_run_id"].as_str().unwrap().to_owned();

    let form = manifest_form("dev123", FIXTURE).text("dag_id", "daily").text("run_id", run_id.clone());
    let (status, body, _) = post(&jade, "/api/v2/datacoves/manifests", form).await;
    assert_eq!((status, body.as_str()), (201, "\"ok\""));

    let safe_run = run_id.replace(['_', ':', '.', '+'], "-");
    let key = format!("accounts/1/environments/dev123/dags/daily/dag_runs/{safe_run}/manifest.json");
    assert_eq!(std::fs::read(jade.storage_dir.path().join(&key)).unwrap(), FIXTURE);

    let full: Value = serde_json::from_slice(FIXTURE).unwrap();
    let (status, whole) =
        raw(&jade, "/api/v2/datacoves/manifests?environment_slug=dev123&dag_id=daily&trimmed=false").await;
    assert_eq!(status, 200);
    assert_eq!(whole, FIXTURE, "the full manifest round-trips byte for byte");
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
    assert_eq!(artifact["data"].as_str().unwrap().as_bytes(), FIXTURE);
    let other_artifact = format!("/api/v2/accounts/1/runs/{}/artifacts/run_results.json", run["id"]);
    assert_eq!(message(&jade.json(ACME, &other_artifact, 404).await), "Not Found");
    jade.stop().await;
}

#[tokio::test]
async fn tagged_manifests_are_unique_per_environment_and_read_by_tag() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
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
        (
            manifest_form("dev123", b"{}").text("dag_id", "daily"),
            422,
            json!({"errors": {"run_id": ["can't be blank"]}}),
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
    assert!(stored(jade.storage_dir.path()).is_empty());
    jade.stop().await;
}

#[tokio::test]
async fn manifests_of_the_first_jade_are_served_and_their_trimmed_form_is_kept() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
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
    let key = jade.storage_dir.path().join("accounts/1/environments/dev123/manifests/901");
    std::fs::create_dir_all(&key).unwrap();
    std::fs::write(key.join("manifest.json"), FIXTURE).unwrap();

    let trimmed = jade.json(ACME, "/api/v2/datacoves/manifests?environment_slug=dev123", 200).await;
    assert_eq!((&trimmed["metadata"], &trimmed["nodes"]), (&content["metadata"], &content["nodes"]));
    let kept = std::fs::read(key.join("manifest.trimmed.json")).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&kept).unwrap(), trimmed);
    assert_eq!(raw(&jade, "/api/v2/datacoves/manifests?environment_slug=dev123&trimmed=false").await.1, FIXTURE);

    let from_row = jade.json(ACME, "/api/v2/datacoves/manifests?environment_slug=mkt123&trimmed=false", 200).await;
    assert_eq!(from_row, content);
    let trimmed = jade.json(ACME, "/api/v2/datacoves/projects/marketing/latest-manifest", 200).await;
    assert_eq!(trimmed.as_object().unwrap().len(), 2);
    assert_eq!(trimmed["nodes"], content["nodes"]);
    jade.stop().await;
}

fn file_form(tag: &str, body: &[u8], filename: &str) -> Form {
    Form::new().text("tag", tag.to_owned()).part("file", file(body, filename))
}

#[tokio::test]
async fn files_are_created_read_replaced_and_deleted_as_the_airflow_provider_does() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    let base = "/api/v2/datacoves/environments/dev123/files";

    let (status, body, headers) =
        post(&jade, base, file_form("daily run:v1.2+x", br#"{"rows": [1, 2]}"#, "my results_1.json")).await;
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    let data = &created["data"];
    assert_eq!(data["path"], "/environments/dev123/files/daily-run-v1-2-x/my-results-1.json");
    assert_eq!(
        (data["tag"].as_str(), data["filename"].as_str()),
        (Some("daily run:v1.2+x"), Some("my results_1.json"))
    );
    assert_eq!(data["environment_slug"], "dev123");
    assert!(data.get("contents").is_none(), "no contents on create");
    let slug = data["slug"].as_str().unwrap().to_owned();
    assert_eq!(headers["location"], format!("/api/v2/datacoves/environments/dev123/files/?slug={slug}").as_str());
    assert_eq!(stored(jade.storage_dir.path()), vec!["environments/dev123/files/daily-run-v1-2-x/my-results-1.json"]);

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

    // Replace by slug (PUT, query) and by tag (PATCH, form field).
    let form = Form::new().part("file", file(b"[3]", "renamed.json"));
    let response = jade
        .client
        .put(jade.url(&format!("{base}?slug={slug}")))
        .bearer_auth(ACME)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let replaced: Value = response.json().await.unwrap();
    assert_eq!(replaced["data"]["filename"], "renamed.json");
    assert_eq!(replaced["data"]["contents"], json!([3]));
    assert_eq!(replaced["data"]["path"], "/environments/dev123/files/daily-run-v1-2-x/renamed.json");
    let form = Form::new().text("tag", "daily run:v1.2+x").part("file", file(b"plain", "renamed.json"));
    let response = jade
        .client
        .patch(jade.url("/api/internal/environments/dev123/files"))
        .bearer_auth(ACME)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["data"]["contents"], "plain");
    assert_eq!(
        stored(jade.storage_dir.path()),
        vec!["environments/dev123/files/daily-run-v1-2-x/renamed.json", "environments/dev123/files/notes/notes.txt"]
    );

    // Delete with a JSON body, as the provider sends it; then by slug in the query.
    let response =
        jade.client.delete(jade.url(base)).bearer_auth(ACME).json(&json!({"tag": "notes"})).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "");
    assert_eq!(message(&jade.json(ACME, &format!("{base}?tag=notes"), 404).await), "Not Found");
    let response = jade.client.delete(jade.url(&format!("{base}?slug={slug}"))).bearer_auth(ACME).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let response = jade.client.delete(jade.url(base)).bearer_auth(ACME).form(&[("tag", "gone")]).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert!(stored(jade.storage_dir.path()).is_empty());
    assert_eq!(count(&jade, "files").await, 0);
    jade.stop().await;
}

#[tokio::test]
async fn several_files_are_stored_together_or_not_at_all() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
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

    // One bad name refuses the whole upload before anything is stored.
    let before = (count(&jade, "files").await, stored(jade.storage_dir.path()));
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
    assert_eq!((count(&jade, "files").await, stored(jade.storage_dir.path())), before);

    // A row whose body is gone.
    std::fs::remove_file(jade.storage_dir.path().join("environments/prod123/files/first/a.txt")).unwrap();
    let missing = jade.json(ACME, &format!("{base}?tag=first"), 404).await;
    assert_eq!(message(&missing), "File found but could not download contents from storage bucket.");
    jade.stop().await;
}
