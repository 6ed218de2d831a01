//! The dbt Cloud v2 clone over HTTP, on real PostgreSQL databases (contract §2, §3).

mod support;

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use support::listing::{ORDERS, assert_in_order, assert_paging_exact, walk};
use support::seed::{ACME, GLOBEX, NOBODY};
use support::{Scenario, TestJade, message};

fn ids(list: &Value) -> Vec<i64> {
    list["data"].as_array().unwrap().iter().map(|item| item["id"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn accounts_projects_and_environments_carry_the_contract_fields() {
    let jade = TestJade::start(Scenario::default(), &[]).await;

    let accounts = jade.json(ACME, "/api/v2/accounts/", 200).await;
    assert_eq!(ids(&accounts), vec![1]);
    assert_eq!(accounts["extra"]["pagination"], json!({"count": 1, "total_count": 1}));
    assert_eq!(accounts["status"]["is_success"], true);

    let account = jade.json(ACME, "/api/v2/accounts/1", 200).await;
    let data = &account["data"];
    assert_eq!(data["identifier"], "acme");
    assert_eq!(data["name"], "Acme");
    assert_eq!(data["developer_seats"], 5);
    assert_eq!(data["plan"], 2);
    assert_eq!(data["trial_end_date"], "2030-01-01T00:00:00Z");
    assert_eq!(data["created_at"], "2023-01-01T10:00:00Z");
    assert!(data.as_object().unwrap().contains_key("locked") && data["locked"].is_null());
    assert_eq!(account["status"]["code"], 200);

    let projects = jade.json(ACME, "/api/v2/accounts/1/projects", 200).await;
    assert_eq!(ids(&projects), vec![10, 11]);
    let project = &projects["data"][0];
    assert_eq!(project["slug"], "analytics");
    assert_eq!(project["integration_entity_id"], 10);
    assert_eq!(project["repository_id"], 7);
    assert_eq!(project["skipped_setup"], false);
    assert!(project["semantic_layer_id"].is_null());
    let page = jade.json(ACME, "/api/v2/accounts/1/projects?limit=1&offset=1", 200).await;
    assert_eq!(ids(&page), vec![11]);
    assert_eq!(page["extra"]["pagination"], json!({"count": 1, "total_count": 2}));
    assert_eq!(jade.json(ACME, "/api/v2/accounts/1/projects/11", 200).await["data"]["name"], "Marketing");

    let environments = jade.json(ACME, "/api/v2/accounts/1/environments", 200).await;
    assert_eq!(ids(&environments), vec![100, 101, 102, 103, 104]);
    let filtered = jade.json(ACME, "/api/v2/accounts/1/environments?project_id=10", 200).await;
    assert_eq!(ids(&filtered), vec![100, 101]);
    let environment = jade.json(ACME, "/api/v2/accounts/1/environments/101", 200).await["data"].clone();
    assert_eq!(environment["slug"], "prod123");
    assert_eq!(environment["connection_id"], 101);
    assert_eq!(environment["account_id"], 1);
    assert_eq!(environment["project_id"], 10);
    assert_eq!(environment["dbt_project_subdirectory"], "transform");
    assert_eq!(environment["use_custom_branch"], false);
    let keys = environment.as_object().unwrap();
    assert!(!keys.contains_key("services") && !keys.contains_key("airflow_config"));
    jade.stop().await;
}

#[tokio::test]
async fn jobs_are_the_dags_of_every_reachable_environment() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    // dev123, prod123 and mkt123 have 3 DAGs each; noflow123 has no Airflow, broken123 is down.
    let jobs = jade.json(ACME, "/api/v2/accounts/1/jobs", 200).await;
    assert_eq!(jobs["extra"]["pagination"]["total_count"], 9);
    let all: Vec<&Value> = jobs["data"].as_array().unwrap().iter().collect();
    assert!(all.iter().all(|j| [100, 101, 102].contains(&j["environment_id"].as_i64().unwrap())));
    let paused = all.iter().find(|j| j["dag_id"] == "paused" && j["environment_id"] == 100).unwrap();
    assert_eq!((paused["state"].as_i64(), paused["deactivated"].as_bool()), (Some(0), Some(true)));
    let daily = all.iter().find(|j| j["dag_id"] == "daily" && j["environment_id"] == 101).unwrap();
    assert_eq!(daily["name"], "daily");
    assert_eq!(daily["state"], 1);
    assert_eq!(daily["project_id"], 10);
    assert_eq!(daily["account_id"], 1);
    assert_eq!(daily["dbt_job_ext_id"], daily["id"]);
    assert_eq!(daily["schedule"], "\"@daily\"");
    assert_eq!(daily["created_at"], "2024-03-01T07:00:00Z");
    assert_eq!(daily["description"], "The daily DAG");
    assert_eq!(daily["triggers_on_draft_pr"], false);

    let in_env = jade.json(ACME, "/api/v2/accounts/1/jobs?environment_id=102", 200).await;
    assert_eq!(in_env["data"].as_array().unwrap().len(), 3);
    let in_project = jade.json(ACME, "/api/v2/accounts/1/jobs?project_id=10&order_by=-name&limit=2", 200).await;
    let names: Vec<&str> = in_project["data"].as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["paused", "paused"]);
    assert_eq!(in_project["extra"]["pagination"], json!({"count": 2, "total_count": 6}));
    assert_eq!(in_project["extra"]["order_by"], "-name");

    let id = daily["id"].as_i64().unwrap();
    let job = jade.json(ACME, &format!("/api/v2/accounts/1/jobs/{id}/"), 200).await["data"].clone();
    assert_eq!(job["id"], id);
    // Runs of `daily` are the even ones: 2 failed, 4 queued, 6 (None); the latest by end date
    // is the failed run 2, which is also the only finished one; none succeeded.
    let recent = &job["most_recent_job_run"];
    assert_eq!(recent["job_definition_id"], id);
    assert_eq!(recent["dag_id"], "daily");
    assert_eq!(recent["status_humanized"], "Error");
    assert!(job["most_recent_completed_job_run"].is_null());
    jade.stop().await;
}

/// Keys the first Jade always rendered `null`, which its clients read as "unknown": a run's
/// `is_cancelled` and `scribe_enabled`, a job's `most_recent_run` and
/// `most_recent_completed_run` (its runs are in `most_recent_job_run` and
/// `most_recent_completed_job_run`). The OpenAPI document declares them nullable.
#[tokio::test]
async fn keys_the_first_jade_rendered_null_are_null() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    let is_null = |object: &Value, key: &str| object.as_object().unwrap().get(key).is_some_and(Value::is_null);
    let runs = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100", 200).await;
    for run in runs["data"].as_array().unwrap() {
        assert!(is_null(run, "is_cancelled") && is_null(run, "scribe_enabled"), "{run}");
    }
    let jobs = jade.json(ACME, "/api/v2/accounts/1/jobs?environment_id=100", 200).await;
    let hourly = jobs["data"].as_array().unwrap().iter().find(|j| j["dag_id"] == "hourly").unwrap();
    let job = jade.json(ACME, &format!("/api/v2/accounts/1/jobs/{}", hourly["id"]), 200).await["data"].clone();
    assert!(is_null(&job, "most_recent_run") && is_null(&job, "most_recent_completed_run"), "{job}");
    for key in ["most_recent_job_run", "most_recent_completed_job_run"] {
        let run = &job[key];
        assert_eq!(run["dag_id"], "hourly", "{key}");
        assert!(is_null(run, "is_cancelled") && is_null(run, "scribe_enabled"), "{key}: {run}");
    }
    for listed in jobs["data"].as_array().unwrap() {
        assert!(is_null(listed, "most_recent_run") && is_null(listed, "most_recent_completed_run"));
    }
    let spec: Value = jade.client.get(jade.url("/api/v2/openapi")).send().await.unwrap().json().await.unwrap();
    let schemas = &spec["components"]["schemas"];
    for (schema, key) in [
        ("JobRun", "is_cancelled"),
        ("JobRun", "scribe_enabled"),
        ("Job", "most_recent_run"),
        ("Job", "most_recent_completed_run"),
    ] {
        let property = &schemas[schema]["properties"][key];
        assert_eq!(property["nullable"], true, "{schema}.{key}: {property}");
        let required = schemas[schema]["required"].as_array().cloned().unwrap_or_default();
        assert!(!required.contains(&json!(key)), "{schema}.{key} is not required");
    }
    jade.stop().await;
}

/// Durations are counted between timestamps first truncated to whole seconds, as the first
/// Jade did (its Ecto fields held whole seconds): queued 08:00:00.900, started 08:00:01.100,
/// ended 08:01:01.000 is 61 s in all, 1 s queued and 60 s running (not 60.1, 0.2 and 59.9
/// rounded down).
#[tokio::test]
async fn durations_count_whole_seconds_like_the_first_jade() {
    let jade = TestJade::start(Scenario { runs_per_environment: 0, ..Scenario::default() }, &[]).await;
    let airflow = jade.seeded.airflow("dev123").await;
    airflow
        .batch_execute(
            "INSERT INTO dag_run (dag_id, run_id, state, queued_at, start_date, end_date, execution_date, run_type) VALUES
               ('daily', 'manual__fractions', 'success', '2024-03-01T08:00:00.900Z', '2024-03-01T08:00:01.100Z',
                '2024-03-01T08:01:01.000Z', '2024-03-01T08:00:00.900Z', 'manual'),
               ('daily', 'manual__whole', 'success', '2024-03-01T09:00:00Z', '2024-03-01T09:00:02.999Z',
                '2024-03-01T09:00:04.001Z', '2024-03-01T09:00:00Z', 'manual');",
        )
        .await
        .unwrap();
    let runs = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&order_by=id", 200).await;
    let runs = runs["data"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    let durations =
        |run: &Value| (run["duration"].as_i64(), run["queued_duration"].as_i64(), run["run_duration"].as_i64());
    let fractions = &runs[0];
    assert_eq!(fractions["dag_run_run_id"], "manual__fractions");
    assert_eq!(durations(fractions), (Some(61), Some(1), Some(60)));
    assert_eq!(fractions["duration_humanized"], "1 minute, 1 second");
    assert_eq!(fractions["queued_duration_humanized"], "1 second");
    assert_eq!(fractions["run_duration_humanized"], "1 minute");
    assert_eq!(
        (fractions["queued_at"].as_str(), fractions["started_at"].as_str()),
        (Some("2024-03-01T08:00:00Z"), Some("2024-03-01T08:00:01Z"))
    );
    // 09:00:00 → 09:00:02 → 09:00:04 once truncated.
    assert_eq!(durations(&runs[1]), (Some(4), Some(2), Some(2)));
    assert_eq!(runs[1]["run_duration_humanized"], "2 seconds");
    let shown = jade.json(ACME, &format!("/api/v2/accounts/1/runs/{}", fractions["id"]), 200).await;
    assert_eq!(durations(&shown["data"]), (Some(61), Some(1), Some(60)));
    jade.stop().await;
}

#[tokio::test]
async fn runs_in_every_airflow_state_render_as_dbt_cloud_runs() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    let runs = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&order_by=id", 200).await;
    let runs = runs["data"].as_array().unwrap();
    assert_eq!(runs.len(), 6);
    let expected = [
        (1, "hourly", 1, "Success"),
        (2, "daily", 2, "Error"),
        (3, "hourly", 5, "Running"),
        (4, "daily", 3, "Queued"),
        (5, "hourly", 3, "Queued"),
        (6, "daily", 3, "Queued"),
    ];
    for (run, (dag_run_id, dag_id, status, humanized)) in runs.iter().zip(expected) {
        assert_eq!(run["dag_run_id"], dag_run_id, "{run}");
        assert_eq!(run["dbt_job_run_ext_id"], dag_run_id);
        assert_eq!(run["dag_id"], dag_id);
        assert_eq!(run["status"], status, "{run}");
        assert_eq!(run["status_humanized"], humanized);
        assert_eq!(run["environment_slug"], "dev123");
        assert_eq!((run["environment_id"].as_i64(), run["project_id"].as_i64()), (Some(100), Some(10)));
        assert_eq!(run["job_definition_id"], run["job_id"]);
        assert!(run["job_definition_id"].is_i64());
        assert_eq!(run["created_at"], run["queued_at"]);
        assert_eq!(run["should_start_at"], run["queued_at"]);
        assert_eq!(run["finished_at"], run["completed_at"]);
        assert_eq!(run["dequeued_at"], run["finished_at"]);
        assert_eq!(run["artifacts_saved"], false);
        assert!(run["dag_run_run_id"].as_str().unwrap().starts_with("scheduled__2024-03-01T"));
    }
    let success = &runs[0];
    assert_eq!(success["queued_at"], "2024-03-01T08:12:00Z");
    assert_eq!(success["started_at"], "2024-03-01T08:12:30Z");
    assert_eq!(success["finished_at"], "2024-03-01T08:13:30Z");
    assert_eq!(
        (success["duration"].as_i64(), success["queued_duration"].as_i64(), success["run_duration"].as_i64()),
        (Some(90), Some(30), Some(60))
    );
    assert_eq!(success["duration_humanized"], "1 minute, 30 seconds");
    assert_eq!(success["run_duration_humanized"], "1 minute");
    assert!(success["created_at_humanized"].as_str().unwrap().ends_with(" ago"));
    assert_eq!(
        [
            success["is_complete"].clone(),
            success["is_success"].clone(),
            success["is_error"].clone(),
            success["in_progress"].clone()
        ],
        [json!(true), json!(true), json!(false), json!(false)]
    );
    let running = &runs[2];
    assert_eq!(
        [running["in_progress"].clone(), running["is_running"].clone(), running["is_complete"].clone()],
        [json!(true), json!(true), json!(false)]
    );
    assert!(running["duration"].is_null() && running["finished_at"].is_null());
    assert_eq!(running["queued_duration"], 30);
    let queued = &runs[5];
    assert!(queued["started_at"].is_null() && queued["queued_duration"].is_null());

    // Status filters, also in dbt Cloud's `__in` form.
    let success_only = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&status=1", 200).await;
    assert_eq!(success_only["data"].as_array().unwrap().len(), 1);
    let queued = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&status__in=[3]", 200).await;
    assert_eq!(queued["data"].as_array().unwrap().len(), 3);
    let mixed = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&status__in=%5B1,2%5D", 200).await;
    assert_eq!(mixed["extra"]["pagination"]["total_count"], 2);
    assert_eq!(mixed["extra"]["filters"]["status__in"], json!([1, 2]));
    let job_id = runs[0]["job_definition_id"].as_i64().unwrap();
    let of_job = jade.json(ACME, &format!("/api/v2/accounts/1/runs?job_definition_id__in=[{job_id}]"), 200).await;
    assert!(
        of_job["data"].as_array().unwrap().iter().all(|r| r["job_definition_id"] == job_id && r["dag_id"] == "hourly")
    );
    assert_eq!(of_job["data"].as_array().unwrap().len(), 3);
    let of_project = jade.json(ACME, "/api/v2/accounts/1/runs?project_id__in=[11]", 200).await;
    assert!(of_project["data"].as_array().unwrap().iter().all(|r| r["environment_slug"] == "mkt123"));

    // include_related=job embeds the job; an empty include_related is accepted.
    let related =
        jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&limit=1&include_related=[\"job\"]", 200).await;
    assert_eq!(related["data"][0]["job"]["id"], related["data"][0]["job_id"]);
    assert_eq!(related["data"][0]["job"]["name"], related["data"][0]["dag_id"]);
    let plain =
        jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&limit=1&include_related=&whatever=1", 200).await;
    assert!(plain["data"][0].get("job").is_none());

    let one = runs[1]["id"].as_i64().unwrap();
    let shown = jade.json(ACME, &format!("/api/v2/accounts/1/runs/{one}/?include_related=job"), 200).await;
    assert_eq!(shown["data"]["dag_run_id"], 2);
    assert_eq!(shown["data"]["job"]["dag_id"], "daily");
    jade.stop().await;
}

#[tokio::test]
async fn dbt_cloud_compat_renders_runs_and_jobs_as_dbt_cloud_does() {
    let template = "https://airflow.example/{slug}/dags/{dag_id}/grid?dag_run_id={run_id}";
    let jade =
        TestJade::start(Scenario::default(), &[("API_COMPAT", "dbt-cloud"), ("AIRFLOW_UI_URL_TEMPLATE", template)])
            .await;
    let runs = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&order_by=id", 200).await;
    let runs = runs["data"].as_array().unwrap();
    let clock = |value: &Value| {
        let text = value.as_str().unwrap_or_else(|| panic!("not HH:MM:SS: {value}"));
        let parts: Vec<&str> = text.split(':').collect();
        assert!(
            parts.len() == 3 && parts.iter().all(|p| p.len() >= 2 && p.chars().all(|c| c.is_ascii_digit())),
            "{text}"
        );
    };
    for run in runs {
        for key in ["duration", "queued_duration"] {
            clock(&run[key]);
        }
        assert_eq!(run["trigger"]["cause"], "scheduled");
        assert_eq!(run["job"], Value::Null);
        assert_eq!(run["environment"], Value::Null);
        assert_eq!(run["run_steps"], serde_json::json!([]));
        assert_eq!(run["blocked_by"], serde_json::json!([]));
        assert_eq!(run["can_retry"], false);
        assert!(run.as_object().unwrap().contains_key("retrying_run_id"));
        assert!(run.as_object().unwrap().contains_key("used_repo_cache"));
        let href = run["href"].as_str().unwrap();
        assert!(href.starts_with("https://airflow.example/dev123/dags/"), "{href}");
        assert!(href.contains("dag_run_id=scheduled__"), "{href}");
        // `2024-05-27 10:42:16.179903+00:00`
        let created = run["created_at"].as_str().unwrap();
        assert!(created.len() == 32 && &created[10..11] == " " && created.ends_with("+00:00"), "{created}");
        let queued = run["status"] == 1;
        let running = run["status"] == 3;
        assert_eq!(run["in_progress"], queued || running, "{run}");
    }
    assert!(runs.iter().any(|r| r["status"] == 1), "the scenario has a queued run");
    let finished = runs.iter().find(|r| r["status"] == 10).unwrap();
    clock(&finished["run_duration"]);

    let jobs = jade.json(ACME, "/api/v2/accounts/1/jobs?environment_id=100", 200).await;
    for job in jobs["data"].as_array().unwrap() {
        let active = job["name"] != "paused";
        assert_eq!(job["state"], if active { 1 } else { 2 }, "{job}");
        assert_eq!(job["schedule"]["cron"], "0 0 * * *", "@daily");
        assert_eq!(job["schedule"]["date"]["type"], "custom_cron");
        assert_eq!(job["triggers"]["schedule"], active, "{job}");
        assert_eq!(job["triggers"]["github_webhook"], false);
        assert!(job["settings"]["threads"].is_i64());
        assert!(job["execution"]["timeout_seconds"].is_i64());
        assert_eq!(job["execute_steps"], serde_json::json!([]));
        assert_eq!(job["job_type"], "scheduled");
    }
    let missing = jade.json(ACME, "/api/v2/accounts/1/runs/999999", 404).await;
    assert_eq!(missing["data"], Value::Null);
    assert!(missing.as_object().unwrap().contains_key("data"));
    assert_eq!(missing["status"]["is_success"], false);
    jade.stop().await;

    // The first Jade's shape has none of these keys, integer durations, and RFC 3339 times.
    let jade = TestJade::start(Scenario::default(), &[("AIRFLOW_UI_URL_TEMPLATE", template)]).await;
    let runs = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&order_by=id", 200).await;
    let run = &runs["data"][0];
    for key in ["href", "trigger", "run_steps", "can_retry", "job", "environment"] {
        assert!(!run.as_object().unwrap().contains_key(key), "{key} in {run}");
    }
    assert!(run["duration"].is_i64());
    assert!(run["created_at"].as_str().unwrap().ends_with('Z'));
    let jobs = jade.json(ACME, "/api/v2/accounts/1/jobs?environment_id=100", 200).await;
    assert!(jobs["data"][0]["schedule"].is_string());
    let missing = jade.json(ACME, "/api/v2/accounts/1/runs/999999", 404).await;
    assert!(!missing.as_object().unwrap().contains_key("data"));
    jade.stop().await;
}

#[tokio::test]
async fn dbt_cloud_compat_uses_dbt_cloud_status_codes() {
    let jade = TestJade::start(Scenario::default(), &[("API_COMPAT", "dbt-cloud")]).await;
    let runs = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&order_by=id", 200).await;
    let codes: Vec<i64> = runs["data"].as_array().unwrap().iter().map(|r| r["status"].as_i64().unwrap()).collect();
    assert_eq!(codes, vec![10, 20, 3, 1, 1, 1]);
    let succeeded = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&status=10", 200).await;
    assert_eq!(succeeded["data"].as_array().unwrap().len(), 1);
    let cancelled = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&status=30", 200).await;
    assert_eq!(cancelled["extra"]["pagination"]["total_count"], 0);
    jade.stop().await;
}

#[tokio::test]
async fn paging_with_offset_yields_every_run_once_in_order_across_databases() {
    let jade = TestJade::start(
        Scenario { runs_per_environment: 10, unreachable_environment: true, ..Scenario::default() },
        &[],
    )
    .await;
    // dev123 and mkt123 share one Airflow database (a schema each); prod123 has its own.
    for order in ORDERS {
        let (runs, totals) = walk(&jade, order, 7).await;
        assert_eq!(totals, HashSet::from([30]), "{order}");
        assert_eq!(runs.len(), 30, "{order}");
        let unique: HashSet<(String, i64)> = runs
            .iter()
            .map(|r| (r["environment_slug"].as_str().unwrap().to_owned(), r["dag_run_id"].as_i64().unwrap()))
            .collect();
        assert_eq!(unique.len(), 30, "{order}: a run came twice");
        let environments: HashSet<&str> = runs.iter().map(|r| r["environment_slug"].as_str().unwrap()).collect();
        assert_eq!(environments, HashSet::from(["dev123", "prod123", "mkt123"]));
        assert_in_order(order, &runs);
    }
    let newest = jade.json(ACME, "/api/v2/accounts/1/runs?order_by=-id&limit=1", 200).await;
    let all = walk(&jade, "id", 100).await.0;
    assert_eq!(newest["data"][0]["id"], all.last().unwrap()["id"]);
    jade.stop().await;
}

#[tokio::test]
async fn paging_is_exact_over_a_registry_adopted_from_the_first_jade() {
    let jade = TestJade::start(
        Scenario { runs_per_environment: 8, unreachable_environment: false, ..Scenario::default() },
        &[],
    )
    .await;
    // The first Jade registered runs as it happened to meet them: newest first, environments
    // interleaved, with gaps in the ids.
    let registry = support::connect(&jade.seeded.jade_db).await;
    for n in (1..=8i32).rev() {
        for environment_id in [102i32, 100, 101] {
            registry
                .execute("INSERT INTO job_run_ids (environment_id, dag_run_id) VALUES ($1, $2)", &[&environment_id, &n])
                .await
                .unwrap();
        }
        registry.execute("SELECT nextval('job_run_ids_id_seq')", &[]).await.unwrap();
    }
    assert_paging_exact(&jade, 24).await;
    // The adopted ids are kept.
    let first = jade.json(ACME, "/api/v2/accounts/1/runs?order_by=id&limit=1", 200).await;
    assert_eq!(
        (first["data"][0]["environment_slug"].as_str(), first["data"][0]["dag_run_id"].as_i64()),
        (Some("mkt123"), Some(8))
    );
    jade.stop().await;
}

#[tokio::test]
async fn paging_is_exact_after_latest_run_and_a_job_show_registered_runs_first() {
    let jade = TestJade::start(
        Scenario { runs_per_environment: 8, unreachable_environment: false, ..Scenario::default() },
        &[],
    )
    .await;
    jade.json(ACME, "/api/v2/accounts/1/projects/10/latest-run", 200).await;
    let jobs = jade.json(ACME, "/api/v2/accounts/1/jobs?environment_id=101", 200).await;
    for job in jobs["data"].as_array().unwrap() {
        jade.json(ACME, &format!("/api/v2/accounts/1/jobs/{}", job["id"]), 200).await;
    }
    assert_paging_exact(&jade, 24).await;
    jade.stop().await;
}

#[tokio::test]
async fn a_dag_run_committed_late_is_listed_once() {
    let jade = TestJade::start(
        Scenario { runs_per_environment: 4, unreachable_environment: false, ..Scenario::default() },
        &[],
    )
    .await;
    assert_paging_exact(&jade, 12).await;
    // Two Airflow sessions: the first takes id 5 but commits after the second's id 6 was listed.
    let mut slow = jade.seeded.airflow("mkt123").await;
    let fast = jade.seeded.airflow("mkt123").await;
    let late = slow.transaction().await.unwrap();
    support::seed::add_run(&late, 102, 5).await;
    support::seed::add_run(&fast, 102, 6).await;
    assert_paging_exact(&jade, 13).await;
    late.commit().await.unwrap();
    assert_paging_exact(&jade, 14).await;
    let ids: HashSet<i64> = walk(&jade, "id", 100)
        .await
        .0
        .iter()
        .filter(|r| r["environment_slug"] == "mkt123")
        .map(|r| r["dag_run_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, HashSet::from([1, 2, 3, 4, 5, 6]));
    jade.stop().await;
}

#[tokio::test]
async fn a_huge_offset_answers_an_empty_page_and_the_total() {
    let jade = TestJade::start(
        Scenario { runs_per_environment: 5, unreachable_environment: false, ..Scenario::default() },
        &[],
    )
    .await;
    for order in ["id", "-created_at", "finished_at"] {
        let page = jade
            .json(ACME, &format!("/api/v2/accounts/1/runs?order_by={order}&offset=1000000000&limit=100"), 200)
            .await;
        assert_eq!(page["data"], serde_json::json!([]), "{order}");
        assert_eq!(page["extra"]["pagination"]["total_count"], 15, "{order}");
    }
    jade.stop().await;
}

#[tokio::test]
async fn a_large_environment_is_indexed_in_bulk_and_paged_deep() {
    let jade = TestJade::start(
        Scenario { runs_per_environment: 2, unreachable_environment: false, ..Scenario::default() },
        &[],
    )
    .await;
    let airflow = jade.seeded.airflow("mkt123").await;
    airflow
        .batch_execute(
            "INSERT INTO dag_run (dag_id, run_id, state, queued_at, start_date, end_date, run_type)
             SELECT 'daily', 'bulk__' || g, 'success', now() - g * interval '1 minute',
                    now() - g * interval '1 minute', now() - g * interval '1 minute' + interval '5 seconds', 'scheduled'
             FROM generate_series(1, 2500) g",
        )
        .await
        .unwrap();
    let deep = jade.json(ACME, "/api/v2/accounts/1/runs?order_by=-created_at&offset=2400&limit=100", 200).await;
    assert_eq!(deep["extra"]["pagination"]["total_count"], 2506);
    assert_eq!(deep["data"].as_array().unwrap().len(), 100);
    let (runs, totals) = walk(&jade, "-id", 100).await;
    assert_eq!(totals, HashSet::from([2506]));
    assert_eq!(runs.len(), 2506);
    assert_in_order("-id", &runs);
    // Deep pages start from remembered positions: each order, walked whole, is exact.
    for order in ["id", "created_at", "-created_at", "finished_at", "-finished_at"] {
        let (runs, totals) = walk(&jade, order, 100).await;
        assert_eq!((runs.len(), totals), (2506, HashSet::from([2506])), "{order}");
        assert_in_order(order, &runs);
        let unique: HashSet<i64> = runs.iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert_eq!(unique.len(), 2506, "{order}");
    }
    // A deep page after the index changed reads the new order, not remembered positions.
    let before = jade.json(ACME, "/api/v2/accounts/1/runs?order_by=-id&offset=1000&limit=1", 200).await;
    support::seed::add_run(&airflow, 102, 3).await;
    let after = jade.json(ACME, "/api/v2/accounts/1/runs?order_by=-id&offset=1001&limit=1", 200).await;
    assert_eq!(after["data"][0]["id"], before["data"][0]["id"], "one newer run shifts the page by one");
    assert_eq!(after["extra"]["pagination"]["total_count"], 2507);
    let filtered =
        jade.json(ACME, "/api/v2/accounts/1/runs?status=1&order_by=-created_at&offset=1500&limit=100", 200).await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 100);
    assert!(filtered["data"].as_array().unwrap().iter().all(|r| r["status"] == 1));
    let successes = jade.json(ACME, "/api/v2/accounts/1/runs?status=1&environment_id=102&limit=1", 200).await;
    assert_eq!(successes["extra"]["pagination"]["total_count"], 2501, "the bulk runs and one seeded success");
    let beyond = jade.json(ACME, "/api/v2/accounts/1/runs?offset=5000&limit=100", 200).await;
    assert_eq!(beyond["data"], serde_json::json!([]));
    assert_eq!(beyond["extra"]["pagination"]["total_count"], 2507);
    jade.stop().await;
}

#[tokio::test]
async fn lists_answer_from_the_run_index_until_the_refresh_interval_passes() {
    let jade = TestJade::start(Scenario::default(), &[("RUN_INDEX_REFRESH_MS", "600000")]).await;
    let total = |page: Value| page["extra"]["pagination"]["total_count"].as_i64().unwrap();
    let before = total(jade.json(ACME, "/api/v2/accounts/1/runs", 200).await);
    let airflow = jade.seeded.airflow("mkt123").await;
    support::seed::add_run(&airflow, 102, 7).await;
    assert_eq!(total(jade.json(ACME, "/api/v2/accounts/1/runs", 200).await), before);
    jade.stop().await;
}

#[tokio::test]
async fn a_new_run_is_the_newest_by_id() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    let before = jade.json(ACME, "/api/v2/accounts/1/runs?order_by=-id&limit=1", 200).await;
    let airflow = jade.seeded.airflow("mkt123").await;
    support::seed::add_run(&airflow, 102, 7).await;
    let after = jade.json(ACME, "/api/v2/accounts/1/runs?order_by=-id&limit=1", 200).await;
    assert!(after["data"][0]["id"].as_i64() > before["data"][0]["id"].as_i64());
    assert_eq!(
        (after["data"][0]["environment_slug"].as_str(), after["data"][0]["dag_run_id"].as_i64()),
        (Some("mkt123"), Some(7))
    );
    assert_eq!(
        after["extra"]["pagination"]["total_count"],
        before["extra"]["pagination"]["total_count"].as_i64().unwrap() + 1
    );
    jade.stop().await;
}

#[tokio::test]
async fn fifty_concurrent_first_listings_assign_one_id_per_run() {
    let jade = TestJade::start(
        Scenario { runs_per_environment: 40, unreachable_environment: false, ..Scenario::default() },
        &[],
    )
    .await;
    let requests = (0..50).map(|_| jade.json(ACME, "/api/v2/accounts/1/runs?limit=100&order_by=-id", 200));
    let pages = futures::future::join_all(requests).await;
    let mut ids: HashMap<(String, i64), i64> = HashMap::new();
    for page in &pages {
        assert_eq!(page["extra"]["pagination"]["total_count"], 120);
        for run in page["data"].as_array().unwrap() {
            let key = (run["environment_slug"].as_str().unwrap().to_owned(), run["dag_run_id"].as_i64().unwrap());
            let id = run["id"].as_i64().unwrap();
            assert_eq!(*ids.entry(key).or_insert(id), id, "a run got two ids");
        }
    }
    let registry = support::connect(&jade.seeded.jade_db).await;
    let row = registry
        .query_one("SELECT count(*), count(DISTINCT (environment_id, dag_run_id)) FROM job_run_ids", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (120, 120));
    let jobs = registry.query_one("SELECT count(*) FROM job_ids", &[]).await.unwrap();
    assert_eq!(jobs.get::<_, i64>(0), 6, "the runs' two DAGs in three environments");
    jade.stop().await;
}

#[tokio::test]
async fn an_unreachable_airflow_database_drops_only_its_environment() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    // broken123 is unreachable from the start: the lists hold everything else.
    let runs = jade.json(ACME, "/api/v2/accounts/1/runs", 200).await;
    assert_eq!(runs["extra"]["pagination"]["total_count"], 18);
    assert_eq!(jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=104", 200).await["data"], json!([]));

    // prod123's database goes away after its runs got ids.
    let in_prod = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=101", 200).await;
    let run_id = in_prod["data"][0]["id"].as_i64().unwrap();
    let job_id = in_prod["data"][0]["job_id"].as_i64().unwrap();
    let datacoves = support::connect(&jade.seeded.datacoves_db).await;
    datacoves
        .execute("UPDATE projects_environment SET airflow_config = (SELECT airflow_config FROM projects_environment WHERE id = 104) WHERE id = 101", &[])
        .await
        .unwrap();
    let runs = jade.json(ACME, "/api/v2/accounts/1/runs", 200).await;
    assert_eq!(runs["extra"]["pagination"]["total_count"], 12);
    assert!(runs["data"].as_array().unwrap().iter().all(|r| r["environment_slug"] != "prod123"));
    let missing = "Airflow Repo for Environment prod123 not found.";
    assert_eq!(message(&jade.json(ACME, &format!("/api/v2/accounts/1/runs/{run_id}"), 404).await), missing);
    assert_eq!(message(&jade.json(ACME, &format!("/api/v2/accounts/1/jobs/{job_id}"), 404).await), missing);
    assert_eq!(jade.json(ACME, "/api/v2/accounts/1/jobs", 200).await["extra"]["pagination"]["total_count"], 6);
    jade.stop().await;
}

#[tokio::test]
async fn latest_run_is_the_newest_success_across_the_projects_environments() {
    let jade = TestJade::start(
        Scenario { runs_per_environment: 12, unreachable_environment: true, ..Scenario::default() },
        &[],
    )
    .await;
    // Successful runs are 1 and 7 of each environment; prod123's run 7 is queued a minute
    // after dev123's and runs as long, so it ends last.
    let latest = jade.json(ACME, "/api/v2/accounts/1/projects/10/latest-run/", 200).await;
    assert_eq!(latest["data"]["environment_slug"], "prod123");
    assert_eq!(latest["data"]["dag_run_id"], 7);
    assert_eq!(latest["data"]["status"], 1);
    assert_eq!(message(&jade.json(ACME, "/api/v2/accounts/1/projects/999/latest-run", 404).await), "Not Found");
    jade.stop().await;
}

#[tokio::test]
async fn every_route_refuses_other_accounts_ids() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    // Globex's own ids, as its token sees them.
    let globex_run = jade.json(GLOBEX, "/api/v2/accounts/2/runs?limit=1", 200).await["data"][0].clone();
    let run_id = globex_run["id"].as_i64().unwrap();
    let job_id = globex_run["job_id"].as_i64().unwrap();
    let denied = "Invalid Account in Path. You have no accces to this account.";
    for path in [
        "/api/v2/accounts/2".to_owned(),
        "/api/v2/accounts/2/projects".into(),
        "/api/v2/accounts/2/projects/20".into(),
        "/api/v2/accounts/2/projects/20/latest-run".into(),
        "/api/v2/accounts/2/environments".into(),
        "/api/v2/accounts/2/environments/200".into(),
        "/api/v2/accounts/2/jobs".into(),
        format!("/api/v2/accounts/2/jobs/{job_id}"),
        "/api/v2/accounts/2/runs".into(),
        format!("/api/v2/accounts/2/runs/{run_id}"),
        format!("/api/v2/accounts/2/runs/{run_id}/artifacts/manifest.json"),
    ] {
        let body = jade.json(ACME, &path, 401).await;
        assert_eq!(message(&body), denied, "{path}");
        assert_eq!(body["status"]["code"], 401);
        assert_eq!(body["status"]["is_success"], false);
    }
    // Globex's ids under Acme's account: not found, never Globex's data.
    for path in [
        "/api/v2/accounts/1/projects/20".to_owned(),
        "/api/v2/accounts/1/projects/20/latest-run".into(),
        "/api/v2/accounts/1/environments/200".into(),
        format!("/api/v2/accounts/1/jobs/{job_id}"),
        format!("/api/v2/accounts/1/runs/{run_id}"),
        format!("/api/v2/accounts/1/runs/{run_id}/artifacts/manifest.json"),
    ] {
        assert_eq!(message(&jade.json(ACME, &path, 404).await), "Not Found", "{path}");
    }
    for path in [
        "/api/v2/accounts/1/runs?environment_id=200",
        "/api/v2/accounts/1/runs?project_id=20",
        &format!("/api/v2/accounts/1/runs?job_definition_id={job_id}"),
        "/api/v2/accounts/1/jobs?environment_id=200",
        "/api/v2/accounts/1/environments?project_id=20",
    ] {
        let body = jade.json(ACME, path, 200).await;
        assert_eq!(body["data"], json!([]), "{path}");
    }
    // A deactivated account is in no token's list.
    assert_eq!(message(&jade.json(ACME, "/api/v2/accounts/3", 401).await), denied);
    jade.stop().await;
}

#[tokio::test]
async fn every_authentication_case_answers_the_contract_message() {
    let mut jade = TestJade::start(Scenario::default(), &[]).await;
    let client = &jade.client;
    let missing = "Missing API Key. Please create a Bearer Token first.";
    for header in [None, Some("Basic abc"), Some("Bearer "), Some("token-acme")] {
        let mut request = client.get(jade.url("/api/v2/accounts/1/runs"));
        if let Some(header) = header {
            request = request.header("Authorization", header);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{header:?}");
        assert_eq!(message(&response.json().await.unwrap()), missing);
    }
    let bearer = client.get(jade.url("/api/v2/accounts/1")).bearer_auth(ACME).send().await.unwrap();
    assert_eq!(bearer.status(), 200);
    let padded = client
        .get(jade.url("/api/v2/accounts/1"))
        .header("Authorization", "Token   token-acme  ")
        .send()
        .await
        .unwrap();
    assert_eq!(padded.status(), 200);
    // Swagger UI sends `Bearer ` before whatever was pasted, prefix included.
    for doubled in ["Bearer Token token-acme", "Bearer Bearer token-acme"] {
        let response =
            client.get(jade.url("/api/v2/accounts/1")).header("Authorization", doubled).send().await.unwrap();
        assert_eq!(response.status(), 200, "{doubled}");
    }
    assert_eq!(
        message(&jade.json("not-a-token", "/api/v2/accounts/1", 401).await),
        "Invalid API Key. Please use a valid Bearer Token."
    );
    assert_eq!(
        message(&jade.json(ACME, "/api/v2/accounts/abc/runs", 401).await),
        "Invalid Account in Path. You have no accces to this account."
    );
    assert_eq!(jade.json(NOBODY, "/api/v2/accounts/", 200).await["data"], json!([]));
    let no_scope = jade.json(ACME, "/api/v2/datacoves/manifests", 401).await;
    assert_eq!(message(&no_scope), "Invalid Path. You requested a non-existent path.");
    assert_eq!(
        message(&jade.json(ACME, "/api/v2/datacoves/manifests?environment_slug=globex123", 401).await),
        "Invalid Environment in Path. You have no accces to this environment."
    );
    assert_eq!(
        message(&jade.json(ACME, "/api/internal/projects/globex-dbt/latest-manifest", 401).await),
        "Invalid Project in Path. You have no accces to this project."
    );
    // Open routes.
    let health = client.get(jade.url("/api/v2/healthcheck")).send().await.unwrap();
    assert_eq!((health.status().as_u16(), health.text().await.unwrap()), (200, "ok".to_owned()));
    let legacy = client.get(jade.url("/api/internal/healthcheck/")).send().await.unwrap();
    assert_eq!(legacy.status(), 200);
    assert_eq!(client.get(jade.url("/api/v2/openapi")).send().await.unwrap().status(), 200);

    // Verified answers are kept for a while: a known token is not verified again.
    let calls = jade.verify.calls();
    jade.json(ACME, "/api/v2/accounts/1", 200).await;
    assert_eq!(jade.verify.calls(), calls);
    // The verify service going away: 503 for tokens not verified yet, cached ones still work.
    jade.verify.halt().await;
    let down = jade.json(GLOBEX, "/api/v2/accounts/2", 503).await;
    assert_eq!(message(&down), "Authentication service unavailable. Please retry.");
    assert_eq!(down["status"]["code"], 503);
    jade.json(ACME, "/api/v2/accounts/1", 200).await;
    jade.stop().await;
}

#[tokio::test]
async fn malformed_parameters_answer_400_and_unknown_ids_404() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    for (path, fragment) in [
        ("/api/v2/accounts/1/runs?limit=abc", "limit"),
        ("/api/v2/accounts/1/runs?offset=-3", "offset"),
        ("/api/v2/accounts/1/runs?order_by=name", "order_by"),
        ("/api/v2/accounts/1/runs?status__in=[x]", "status__in"),
        ("/api/v2/accounts/1/runs?environment_id=dev", "environment_id"),
        ("/api/v2/accounts/1/jobs?order_by=-bogus", "order_by"),
        ("/api/v2/accounts/1/projects?limit=1.5", "limit"),
    ] {
        let body = jade.json(ACME, path, 400).await;
        assert!(message(&body).contains(fragment), "{path}: {body}");
        assert_eq!(body["status"]["code"], 400);
    }
    for path in [
        "/api/v2/accounts/1/projects/999",
        "/api/v2/accounts/1/environments/999",
        "/api/v2/accounts/1/jobs/999",
        "/api/v2/accounts/1/runs/999",
        "/api/v2/accounts/1/runs/abc",
        "/api/v2/accounts/1/runs/1/artifacts/manifest.json",
        "/api/v2/accounts/1/nothing-here",
        "/api/v2/nothing",
    ] {
        let body = jade.json(ACME, path, 404).await;
        assert_eq!(message(&body), "Not Found", "{path}");
    }
    // Runs are capped at 100 a page.
    let capped = jade.json(ACME, "/api/v2/accounts/1/runs?limit=500", 200).await;
    assert_eq!(capped["extra"]["filters"]["limit"], 100);
    let wrong_method = jade.client.post(jade.url("/api/v2/accounts/1/runs")).bearer_auth(ACME).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    jade.stop().await;
}
