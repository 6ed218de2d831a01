//! Operations (contract §9): Prometheus metrics on their own listener, request ids, and
//! logs that hold no secret at any level.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use support::seed::DB_ACME;
use support::servers::free_port;
use support::{Backend, Scenario, Storage, TestJade, seed, url, verify::VerifyServer};

const ACME: &str = support::seed::ACME;

fn file_form() -> Form {
    let part =
        Part::bytes(br#"{"rows": [1]}"#.to_vec()).file_name("results.json").mime_str("application/json").unwrap();
    Form::new().text("tag", "nightly").part("file", part)
}

async fn scrape(client: &reqwest::Client, url: &str) -> String {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_are_served_apart_from_the_api_with_route_templates_for_labels() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let jade = TestJade::start(Scenario::default(), &[]).await;
        let metrics = jade::startup::spawn_metrics("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let metrics_url = format!("{}/metrics", metrics.url());

        jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&limit=1", 200).await;
        jade.json(ACME, "/api/v2/accounts/1/jobs", 200).await;
        jade.json(ACME, "/api/v2/datacoves/manifests?environment_slug=dev123", 404).await;
        let created = jade
            .client
            .post(jade.url("/api/v2/datacoves/environments/dev123/files"))
            .bearer_auth(ACME)
            .multipart(file_form())
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let read = jade.get(ACME, "/api/v2/datacoves/environments/dev123/files?tag=nightly").await;
        assert_eq!(read.status(), 200);
        read.bytes().await.unwrap();
        jade.get("not-a-token-5f1c", "/api/v2/accounts/1").await;
        jade.get(ACME, "/nowhere/acme-secret-slug").await;

        // Not on the public port.
        assert_eq!(jade.get(ACME, "/metrics").await.status(), 404);

        let text = scrape(&jade.client, &metrics_url).await;
        for series in [
            r#"jade_http_requests_total{method="GET",route="/api/v2/accounts/:param0/runs",status="200"}"#,
            r#"jade_http_requests_total{method="GET",route="/api/v2/accounts/:param0/jobs",status="200"}"#,
            r#"jade_http_requests_total{method="GET",route="/api/v2/datacoves/manifests",status="404"}"#,
            r#"jade_http_requests_total{method="GET",route="/api/v2/accounts/:param0",status="401"}"#,
            r#"jade_http_requests_total{method="GET",route="unmatched",status="404"}"#,
            r#"jade_http_request_duration_seconds_bucket{method="GET",route="/api/v2/accounts/:param0/runs",le="0.1"}"#,
            r#"jade_db_pool_connections{database="jade_db"}"#,
            r#"jade_db_pool_max_connections{database="datacoves_db"}"#,
            r#"jade_db_pool_waiting{database="airflow"}"#,
            r#"jade_db_pool_wait_seconds_bucket{database="jade_db""#,
            r#"jade_storage_operation_duration_seconds_bucket{backend="fs",operation="put",outcome="ok""#,
            r#"jade_storage_operation_duration_seconds_bucket{backend="fs",operation="get",outcome="ok""#,
            r#"jade_storage_bytes_total{backend="fs",direction="written"}"#,
            r#"jade_storage_bytes_total{backend="fs",direction="read"}"#,
        ] {
            let http: Vec<&str> = text.lines().filter(|l| l.starts_with("jade_http_requests_total")).collect();
            assert!(text.contains(series), "no {series} in\n{http:#?}\n{text}");
        }
        let route_of =
            |line: &str| line.split("route=\"").nth(1).map(|rest| rest.split('"').next().unwrap().to_owned());
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            for leaked in ["dev123", "acme", "nightly", "results.json", "not-a-token", "?", "environment_id", "nowhere"]
            {
                assert!(!line.contains(leaked), "{leaked:?} in a label: {line}");
            }
            if let Some(route) = route_of(line) {
                assert!(route == "unmatched" || route.starts_with('/'), "{line}");
            }
        }

        // An environment whose Airflow database cannot be reached is counted when left out.
        let down =
            TestJade::start(Scenario::default(), &[("AIRFLOW_DB_URL_TEMPLATE", "postgres://127.0.0.1:1/x")]).await;
        down.json(ACME, "/api/v2/accounts/1/runs", 200).await;
        let text = scrape(&jade.client, &metrics_url).await;
        assert!(
            text.contains(r#"jade_airflow_environments_left_out_total{list="runs",reason="unreachable"}"#),
            "{text}"
        );
        down.stop().await;
        metrics.stop().await.unwrap();
        jade.stop().await;
    })
    .await
    .expect("the test finished in time");
}

fn request_id(response: &reqwest::Response) -> String {
    response.headers().get("x-request-id").expect("x-request-id echoed").to_str().unwrap().to_owned()
}

fn is_uuid(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok()
}

#[tokio::test]
async fn request_ids_are_kept_when_valid_made_otherwise_and_echoed_on_errors() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let jade = TestJade::start(Scenario::default(), &[]).await;
        let send = |path: &str, token: &str, id: Option<&str>| {
            let mut request = jade.client.get(jade.url(path)).header("Authorization", format!("Token {token}"));
            if let Some(id) = id {
                request = request.header("X-Request-Id", id);
            }
            request.send()
        };
        let valid = "abc.DEF_123-x";
        let response = send("/api/v2/accounts/1", ACME, Some(valid)).await.unwrap();
        assert_eq!((response.status().as_u16(), request_id(&response)), (200, valid.to_owned()));
        let longest = "a".repeat(64);
        assert_eq!(request_id(&send("/api/v2/accounts/1", ACME, Some(&longest)).await.unwrap()), longest);
        // Echoed on a 401 and on a 404.
        let response = send("/api/v2/accounts/1", "wrong", Some(valid)).await.unwrap();
        assert_eq!((response.status().as_u16(), request_id(&response)), (401, valid.to_owned()));
        let response = send("/api/v2/nothing-here", ACME, Some(valid)).await.unwrap();
        assert_eq!((response.status().as_u16(), request_id(&response)), (404, valid.to_owned()));
        // Replaced when invalid: too long, empty, characters outside [A-Za-z0-9._-].
        for invalid in ["a".repeat(65).as_str(), "has space", "semi;colon", "slash/id", "ünï"] {
            let response = send("/api/v2/accounts/1", ACME, Some(invalid)).await.unwrap();
            let id = request_id(&response);
            assert!(is_uuid(&id), "{invalid:?} answered {id:?}");
        }
        // Made when absent, a new one per request; on errors too.
        let first = request_id(&send("/api/v2/accounts/1", ACME, None).await.unwrap());
        let second = request_id(&send("/api/v2/accounts/1", "wrong", None).await.unwrap());
        let third = request_id(&send("/nowhere", ACME, None).await.unwrap());
        assert!(is_uuid(&first) && is_uuid(&second) && is_uuid(&third));
        assert!(first != second && second != third);
        jade.stop().await;
    })
    .await
    .expect("the test finished in time");
}

/// `jade serve` as a child process with its environment, stderr captured.
struct Child {
    process: std::process::Child,
    port: u16,
}

impl Child {
    fn serve(vars: &[(&str, String)]) -> Child {
        let port = free_port();
        let process = Command::new(env!("CARGO_BIN_EXE_jade"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env("METRICS_ADDR", "")
            .envs(vars.iter().map(|(name, value)| (name, value)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Child { process, port }
    }

    async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("http://127.0.0.1:{}/api/v2/healthcheck", self.port);
        while Instant::now() < deadline {
            if let Ok(response) = reqwest::get(&url).await
                && response.status() == 200
            {
                return;
            }
            if let Some(status) = self.process.try_wait().unwrap() {
                panic!("jade serve exited with {status}: {}", self.stop());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("jade serve did not answer: {}", self.stop());
    }

    /// Stops it and answers what it wrote to stderr.
    fn stop(&mut self) -> String {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let mut log = String::new();
        self.process.stderr.take().unwrap().read_to_string(&mut log).unwrap();
        log
    }
}

/// Runs `jade serve` at `RUST_LOG=trace` with the database token verifier, a Jade database URL
/// with a password, the Airflow databases and `backend`; exercises each; answers the log and
/// the secrets that must not be in it.
async fn trace_log(backend: Backend) -> (String, Vec<String>) {
    let seeded = seed::seed(Scenario::default()).await;
    let verify = VerifyServer::start(seeded.identities.clone()).await;
    let storage = Storage::start(backend).await;
    // Trust authentication: the password is sent if asked for, and must not be logged.
    let password = "pw-Zq8xTrace";
    let with_password = |database: &str| url(database).replacen("postgres@", &format!("postgres:{password}@"), 1);
    let mut vars: Vec<(&str, String)> = vec![
        ("RUST_LOG", "trace".into()),
        ("DB_URL", with_password(&seeded.jade_db)),
        ("DATACOVES_DB_URL", with_password(&seeded.datacoves_db)),
        ("FERNET_KEY", seeded.fernet_key.clone()),
        ("AUTH_VERIFIER", "database".into()),
        ("AUTH_CACHE_TTL_SECONDS", "0".into()),
        ("AIRFLOW_DB_URL_TEMPLATE", format!("{}?options=-csearch_path%3D{{slug}}", with_password(&seeded.airflow_db))),
    ];
    vars.extend(storage.vars.iter().map(|(name, value)| (*name, value.clone())));
    let mut secrets: Vec<String> = vec![DB_ACME.into(), password.into(), seeded.fernet_key.clone()];
    for (name, value) in &storage.vars {
        if name.contains("KEY") || name.contains("CONNECTION_STRING") {
            secrets.push(value.clone());
        }
    }
    if let Some((_, connection)) = storage.vars.iter().find(|(name, _)| name.contains("CONNECTION_STRING")) {
        let key = connection.split(';').find_map(|part| part.strip_prefix("AccountKey=")).unwrap();
        secrets.push(key.to_owned());
    }

    let mut child = Child::serve(&vars);
    child.ready().await;
    let base = format!("http://127.0.0.1:{}", child.port);
    let client = reqwest::Client::new();
    let get =
        |path: &str| client.get(format!("{base}{path}")).header("Authorization", format!("Token {DB_ACME}")).send();
    assert_eq!(get("/api/v2/accounts/1/runs?environment_id=100").await.unwrap().status(), 200);
    assert_eq!(get("/api/v2/accounts/1/jobs").await.unwrap().status(), 200);
    let created = client
        .post(format!("{base}/api/v2/datacoves/environments/dev123/files"))
        .bearer_auth(DB_ACME)
        .multipart(file_form())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let read = get("/api/v2/datacoves/environments/dev123/files?tag=nightly").await.unwrap();
    assert_eq!(read.status(), 200);
    read.bytes().await.unwrap();
    let log = child.stop();
    verify.stop().await;
    seeded.drop_databases().await;
    (log, secrets)
}

fn assert_no_secret(log: &str, secrets: &[String]) {
    assert!(log.lines().count() > 5, "RUST_LOG=trace logged little:\n{log}");
    // The log was at trace: the request span and its id are there.
    assert!(log.contains("request_id="), "{log}");
    for secret in secrets {
        assert!(!secret.is_empty());
        if let Some(line) = log.lines().find(|line| line.contains(secret.as_str())) {
            panic!("a secret ({} characters) is in the log: {line}", secret.len());
        }
    }
}

#[tokio::test]
async fn no_secret_is_logged_at_trace_with_s3_storage() {
    let (log, secrets) = tokio::time::timeout(Duration::from_secs(120), trace_log(Backend::S3)).await.unwrap();
    assert_no_secret(&log, &secrets);
}

#[tokio::test]
async fn no_secret_is_logged_at_trace_with_azure_blob_storage() {
    let (log, secrets) = tokio::time::timeout(Duration::from_secs(120), trace_log(Backend::Blob)).await.unwrap();
    assert_no_secret(&log, &secrets);
}

#[tokio::test]
async fn no_secret_is_logged_at_trace_with_minio_storage() {
    let (log, secrets) = tokio::time::timeout(Duration::from_secs(120), trace_log(Backend::Minio)).await.unwrap();
    assert_no_secret(&log, &secrets);
}

/// `jade healthcheck` (the image's HEALTHCHECK) against a running `jade demo`.
#[tokio::test]
async fn the_healthcheck_command_answers_for_a_running_demo() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let port = free_port();
        let mut demo = Command::new(env!("CARGO_BIN_EXE_jade"))
            .args(["demo", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let healthcheck = |port: u16| {
            Command::new(env!("CARGO_BIN_EXE_jade"))
                .arg("healthcheck")
                .env("PORT", port.to_string())
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !healthcheck(port) {
            assert!(Instant::now() < deadline, "jade healthcheck never succeeded against the demo");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        demo.kill().unwrap();
        demo.wait().unwrap();
        // Nothing listening: exit 1.
        assert!(!healthcheck(port));
    })
    .await
    .expect("the test finished in time");
}
