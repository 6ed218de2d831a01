//! An Airflow 2 REST API that answers at once, over the hand-written Airflow databases of a
//! seeded scenario: for schemathesis, which runs, cancels and retries jobs by the hundred,
//! so it floods no real Airflow. Serves `/{slug}/api/v1/…` for each environment
//! (`AIRFLOW_API_URL_TEMPLATE=http://127.0.0.1:PORT/{slug}`): a run is a row it inserts in
//! `dag_run`, a cancel and a retry are updates of that row, as Airflow would make them.

use poem::http::StatusCode;
use poem::listener::TcpAcceptor;
use poem::web::{Data, Json, Path};
use poem::{EndpointExt, IntoResponse, Response, Route, handler};
use serde_json::{Value, json};

use super::seed::Seeded;

pub struct FakeAirflowApi {
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl FakeAirflowApi {
    pub async fn start(seeded: &Seeded) -> FakeAirflowApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = Route::new()
            .at("/:slug/api/v1/version", poem::get(version))
            .at("/:slug/api/v1/dags/:dag_id/dagRuns", poem::post(trigger))
            .at("/:slug/api/v1/dags/:dag_id/dagRuns/:run_id", poem::patch(cancel))
            .at("/:slug/api/v1/dags/:dag_id/clearTaskInstances", poem::post(clear))
            .data(Databases(SeededDatabases::of(seeded)));
        // The listener bound above serves: no port to lose, nothing to wait for.
        let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
        let task = tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
        });
        FakeAirflowApi { base: format!("http://{address}"), task }
    }

    /// The configuration that points every environment's API here.
    pub fn variables(&self) -> [(&'static str, String); 3] {
        [
            ("AIRFLOW_API_URL_TEMPLATE", format!("{}/{{slug}}", self.base)),
            ("AIRFLOW_API_USERNAME", "jade".to_owned()),
            ("AIRFLOW_API_PASSWORD", "fake-airflow".to_owned()),
        ]
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// Where each environment's Airflow tables are.
#[derive(Clone)]
struct SeededDatabases {
    airflow_db: String,
    external_airflow_db: String,
}

impl SeededDatabases {
    fn of(seeded: &Seeded) -> Self {
        SeededDatabases {
            airflow_db: seeded.airflow_db.clone(),
            external_airflow_db: seeded.external_airflow_db.clone(),
        }
    }

    async fn client(&self, slug: &str) -> Option<tokio_postgres::Client> {
        if !slug.chars().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        let (database, schema) =
            if slug == "prod123" { (&self.external_airflow_db, "public") } else { (&self.airflow_db, slug) };
        let client = super::connect(database).await;
        client.batch_execute(&format!("SET search_path TO {schema}")).await.ok()?;
        Some(client)
    }
}

#[derive(Clone)]
struct Databases(SeededDatabases);

fn refused(status: StatusCode, detail: String) -> Response {
    Json(json!({"detail": detail, "status": status.as_u16(), "title": "Refused"})).with_status(status).into_response()
}

#[handler]
async fn version() -> Json<Value> {
    Json(json!({"version": "2.11.0"}))
}

#[handler]
async fn trigger(Path((slug, dag_id)): Path<(String, String)>, databases: Data<&Databases>) -> Response {
    let Some(client) = databases.0.0.client(&slug).await else {
        return refused(StatusCode::NOT_FOUND, format!("no environment {slug}"));
    };
    let known = client.query_opt("SELECT 1 FROM dag WHERE dag_id = $1", &[&dag_id]).await.unwrap().is_some();
    if !known {
        return refused(StatusCode::NOT_FOUND, format!("DAG with dag_id: '{dag_id}' not found"));
    }
    let run_id = format!("manual__{}", uuid::Uuid::new_v4());
    client
        .execute(
            "INSERT INTO dag_run (dag_id, run_id, state, queued_at, run_type) VALUES ($1, $2, 'queued', now(), 'manual')",
            &[&dag_id, &run_id],
        )
        .await
        .unwrap();
    Json(json!({"dag_id": dag_id, "dag_run_id": run_id, "state": "queued"})).into_response()
}

#[handler]
async fn cancel(Path((slug, dag_id, run_id)): Path<(String, String, String)>, databases: Data<&Databases>) -> Response {
    let Some(client) = databases.0.0.client(&slug).await else {
        return refused(StatusCode::NOT_FOUND, format!("no environment {slug}"));
    };
    let changed = client
        .execute(
            "UPDATE dag_run SET state = 'failed', end_date = now(), updated_at = now() WHERE dag_id = $1 AND run_id = $2",
            &[&dag_id, &run_id],
        )
        .await
        .unwrap();
    if changed == 0 {
        return refused(
            StatusCode::NOT_FOUND,
            format!("DAGRun with DAG ID: '{dag_id}' and DagRun ID: '{run_id}' not found"),
        );
    }
    Json(json!({"dag_id": dag_id, "dag_run_id": run_id, "state": "failed"})).into_response()
}

#[handler]
async fn clear(
    Path((slug, dag_id)): Path<(String, String)>,
    databases: Data<&Databases>,
    Json(body): Json<Value>,
) -> Response {
    let Some(client) = databases.0.0.client(&slug).await else {
        return refused(StatusCode::NOT_FOUND, format!("no environment {slug}"));
    };
    let run_id = body["dag_run_id"].as_str().unwrap_or_default().to_owned();
    client
        .execute(
            "UPDATE dag_run SET state = 'queued', queued_at = now(), end_date = NULL, updated_at = now() \
             WHERE dag_id = $1 AND run_id = $2 AND state = 'failed'",
            &[&dag_id, &run_id],
        )
        .await
        .unwrap();
    Json(json!({"task_instances": []})).into_response()
}
