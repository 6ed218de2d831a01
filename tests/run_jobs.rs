//! Running jobs through Jade on real Airflow (contract §3 "Running jobs", §6b): `dev123` is
//! a running Airflow 2.11 (webserver, basic auth), `mkt123` a running Airflow 3.3
//! (api-server, JWT), both started once per run of the suite by
//! `tests/fixtures/airflow/live.sh` with the DAGs `quick`, `flaky` (fails once, succeeds when
//! cleared), `slow` (ten minutes) and `paused`. `prod123`'s API does not answer.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::airflow::Airflow;
use support::seed::{ACME, ACME_READER, GLOBEX, LIVE_AIRFLOW};
use support::{Scenario, TestJade, message};

/// How long a run may take to reach a status on an Airflow that shares two cores with the
/// suite.
const PATIENCE: Duration = Duration::from_secs(120);

fn environment_id(slug: &str) -> i64 {
    match slug {
        "dev123" => 100,
        "prod123" => 101,
        "mkt123" => 102,
        "globex123" => 200,
        _ => panic!("{slug}"),
    }
}

async fn start() -> TestJade {
    TestJade::start(Scenario::live_airflow(), &[("API_COMPAT", "dbt-cloud")]).await
}

/// The job of `dag_id` in the environment.
async fn job(jade: &TestJade, slug: &str, dag_id: &str) -> i64 {
    let account = if slug == "globex123" { 2 } else { 1 };
    let token = if slug == "globex123" { GLOBEX } else { ACME };
    let path = format!("/api/v2/accounts/{account}/jobs?environment_id={}", environment_id(slug));
    let jobs = jade.json(token, &path, 200).await;
    let found = jobs["data"].as_array().unwrap().iter().find(|job| job["dag_id"] == dag_id);
    found.unwrap_or_else(|| panic!("no job {dag_id} in {slug}: {jobs}"))["id"].as_i64().unwrap()
}

/// `POST path` with `body` as `token`: (status, JSON body).
async fn post(jade: &TestJade, token: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let request = jade.client.post(jade.url(path)).header("Authorization", format!("Token {token}"));
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {path}: not JSON ({e}): {text}")))
}

async fn run_job(jade: &TestJade, job_id: i64, body: Value) -> Value {
    let (status, answer) = post(jade, ACME, &format!("/api/v2/accounts/1/jobs/{job_id}/run/"), Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    answer["data"].clone()
}

/// Reads the run until its status (dbt Cloud's code) is `wanted`.
async fn wait_for(jade: &TestJade, run_id: i64, wanted: i64) -> Value {
    let started = Instant::now();
    loop {
        let run = jade.json(ACME, &format!("/api/v2/accounts/1/runs/{run_id}/"), 200).await["data"].clone();
        if run["status"] == wanted {
            return run;
        }
        assert!(started.elapsed() < PATIENCE, "run {run_id} is still {} after {PATIENCE:?}: {run}", run["status"]);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The DAG runs of `dag_id` in a live Airflow's database.
async fn dag_runs(version: Airflow, dag_id: &str) -> i64 {
    let airflow = support::connect(&version.live().database).await;
    airflow.query_one("SELECT count(*) FROM dag_run WHERE dag_id = $1", &[&dag_id]).await.unwrap().get(0)
}

/// The DAG run as Airflow's own API has it.
async fn airflow_run(version: Airflow, dag_id: &str, run_id: &str) -> Value {
    let live = version.live();
    let client = reqwest::Client::new();
    let (api, auth) = match version {
        Airflow::Two => ("v1", format!("Basic {}", base64(&format!("{}:{}", live.username, live.password)))),
        Airflow::Three => {
            let token: Value = client
                .post(format!("{}/auth/token", live.url))
                .json(&json!({"username": live.username, "password": live.password}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            ("v2", format!("Bearer {}", token["access_token"].as_str().unwrap()))
        }
    };
    let encoded = percent_encoding::utf8_percent_encode(run_id, percent_encoding::NON_ALPHANUMERIC);
    let url = format!("{}/api/{api}/dags/{dag_id}/dagRuns/{encoded}", live.url);
    client.get(url).header("Authorization", auth).send().await.unwrap().json().await.unwrap()
}

fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn a_job_runs_to_success_on_airflow_2_and_3() {
    let jade = start().await;
    for (slug, version) in LIVE_AIRFLOW {
        let job_id = job(&jade, slug, "quick").await;
        let body = json!({"cause": "Nightly from Jade's tests", "git_branch": "main", "steps_override": ["dbt build"]});
        let run = run_job(&jade, job_id, body).await;
        let id = run["id"].as_i64().unwrap();
        assert_eq!(run["status"], 1, "{slug}: queued: {run}");
        assert_eq!((run["status_humanized"].as_str(), run["in_progress"].as_bool()), (Some("Queued"), Some(true)));
        assert_eq!(run["job_definition_id"], job_id);
        assert_eq!(
            (run["environment_id"].as_i64(), run["project_id"].as_i64()),
            (Some(environment_id(slug)), Some(if slug == "dev123" { 10 } else { 11 }))
        );
        assert_eq!(run["trigger"]["cause"], "Nightly from Jade's tests");
        assert!(run["status_message"].is_null());
        // Airflow ran it with the request's fields in its conf.
        let dag_run_id = run["dag_run_run_id"].as_str().unwrap().to_owned();
        let in_airflow = airflow_run(version, "quick", &dag_run_id).await;
        assert_eq!(in_airflow["conf"]["git_branch"], "main", "{slug}: {in_airflow}");
        assert_eq!(in_airflow["conf"]["steps_override"], json!(["dbt build"]));
        assert_eq!(in_airflow["note"], "Nightly from Jade's tests");
        let done = wait_for(&jade, id, 10).await;
        assert_eq!((done["id"].as_i64(), done["is_success"].as_bool()), (Some(id), Some(true)), "{slug}: {done}");
        assert_eq!(done["trigger"]["cause"], "Nightly from Jade's tests", "the cause is the DAG run's note");
        // The same id in the run list.
        let listed =
            jade.json(ACME, &format!("/api/v2/accounts/1/runs?job_definition_id={job_id}&order_by=-id"), 200).await;
        assert!(listed["data"].as_array().unwrap().iter().any(|r| r["id"] == id), "{slug}: {listed}");
    }
    jade.stop().await;
}

#[tokio::test]
async fn a_run_is_cancelled_in_airflow_and_stays_cancelled_in_jade() {
    let jade = start().await;
    let mut ids = Vec::new();
    for (slug, version) in LIVE_AIRFLOW {
        let job_id = job(&jade, slug, "slow").await;
        let run = run_job(&jade, job_id, json!({"cause": "to be cancelled"})).await;
        let id = run["id"].as_i64().unwrap();
        ids.push(id);
        wait_for(&jade, id, 3).await;
        let (status, answer) = post(&jade, ACME, &format!("/api/v2/accounts/1/runs/{id}/cancel/"), None).await;
        assert_eq!(status, 200, "{answer}");
        let cancelled = &answer["data"];
        assert_eq!(cancelled["status"], 30, "{slug}: {cancelled}");
        assert_eq!(cancelled["status_humanized"], "Cancelled");
        assert_eq!((cancelled["is_cancelled"].as_bool(), cancelled["is_error"].as_bool()), (Some(true), Some(false)));
        assert_eq!((cancelled["is_complete"].as_bool(), cancelled["in_progress"].as_bool()), (Some(true), Some(false)));
        // Airflow 2's scheduler may set the run running once more before it ends failed.
        let started = Instant::now();
        while airflow_run(version, "slow", cancelled["dag_run_run_id"].as_str().unwrap()).await["state"] != "failed" {
            assert!(started.elapsed() < PATIENCE, "{slug}: Airflow did not mark run {id} failed");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        wait_for(&jade, id, 30).await;
        // A finished run is answered as it is.
        let (status, again) = post(&jade, ACME, &format!("/api/v2/accounts/1/runs/{id}/cancel"), None).await;
        assert_eq!((status, &again["data"]["status"]), (200, &json!(30)));
        let listed = jade.json(ACME, "/api/v2/accounts/1/runs?status=30&limit=100", 200).await;
        assert!(listed["data"].as_array().unwrap().iter().any(|r| r["id"] == id), "{slug}: {listed}");
        // Retrying a cancelled run: it did not fail.
        let (status, refused) = post(&jade, ACME, &format!("/api/v2/accounts/1/runs/{id}/retry/"), None).await;
        assert_eq!((status, message(&refused)), (400, format!("Run {id} did not fail; nothing to retry.").as_str()));
    }
    // Another replica over the same databases, and the first Jade's codes: cancelled is
    // recorded in the Jade database.
    let replica = jade.replica(&[("API_COMPAT", "jade")]).await;
    let cancelled = replica.json(ACME, "/api/v2/accounts/1/runs?status=2&limit=100", 200).await;
    for id in ids {
        let run = cancelled["data"].as_array().unwrap().iter().find(|r| r["id"] == id);
        let run = run.unwrap_or_else(|| panic!("run {id} is not among the failed ones: {cancelled}"));
        assert_eq!((run["is_cancelled"].as_bool(), run["status_humanized"].as_str()), (Some(true), Some("Cancelled")));
    }
    replica.server.stop().await.unwrap();
    jade.stop().await;
}

#[tokio::test]
async fn a_failed_run_is_retried_from_its_failed_tasks_with_the_same_id() {
    let jade = start().await;
    for (slug, _) in LIVE_AIRFLOW {
        let job_id = job(&jade, slug, "flaky").await;
        let run = run_job(&jade, job_id, json!({})).await;
        let id = run["id"].as_i64().unwrap();
        assert_eq!(run["trigger"]["cause"], "Triggered via API", "{run}");
        wait_for(&jade, id, 20).await;
        let (status, answer) = post(&jade, ACME, &format!("/api/v2/accounts/1/runs/{id}/retry/"), None).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["data"]["id"], id, "the same run");
        assert!(
            [1, 3].contains(&answer["data"]["status"].as_i64().unwrap()),
            "{slug}: queued or running again: {answer}"
        );
        let done = wait_for(&jade, id, 10).await;
        assert_eq!(done["dag_run_id"], run["dag_run_id"]);
        // Now it succeeded: nothing to retry.
        let (status, refused) = post(&jade, ACME, &format!("/api/v2/accounts/1/runs/{id}/retry/"), None).await;
        assert_eq!((status, message(&refused)), (400, format!("Run {id} did not fail; nothing to retry.").as_str()));

        // The job's latest run, retried through the job.
        let second = run_job(&jade, job_id, json!({"cause": "again"})).await;
        let second_id = second["id"].as_i64().unwrap();
        wait_for(&jade, second_id, 20).await;
        let (status, answer) = post(&jade, ACME, &format!("/api/v2/accounts/1/jobs/{job_id}/rerun/"), None).await;
        assert_eq!((status, answer["data"]["id"].as_i64()), (200, Some(second_id)), "{answer}");
        wait_for(&jade, second_id, 10).await;
    }
    jade.stop().await;
}

#[tokio::test]
async fn only_a_token_with_the_permission_runs_cancels_or_retries() {
    let jade = start().await;
    for (slug, version) in LIVE_AIRFLOW {
        let job_id = job(&jade, slug, "quick").await;
        let before = dag_runs(version, "quick").await;
        for path in
            [format!("/api/v2/accounts/1/jobs/{job_id}/run/"), format!("/api/v2/accounts/1/jobs/{job_id}/rerun/")]
        {
            let (status, answer) = post(&jade, ACME_READER, &path, Some(json!({"cause": "not allowed"}))).await;
            assert_eq!(status, 403, "{path}: {answer}");
            assert_eq!(message(&answer), "You have no permission to run jobs in this environment.");
            assert_eq!(answer["status"]["code"], 403);
        }
        assert_eq!(dag_runs(version, "quick").await, before, "{slug}: no DAG run was made");
        // Reading stays open to it.
        jade.json(ACME_READER, &format!("/api/v2/accounts/1/jobs/{job_id}"), 200).await;
    }
    let run = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=101&limit=1", 200).await["data"][0]["id"].clone();
    for action in ["cancel", "retry"] {
        let (status, _) = post(&jade, ACME_READER, &format!("/api/v2/accounts/1/runs/{run}/{action}/"), None).await;
        assert_eq!(status, 403, "{action}");
    }
    // Another account's job is not found; no token, 401.
    let globex_job = job(&jade, "globex123", "daily").await;
    let (status, _) = post(&jade, ACME, &format!("/api/v2/accounts/1/jobs/{globex_job}/run/"), Some(json!({}))).await;
    assert_eq!(status, 404);
    let response =
        jade.client.post(jade.url(&format!("/api/v2/accounts/1/jobs/{globex_job}/run/"))).send().await.unwrap();
    assert_eq!(response.status(), 401);
    jade.stop().await;
}

#[tokio::test]
async fn an_airflow_api_that_does_not_answer_is_503_and_reads_go_on() {
    let jade = start().await;
    // prod123's API refuses connections; its database answers.
    let job_id = job(&jade, "prod123", "daily").await;
    let started = Instant::now();
    let (status, answer) = post(&jade, ACME, &format!("/api/v2/accounts/1/jobs/{job_id}/run/"), Some(json!({}))).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(message(&answer), "Airflow for environment prod123 is unavailable. Please retry.");
    assert!(started.elapsed() < Duration::from_secs(10), "within AIRFLOW_API_TIMEOUT_MS: {:?}", started.elapsed());
    let runs = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=101", 200).await;
    assert_eq!(runs["extra"]["pagination"]["total_count"], 6, "nothing recorded for a run Airflow did not make");
    // globex123 has no API credentials of its own, and Jade none (AIRFLOW_API_USERNAME unset).
    let globex_job = job(&jade, "globex123", "daily").await;
    let (status, answer) =
        post(&jade, GLOBEX, &format!("/api/v2/accounts/2/jobs/{globex_job}/run/"), Some(json!({}))).await;
    assert_eq!((status, message(&answer)), (503, "Running jobs is not configured."));
    jade.stop().await;
}

#[tokio::test]
async fn a_paused_dag_runs_as_airflow_runs_it_and_says_so() {
    let jade = start().await;
    for (slug, _) in LIVE_AIRFLOW {
        let job_id = job(&jade, slug, "paused").await;
        let run = run_job(&jade, job_id, json!({"cause": "while paused"})).await;
        assert_eq!(run["status"], 1, "{slug}: {run}");
        let message = run["status_message"].as_str().unwrap_or_default();
        assert!(message.contains("paused"), "{slug}: {run}");
    }
    jade.stop().await;
}
