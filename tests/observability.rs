//! Operations (contract §9): Prometheus metrics on their own listener, request ids, and the
//! image's `jade healthcheck` (no secret in any log: tests/secrets_in_logs.rs).

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use support::servers::free_port;
use support::{Scenario, TestJade};

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

/// The sum of a storage counter of the `blob` backend over its other labels: operations
/// counted by their latency histogram, or bytes.
fn blob_counter(text: &str, series: &str, label: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(&format!("{series}{{")))
        .filter(|line| line.contains(r#"backend="blob""#) && line.contains(label))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// Contract §8: a 304 reads nothing from storage. The Azure Blob backend is used by no other
/// test of this binary, so its `jade_storage_*` counters move only with this test's requests:
/// a conditional read that matches opens no stored body (manifests and files do not even ask
/// storage; an artifact costs one metadata read, its only record).
#[tokio::test]
async fn a_304_reads_no_stored_body() {
    tokio::time::timeout(Duration::from_secs(180), async {
        let jade = TestJade::with_storage(Scenario::default(), support::Backend::Blob, &[]).await;
        let metrics = jade::startup::spawn_metrics("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let metrics_url = format!("{}/metrics", metrics.url());
        let runs = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&order_by=id", 200).await;
        let run = &runs["data"][1];
        let (run, dag_id, run_id) =
            (run["id"].as_i64().unwrap(), run["dag_id"].as_str().unwrap(), run["dag_run_run_id"].as_str().unwrap());
        let send = |path: &str, form: Form| jade.client.post(jade.url(path)).bearer_auth(ACME).multipart(form).send();
        let manifest = Part::bytes(br#"{"metadata": {}, "nodes": {}}"#.to_vec()).file_name("manifest.json");
        let created =
            send("/api/v2/datacoves/manifests", Form::new().text("environment_slug", "dev123").part("file", manifest));
        assert_eq!(created.await.unwrap().status(), 201);
        assert_eq!(send("/api/v2/datacoves/environments/dev123/files", file_form()).await.unwrap().status(), 201);
        let artifact = Part::bytes(br#"{"results": []}"#.to_vec()).file_name("run_results.json");
        let form = Form::new()
            .text("environment_slug", "dev123")
            .text("dag_id", dag_id.to_owned())
            .text("run_id", run_id.to_owned())
            .part("file", artifact);
        assert_eq!(send("/api/v2/datacoves/artifacts", form).await.unwrap().status(), 201);

        let reads = [
            "/api/v2/datacoves/manifests?environment_slug=dev123".to_owned(),
            "/api/v2/datacoves/projects/analytics/latest-manifest?trimmed=false".to_owned(),
            "/api/v2/datacoves/environments/dev123/files?tag=nightly".to_owned(),
            format!("/api/v2/accounts/1/runs/{run}/artifacts/run_results.json"),
        ];
        let mut tags = Vec::new();
        for path in &reads {
            let answer = support::transfer::get(&jade, ACME, path, &[]).await;
            assert_eq!(answer.status, 200, "{path}");
            tags.push(answer.etag().to_owned());
        }
        let count = |text: &str, operation: &str| {
            blob_counter(text, "jade_storage_operation_duration_seconds_count", &format!("operation=\"{operation}\""))
        };
        let before = scrape(&jade.client, &metrics_url).await;
        assert!(count(&before, "get") >= 4.0, "the plain reads were counted");
        for (path, tag) in reads.iter().zip(&tags) {
            let answer = support::transfer::conditional(&jade, ACME, path, &[("accept-encoding", "zstd")], tag).await;
            assert_eq!(answer.status, 304, "{path}");
        }
        let after = scrape(&jade.client, &metrics_url).await;
        assert_eq!(count(&after, "get"), count(&before, "get"), "a 304 opened a stored body");
        assert_eq!(count(&after, "stat"), count(&before, "stat") + 1.0, "one metadata read, for the artifact");
        let read = |text: &str| blob_counter(text, "jade_storage_bytes_total", r#"direction="read""#);
        assert_eq!(read(&after), read(&before));
        // The counters do move: a read without the header opens the body.
        support::transfer::get(&jade, ACME, &reads[3], &[]).await;
        let again = scrape(&jade.client, &metrics_url).await;
        assert_eq!(count(&again, "get"), count(&after, "get") + 1.0);
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
