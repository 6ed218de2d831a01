//! What the black-box tests run Jade against: real PostgreSQL databases created per test
//! (Datacoves, Jade, Airflow with one schema per environment, and one environment in a
//! database of its own), a verify service on a loopback port, and a real Jade server on a
//! random port.

#![allow(dead_code)]

/// Runs each named scenario once per storage backend (`Backend` must be in scope).
#[allow(unused_macros)]
macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::Backend;
            #[tokio::test]
            async fn fs() { super::$scenario(Backend::Fs).await }
            #[tokio::test]
            async fn minio() { super::$scenario(Backend::Minio).await }
            #[tokio::test]
            async fn s3() { super::$scenario(Backend::S3).await }
            #[tokio::test]
            async fn blob() { super::$scenario(Backend::Blob).await }
        }
    )*};
}

pub mod airflow;
pub mod fake_airflow;
pub mod listing;
pub mod pg_proxy;
pub mod proxy;
pub mod seed;
pub mod servers;
pub mod storage;
pub mod transfer;
pub mod verify;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use jade::config::Config;
use jade::startup::{self, Running};
use tokio_postgres::NoTls;

pub use seed::{Scenario, Seeded};
pub use storage::{Backend, Storage};
pub use verify::VerifyServer;

/// The PostgreSQL server the tests use (`JADE_TEST_PG`, default the local trust-auth server).
pub fn pg_base() -> String {
    std::env::var("JADE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn url(database: &str) -> String {
    format!("{}/{database}", pg_base())
}

/// Connects, failing the test with a line that says what is missing.
pub async fn connect(database: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&url(database), NoTls).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {} ({e}). Start it with \
             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` or set JADE_TEST_PG.",
            url(database)
        )
    });
    tokio::spawn(connection);
    client
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A database of its own for one test, named `jade_test_<pid>_<n>_<what>`. The test command
/// drops leftovers of earlier runs.
pub async fn create_database(what: &str) -> String {
    copy_database(what, "template1").await
}

/// The same, a copy of `template`.
pub async fn copy_database(what: &str, template: &str) -> String {
    let name = format!("jade_test_{}_{}_{what}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    let admin = connect("postgres").await;
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await.unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}")).await.unwrap();
    name
}

pub async fn drop_database(name: &str) {
    let admin = connect("postgres").await;
    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

/// A running Jade over seeded databases, object storage and the verify server.
pub struct TestJade {
    pub server: Running,
    pub seeded: Seeded,
    pub verify: VerifyServer,
    pub client: reqwest::Client,
    pub storage: Storage,
    pub config: Config,
}

impl TestJade {
    /// Seeds a scenario and starts Jade on it with local-disk storage; `overrides` replace
    /// configuration variables.
    pub async fn start(scenario: Scenario, overrides: &[(&str, &str)]) -> TestJade {
        Self::with_storage(scenario, Backend::Fs, overrides).await
    }

    /// The same, storing bodies with `backend` (its server started for this test).
    pub async fn with_storage(scenario: Scenario, backend: Backend, overrides: &[(&str, &str)]) -> TestJade {
        Self::over(scenario, Storage::start(backend).await, overrides).await
    }

    /// The same, over storage the test started (e.g. behind a proxy).
    pub async fn over(scenario: Scenario, storage: Storage, overrides: &[(&str, &str)]) -> TestJade {
        Self::on(seed::seed(scenario).await, storage, overrides).await
    }

    /// Over databases the test seeded itself (to start something over them first).
    pub async fn seeded(seeded: Seeded, backend: Backend, overrides: &[(&str, &str)]) -> TestJade {
        Self::on(seeded, Storage::start(backend).await, overrides).await
    }

    async fn on(seeded: Seeded, storage: Storage, overrides: &[(&str, &str)]) -> TestJade {
        let verify = VerifyServer::start(seeded.identities.clone()).await;
        let vars = variables(&seeded, &verify, &storage, overrides);
        let config = Config::from_lookup(move |name| vars.get(name).cloned()).expect("test configuration is valid");
        let jade = startup::build(&config).await.unwrap_or_else(|e| panic!("Jade did not start: {e}"));
        let server = startup::spawn(jade, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        TestJade { server, seeded, verify, client: reqwest::Client::new(), storage, config }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    /// Another Jade over the same databases, storage and verify service, as a second replica
    /// behind a load balancer is; `overrides` replace configuration variables.
    pub async fn replica(&self, overrides: &[(&str, &str)]) -> Replica {
        let vars = variables(&self.seeded, &self.verify, &self.storage, overrides);
        let config = Config::from_lookup(move |name| vars.get(name).cloned()).expect("test configuration is valid");
        let jade = startup::build(&config).await.unwrap_or_else(|e| panic!("the replica did not start: {e}"));
        let server = startup::spawn(jade, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        Replica { server, client: self.client.clone() }
    }

    /// `GET path` with `Authorization: Token <token>`.
    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).header("Authorization", format!("Token {token}")).send().await.unwrap()
    }

    /// `GET path` as `token`, expecting `status`, answering the JSON body.
    pub async fn json(&self, token: &str, path: &str, status: u16) -> serde_json::Value {
        get_json(&self.client, &self.url(path), token, status).await
    }

    /// `POST /api/v2/datacoves/manifests` for a DAG run, as the Datacoves Airflow provider
    /// sends it, expecting 201.
    pub async fn upload_manifest(&self, environment: &str, dag_id: &str, run_id: &str, body: &[u8]) {
        let file = reqwest::multipart::Part::bytes(body.to_vec()).file_name("manifest.json");
        let form = reqwest::multipart::Form::new()
            .text("environment_slug", environment.to_owned())
            .text("dag_id", dag_id.to_owned())
            .text("run_id", run_id.to_owned())
            .part("file", file.mime_str("application/json").unwrap());
        let request = self.client.post(self.url("/api/v2/datacoves/manifests")).bearer_auth(seed::ACME);
        let response = request.multipart(form).send().await.unwrap();
        let status = response.status().as_u16();
        assert_eq!(status, 201, "manifest upload for {environment}: {}", response.text().await.unwrap());
    }

    /// Where the body of the file with this slug is stored (`None`: no such row).
    pub async fn body_key(&self, slug: &str) -> Option<String> {
        let client = connect(&self.seeded.jade_db).await;
        let slug: uuid::Uuid = slug.parse().expect("a file slug is a UUID");
        let row =
            client.query_opt("SELECT coalesce(storage_key, path) FROM files WHERE slug = $1", &[&slug]).await.unwrap();
        row.map(|row| row.get(0))
    }

    pub async fn stop(self) {
        self.server.stop().await.unwrap();
        self.verify.stop().await;
        self.seeded.drop_databases().await;
    }
}

/// A second Jade of a [`TestJade`] ([`TestJade::replica`]).
pub struct Replica {
    pub server: Running,
    client: reqwest::Client,
}

impl Replica {
    /// As [`TestJade::json`].
    pub async fn json(&self, token: &str, path: &str, status: u16) -> serde_json::Value {
        get_json(&self.client, &format!("{}{path}", self.server.url()), token, status).await
    }
}

/// `GET url` with `Authorization: Token <token>`, expecting `status`, answering the JSON body.
async fn get_json(client: &reqwest::Client, url: &str, token: &str, status: u16) -> serde_json::Value {
    let response = client.get(url).header("Authorization", format!("Token {token}")).send().await.unwrap();
    let got = response.status().as_u16();
    let body = response.text().await.unwrap();
    assert_eq!(got, status, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
}

/// The configuration variables of a Jade over these databases, verify server and storage
/// (`jade serve` reads the same from its environment).
pub fn variables(
    seeded: &Seeded,
    verify: &VerifyServer,
    storage: &Storage,
    overrides: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("DB_URL".into(), url(&seeded.jade_db)),
        ("DATACOVES_DB_URL".into(), url(&seeded.datacoves_db)),
        ("FERNET_KEY".into(), seeded.fernet_key.clone()),
        ("DATACOVES_VERIFY_URL".into(), verify.url()),
        ("AIRFLOW_DB_URL_TEMPLATE".into(), format!("{}?options=-csearch_path%3D{{slug}}", url(&seeded.airflow_db))),
        ("POOL_SIZE".into(), "8".into()),
        ("DATACOVES_POOL_SIZE".into(), "4".into()),
        // Every list asks Airflow what changed, so a test sees its own writes at once.
        ("RUN_INDEX_REFRESH_MS".into(), "0".into()),
    ]);
    for (name, value) in &storage.vars {
        vars.insert((*name).into(), value.clone());
    }
    for (name, value) in overrides {
        vars.insert((*name).into(), (*value).into());
    }
    vars
}

/// The error message of an error body.
pub fn message(body: &serde_json::Value) -> &str {
    body["errors"]["message"].as_str().unwrap_or_else(|| panic!("no error message in {body}"))
}
