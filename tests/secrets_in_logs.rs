//! No token, password or key reaches a log line, at `RUST_LOG=trace`, drivers included
//! (contract §9): the real `jade serve` binary, configured with secrets everywhere (database
//! passwords, a Fernet key, storage keys, knox tokens checked by the database verifier),
//! answers requests that use each of them while its log is captured and searched.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::fake_airflow::FakeAirflowApi;
use support::seed::{DB_ACME, Scenario};
use support::storage::{Backend, Storage};

const DB_PASSWORD: &str = "pg-Secret-7f3a91";
/// The password in `prod123`'s Fernet-encrypted Airflow settings (tests/support/seed.rs).
const AIRFLOW_PASSWORD: &str = "unused-with-trust";
const MANIFEST: &[u8] = include_bytes!("fixtures/manifest.json");
/// Jade's password for the Airflow API (`AIRFLOW_API_PASSWORD`).
const AIRFLOW_API_PASSWORD: &str = "airflow-Api-Secret-52c8";

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn with_password(database: &str) -> String {
    // Trust authentication accepts any password: it is sent, and must stay unlogged.
    format!("postgres://postgres:{DB_PASSWORD}@127.0.0.1:5432/{database}")
}

/// Secret values among a storage backend's configuration variables.
fn storage_secrets(storage: &Storage) -> Vec<String> {
    let mut secrets = Vec::new();
    for (name, value) in &storage.vars {
        match *name {
            "S3_SECRET_ACCESS_KEY" | "MINIO_SECRET_KEY" => secrets.push(value.clone()),
            "BLOB_STORAGE_ACCOUNT_CONNECTION_STRING" => {
                secrets.extend(value.split(';').filter_map(|part| part.strip_prefix("AccountKey=")).map(str::to_owned))
            }
            _ => {}
        }
    }
    assert!(!secrets.is_empty(), "no storage secret to look for in {:?}", storage.backend);
    secrets
}

async fn no_secret_in_the_trace_log(backend: Backend) {
    let seeded = support::seed::seed(Scenario::default()).await;
    // Ada may run the jobs of analytics (dev123), on an Airflow API that answers at once.
    let datacoves = support::connect(&seeded.datacoves_db).await;
    datacoves
        .batch_execute(
            "INSERT INTO auth_permission (id, name, codename) VALUES (50, 'acme:analytics|workbench:airflow|write', 'w');
             INSERT INTO auth_group_permissions (group_id, permission_id) VALUES (1, 50);",
        )
        .await
        .unwrap();
    let airflow = FakeAirflowApi::start(&seeded).await;
    let storage = Storage::start(backend).await;
    let port = support::servers::free_port();
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("jade.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_jade"));
    command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "trace")
        .env("PORT", port.to_string())
        .env("METRICS_ADDR", "")
        .env("DB_URL", with_password(&seeded.jade_db))
        .env("DATACOVES_DB_URL", with_password(&seeded.datacoves_db))
        .env(
            "AIRFLOW_DB_URL_TEMPLATE",
            format!("{}?options=-csearch_path%3D{{slug}}", with_password(&seeded.airflow_db)),
        )
        .env("FERNET_KEY", &seeded.fernet_key)
        .env("AUTH_VERIFIER", "database")
        .env("RUN_INDEX_REFRESH_MS", "0")
        .env("AIRFLOW_API_URL_TEMPLATE", format!("{}/{{slug}}", airflow.base))
        .env("AIRFLOW_API_USERNAME", "jade")
        .env("AIRFLOW_API_PASSWORD", AIRFLOW_API_PASSWORD)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap());
    for (name, value) in &storage.vars {
        command.env(name, value);
    }
    let serving = Serving(command.spawn().expect("jade serve starts"));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let started = std::time::Instant::now();
    while client.get(url("/api/v2/healthcheck")).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "jade serve did not answer within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let made_up = "8c1f0a6e2b3d4c5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6";
    let status = |response: reqwest::Response| response.status().as_u16();
    let get = |path: &str, token: &str| client.get(url(path)).bearer_auth(token).send();
    assert_eq!(status(get("/api/v2/accounts/1/runs", DB_ACME).await.unwrap()), 200);
    assert_eq!(status(get("/api/v2/accounts/1/runs", made_up).await.unwrap()), 401);
    let manifest = reqwest::multipart::Form::new()
        .text("environment_slug", "dev123")
        .part("file", reqwest::multipart::Part::bytes(MANIFEST.to_vec()).file_name("manifest.json"));
    let uploaded = client.post(url("/api/v2/datacoves/manifests")).bearer_auth(DB_ACME).multipart(manifest);
    assert_eq!(status(uploaded.send().await.unwrap()), 201);
    assert_eq!(status(get("/api/v2/datacoves/manifests?environment_slug=dev123", DB_ACME).await.unwrap()), 200);
    let file = reqwest::multipart::Form::new()
        .text("tag", "settings")
        .part("file", reqwest::multipart::Part::bytes(b"{\"a\": 1}".to_vec()).file_name("settings.json"));
    let created = client.post(url("/api/v2/datacoves/environments/dev123/files")).bearer_auth(DB_ACME).multipart(file);
    assert_eq!(status(created.send().await.unwrap()), 201);
    assert_eq!(status(get("/api/v2/datacoves/environments/dev123/files?tag=settings", DB_ACME).await.unwrap()), 200);
    // A job run: asked of Airflow's API with Jade's password, and written to the audit trail.
    let jobs: serde_json::Value =
        get("/api/v2/accounts/1/jobs?environment_id=100", DB_ACME).await.unwrap().json().await.unwrap();
    let daily = jobs["data"].as_array().unwrap().iter().find(|job| job["dag_id"] == "daily").unwrap()["id"].clone();
    let run = client
        .post(url(&format!("/api/v2/accounts/1/jobs/{daily}/run/")))
        .bearer_auth(DB_ACME)
        .json(&serde_json::json!({}));
    assert_eq!(status(run.send().await.unwrap()), 200);
    drop(serving);
    airflow.stop();

    let log = std::fs::read_to_string(&log_path).unwrap();
    // The log was written below info: Jade's own debug lines are there.
    assert!(log.contains("DEBUG"), "RUST_LOG=trace wrote no debug line:\n{log}");
    assert!(log.lines().filter(|line| line.contains("request")).count() >= 6, "{log}");
    let audit = log.lines().find(|line| line.contains("job run asked of Airflow"));
    let audit = audit.unwrap_or_else(|| panic!("no audit line for the job run:\n{log}"));
    for part in ["ada@acme.example", "environment=dev123", "dag_id=\"daily\"", "dag_run_id=", "request_id="] {
        assert!(audit.contains(part), "the audit line has no {part}: {audit}");
    }
    let mut secrets = vec![
        DB_ACME.to_owned(),
        // The database verifier looks tokens up by their first 15 characters.
        DB_ACME[..15].to_owned(),
        made_up.to_owned(),
        made_up[..15].to_owned(),
        DB_PASSWORD.to_owned(),
        AIRFLOW_PASSWORD.to_owned(),
        AIRFLOW_API_PASSWORD.to_owned(),
        seeded.fernet_key.clone(),
    ];
    secrets.extend(storage_secrets(&storage));
    for secret in &secrets {
        let line = log.lines().find(|line| line.contains(secret.as_str()));
        assert!(line.is_none(), "a secret reached the log ({backend:?}): {}", line.unwrap_or_default());
    }
    seeded.drop_databases().await;
}

#[tokio::test]
async fn no_secret_in_the_trace_log_with_s3() {
    no_secret_in_the_trace_log(Backend::S3).await;
}

#[tokio::test]
async fn no_secret_in_the_trace_log_with_azure_blob() {
    no_secret_in_the_trace_log(Backend::Blob).await;
}

#[tokio::test]
async fn no_secret_in_the_trace_log_with_minio() {
    no_secret_in_the_trace_log(Backend::Minio).await;
}
