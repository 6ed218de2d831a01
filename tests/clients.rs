//! Off-the-shelf dbt Cloud clients against a seeded Jade (contract §3 "dbt Cloud clients",
//! §5): Apache Airflow's `DbtCloudHook`, dbt-cloud-cli and dbtc, unchanged, through a
//! loopback TLS terminator (they only speak HTTPS), and schemathesis over the served OpenAPI
//! document, in both `API_COMPAT` modes.
//!
//! The clients live in the tools venv (`.tools/venv`, pinned by
//! `scripts/install-client-tools.sh`); the Python side is `tests/clients/drive.py` and
//! `tests/clients/tls_proxy.py`. What each client sends and reads: `tests/clients/README.md`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::fake_airflow::FakeAirflowApi;
use support::seed::{ACME, state};
use support::{Backend, Scenario, TestJade};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const MANIFEST: &[u8] = include_bytes!("fixtures/manifest.json");
const RUNS_PER_ENVIRONMENT: i64 = 40;
/// dev123, prod123 and mkt123 have Airflow (no unreachable environment in this scenario).
const ENVIRONMENTS_WITH_RUNS: i64 = 3;
/// `daily`, `hourly` and `paused` in each of them.
const JOBS: i64 = 9;
/// The driver's own checks are bounded (60 s each); this bounds the whole process.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const SCHEMATHESIS_TIMEOUT: Duration = Duration::from_secs(8 * 60);
/// Test cases per operation: enough to cover every parameter, few enough for minutes.
const SCHEMATHESIS_EXAMPLES: &str = "25";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The tools venv's Python (`JADE_CLIENTS_PYTHON` overrides it).
fn python() -> PathBuf {
    std::env::var_os("JADE_CLIENTS_PYTHON").map(PathBuf::from).unwrap_or_else(|| root().join(".tools/venv/bin/python"))
}

/// Fails the test with a line saying how to install the clients when one is missing.
async fn require_clients() {
    let python = python();
    let probe = Command::new(&python)
        .args(["-c", "import airflow.providers.dbt.cloud.hooks.dbt, dbt_cloud.cli, dbtc, schemathesis"])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), probe)
        .await
        .unwrap_or_else(|_| panic!("{} did not import the dbt Cloud clients within 120 s", python.display()))
        .unwrap_or_else(|e| panic!("cannot run {} ({e}); run scripts/install-client-tools.sh", python.display()));
    assert!(
        output.status.success(),
        "the dbt Cloud clients are not installed in {}; run scripts/install-client-tools.sh\n{}",
        python.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A running `tls_proxy.py` in front of Jade; killed when dropped (its stdin closing ends it
/// too, should this process die first).
struct TlsProxy {
    child: Child,
    port: u16,
    cert: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsProxy {
    async fn start(upstream: std::net::SocketAddr) -> TlsProxy {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(python())
            .arg(root().join("tests/clients/tls_proxy.py"))
            .args(["--upstream", &upstream.to_string(), "--exit-on-stdin-eof", "--cert-dir"])
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("tls_proxy.py starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("tls_proxy.py listens within 60 s")
            .unwrap()
            .unwrap_or_default();
        let port = line
            .strip_prefix("LISTENING ")
            .and_then(|port| port.trim().parse().ok())
            .unwrap_or_else(|| panic!("tls_proxy.py printed {line:?} instead of `LISTENING <port>`"));
        TlsProxy { child, port, cert: dir.path().join("cert.pem"), _dir: dir }
    }

    fn base_url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// Runs a command to completion within `limit`, answering (success, stdout + stderr).
async fn run_bounded(mut command: Command, limit: Duration, what: &str) -> (bool, String) {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    command.env("NO_COLOR", "1").env("NO_PROXY", "localhost,127.0.0.1").env("no_proxy", "localhost,127.0.0.1");
    let child = command.spawn().unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(output) => {
            let output = output.unwrap();
            let text = format!(
                "{}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            (output.status.success(), text)
        }
        // The child is dropped with the future, and killed (kill_on_drop).
        Err(_) => (false, format!("{what} did not finish within {} s", limit.as_secs())),
    }
}

fn find<'a>(list: &'a Value, what: &str, matches: impl Fn(&Value) -> bool) -> &'a Value {
    list["data"].as_array().unwrap().iter().find(|item| matches(item)).unwrap_or_else(|| panic!("no {what} in {list}"))
}

/// Seeds 120 runs in account 1, uploads a manifest for a successful run of `hourly` in
/// `dev123`, and runs every client check of `drive.py` through the TLS terminator.
async fn clients_work_unchanged(compat: &str) {
    require_clients().await;
    let scenario =
        Scenario { runs_per_environment: RUNS_PER_ENVIRONMENT, unreachable_environment: false, ..Scenario::default() };
    let jade = TestJade::start(scenario, &[("API_COMPAT", compat)]).await;

    // The job and run the checks name, read through plain v2 routes that work today.
    let jobs = jade.json(ACME, "/api/v2/accounts/1/jobs?environment_id=100", 200).await;
    let job = find(&jobs, "hourly job", |job| job["name"] == "hourly");
    let job_id = job["id"].as_i64().unwrap();
    let runs = jade.json(ACME, &format!("/api/v2/accounts/1/runs?job_definition_id={job_id}&order_by=id"), 200).await;
    let run = find(&runs, "successful run", |run| run["is_success"] == true);
    let run_id = run["id"].as_i64().unwrap();
    let dag_run_id = run["dag_run_run_id"].as_str().unwrap().to_owned();
    jade.upload_manifest("dev123", "hourly", &dag_run_id, MANIFEST).await;
    // Its steps: two task instances that succeeded, one after the other.
    let airflow = jade.seeded.airflow("dev123").await;
    airflow
        .execute(
            "INSERT INTO task_instance (dag_id, run_id, task_id, state, start_date, end_date)
             SELECT dag_id, run_id, t.task_id, 'success', start_date + t.at, start_date + t.at + interval '5 seconds'
             FROM dag_run, (VALUES ('dbt_deps', interval '0'), ('dbt_build', interval '10 seconds')) AS t(task_id, at)
             WHERE run_id = $1",
            &[&dag_run_id],
        )
        .await
        .unwrap();

    let runs_total = RUNS_PER_ENVIRONMENT * ENVIRONMENTS_WITH_RUNS;
    let successes = (1..=RUNS_PER_ENVIRONMENT).filter(|n| state(*n) == Some("success")).count() as i64;
    // `hourly` has the odd-numbered runs of each environment.
    let job_runs = (RUNS_PER_ENVIRONMENT + 1) / 2;

    let proxy = TlsProxy::start(jade.server.address).await;
    let mut driver = Command::new(python());
    driver
        .arg(root().join("tests/clients/drive.py"))
        .args(["--base-url", &proxy.base_url()])
        .arg("--ca-file")
        .arg(&proxy.cert)
        .args(["--token", ACME, "--compat", compat, "--account-id", "1"])
        .args(["--runs", &runs_total.to_string(), "--success-runs", &(successes * ENVIRONMENTS_WITH_RUNS).to_string()])
        .args(["--jobs", &JOBS.to_string()])
        .args(["--project-id", "10", "--project-name", "Analytics"])
        .args(["--environment-id", "100", "--environment-name", "Development", "--environment-slug", "dev123"])
        .args(["--job-id", &job_id.to_string(), "--job-name", "hourly", "--job-runs", &job_runs.to_string()])
        .args(["--run-id", &run_id.to_string(), "--run-dag-id", "hourly", "--run-dag-run-id", &dag_run_id])
        .arg("--manifest-file")
        .arg(root().join("tests/fixtures/manifest.json"))
        .args(["--run-steps", "dbt_deps,dbt_build"])
        .current_dir(root());
    let (ok, output) = run_bounded(driver, DRIVER_TIMEOUT, "drive.py").await;
    proxy.stop().await;
    jade.stop().await;
    assert!(ok, "dbt Cloud clients against Jade (API_COMPAT={compat}) failed:\n{output}");
    println!("{output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dbt_cloud_clients_work_unchanged_in_jade_mode() {
    clients_work_unchanged("jade").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dbt_cloud_clients_work_unchanged_in_dbt_cloud_mode() {
    clients_work_unchanged("dbt-cloud").await;
}

/// Jobs run, cancelled and retried through Jade by Airflow's `DbtCloudHook` and
/// `DbtCloudRunJobOperator`, dbt-cloud-cli and dbtc (`tests/clients/run_jobs.py`), on a
/// running Airflow 2 (`dev123`) and Airflow 3 (`mkt123`) at once.
#[tokio::test(flavor = "multi_thread")]
async fn dbt_cloud_clients_run_jobs_on_airflow_2_and_3() {
    require_clients().await;
    let jade = TestJade::start(Scenario::live_airflow(), &[("API_COMPAT", "dbt-cloud")]).await;
    let proxy = TlsProxy::start(jade.server.address).await;
    let drivers = support::seed::LIVE_AIRFLOW.map(|(slug, version)| {
        let (jade, proxy) = (&jade, &proxy);
        async move {
            let environment_id = if slug == "dev123" { 100 } else { 102 };
            let jobs = jade.json(ACME, &format!("/api/v2/accounts/1/jobs?environment_id={environment_id}"), 200).await;
            let job = |dag: &str| find(&jobs, dag, |job| job["dag_id"] == dag)["id"].as_i64().unwrap().to_string();
            let mut driver = Command::new(python());
            driver
                .arg(root().join("tests/clients/run_jobs.py"))
                .args(["--base-url", &proxy.base_url()])
                .arg("--ca-file")
                .arg(&proxy.cert)
                .args(["--token", ACME, "--account-id", "1", "--label", &format!("Airflow {version:?}")])
                .args(["--quick", &job("quick"), "--slow", &job("slow"), "--flaky", &job("flaky")])
                .current_dir(root());
            run_bounded(driver, DRIVER_TIMEOUT, "run_jobs.py").await
        }
    });
    let outcomes = futures::future::join_all(drivers).await;
    proxy.stop().await;
    jade.stop().await;
    for (ok, output) in outcomes {
        assert!(ok, "dbt Cloud clients running jobs through Jade failed:\n{output}");
        println!("{output}");
    }
}

/// schemathesis over `/api/v2/openapi` with a valid token: no 5xx, every answer's status
/// declared and its body conforming to the declared schema. The jobs it runs, cancels and
/// retries go to an Airflow API that answers at once (`support::fake_airflow`).
async fn schemathesis_finds_nothing(compat: &str) {
    require_clients().await;
    let scenario = Scenario { runs_per_environment: 6, unreachable_environment: false, ..Scenario::default() };
    let seeded = support::seed::seed(scenario).await;
    let airflow = FakeAirflowApi::start(&seeded).await;
    let variables = airflow.variables();
    let mut overrides: Vec<(&str, &str)> = variables.iter().map(|(name, value)| (*name, value.as_str())).collect();
    overrides.push(("API_COMPAT", compat));
    let jade = TestJade::seeded(seeded, Backend::Fs, &overrides).await;
    let runs = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&order_by=id", 200).await;
    let succeeded = find(&runs, "successful run", |run| run["is_success"] == true)["dag_run_run_id"].clone();
    jade.upload_manifest("dev123", "hourly", succeeded.as_str().unwrap(), MANIFEST).await;
    let report_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("schemathesis-{compat}"));
    let _ = std::fs::remove_dir_all(&report_dir);
    std::fs::create_dir_all(&report_dir).unwrap();
    let mut schemathesis = Command::new(python());
    schemathesis
        .args(["-m", "schemathesis.cli", "--config-file"])
        .arg(root().join("tests/clients/schemathesis.toml"))
        .arg("run")
        .arg(jade.url("/api/v2/openapi"))
        .args(["--url", &jade.server.url()])
        .args(["--checks", "not_a_server_error,response_schema_conformance,status_code_conformance"])
        .args(["--header", &format!("Authorization: Bearer {ACME}")])
        .args(["--max-examples", SCHEMATHESIS_EXAMPLES, "--seed", "1", "--workers", "4", "--request-timeout", "30"])
        .args(["--report", "junit", "--report-dir"])
        .arg(&report_dir)
        // schemathesis keeps a `.schemathesis/` cache of past failures in its working
        // directory: one per mode, emptied above, so every run starts from the same seed only.
        .current_dir(&report_dir);
    let (ok, output) = run_bounded(schemathesis, SCHEMATHESIS_TIMEOUT, "schemathesis").await;
    jade.stop().await;
    airflow.stop();
    assert!(ok, "schemathesis found answers contradicting the OpenAPI document (API_COMPAT={compat}):\n{output}");
    println!("{output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_contradiction_in_jade_mode() {
    schemathesis_finds_nothing("jade").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_contradiction_in_dbt_cloud_mode() {
    schemathesis_finds_nothing("dbt-cloud").await;
}
