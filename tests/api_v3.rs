//! What off-the-shelf dbt Cloud clients need beyond the first Jade (contract §3 "dbt Cloud
//! clients", §5), on real PostgreSQL databases: lists paged and reported as dbt Cloud
//! reports them, their filters, the v3 read routes, `GET /`, and a document whose parameters
//! carry their real types.

mod support;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use support::seed::{ACME, GLOBEX};
use support::{Scenario, TestJade, message};

fn ids(list: &Value) -> Vec<i64> {
    list["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data list in {list}"))
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect()
}

fn time(value: &Value) -> Option<DateTime<Utc>> {
    value.as_str().map(|t| DateTime::parse_from_rfc3339(t).unwrap().to_utc())
}

/// Both spellings of a route answer the same body.
async fn both_slashes(jade: &TestJade, path: &str) -> Value {
    let trimmed = path.trim_end_matches('/');
    let (without, with) = (trimmed.to_owned(), format!("{trimmed}/"));
    let a = jade.json(ACME, &without, 200).await;
    let b = jade.json(ACME, &with, 200).await;
    assert_eq!(a["data"], b["data"], "{path}");
    a
}

#[tokio::test]
async fn every_list_pages_by_one_hundred_and_reports_limit_and_offset() {
    let jade = TestJade::start(
        Scenario { runs_per_environment: 40, unreachable_environment: false, ..Scenario::default() },
        &[],
    )
    .await;
    for path in [
        "/api/v2/accounts/",
        "/api/v2/accounts/1/projects/",
        "/api/v2/accounts/1/environments/",
        "/api/v2/accounts/1/jobs/",
        "/api/v2/accounts/1/runs/",
        "/api/v3/accounts/",
        "/api/v3/accounts/1/projects/",
        "/api/v3/accounts/1/projects/10/environments/",
        "/api/v3/accounts/1/environments/",
    ] {
        let list = jade.json(ACME, path, 200).await;
        let filters = &list["extra"]["filters"];
        assert_eq!((filters["limit"].as_i64(), filters["offset"].as_i64()), (Some(100), Some(0)), "{path}: {list}");
        let count = list["data"].as_array().unwrap().len() as u64;
        assert_eq!(list["extra"]["pagination"]["count"], count, "{path}");
        assert!(list["extra"]["pagination"]["total_count"].as_u64().unwrap() >= count, "{path}");
        assert_eq!(list["status"]["is_success"], true, "{path}");

        let capped = jade.json(ACME, &format!("{path}?limit=500&offset=0"), 200).await;
        assert_eq!(capped["extra"]["filters"]["limit"], 100, "{path}");
        let past = jade.json(ACME, &format!("{path}?offset=1000"), 200).await;
        assert_eq!(past["extra"]["filters"]["offset"], 1000, "{path}");
        assert_eq!(past["extra"]["pagination"]["count"], 0, "{path}");
        assert_eq!(past["extra"]["pagination"]["total_count"], list["extra"]["pagination"]["total_count"], "{path}");
    }
    // 120 runs: the default page holds 100, the next the other 20, as Airflow's hook pages.
    let first = jade.json(ACME, "/api/v2/accounts/1/runs/", 200).await;
    assert_eq!(first["extra"]["pagination"], json!({"count": 100, "total_count": 120}));
    let second = jade.json(ACME, "/api/v2/accounts/1/runs/?offset=100", 200).await;
    assert_eq!(second["extra"]["pagination"], json!({"count": 20, "total_count": 120}));
    let jobs = jade.json(ACME, "/api/v2/accounts/1/jobs?limit=4&offset=8", 200).await;
    assert_eq!(jobs["extra"]["pagination"], json!({"count": 1, "total_count": 9}));
    assert_eq!(jobs["extra"]["filters"]["limit"], 4);
    jade.stop().await;
}

#[tokio::test]
async fn job_filters_are_honoured() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    let names = |list: &Value| -> Vec<String> {
        list["data"].as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap().to_owned()).collect()
    };
    let hourly = jade.json(ACME, "/api/v2/accounts/1/jobs/?name__icontains=HOUR", 200).await;
    assert_eq!(names(&hourly), vec!["hourly"; 3]);
    assert_eq!(hourly["extra"]["filters"]["name__icontains"], "HOUR");
    // dbt Cloud's 2 (and the first Jade's 0) is an inactive job.
    for state in [0, 2] {
        let inactive = jade.json(ACME, &format!("/api/v2/accounts/1/jobs/?state={state}"), 200).await;
        assert_eq!(names(&inactive), vec!["paused"; 3]);
    }
    let active = jade.json(ACME, "/api/v2/accounts/1/jobs/?state=1", 200).await;
    assert_eq!(active["extra"]["pagination"]["total_count"], 6);
    assert!(names(&active).iter().all(|n| n != "paused"));
    // dbtc sends `project_id__in` as a JSON list.
    let marketing = jade.json(ACME, "/api/v2/accounts/1/jobs/?project_id__in=[11]", 200).await;
    assert_eq!(marketing["extra"]["pagination"]["total_count"], 3);
    assert!(marketing["data"].as_array().unwrap().iter().all(|j| j["project_id"] == 11));
    let both = jade.json(ACME, "/api/v2/accounts/1/jobs/?project_id__in=%5B10%2C%2011%5D", 200).await;
    assert_eq!(both["extra"]["pagination"]["total_count"], 9);
    let narrowed =
        jade.json(ACME, "/api/v2/accounts/1/jobs?project_id=10&environment_id=101&name__icontains=dai", 200).await;
    assert_eq!(names(&narrowed), vec!["daily"]);
    assert_eq!(narrowed["data"][0]["environment_id"], 101);
    let none = jade.json(ACME, "/api/v2/accounts/1/jobs?project_id=10&project_id__in=[11]", 200).await;
    assert_eq!(none["extra"]["pagination"]["total_count"], 0);
    jade.stop().await;
}

#[tokio::test]
async fn project_and_environment_filters_are_honoured() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    for version in ["v2", "v3"] {
        let base = format!("/api/{version}/accounts/1/projects");
        assert_eq!(ids(&jade.json(ACME, &format!("{base}?name__icontains=MARK"), 200).await), vec![11]);
        let picked = jade.json(ACME, &format!("{base}?pk__in=%5B10%5D"), 200).await;
        assert_eq!(ids(&picked), vec![10]);
        assert_eq!(picked["extra"]["filters"]["pk__in"], json!([10]));
        assert_eq!(ids(&jade.json(ACME, &format!("{base}?pk__in=[10, 11]&state=1"), 200).await), vec![10, 11]);
        assert_eq!(ids(&jade.json(ACME, &format!("{base}?state=2"), 200).await), Vec::<i64>::new());
    }
    let environments = "/api/v2/accounts/1/environments";
    assert_eq!(ids(&jade.json(ACME, &format!("{environments}?name__icontains=PROD"), 200).await), vec![101]);
    assert_eq!(
        ids(&jade.json(ACME, &format!("{environments}?project_id=11&name__icontains=R"), 200).await),
        vec![102, 103, 104]
    );
    let v3 = "/api/v3/accounts/1/projects/10/environments/";
    assert_eq!(ids(&jade.json(ACME, &format!("{v3}?name__icontains=dev"), 200).await), vec![100]);
    // dbtc: `name` exact, `type`, `deployment_type__in`, and filters Jade has no data for
    // (accepted, ignored).
    assert_eq!(ids(&jade.json(ACME, &format!("{v3}?name=Production"), 200).await), vec![101]);
    assert_eq!(ids(&jade.json(ACME, &format!("{v3}?name=Prod"), 200).await), Vec::<i64>::new());
    assert_eq!(ids(&jade.json(ACME, &format!("{v3}?type=deployment"), 200).await), vec![101]);
    assert_eq!(ids(&jade.json(ACME, &format!("{v3}?type=development"), 200).await), vec![100]);
    let production = format!(
        "{v3}?deployment_type__in=%5B%22production%22%5D&dbt_version__in=[\"1.7\"]&credentials_id=3&order_by=name&state=1"
    );
    assert_eq!(ids(&jade.json(ACME, &production, 200).await), vec![101]);
    jade.stop().await;
}

#[tokio::test]
async fn runs_filter_on_created_and_finished_ranges() {
    let jade = TestJade::start(
        Scenario { runs_per_environment: 12, unreachable_environment: false, ..Scenario::default() },
        &[],
    )
    .await;
    let all = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100", 200).await;
    let runs = all["data"].as_array().unwrap();
    let (from, to) = ("2024-03-01T08:20:00Z", "2024-03-01T09:00:00Z");
    let (lo, hi) = (time(&json!(from)).unwrap(), time(&json!(to)).unwrap());
    let within = |key: &str| -> Vec<i64> {
        runs.iter()
            .filter(|r| time(&r[key]).is_some_and(|t| lo <= t && t <= hi))
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    };
    let (created, finished) = (within("created_at"), within("finished_at"));
    assert!(!created.is_empty() && created.len() < runs.len(), "{created:?}");
    assert!(!finished.is_empty() && finished.len() < created.len(), "{finished:?}");

    let range = format!("[\"{from}\", \"{to}\"]");
    let by_created = jade
        .json(ACME, &format!("/api/v2/accounts/1/runs?environment_id=100&created_at__range={}", encode(&range)), 200)
        .await;
    assert_eq!(ids(&by_created), created);
    assert_eq!(by_created["extra"]["pagination"]["total_count"], created.len());
    assert_eq!(by_created["extra"]["filters"]["created_at__range"], json!([from, to]));
    let by_finished = jade
        .json(ACME, &format!("/api/v2/accounts/1/runs?environment_id=100&finished_at__range={}", encode(&range)), 200)
        .await;
    assert_eq!(ids(&by_finished), finished);
    assert_eq!(by_finished["extra"]["pagination"]["total_count"], finished.len());
    // Both ranges, an order and a page, over every environment.
    let path = format!(
        "/api/v2/accounts/1/runs?created_at__range={0}&finished_at__range={0}&order_by=-finished_at&limit=2",
        encode(&range)
    );
    let page = jade.json(ACME, &path, 200).await;
    for run in page["data"].as_array().unwrap() {
        let (c, f) = (time(&run["created_at"]).unwrap(), time(&run["finished_at"]).unwrap());
        assert!(lo <= c && c <= hi && lo <= f && f <= hi, "{run}");
    }
    assert!(page["extra"]["pagination"]["total_count"].as_u64().unwrap() >= finished.len() as u64);
    jade.stop().await;
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn include_related_is_accepted_in_every_form() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    let run = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=100&limit=1", 200).await["data"][0].clone();
    let id = run["id"].as_i64().unwrap();
    for query in [
        "include_related=trigger&include_related=job",
        "include_related=trigger,job",
        "include_related=%5B%22trigger%22%2C%20%22job%22%5D",
        "include_related=run_steps%2Cjob",
    ] {
        let shown = jade.json(ACME, &format!("/api/v2/accounts/1/runs/{id}/?{query}"), 200).await;
        assert_eq!(shown["data"]["job"]["id"], run["job_definition_id"], "{query}");
        let listed = jade.json(ACME, &format!("/api/v2/accounts/1/runs?environment_id=100&limit=1&{query}"), 200).await;
        assert_eq!(listed["data"][0]["job"]["id"], run["job_definition_id"], "{query}");
    }
    for query in ["include_related=", "include_related=trigger", "include_related=[]"] {
        let shown = jade.json(ACME, &format!("/api/v2/accounts/1/runs/{id}?{query}"), 200).await;
        assert!(shown["data"].get("job").is_none_or(Value::is_null), "{query}");
    }
    let job = run["job_definition_id"].as_i64().unwrap();
    jade.json(ACME, &format!("/api/v2/accounts/1/jobs/{job}/?include_related="), 200).await;
    jade.json(ACME, &format!("/api/v2/accounts/1/jobs/{job}?include_related=%5B%22environment%22%5D"), 200).await;
    jade.stop().await;
}

#[tokio::test]
async fn malformed_filters_answer_400_naming_the_parameter() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    for (path, parameter) in [
        ("/api/v2/accounts/1/jobs?project_id__in=[x]", "project_id__in"),
        ("/api/v2/accounts/1/jobs?state=on", "state"),
        ("/api/v2/accounts/1/jobs?limit=-1", "limit"),
        ("/api/v2/accounts/1/environments?offset=x", "offset"),
        ("/api/v2/accounts/?limit=many", "limit"),
        ("/api/v3/accounts/1/projects?pk__in=10;11", "pk__in"),
        ("/api/v3/accounts/1/projects?state=active", "state"),
        ("/api/v3/accounts/1/projects/10/environments?limit=x", "limit"),
        ("/api/v2/accounts/1/runs?created_at__range=yesterday", "created_at__range"),
        ("/api/v2/accounts/1/runs?finished_at__range=[\"2024-01-01T00:00:00Z\"]", "finished_at__range"),
        ("/api/v2/accounts/1/runs?created_at__range=[\"2024-01-01T00:00:00Z\",\"soon\"]", "created_at__range"),
        ("/api/v2/accounts/1/runs?job_definition_id=seven", "job_definition_id"),
        ("/api/v2/accounts/1/runs?status=done", "status"),
    ] {
        let body = jade.json(ACME, path, 400).await;
        assert!(message(&body).contains(parameter), "{path}: {body}");
        assert_eq!(body["status"]["code"], 400, "{path}");
        assert_eq!(body["status"]["is_success"], false, "{path}");
    }
    // Unknown parameters are ignored.
    jade.json(ACME, "/api/v2/accounts/1/jobs?deferring_run_id=3&whatever=x", 200).await;
    jade.stop().await;
}

#[tokio::test]
async fn v3_routes_answer_v2_data_with_type_and_state() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    let accounts = both_slashes(&jade, "/api/v3/accounts/").await;
    assert_eq!(accounts["data"], jade.json(ACME, "/api/v2/accounts/", 200).await["data"]);
    assert_eq!(both_slashes(&jade, "/api/v3/accounts/1/").await["data"]["name"], "Acme");

    let projects = both_slashes(&jade, "/api/v3/accounts/1/projects/").await;
    assert_eq!(ids(&projects), vec![10, 11]);
    assert!(projects["data"].as_array().unwrap().iter().all(|p| p["state"] == 1));
    let project = both_slashes(&jade, "/api/v3/accounts/1/projects/10/").await;
    assert_eq!(project["data"], jade.json(ACME, "/api/v2/accounts/1/projects/10", 200).await["data"]);
    assert_eq!((project["data"]["state"].as_i64(), project["data"]["account_id"].as_i64()), (Some(1), Some(1)));

    let environments = both_slashes(&jade, "/api/v3/accounts/1/projects/10/environments/").await;
    assert_eq!(ids(&environments), vec![100, 101]);
    let by_account = both_slashes(&jade, "/api/v3/accounts/1/environments/").await;
    assert_eq!(ids(&by_account), vec![100, 101, 102, 103, 104]);
    let development = both_slashes(&jade, "/api/v3/accounts/1/projects/10/environments/100/").await["data"].clone();
    assert_eq!(development["type"], "development");
    assert!(development.as_object().unwrap().get("deployment_type").is_some_and(Value::is_null), "{development}");
    assert_eq!(development["state"], 1);
    let production = both_slashes(&jade, "/api/v3/accounts/1/projects/10/environments/101").await["data"].clone();
    assert_eq!(
        (production["type"].as_str(), production["deployment_type"].as_str()),
        (Some("deployment"), Some("production"))
    );
    assert_eq!(production, jade.json(ACME, "/api/v2/accounts/1/environments/101", 200).await["data"]);

    // An environment of another project, unknown ids, other accounts.
    for path in [
        "/api/v3/accounts/1/projects/11/environments/101/",
        "/api/v3/accounts/1/projects/999/",
        "/api/v3/accounts/1/projects/999/environments/",
        "/api/v3/accounts/1/nothing",
    ] {
        let body = jade.json(ACME, path, 404).await;
        assert_eq!(message(&body), "Not Found", "{path}");
        assert_eq!(body["status"]["code"], 404, "{path}");
    }
    for path in
        ["/api/v3/accounts/2/", "/api/v3/accounts/2/projects", "/api/v3/accounts/2/projects/20/environments/200"]
    {
        let body = jade.json(ACME, path, 401).await;
        assert_eq!(message(&body), "Invalid Account in Path. You have no accces to this account.", "{path}");
    }
    assert_eq!(ids(&jade.json(GLOBEX, "/api/v3/accounts/", 200).await), vec![2]);
    let anonymous = jade.client.get(jade.url("/api/v3/accounts/")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    jade.stop().await;
}

#[tokio::test]
async fn the_root_names_the_service_without_a_token() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    let response = jade.client.get(jade.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["name"], "Jade");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    let text = body.to_string();
    assert!(text.contains("/api/v2/swaggerui") && text.contains("/api/v2/openapi"), "{text}");
    // With the headers Airflow's hook sends.
    let hook = jade
        .client
        .get(jade.url("/"))
        .header("Authorization", format!("Token {ACME}"))
        .header("Content-Type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(hook.status(), 200);
    let missing = jade.client.get(jade.url("/nothing")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(message(&missing.json().await.unwrap()), "Not Found");
    jade.stop().await;
}

#[tokio::test]
async fn the_document_types_parameters_and_lists_v3() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    let spec: Value = jade.client.get(jade.url("/api/v2/openapi")).send().await.unwrap().json().await.unwrap();
    let paths = spec["paths"].as_object().unwrap();
    for path in [
        "/api/v3/accounts",
        "/api/v3/accounts/{account_id}",
        "/api/v3/accounts/{account_id}/projects",
        "/api/v3/accounts/{account_id}/projects/{project_id}",
        "/api/v3/accounts/{account_id}/projects/{project_id}/environments",
        "/api/v3/accounts/{account_id}/projects/{project_id}/environments/{environment_id}",
        "/api/v3/accounts/{account_id}/environments",
    ] {
        assert!(paths.contains_key(path), "{path} missing from {:?}", paths.keys().collect::<Vec<_>>());
    }
    let integers = [
        "account_id",
        "project_id",
        "environment_id",
        "job_definition_id",
        "job_id",
        "run_id",
        "limit",
        "offset",
        "status",
        "state",
    ];
    let mut seen = 0;
    // (The artifact routes are another module's.)
    let dbt_cloud =
        |p: &str| (p.starts_with("/api/v2/accounts") || p.starts_with("/api/v3/")) && !p.contains("/artifacts");
    for (path, item) in paths.iter().filter(|(p, _)| dbt_cloud(p)) {
        for parameter in item["get"]["parameters"].as_array().into_iter().flatten() {
            let name = parameter["name"].as_str().unwrap();
            if integers.contains(&name) {
                assert_eq!(parameter["schema"]["type"], "integer", "{path} {name}: {parameter}");
                seen += 1;
            }
        }
    }
    assert!(seen > 40, "{seen}");
    let runs = &paths["/api/v2/accounts/{account_id}/runs"]["get"]["parameters"];
    let parameter = |name: &str| runs.as_array().unwrap().iter().find(|p| p["name"] == name).unwrap().clone();
    assert_eq!(parameter("status")["schema"]["enum"], json!([1, 2, 3, 5]));
    let order = parameter("order_by")["schema"]["enum"].clone();
    assert_eq!(order, json!(["id", "-id", "created_at", "-created_at", "finished_at", "-finished_at"]));
    jade.stop().await;
}

#[tokio::test]
async fn dbt_cloud_mode_documents_dbt_cloud_status_codes() {
    let jade = TestJade::start(Scenario::default(), &[("API_COMPAT", "dbt-cloud")]).await;
    let spec: Value = jade.client.get(jade.url("/api/v2/openapi")).send().await.unwrap().json().await.unwrap();
    let runs = &spec["paths"]["/api/v2/accounts/{account_id}/runs"]["get"]["parameters"];
    let status = runs.as_array().unwrap().iter().find(|p| p["name"] == "status").unwrap();
    assert_eq!(status["schema"]["enum"], json!([1, 2, 3, 10, 20, 30]));
    let missing = jade.json(ACME, "/api/v3/accounts/1/projects/999", 404).await;
    assert_eq!(missing["status"]["is_success"], false);
    jade.stop().await;
}
