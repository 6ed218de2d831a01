//! Start-up, configuration, migrations, the database token verifier and the OpenAPI
//! document, on real PostgreSQL.

mod support;

use std::collections::BTreeSet;

use serde_json::{Value, json};
use support::seed::{ACME, DB_ACME, DB_DEACTIVATED, DB_PLAIN};
use support::{Scenario, TestJade, connect, create_database, drop_database, message};

const JADE_SCHEMA: &str = include_str!("fixtures/sql/jade-schema.sql");

async fn migrate(database: &str) {
    let pool = jade::adapters::pg::Database::new(
        support::url(database).parse().unwrap(),
        2,
        jade::adapters::pg::Tls::None,
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let jade = jade::adapters::postgres::JadeDatabase::new(pool);
    jade.migrate().await.unwrap();
}

async fn snapshot(client: &tokio_postgres::Client) -> Vec<String> {
    let mut rows = Vec::new();
    for table in ["job_ids", "job_run_ids", "manifests", "files"] {
        // `files.storage_key` is Jade's own (migration V3): the first Jade's rows keep it NULL.
        let sql = format!("SELECT (to_jsonb(t) - 'storage_key')::text FROM {table} t ORDER BY id");
        for row in client.query(&sql, &[]).await.unwrap() {
            rows.push(format!("{table}: {}", row.get::<_, String>(0)));
        }
    }
    rows
}

async fn columns(client: &tokio_postgres::Client) -> BTreeSet<String> {
    client
        .query(
            "SELECT table_name || '.' || column_name || ':' || data_type || ':' || is_nullable FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name IN ('job_ids', 'job_run_ids', 'manifests', 'files')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn migrations_build_the_schema_and_adopt_the_first_jades_database_keeping_every_row() {
    // An empty database, migrated twice, has the spec's tables and columns.
    let empty = create_database("migrate_empty").await;
    migrate(&empty).await;
    migrate(&empty).await;
    let reference = create_database("migrate_reference").await;
    let reference_client = connect(&reference).await;
    reference_client.batch_execute(JADE_SCHEMA).await.unwrap();
    let empty_client = connect(&empty).await;
    let mut expected = columns(&reference_client).await;
    // Jade's own column: where a file's body is stored when it is not at `path`.
    expected.insert("files.storage_key:text:YES".to_owned());
    assert_eq!(columns(&empty_client).await, expected);
    let unique: i64 = empty_client
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' AND indexdef LIKE 'CREATE UNIQUE%' \
             AND tablename IN ('job_ids', 'job_run_ids', 'manifests', 'files')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unique, 8, "four primary keys, the two registries, manifests' tag and files' slug");

    // A database the first Jade migrated, with rows: adopted as is, twice.
    let adopted = reference;
    reference_client
        .batch_execute(
            "INSERT INTO job_ids (environment_id, dag_id) VALUES (1, 'daily'), (1, 'hourly');
             INSERT INTO job_run_ids (environment_id, dag_run_id) VALUES (1, 10), (1, 11), (2, 10);
             INSERT INTO manifests (account_id, project_id, environment_slug, tag, dag_id, dag_run_id, dag_run_run_id, job_run_id, content, inserted_at, updated_at)
               VALUES (1, 1, 'dev', 'v1', 'daily', 10, 'manual__1', 1, '{\"metadata\": {}, \"nodes\": {}}', now(), now());
             INSERT INTO files (filename, environment_slug, tag, path, inserted_at, updated_at)
               VALUES ('a.json', 'dev', 't', '/environments/dev/files/t/a.json', now(), now()),
                      ('a.json', 'dev', 't', '/environments/dev/files/t/a.json', now(), now());",
        )
        .await
        .unwrap();
    let before = snapshot(&reference_client).await;
    migrate(&adopted).await;
    migrate(&adopted).await;
    assert_eq!(snapshot(&reference_client).await, before);
    let at_path: i64 =
        reference_client.query_one("SELECT count(*) FROM files WHERE storage_key IS NULL", &[]).await.unwrap().get(0);
    assert_eq!(at_path, 2, "the first Jade's files keep reading their body at their path");
    // New ids continue after the adopted ones.
    let next: i64 = reference_client
        .query_one("INSERT INTO job_run_ids (environment_id, dag_run_id) VALUES (3, 1) RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(next, 4);
    drop(reference_client);
    drop(empty_client);
    drop_database(&empty).await;
    drop_database(&adopted).await;
}

#[tokio::test]
async fn the_database_verifier_answers_what_the_verify_view_computes() {
    let jade =
        TestJade::start(Scenario::default(), &[("AUTH_VERIFIER", "database"), ("AUTH_CACHE_TTL_SECONDS", "0")]).await;
    // Ada writes to project analytics (all its environments) and to environment mkt123.
    assert_eq!(jade.json(DB_ACME, "/api/v2/accounts/", 200).await["data"][0]["id"], 1);
    assert_eq!(jade.json(DB_ACME, "/api/v2/accounts/1/projects", 200).await["extra"]["pagination"]["total_count"], 2);
    jade.json(DB_ACME, "/api/v2/datacoves/manifests?environment_slug=mkt123", 404).await;
    jade.json(DB_ACME, "/api/v2/datacoves/projects/marketing/latest-manifest", 404).await;
    let read_only = jade.json(DB_ACME, "/api/v2/datacoves/manifests?environment_slug=noflow123", 401).await;
    assert_eq!(message(&read_only), "Invalid Environment in Path. You have no accces to this environment.");
    let other = jade.json(DB_ACME, "/api/v2/accounts/2", 401).await;
    assert_eq!(message(&other), "Invalid Account in Path. You have no accces to this account.");
    // A deactivated user's token, and an unknown token, are invalid; a user without
    // permissions reaches nothing.
    for token in [DB_DEACTIVATED, ACME] {
        let body = jade.json(token, "/api/v2/accounts/1", 401).await;
        assert_eq!(message(&body), "Invalid API Key. Please use a valid Bearer Token.");
    }
    assert_eq!(jade.json(DB_PLAIN, "/api/v2/accounts/", 200).await["data"], json!([]));
    jade.json(DB_PLAIN, "/api/v2/accounts/1", 401).await;
    jade.stop().await;
}

#[tokio::test]
async fn with_airflow_off_job_and_run_lists_are_empty() {
    let jade = TestJade::start(Scenario::default(), &[("CONNECT_TO_AIRFLOW", "false")]).await;
    let runs = jade.json(ACME, "/api/v2/accounts/1/runs", 200).await;
    assert_eq!((runs["data"].clone(), runs["extra"]["pagination"]["total_count"].clone()), (json!([]), json!(0)));
    assert_eq!(jade.json(ACME, "/api/v2/accounts/1/jobs", 200).await["data"], json!([]));
    assert_eq!(jade.json(ACME, "/api/v2/accounts/1/environments", 200).await["data"].as_array().unwrap().len(), 5);
    jade.stop().await;
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_with_parameters_and_schemas() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    let spec = jade.client.get(jade.url("/api/v2/openapi")).send().await.unwrap().json::<Value>().await.unwrap();
    // For the external validator the test command runs.
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("openapi.json");
    std::fs::write(&out, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();

    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(
        spec["components"]["securitySchemes"]["BearerToken"],
        json!({"type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["BearerToken"]["description"]})
    );
    // Swagger UI shows the tags in the document's order: the dbt Cloud API first, legacy last.
    let tags: Vec<&str> = spec["tags"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(tags, ["dbt-api", "datacoves", "legacy"]);
    // Readable in Swagger UI: plain-text summaries, every parameter typed and described, every
    // response described, the legacy aliases under their own tag.
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let summary = operation["summary"].as_str().unwrap_or_else(|| panic!("{method} {path}: no summary"));
            assert!(!summary.contains('`') && !summary.contains('\n'), "{method} {path}: summary {summary:?}");
            assert!(operation.get("parameters").is_none_or(Value::is_array), "{method} {path}: {operation}");
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let name = &parameter["name"];
                assert!(parameter["description"].as_str().is_some_and(|d| !d.is_empty()), "{method} {path} {name}");
                assert!(parameter["schema"]["type"].is_string(), "{method} {path} {name}: {parameter}");
            }
            for (status, response) in operation["responses"].as_object().unwrap() {
                let described = response["description"].as_str().is_some_and(|d| !d.is_empty());
                assert!(described, "{method} {path} {status}: no description");
            }
            let legacy = path.starts_with("/api/internal");
            assert_eq!(operation["tags"] == json!(["legacy"]), legacy, "{method} {path}: {}", operation["tags"]);
        }
    }
    // Conditional reads (contract §8): the request header, the tag on 200 and 304, 304 itself.
    for path in [
        "/api/v2/datacoves/manifests",
        "/api/internal/manifests",
        "/api/v2/datacoves/projects/{project_slug}/latest-manifest",
        "/api/internal/projects/{project_slug}/latest-manifest",
        "/api/v2/datacoves/environments/{environment_slug}/files",
        "/api/internal/environments/{environment_slug}/files",
        "/api/v2/accounts/{account_id}/runs/{run_id}/artifacts/{path}",
        "/api/v2/accounts/{account_id}/jobs/{job_id}/artifacts/{path}",
    ] {
        let operation = &spec["paths"][path]["get"];
        let parameters = operation["parameters"].as_array().unwrap();
        let header = parameters.iter().find(|p| p["name"] == "If-None-Match" && p["in"] == "header");
        assert!(header.is_some_and(|h| h["required"] == false), "{path}: no If-None-Match");
        for status in ["200", "304"] {
            let headers = operation["responses"][status]["headers"].as_object();
            let etag = headers.and_then(|h| h.iter().find(|(name, _)| name.eq_ignore_ascii_case("etag")));
            assert!(etag.is_some_and(|(_, h)| h["description"].is_string()), "{path} {status}: no ETag");
        }
        assert!(operation["responses"]["304"]["content"].as_object().is_none_or(|c| c.is_empty()), "{path}");
    }
    // The routes that run jobs declare their own answers: 403 without the permission, 503
    // when Airflow's API is unavailable, and whatever Airflow refuses with.
    for path in [
        "/api/v2/accounts/{account_id}/jobs/{job_id}/run",
        "/api/v2/accounts/{account_id}/jobs/{job_id}/rerun",
        "/api/v2/accounts/{account_id}/runs/{run_id}/cancel",
        "/api/v2/accounts/{account_id}/runs/{run_id}/retry",
    ] {
        let responses = spec["paths"][path]["post"]["responses"].as_object().unwrap();
        for status in ["200", "400", "401", "403", "404", "409", "503", "4XX"] {
            assert!(responses.contains_key(status), "post {path}: no {status}");
        }
    }
    let trigger = &spec["paths"]["/api/v2/accounts/{account_id}/jobs/{job_id}/run"]["post"]["requestBody"];
    assert!(trigger["content"]["application/json; charset=utf-8"]["schema"]["$ref"].is_string(), "{trigger}");
    let manifest_read = &spec["paths"]["/api/v2/datacoves/manifests"]["get"]["parameters"];
    let slug = manifest_read.as_array().unwrap().iter().find(|p| p["name"] == "environment_slug").unwrap();
    assert_eq!(slug["required"], true);
    let routes: Vec<(&str, &str)> = vec![
        ("/api/v2/accounts", "get"),
        ("/api/v2/accounts/{account_id}", "get"),
        ("/api/v2/accounts/{account_id}/projects", "get"),
        ("/api/v2/accounts/{account_id}/projects/{project_id}", "get"),
        ("/api/v2/accounts/{account_id}/projects/{project_id}/latest-run", "get"),
        ("/api/v2/accounts/{account_id}/environments", "get"),
        ("/api/v2/accounts/{account_id}/environments/{environment_id}", "get"),
        ("/api/v2/accounts/{account_id}/jobs", "get"),
        ("/api/v2/accounts/{account_id}/jobs/{job_id}", "get"),
        ("/api/v2/accounts/{account_id}/runs", "get"),
        ("/api/v2/accounts/{account_id}/runs/{run_id}", "get"),
        ("/api/v2/accounts/{account_id}/runs/{run_id}/artifacts", "get"),
        ("/api/v2/accounts/{account_id}/runs/{run_id}/artifacts/{path}", "get"),
        ("/api/v2/accounts/{account_id}/jobs/{job_id}/artifacts/{path}", "get"),
        ("/api/v2/accounts/{account_id}/jobs/{job_id}/run", "post"),
        ("/api/v2/accounts/{account_id}/jobs/{job_id}/rerun", "post"),
        ("/api/v2/accounts/{account_id}/runs/{run_id}/cancel", "post"),
        ("/api/v2/accounts/{account_id}/runs/{run_id}/retry", "post"),
        ("/api/v2/datacoves/artifacts", "post"),
        ("/api/v3/accounts", "get"),
        ("/api/v3/accounts/{account_id}", "get"),
        ("/api/v3/accounts/{account_id}/projects", "get"),
        ("/api/v3/accounts/{account_id}/projects/{project_id}", "get"),
        ("/api/v3/accounts/{account_id}/projects/{project_id}/environments", "get"),
        ("/api/v3/accounts/{account_id}/projects/{project_id}/environments/{environment_id}", "get"),
        ("/api/v3/accounts/{account_id}/environments", "get"),
        ("/api/v2/datacoves/manifests", "get"),
        ("/api/v2/datacoves/manifests", "post"),
        ("/api/v2/datacoves/projects/{project_slug}/latest-manifest", "get"),
        ("/api/v2/datacoves/environments/{environment_slug}/files", "get"),
        ("/api/v2/datacoves/environments/{environment_slug}/files", "post"),
        ("/api/v2/datacoves/environments/{environment_slug}/files", "put"),
        ("/api/v2/datacoves/environments/{environment_slug}/files", "patch"),
        ("/api/v2/datacoves/environments/{environment_slug}/files", "delete"),
        ("/api/v2/healthcheck", "get"),
        ("/api/v2/readyz", "get"),
        ("/api/internal/artifacts", "post"),
        ("/api/internal/manifests", "get"),
        ("/api/internal/manifests", "post"),
        ("/api/internal/projects/{project_slug}/latest-manifest", "get"),
        ("/api/internal/environments/{environment_slug}/files", "get"),
        ("/api/internal/environments/{environment_slug}/files", "post"),
        ("/api/internal/environments/{environment_slug}/files", "put"),
        ("/api/internal/environments/{environment_slug}/files", "patch"),
        ("/api/internal/environments/{environment_slug}/files", "delete"),
        ("/api/internal/healthcheck", "get"),
        ("/api/internal/readyz", "get"),
    ];
    let paths = spec["paths"].as_object().unwrap();
    let listed: usize = paths.values().map(|item| item.as_object().unwrap().len()).sum();
    assert_eq!(listed, routes.len(), "every route once: {:?}", paths.keys().collect::<Vec<_>>());
    for (path, method) in routes {
        let operation = &spec["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is missing");
        let parameters: Vec<&str> = operation["parameters"]
            .as_array()
            .map(|p| p.iter().map(|p| p["name"].as_str().unwrap()).collect())
            .unwrap_or_default();
        for segment in path.split('/').filter(|s| s.starts_with('{')) {
            assert!(parameters.contains(&segment.trim_matches(['{', '}'])), "{method} {path}: {parameters:?}");
        }
        let ok = operation["responses"].as_object().unwrap().keys().find(|code| code.starts_with('2'));
        assert!(ok.is_some(), "{method} {path} documents no success");
        if !path.ends_with("healthcheck") && !path.ends_with("readyz") {
            assert_eq!(operation["security"], json!([{"BearerToken": []}]), "{method} {path}");
            assert!(operation["responses"]["401"].is_object(), "{method} {path}");
        }
    }
    let readyz = &spec["paths"]["/api/v2/readyz"]["get"];
    assert!(readyz["responses"]["503"].is_object() && readyz.get("security").is_none(), "{readyz}");
    let runs = &spec["paths"]["/api/v2/accounts/{account_id}/runs"]["get"];
    let names: BTreeSet<&str> =
        runs["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for name in [
        "job_definition_id",
        "job_definition_id__in",
        "status",
        "status__in",
        "order_by",
        "limit",
        "offset",
        "include_related",
        "project_id__in",
        "environment_id",
    ] {
        assert!(names.contains(name), "runs lacks {name}");
    }
    let schema = &runs["responses"]["200"]["content"]["application/json"]["schema"]["$ref"];
    assert_eq!(schema, "#/components/schemas/ListEnvelope_JobRun");
    for name in ["Account", "Project", "Environment", "Job", "JobRun", "File", "Error"] {
        assert!(spec["components"]["schemas"][name].is_object(), "schema {name}");
    }

    let ui = jade.client.get(jade.url("/api/v2/swaggerui")).send().await.unwrap();
    assert_eq!(ui.status(), 200);
    let html = ui.text().await.unwrap();
    assert!(html.contains("url: \"/api/v2/openapi\""), "Swagger UI loads the served document");
    assert!(html.contains("SwaggerUIBundle"), "Swagger UI's script is embedded");
    jade.stop().await;
}

#[test]
fn jade_serve_names_what_is_missing_in_one_line() {
    let run = |vars: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_jade"));
        command.arg("serve").env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        for (name, value) in vars {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        stderr
    };
    assert!(run(&[]).contains("FERNET_KEY"));
    assert!(run(&[("FERNET_KEY", "k")]).contains("DATACOVES_VERIFY_URL"));
    let bad_port = run(&[("CONNECT_TO_AIRFLOW", "false"), ("AUTH_VERIFIER", "database"), ("PORT", "eighty")]);
    assert!(bad_port.contains("PORT"), "{bad_port}");
    let secret = "postgres://u:hunter2@host:notaport/db";
    let bad_url = run(&[
        ("CONNECT_TO_AIRFLOW", "false"),
        ("AUTH_VERIFIER", "database"),
        ("STORAGE_ADAPTER", "fs"),
        ("FS_STORAGE_ROOT", "/tmp/jade-x"),
        ("DB_URL", secret),
    ]);
    assert!(bad_url.contains("DB_URL") && !bad_url.contains("hunter2"), "{bad_url}");
    let unreachable = run(&[
        ("CONNECT_TO_AIRFLOW", "false"),
        ("AUTH_VERIFIER", "database"),
        ("STORAGE_ADAPTER", "fs"),
        ("FS_STORAGE_ROOT", "/tmp/jade-x"),
        ("DB_URL", "postgres://jade:hunter2@127.0.0.1:1/jade"),
    ]);
    assert!(
        unreachable.contains("DB_URL") && unreachable.contains("refused") && !unreachable.contains("hunter2"),
        "{unreachable}"
    );
}

/// A value of a path or query parameter that names something real, so a request reaches
/// the code that reads the parameter under test.
fn plausible(name: &str) -> &'static str {
    match name {
        "account_id" => "1",
        "project_id" => "10",
        "environment_id" => "100",
        "environment_slug" => "dev123",
        "project_slug" => "analytics",
        "job_id" | "job_definition_id" | "run_id" => "1",
        "path" => "manifest.json",
        _ => "x",
    }
}

/// NUL, other C0 controls, DEL and a C1 control, inside otherwise plausible text.
const CONTROL_VALUES: [&str; 5] = ["a\u{0}b", "\u{0}", "x\u{1}y", "tag\u{1b}[0m", "d\u{7f}\u{85}"];

#[tokio::test]
async fn control_characters_in_any_text_parameter_answer_4xx_never_5xx() {
    let jade = TestJade::start(Scenario::default(), &[]).await;
    let spec = jade.client.get(jade.url("/api/v2/openapi")).send().await.unwrap().json::<Value>().await.unwrap();
    let encode = |value: &str| -> String { form_urlencoded::byte_serialize(value.as_bytes()).collect() };
    let mut tried = 0;
    for (template, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let parameters = operation["parameters"].as_array().cloned().unwrap_or_default();
            // Each text parameter in turn (path and query), then each text field of the body.
            let mut cases: Vec<(String, String)> = Vec::new();
            for target in &parameters {
                let (name, place) = (target["name"].as_str().unwrap(), target["in"].as_str().unwrap());
                if !matches!(place, "path" | "query") {
                    continue;
                }
                for bad in CONTROL_VALUES {
                    let mut path = template.clone();
                    let mut query = Vec::new();
                    for parameter in &parameters {
                        let own = parameter["name"].as_str().unwrap();
                        let value = if own == name { bad } else { plausible(own) };
                        match parameter["in"].as_str().unwrap() {
                            "path" => path = path.replace(&format!("{{{own}}}"), &encode(value).replace('+', "%20")),
                            "query" if own == name || parameter["required"] == true => {
                                query.push(format!("{own}={}", encode(value)))
                            }
                            _ => {}
                        }
                    }
                    cases.push((format!("{path}?{}", query.join("&")), name.to_owned()));
                }
            }
            let base_path = parameters.iter().fold(template.clone(), |path, parameter| {
                let own = parameter["name"].as_str().unwrap();
                path.replace(&format!("{{{own}}}"), plausible(own))
            });
            let required_query: Vec<String> = parameters
                .iter()
                .filter(|p| p["in"] == "query" && p["required"] == true)
                .map(|p| format!("{}={}", p["name"].as_str().unwrap(), plausible(p["name"].as_str().unwrap())))
                .collect();
            let base = format!("{base_path}?{}", required_query.join("&"));
            for (url, name) in cases {
                let response = jade
                    .client
                    .request(method.to_uppercase().parse().unwrap(), jade.url(&url))
                    .bearer_auth(ACME)
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                assert!(
                    (400..500).contains(&status),
                    "{method} {url} ({name}): {status} {}",
                    response.text().await.unwrap()
                );
                tried += 1;
            }
            // Text fields of JSON, form and multipart bodies.
            let content = &operation["requestBody"]["content"];
            for (media, body) in content.as_object().into_iter().flatten() {
                let schema = match &body["schema"]["$ref"] {
                    Value::String(reference) => &spec["components"]["schemas"][reference.rsplit('/').next().unwrap()],
                    _ => &body["schema"],
                };
                let properties = schema["properties"].as_object().cloned().unwrap_or_default();
                let text_fields: Vec<&String> = properties
                    .iter()
                    .filter(|(_, p)| p["type"] == "string" && p["format"] != "binary")
                    .map(|(name, _)| name)
                    .collect();
                for field in text_fields {
                    for bad in CONTROL_VALUES {
                        let text = |name: &str| if name == field { bad.to_owned() } else { plausible(name).to_owned() };
                        let request = jade
                            .client
                            .request(method.to_uppercase().parse().unwrap(), jade.url(&base))
                            .bearer_auth(ACME);
                        let request = match media.as_str() {
                            "multipart/form-data" => {
                                let mut form = reqwest::multipart::Form::new();
                                for (name, property) in &properties {
                                    form = if property["format"] == "binary" || property["items"]["format"] == "binary"
                                    {
                                        form.part(
                                            name.clone(),
                                            reqwest::multipart::Part::bytes(b"{}".to_vec()).file_name("manifest.json"),
                                        )
                                    } else {
                                        form.text(name.clone(), text(name))
                                    };
                                }
                                request.multipart(form)
                            }
                            "application/json" => request.json(
                                &properties
                                    .keys()
                                    .map(|name| (name.clone(), Value::from(text(name))))
                                    .collect::<serde_json::Map<_, _>>(),
                            ),
                            "application/x-www-form-urlencoded" => request
                                .form(&properties.keys().map(|name| (name.clone(), text(name))).collect::<Vec<_>>()),
                            _ => continue,
                        };
                        let response = request.send().await.unwrap();
                        let status = response.status().as_u16();
                        assert!(
                            (400..500).contains(&status),
                            "{method} {base} ({media} field {field} = {bad:?}): {status} {}",
                            response.text().await.unwrap()
                        );
                        tried += 1;
                    }
                }
            }
        }
    }
    assert!(tried > 300, "only {tried} requests were tried: the document lost its parameters?");
    jade.stop().await;
}
