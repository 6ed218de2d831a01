//! Airflow 2 and Airflow 3 databases made by Airflow itself (`airflow db migrate` of
//! apache-airflow 2.11 and 3.3, DAGs parsed by `airflow dags reserialize`, runs made by
//! `airflow dags test`, `dags trigger` and `tasks clear`): every read Jade sends to an
//! Airflow database, through the HTTP API (contract §6).
//!
//! acme's environments (`support::seed::REAL_AIRFLOW`): `dev123` Airflow 2.11, `prod123` and
//! `mkt123` Airflow 3.3. Each has the DAGs `dbt_daily`, `dbt_weekly` and `unscheduled`, and
//! the runs (DAG run ids) 1 dbt_daily cleared (queued), 2 and 3 dbt_daily failed, 4
//! dbt_weekly succeeded, 5 unscheduled triggered (queued). Runs 1 to 4 were made by
//! `airflow dags test`, so they have no `queued_at`.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};
use support::airflow::Airflow;
use support::listing::{ORDERS, assert_in_order, instant, walk};
use support::seed::{ACME, REAL_AIRFLOW};
use support::{Scenario, TestJade};

const SLUGS: [&str; 3] = ["dev123", "prod123", "mkt123"];

fn data(page: &Value) -> &Vec<Value> {
    page["data"].as_array().unwrap_or_else(|| panic!("no data list in {page}"))
}

fn total(page: &Value) -> i64 {
    page["extra"]["pagination"]["total_count"].as_i64().unwrap()
}

/// (environment slug, DAG run id) of each run of a list, in its order.
fn dag_runs(page: &Value) -> Vec<(String, i64)> {
    data(page)
        .iter()
        .map(|r| (r["environment_slug"].as_str().unwrap().to_owned(), r["dag_run_id"].as_i64().unwrap()))
        .collect()
}

/// The DAG run ids of one environment in a list, sorted.
fn of(page: &Value, slug: &str) -> Vec<i64> {
    let mut ids: Vec<i64> = dag_runs(page).into_iter().filter(|(s, _)| s == slug).map(|(_, id)| id).collect();
    ids.sort_unstable();
    ids
}

/// Job ids by (environment slug, DAG id).
async fn job_ids(jade: &TestJade) -> HashMap<(String, String), i64> {
    let jobs = jade.json(ACME, "/api/v2/accounts/1/jobs", 200).await;
    data(&jobs)
        .iter()
        .map(|job| {
            let environment = SLUGS[[100, 101, 102].iter().position(|id| job["environment_id"] == *id).unwrap()];
            ((environment.to_owned(), job["dag_id"].as_str().unwrap().to_owned()), job["id"].as_i64().unwrap())
        })
        .collect()
}

/// The run of `slug` with this DAG run id, found in the account's list.
async fn run_of(jade: &TestJade, slug: &str, dag_run_id: i64, query: &str) -> Value {
    let environment_id = 100 + SLUGS.iter().position(|s| *s == slug).unwrap();
    let page = jade.json(ACME, &format!("/api/v2/accounts/1/runs?environment_id={environment_id}{query}"), 200).await;
    data(&page)
        .iter()
        .find(|r| r["dag_run_id"] == dag_run_id)
        .unwrap_or_else(|| panic!("{slug} run {dag_run_id}"))
        .clone()
}

#[tokio::test]
async fn jobs_read_alike_on_airflow_2_and_3() {
    let jade = TestJade::start(Scenario::real_airflow(), &[]).await;
    let jobs = jade.json(ACME, "/api/v2/accounts/1/jobs?order_by=name", 200).await;
    // No environment left out: three DAGs in each of dev123 (Airflow 2), prod123 and mkt123
    // (Airflow 3).
    assert_eq!(total(&jobs), 9, "{jobs}");
    for slug in SLUGS {
        let environment_id = 100 + SLUGS.iter().position(|s| *s == slug).unwrap() as i64;
        let mine: Vec<&Value> = data(&jobs).iter().filter(|j| j["environment_id"] == environment_id).collect();
        let names: Vec<&str> = mine.iter().map(|j| j["dag_id"].as_str().unwrap()).collect();
        assert_eq!(names, ["dbt_daily", "dbt_weekly", "unscheduled"], "{slug}");
        for job in &mine {
            assert_eq!((job["state"].as_i64(), job["deactivated"].as_bool()), (Some(1), Some(false)), "{slug}: {job}");
            assert!(instant(&job["created_at"]).is_some(), "{slug}: a job is dated by its DAG's last parse");
        }
        assert_eq!(mine[0]["description"], "dbt every day", "{slug}");
        // As Airflow 2 stored schedule_interval: JSON text. Airflow 3 keeps the cron
        // expression of `@daily`, and the text `None` for no schedule.
        assert_eq!(mine[1]["schedule"], "\"5 4 * * 1\"", "{slug}");
        assert_eq!(mine[2]["schedule"], "null", "{slug}");
        let daily = if jade.seeded.airflow_version(slug) == Airflow::Two { "\"@daily\"" } else { "\"0 0 * * *\"" };
        assert_eq!(mine[0]["schedule"], daily, "{slug}");
    }
    let weekly = jade.json(ACME, "/api/v2/accounts/1/jobs?name__icontains=WEEK&state=1", 200).await;
    assert_eq!(total(&weekly), 3);
    assert_eq!(total(&jade.json(ACME, "/api/v2/accounts/1/jobs?state=2", 200).await), 0);
    assert_eq!(total(&jade.json(ACME, "/api/v2/accounts/1/jobs?project_id=11", 200).await), 3);

    // A job show reads the DAG and its latest runs in the environment's own schema.
    let ids = job_ids(&jade).await;
    for slug in SLUGS {
        let daily =
            jade.json(ACME, &format!("/api/v2/accounts/1/jobs/{}", ids[&(slug.into(), "dbt_daily".into())]), 200).await;
        let daily = &daily["data"];
        assert_eq!(daily["dag_id"], "dbt_daily", "{slug}");
        // Runs 2 and 3 failed (3 last); run 1 was cleared and has no end.
        assert_eq!(daily["most_recent_job_run"]["dag_run_id"], 3, "{slug}: {daily}");
        assert_eq!(daily["most_recent_job_run"]["status_humanized"], "Error", "{slug}");
        assert!(daily["most_recent_completed_job_run"].is_null(), "{slug}: no run of dbt_daily succeeded");
        let weekly = jade
            .json(ACME, &format!("/api/v2/accounts/1/jobs/{}", ids[&(slug.into(), "dbt_weekly".into())]), 200)
            .await;
        assert_eq!(weekly["data"]["most_recent_job_run"]["dag_run_id"], 4, "{slug}");
        assert_eq!(weekly["data"]["most_recent_completed_job_run"]["dag_run_id"], 4, "{slug}");
        assert_eq!(weekly["data"]["most_recent_completed_job_run"]["status_humanized"], "Success", "{slug}");
    }
    jade.stop().await;
}

#[tokio::test]
async fn cron_schedules_and_states_read_alike_in_dbt_cloud_mode() {
    let jade = TestJade::start(Scenario::real_airflow(), &[("API_COMPAT", "dbt-cloud")]).await;
    let jobs = jade.json(ACME, "/api/v2/accounts/1/jobs?order_by=name", 200).await;
    assert_eq!(total(&jobs), 9);
    for job in data(&jobs) {
        let cron = match job["dag_id"].as_str().unwrap() {
            "dbt_daily" => json!("0 0 * * *"),
            "dbt_weekly" => json!("5 4 * * 1"),
            _ => Value::Null,
        };
        assert_eq!(job["schedule"]["cron"], cron, "{job}");
        assert_eq!(job["state"], 1, "{job}");
        // Every DAG of the fixtures is paused, as Airflow makes new DAGs by default.
        assert_eq!(job["triggers"]["schedule"], false, "{job}");
    }
    jade.stop().await;
}

#[tokio::test]
async fn runs_read_alike_on_airflow_2_and_3_with_every_filter_and_order() {
    let jade = TestJade::start(Scenario::real_airflow(), &[("API_COMPAT", "dbt-cloud")]).await;
    let all = jade.json(ACME, "/api/v2/accounts/1/runs?order_by=id", 200).await;
    assert_eq!(total(&all), 15, "{all}");
    for slug in SLUGS {
        assert_eq!(of(&all, slug), [1, 2, 3, 4, 5], "{slug}");
    }
    let statuses: HashMap<(String, i64), i64> =
        dag_runs(&all).into_iter().zip(data(&all).iter().map(|r| r["status"].as_i64().unwrap())).collect();
    for slug in SLUGS {
        // dbt Cloud's codes: queued 1, error 20, success 10.
        let mine: Vec<i64> = (1..=5).map(|id| statuses[&(slug.to_owned(), id)]).collect();
        assert_eq!(mine, [1, 20, 20, 10, 1], "{slug}");
    }
    for run in data(&all) {
        // Runs of `airflow dags test` have no queued_at: dbt Cloud clients still get times.
        for key in ["created_at", "updated_at", "queued_at", "should_start_at"] {
            assert!(instant(&run[key]).is_some(), "{key} missing: {run}");
        }
        assert_eq!(run["trigger"]["cause"], "manual", "{run}");
        let finished = instant(&run["finished_at"]);
        assert_eq!(finished.is_some(), [10, 20].contains(&run["status"].as_i64().unwrap()), "{run}");
        if let Some(finished) = finished {
            // Airflow's own times, truncated to whole seconds as the first Jade counted them.
            assert!(finished >= instant(&run["created_at"]).unwrap() - chrono::Duration::seconds(1), "{run}");
        }
    }

    // Filters, each answered from the run index refreshed from both schemas.
    let ids = job_ids(&jade).await;
    let daily_dev = ids[&("dev123".into(), "dbt_daily".into())];
    let weekly_mkt = ids[&("mkt123".into(), "dbt_weekly".into())];
    let page = jade.json(ACME, &format!("/api/v2/accounts/1/runs?job_definition_id={daily_dev}"), 200).await;
    assert_eq!((dag_runs(&page).len(), of(&page, "dev123")), (3, vec![1, 2, 3]));
    let page = jade
        .json(ACME, &format!("/api/v2/accounts/1/runs?job_definition_id__in=[{daily_dev},{weekly_mkt}]"), 200)
        .await;
    assert_eq!((of(&page, "dev123"), of(&page, "mkt123")), (vec![1, 2, 3], vec![4]));
    let page = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=101", 200).await;
    assert_eq!((total(&page), of(&page, "prod123")), (5, vec![1, 2, 3, 4, 5]));
    let page = jade.json(ACME, "/api/v2/accounts/1/runs?project_id=11", 200).await;
    assert_eq!((total(&page), of(&page, "mkt123")), (5, vec![1, 2, 3, 4, 5]));
    let page = jade.json(ACME, "/api/v2/accounts/1/runs?project_id__in=[10]&status=20", 200).await;
    assert_eq!((of(&page, "dev123"), of(&page, "prod123")), (vec![2, 3], vec![2, 3]));
    let page = jade.json(ACME, "/api/v2/accounts/1/runs?status__in=[10,1]", 200).await;
    assert_eq!(total(&page), 9);
    for slug in SLUGS {
        assert_eq!(of(&page, slug), [1, 4, 5], "{slug}");
    }
    // Each run is found by the range of its own times (created_at falls back as rendered).
    for run in data(&all) {
        let at = |key: &str| instant(&run[key]).map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        let created = at("created_at").unwrap();
        let later = (instant(&run["created_at"]).unwrap() + chrono::Duration::seconds(1)).format("%Y-%m-%dT%H:%M:%SZ");
        let path = format!("/api/v2/accounts/1/runs?created_at__range=[\"{created}\",\"{later}\"]&limit=100");
        let page = jade.json(ACME, &path, 200).await;
        let key = (run["environment_slug"].as_str().unwrap().to_owned(), run["dag_run_id"].as_i64().unwrap());
        assert!(dag_runs(&page).contains(&key), "{path}: {key:?} missing");
        if let Some(finished) = at("finished_at") {
            let later =
                (instant(&run["finished_at"]).unwrap() + chrono::Duration::seconds(1)).format("%Y-%m-%dT%H:%M:%SZ");
            let path = format!("/api/v2/accounts/1/runs?finished_at__range=[\"{finished}\",\"{later}\"]");
            assert!(dag_runs(&jade.json(ACME, &path, 200).await).contains(&key), "{path}: {key:?} missing");
        }
    }
    // Every order, paged two at a time: each run once, in order.
    for order in ORDERS {
        let (runs, totals) = walk(&jade, order, 2).await;
        assert_eq!(totals, HashSet::from([15]), "{order}");
        let unique: HashSet<(String, i64)> = runs
            .iter()
            .map(|r| (r["environment_slug"].as_str().unwrap().to_owned(), r["dag_run_id"].as_i64().unwrap()))
            .collect();
        assert_eq!((runs.len(), unique.len()), (15, 15), "{order}");
        assert_in_order(order, &runs);
    }

    // latest-run: the newest success of the project's environments (dev123 on Airflow 2,
    // prod123 on Airflow 3) by end date.
    let latest = jade.json(ACME, "/api/v2/accounts/1/projects/10/latest-run", 200).await;
    let successes: Vec<&Value> = data(&all)
        .iter()
        .filter(|r| r["status"] == 10 && [100, 101].contains(&r["environment_id"].as_i64().unwrap()))
        .collect();
    let newest = successes.iter().max_by_key(|r| instant(&r["finished_at"])).unwrap();
    assert_eq!(
        (&latest["data"]["environment_slug"], &latest["data"]["dag_run_id"]),
        (&newest["environment_slug"], &newest["dag_run_id"])
    );
    jade.stop().await;
}

/// (name, status_humanized) of a run's steps, in their order.
fn steps(run: &Value) -> Vec<(String, String)> {
    let steps = run["run_steps"].as_array().unwrap_or_else(|| panic!("no run_steps in {run}"));
    for (n, step) in steps.iter().enumerate() {
        assert_eq!(step["index"], n + 1, "{step}");
        assert_eq!((step["logs"].as_str(), step["truncated_debug_logs"].as_str()), (Some(""), Some("")), "{step}");
        assert_eq!(step["run_id"], run["id"], "{step}");
        assert_eq!(step["account_id"], 1, "{step}");
    }
    steps
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_owned(), s["status_humanized"].as_str().unwrap().to_owned()))
        .collect()
}

fn named(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

#[tokio::test]
async fn run_steps_are_the_task_instances_of_both_schemas() {
    let jade = TestJade::start(Scenario::real_airflow(), &[("API_COMPAT", "dbt-cloud")]).await;
    for slug in SLUGS {
        let failed = run_of(&jade, slug, 2, "").await;
        let id = failed["id"].as_i64().unwrap();
        // Without include_related, dbt Cloud answers an empty list.
        assert_eq!(failed["run_steps"], json!([]));
        let shown = jade.json(ACME, &format!("/api/v2/accounts/1/runs/{id}/?include_related=run_steps"), 200).await;
        let shown = &shown["data"];
        // Airflow 2.11's `dags test` leaves the task instances without a start date: they
        // are then in task id order; Airflow 3 records when each started.
        let expected = match jade.seeded.airflow_version(slug) {
            Airflow::Two => named(&[
                ("dbt_run", "Success"),
                ("dbt_seed[0]", "Success"),
                ("dbt_seed[1]", "Success"),
                ("dbt_test", "Error"),
            ]),
            Airflow::Three => named(&[
                ("dbt_seed[0]", "Success"),
                ("dbt_seed[1]", "Success"),
                ("dbt_run", "Success"),
                ("dbt_test", "Error"),
            ]),
        };
        assert_eq!(steps(shown), expected, "{slug}");
        for step in shown["run_steps"].as_array().unwrap() {
            assert_eq!(step["status"], if step["name"] == "dbt_test" { 20 } else { 10 }, "{step}");
            assert!(instant(&step["finished_at"]).is_some(), "{step}");
            if jade.seeded.airflow_version(slug) == Airflow::Three {
                let duration = step["duration"].as_str().unwrap_or_else(|| panic!("{step}"));
                assert!(duration.len() == 8 && duration.as_bytes()[2] == b':', "HH:MM:SS: {step}");
                assert!(instant(&step["started_at"]).is_some(), "{step}");
            }
        }
        // The triggered run's task has not run: a queued step.
        let queued = run_of(&jade, slug, 5, "&include_related=run_steps").await;
        assert_eq!(steps(&queued), named(&[("refresh", "Queued")]), "{slug}");
        assert_eq!(queued["run_steps"][0]["status"], 1);
    }
    // On lists too, as dbt-mcp asks for them (a Python list in the query string).
    let page = jade.json(ACME, "/api/v2/accounts/1/runs?include_related=['run_steps']&limit=100", 200).await;
    for run in data(&page).iter().filter(|r| r["environment_id"] != 200) {
        let expected = match run["dag_id"].as_str().unwrap() {
            "dbt_daily" => 4,
            _ => 1,
        };
        assert_eq!(steps(run).len(), expected, "{run}");
    }
    assert_eq!(page["extra"]["filters"]["include_related"], json!(["run_steps"]));
    jade.stop().await;
}

#[tokio::test]
async fn run_steps_in_jade_mode_count_whole_seconds() {
    let jade = TestJade::start(Scenario::real_airflow(), &[]).await;
    let failed = run_of(&jade, "mkt123", 2, "&include_related=job,run_steps").await;
    assert_eq!(failed["job"]["dag_id"], "dbt_daily");
    let steps = failed["run_steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4);
    for step in steps {
        // The first Jade's codes: success 1, error 2.
        assert_eq!(step["status"], if step["name"] == "dbt_test" { 2 } else { 1 }, "{step}");
        assert!(step["duration"].is_i64(), "{step}");
    }
    let plain = run_of(&jade, "mkt123", 2, "").await;
    assert!(plain.get("run_steps").is_none(), "jade mode has no run_steps unless asked: {plain}");
    jade.stop().await;
}

#[tokio::test]
async fn a_run_changed_after_it_finished_shows_as_it_is_now() {
    let refresh = Duration::from_millis(400);
    let jade =
        TestJade::start(Scenario::real_airflow(), &[("RUN_INDEX_REFRESH_MS", "400"), ("API_COMPAT", "dbt-cloud")])
            .await;
    let before = jade.json(ACME, "/api/v2/accounts/1/runs?limit=100", 200).await;
    assert_eq!(total(&before), 15);
    let changed = ["dev123", "mkt123"];
    // In dev123 (Airflow 2) and mkt123 (Airflow 3), with Airflow's own code: the successful
    // run 4 is cleared (queued again), the failed run 3 is marked success by hand.
    futures::future::join_all(changed.map(|slug| {
        let seeded = &jade.seeded;
        async move {
            let clear = ["tasks", "clear", "dbt_weekly", "-s", "2024-03-04", "-e", "2024-03-04", "-y"];
            seeded.airflow_command(slug, "airflow", &clear).await;
            let airflow = seeded.airflow(slug).await;
            let run_id: String =
                airflow.query_one("SELECT run_id FROM dag_run WHERE id = 3", &[]).await.unwrap().get(0);
            seeded.airflow_command(slug, "python", &["mark.py", "dbt_daily", &run_id, "success"]).await;
        }
    }))
    .await;
    tokio::time::sleep(refresh + Duration::from_millis(100)).await;

    let after = jade.json(ACME, "/api/v2/accounts/1/runs?limit=100&order_by=finished_at", 200).await;
    assert_eq!(total(&after), 15);
    for slug in changed {
        let cleared = run_of(&jade, slug, 4, "").await;
        assert_eq!(
            (cleared["status_humanized"].as_str(), cleared["finished_at"].as_null()),
            (Some("Queued"), Some(()))
        );
        assert_eq!(run_of(&jade, slug, 3, "").await["status_humanized"], "Success", "{slug}");
    }
    // finished_at orders the cleared runs with the unfinished ones, last.
    assert_in_order("finished_at", data(&after));
    let unfinished: HashSet<(String, i64)> = dag_runs(&after)[7..].iter().cloned().collect();
    assert!(data(&after)[7..].iter().all(|run| run["finished_at"].is_null()), "{after}");
    let expected = SLUGS.iter().flat_map(|s| [(s.to_string(), 1), (s.to_string(), 5)]);
    let expected: HashSet<(String, i64)> = expected.chain(changed.map(|s| (s.to_owned(), 4))).collect();
    assert_eq!(unfinished, expected);
    // Filters see the runs as they are now.
    let errors = jade.json(ACME, "/api/v2/accounts/1/runs?status=20", 200).await;
    assert_eq!((of(&errors, "dev123"), of(&errors, "mkt123"), of(&errors, "prod123")), (vec![2], vec![2], vec![2, 3]));
    let successes = jade.json(ACME, "/api/v2/accounts/1/runs?status=10", 200).await;
    assert_eq!(
        (of(&successes, "dev123"), of(&successes, "mkt123"), of(&successes, "prod123")),
        (vec![3], vec![3], vec![4])
    );

    // `airflow db clean` deletes run 2, started before 2024-03-02 12:00 (run 3 is dbt_daily's
    // latest, which Airflow keeps).
    futures::future::join_all(changed.map(|slug| {
        let seeded = &jade.seeded;
        async move {
            let before = "2024-03-02T12:00:00+00:00";
            let clean =
                ["db", "clean", "--clean-before-timestamp", before, "--tables", "dag_run", "--skip-archive", "-y"];
            seeded.airflow_command(slug, "airflow", &clean).await;
            let airflow = seeded.airflow(slug).await;
            let left: Vec<i32> = airflow
                .query("SELECT id FROM dag_run ORDER BY id", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert_eq!(left, [1, 3, 4, 5], "{slug}: what airflow db clean left");
        }
    }))
    .await;
    tokio::time::sleep(refresh + Duration::from_millis(100)).await;
    let cleaned = jade.json(ACME, "/api/v2/accounts/1/runs?limit=100", 200).await;
    assert_eq!(total(&cleaned), 13, "run 2 is gone from dev123 and mkt123");
    for slug in changed {
        assert_eq!(of(&cleaned, slug), [1, 3, 4, 5], "{slug}");
    }
    assert_eq!(of(&cleaned, "prod123"), [1, 2, 3, 4, 5]);
    let errors = jade.json(ACME, "/api/v2/accounts/1/runs?status=20", 200).await;
    assert_eq!((total(&errors), of(&errors, "prod123")), (2, vec![2, 3]));
    jade.stop().await;
}

#[tokio::test]
async fn an_environment_upgraded_to_airflow_3_is_read_again_without_a_restart() {
    let jade = TestJade::start(Scenario::real_airflow(), &[]).await;
    let ids = job_ids(&jade).await;
    assert_eq!(ids.len(), 9);
    let daily = ids[&("dev123".into(), "dbt_daily".into())];
    let run = run_of(&jade, "dev123", 2, "").await["id"].as_i64().unwrap();
    let read_all = || async {
        let job = jade.json(ACME, &format!("/api/v2/accounts/1/jobs/{daily}"), 200).await;
        assert_eq!(job["data"]["most_recent_job_run"]["dag_run_id"], 3);
        let shown = jade.json(ACME, &format!("/api/v2/accounts/1/runs/{run}?include_related=run_steps"), 200).await;
        assert_eq!(shown["data"]["run_steps"].as_array().map(Vec::len), Some(4), "{shown}");
        let runs = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100", 200).await;
        assert_eq!(of(&runs, "dev123"), [1, 2, 3, 4, 5]);
    };
    read_all().await;
    // dev123's database is upgraded by Airflow 3's own migrations while Jade runs.
    let migrated = jade.seeded.airflow_command_of(Airflow::Three, "dev123", "airflow", &["db", "migrate"]).await;
    let said = format!("{}{}", String::from_utf8_lossy(&migrated.stdout), String::from_utf8_lossy(&migrated.stderr));
    assert!(said.contains("migration done"), "{said}");
    let stale = jade.seeded.airflow("dev123").await;
    assert!(stale.query("SELECT is_stale FROM dag", &[]).await.is_ok(), "dev123 is now an Airflow 3 database");
    assert_eq!(job_ids(&jade).await, ids, "the same jobs, none left out");
    read_all().await;
    jade.stop().await;
}

#[tokio::test]
async fn every_version_serves_the_same_keys() {
    // Whatever made the database, a run and a job carry the same keys.
    let jade = TestJade::start(Scenario::real_airflow(), &[("API_COMPAT", "dbt-cloud")]).await;
    let keys = |value: &Value| value.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    let runs: Vec<Value> = futures::future::join_all(REAL_AIRFLOW.map(|(slug, _)| run_of(&jade, slug, 4, ""))).await;
    assert!(runs.windows(2).all(|pair| keys(&pair[0]) == keys(&pair[1])));
    let jobs = jade.json(ACME, "/api/v2/accounts/1/jobs", 200).await;
    assert!(data(&jobs).windows(2).all(|pair| keys(&pair[0]) == keys(&pair[1])));
    jade.stop().await;
}

#[tokio::test]
async fn airflow_before_2_5_is_read_and_swept_for_changes() {
    // Airflow 2.2 to 2.4 (the hand-written schema without what later versions added): no
    // dag_run.updated_at and dag_run_note (2.5), clear_number (2.8), task_instance.map_index (2.3).
    let jade = TestJade::start(Scenario::default(), &[("RUN_INDEX_REFRESH_MS", "20")]).await;
    let airflow = jade.seeded.airflow("dev123").await;
    airflow
        .batch_execute(
            "DROP TABLE dag_run_note;
             ALTER TABLE dag_run DROP COLUMN updated_at, DROP COLUMN clear_number;
             ALTER TABLE task_instance DROP CONSTRAINT task_instance_pkey, DROP COLUMN map_index;
             INSERT INTO task_instance (dag_id, run_id, task_id, state, start_date, end_date)
               SELECT dag_id, run_id, 'dbt_build', state, start_date, end_date FROM dag_run WHERE id = 1;",
        )
        .await
        .unwrap();
    let jobs = jade.json(ACME, "/api/v2/accounts/1/jobs?environment_id=100", 200).await;
    assert_eq!(total(&jobs), 3);
    // The first list reads every run: the sweep after it is due 60 × 20 ms later.
    let first_read = std::time::Instant::now();
    let runs = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&order_by=id", 200).await;
    assert_eq!(total(&runs), 6);
    // Run 1 succeeded (the hand-written pattern); its one task has no map index.
    let first = &data(&runs)[0];
    assert_eq!((first["dag_run_id"].as_i64(), first["status"].as_i64()), (Some(1), Some(1)));
    let shown =
        jade.json(ACME, &format!("/api/v2/accounts/1/runs/{}?include_related=run_steps", first["id"]), 200).await;
    assert_eq!(steps(&shown["data"]), named(&[("dbt_build", "Success")]));
    // A finished run that changes is found when every run is read again: within 60 refresh
    // intervals (here 20 ms).
    airflow.batch_execute("UPDATE dag_run SET state = 'queued', end_date = NULL WHERE id = 1").await.unwrap();
    loop {
        let queued = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&status=3", 200).await;
        if of(&queued, "dev123").contains(&1) {
            break;
        }
        assert!(first_read.elapsed() < Duration::from_secs(10), "run 1 is still indexed as it was");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let found = first_read.elapsed();
    assert!(found >= Duration::from_millis(1200), "found before a sweep was due: {found:?}");
    jade.stop().await;
}

#[tokio::test]
async fn a_manifest_uploaded_for_a_run_of_either_schema_is_its_artifact() {
    let jade = TestJade::start(Scenario::real_airflow(), &[]).await;
    for slug in SLUGS {
        let run = run_of(&jade, slug, 4, "").await;
        assert_eq!(run["artifacts_saved"], false);
        // The run is found by its DAG and Airflow run_id, as the Datacoves provider names it.
        let run_id = run["dag_run_run_id"].as_str().unwrap();
        jade.upload_manifest(slug, "dbt_weekly", run_id, br#"{"metadata": {}, "nodes": {}}"#).await;
        let run = run_of(&jade, slug, 4, "").await;
        assert_eq!(run["artifacts_saved"], true, "{slug}");
        let artifact =
            jade.json(ACME, &format!("/api/v2/accounts/1/runs/{}/artifacts/manifest.json", run["id"]), 200).await;
        assert!(artifact["data"].as_str().unwrap().contains("metadata"), "{slug}: {artifact}");
    }
    jade.stop().await;
}
