//! Realistic Datacoves, Airflow and Jade databases for one test.

use std::collections::HashMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};

use super::airflow::{self, Airflow};
use super::{connect, copy_database, create_database, drop_database};

pub const ACME: &str = "token-acme";
pub const GLOBEX: &str = "token-globex";
pub const NOBODY: &str = "token-nobody";
/// acme's scope, without the permission to run jobs.
pub const ACME_READER: &str = "token-acme-reader";
/// knox 5 tokens in the Datacoves `iam_datacovestoken` table, for the database verifier
/// (64 hex characters, as knox makes them). Ada's project token (analytics).
pub const DB_ACME: &str = "1d200d768178fd0449d04e237170ec0b0457c8d9d92ec09506d54980dcef6740";
/// A project token of a deactivated user.
pub const DB_DEACTIVATED: &str = "90102af3c17cfe2320fe2a0a0705d141a514377a803dbed3b893799e3b0ca500";
/// A project token of a user without permissions.
pub const DB_PLAIN: &str = "e1459f51678f63d021ac7442beec00468cd4fe68d14601f84ef50f54abda0384";
/// An environment token (mkt123) of a service user who may write to mkt123 only.
pub const DB_MKT_ENV: &str = "55337231a2b41de2358c9ac7d58c073b6d4610be7fdbe8fb14d3020e8d7a0b74";
/// Ada's project token that expired yesterday.
pub const DB_EXPIRED: &str = "258ccfe3a389e4012b7e8996fbadfd7184da97d87d568fd5e9db6659bdb39f2a";
/// Two tokens sharing a `token_key` (their first 15 characters): Ada's, expiring tomorrow,
/// and Plain's, never expiring.
pub const DB_TWIN_ADA: &str = "2a78b874bdad835fde69c10c2ed51798216ec23139d188f98c4382a827cda66e";
pub const DB_TWIN_PLAIN: &str = "2a78b874bdad8350123456789abcdef0123456789abcdef0123456789abcdef0";
/// Ada's token with non-ASCII characters in its first 15 (the key is 15 characters, not
/// bytes).
pub const DB_UNICODE: &str = "jädé-tökén-ñü-€-0123456789abcdef";

const DATACOVES_SCHEMA: &str = include_str!("../fixtures/sql/datacoves-schema.sql");
const AIRFLOW_SCHEMA: &str = include_str!("../fixtures/sql/airflow-schema.sql");

pub struct Scenario {
    /// DAG runs seeded in each environment with Airflow.
    pub runs_per_environment: i64,
    /// Whether `broken123` (Airflow enabled, its database unreachable) exists.
    pub unreachable_environment: bool,
    /// Whether acme's environments with Airflow have databases made by Airflow itself
    /// ([`REAL_AIRFLOW`]) instead of the hand-written subset of Airflow 2's schema.
    pub real_airflow: bool,
    /// Whether `dev123` and `mkt123` are the running Airflow 2 and 3 of
    /// `tests/fixtures/airflow/live.sh` (database and REST API), to run jobs on; `prod123`
    /// then has an API that does not answer.
    pub live_airflow: bool,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario { runs_per_environment: 6, unreachable_environment: true, real_airflow: false, live_airflow: false }
    }
}

impl Scenario {
    /// acme's environments on databases made by Airflow 2 and 3 ([`REAL_AIRFLOW`]); globex
    /// keeps the hand-written schema.
    pub fn real_airflow() -> Self {
        Scenario { real_airflow: true, ..Scenario::default() }
    }

    /// `dev123` on the running Airflow 2, `mkt123` on the running Airflow 3
    /// ([`Scenario::live_airflow`]).
    pub fn live_airflow() -> Self {
        Scenario { live_airflow: true, ..Scenario::default() }
    }
}

/// With [`Scenario::live_airflow`], which running Airflow each environment is.
pub const LIVE_AIRFLOW: [(&str, Airflow); 2] = [("dev123", Airflow::Two), ("mkt123", Airflow::Three)];

/// With [`Scenario::real_airflow`], which Airflow made each of acme's Airflow databases:
/// `dev123` a schema of the shared database, `mkt123` another, `prod123` the `public` schema of
/// a database of its own. Each holds the DAGs and five runs of
/// `tests/fixtures/airflow/make-database.sh`.
pub const REAL_AIRFLOW: [(&str, Airflow); 3] =
    [("dev123", Airflow::Two), ("prod123", Airflow::Three), ("mkt123", Airflow::Three)];

/// Account 1 `acme` (projects 10 `analytics`: environments 100 `dev123` with Airflow in the
/// shared database, 101 `prod123` with Airflow in a database of its own (external settings);
/// 11 `marketing`: 102 `mkt123` (in-cluster default, so the URL template), 103 `noflow123`
/// (Airflow off), 104 `broken123` (unreachable)); account 2 `globex` (project 20
/// `globex-dbt`, environment 200 `globex123`); account 3 deactivated.
pub struct Seeded {
    pub datacoves_db: String,
    pub jade_db: String,
    pub airflow_db: String,
    pub external_airflow_db: String,
    pub fernet_key: String,
    /// Verify-service answers by token.
    pub identities: HashMap<String, Value>,
    /// (environment id, slug, Airflow schema or database) of every environment with runs.
    pub airflow_environments: Vec<(i64, &'static str)>,
    /// Whether acme's Airflow databases were made by Airflow ([`REAL_AIRFLOW`]).
    pub real_airflow: bool,
}

impl Seeded {
    pub async fn drop_databases(&self) {
        for db in [&self.datacoves_db, &self.jade_db, &self.airflow_db, &self.external_airflow_db] {
            drop_database(db).await;
        }
    }

    /// A client of the environment's Airflow database (its schema first on the path).
    pub async fn airflow(&self, slug: &str) -> tokio_postgres::Client {
        let (database, schema) = self.airflow_schema(slug);
        let client = connect(database).await;
        client.batch_execute(&format!("SET search_path TO {schema}")).await.unwrap();
        client
    }

    /// The database and schema of the environment's Airflow tables.
    fn airflow_schema<'a>(&'a self, slug: &'a str) -> (&'a str, &'a str) {
        if slug == "prod123" { (&self.external_airflow_db, "public") } else { (&self.airflow_db, slug) }
    }

    /// Runs `program args…` of the real Airflow that made the environment's database
    /// ([`Scenario::real_airflow`]) on it, e.g. `airflow tasks clear …`.
    pub async fn airflow_command(&self, slug: &str, program: &str, args: &[&str]) -> std::process::Output {
        self.airflow_command_of(self.airflow_version(slug), slug, program, args).await
    }

    /// The same with the given Airflow, e.g. Airflow 3's `db migrate` on an Airflow 2 database.
    pub async fn airflow_command_of(
        &self,
        version: Airflow,
        slug: &str,
        program: &str,
        args: &[&str],
    ) -> std::process::Output {
        let (database, schema) = self.airflow_schema(slug);
        version.run(database, schema, program, args).await
    }

    /// Which Airflow made the environment's database.
    pub fn airflow_version(&self, slug: &str) -> Airflow {
        assert!(self.real_airflow, "{slug}: this scenario's Airflow databases are hand-written");
        REAL_AIRFLOW.iter().find(|(s, _)| *s == slug).unwrap_or_else(|| panic!("{slug} has no real Airflow")).1
    }
}

pub fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 8, 0, 0).unwrap() + Duration::minutes(minutes)
}

/// The state of the n-th seeded run: every Airflow state comes round, `None` included.
pub fn state(n: i64) -> Option<&'static str> {
    [Some("success"), Some("failed"), Some("running"), Some("queued"), Some("up_for_retry"), None]
        [((n - 1) % 6) as usize]
}

fn identity(account: (i64, &str), projects: &[(i64, &str)], environments: &[(i64, &str)]) -> Value {
    json!({
        "email": format!("admin@{}.example", account.1),
        "name": "Admin",
        "permissions": [format!("{}|dbt-api:manifest|write", account.1), format!("{}|workbench:airflow|write", account.1)],
        "account_ids": [account.0],
        "accounts": [account.1],
        "project_ids": projects.iter().map(|p| p.0).collect::<Vec<_>>(),
        "projects": projects.iter().map(|p| p.1).collect::<Vec<_>>(),
        "environment_ids": environments.iter().map(|e| e.0).collect::<Vec<_>>(),
        "environments": environments.iter().map(|e| e.1).collect::<Vec<_>>(),
    })
}

/// (id, project id, slug, name, services, encrypted airflow_config)
type EnvironmentRow = (i64, i64, &'static str, &'static str, Value, Option<Vec<u8>>);

/// The Datacoves `type` of a seeded environment: `prod123` is the production one.
fn environment_type(slug: &str) -> &'static str {
    if slug == "prod123" { "prod" } else { "dev" }
}

pub async fn seed(scenario: Scenario) -> Seeded {
    let datacoves_db = create_database("datacoves").await;
    let jade_db = create_database("jade").await;
    let (airflow_db, external_airflow_db) = if scenario.real_airflow {
        let template = airflow::template().await;
        let (shared, own) = (copy_database("airflow", template).await, copy_database("airflow_ext", template).await);
        let (schema2, schema3) = (Airflow::Two.schema(), Airflow::Three.schema());
        connect(&shared)
            .await
            .batch_execute(&format!("ALTER SCHEMA {schema2} RENAME TO dev123; ALTER SCHEMA {schema3} RENAME TO mkt123"))
            .await
            .unwrap();
        connect(&own)
            .await
            .batch_execute(&format!(
                "DROP SCHEMA public; DROP SCHEMA {schema2} CASCADE; ALTER SCHEMA {schema3} RENAME TO public"
            ))
            .await
            .unwrap();
        (shared, own)
    } else {
        (create_database("airflow").await, create_database("airflow_ext").await)
    };
    let fernet_key = fernet::Fernet::generate_key();
    let fernet = fernet::Fernet::new(&fernet_key).unwrap();
    let encrypt = |config: Value| fernet.encrypt(config.to_string().as_bytes()).into_bytes();

    let datacoves = connect(&datacoves_db).await;
    datacoves.batch_execute(DATACOVES_SCHEMA).await.unwrap();
    datacoves
        .batch_execute(
            "INSERT INTO users_account (id, name, slug, developer_licenses, plan_id, trial_ends_at, created_at, updated_at, deactivated_at) VALUES
               (1, 'Acme', 'acme', 5, 2, '2030-01-01T00:00:00Z', '2023-01-01T10:00:00Z', '2024-01-01T10:00:00Z', NULL),
               (2, 'Globex', 'globex', 3, 1, NULL, '2023-02-01T10:00:00Z', '2024-02-01T10:00:00Z', NULL),
               (3, 'Gone', 'gone', 1, 1, NULL, '2023-03-01T10:00:00Z', '2024-03-01T10:00:00Z', '2024-03-02T10:00:00Z');
             INSERT INTO projects_project (id, account_id, name, slug, repository_id, created_at, updated_at) VALUES
               (10, 1, 'Analytics', 'analytics', 7, '2023-01-02T10:00:00Z', '2024-01-02T10:00:00Z'),
               (11, 1, 'Marketing', 'marketing', NULL, '2023-01-03T10:00:00Z', '2024-01-03T10:00:00Z'),
               (20, 2, 'Globex dbt', 'globex-dbt', 9, '2023-02-02T10:00:00Z', '2024-02-02T10:00:00Z');",
        )
        .await
        .unwrap();
    let enabled = json!({"airflow": {"enabled": true}, "airbyte": {"enabled": false}});
    let in_cluster = encrypt(json!({"db": {"external": false}, "dags_folder": "orchestrate/dags"}));
    let external = encrypt(json!({"db": {
        "external": true, "host": "127.0.0.1", "port": 5432, "user": "postgres", "password": "unused-with-trust",
        "database": external_airflow_db}}));
    let unreachable = encrypt(json!({"db": {
        "external": true, "host": "127.0.0.1", "port": "1", "user": "postgres", "password": "x", "database": "none"}}));
    // A running Airflow: its database and its REST API.
    let live = |version: Airflow| {
        let live = version.live();
        encrypt(json!({
            "db": {"external": true, "host": "127.0.0.1", "port": 5432, "user": "postgres",
                   "password": "unused-with-trust", "database": live.database},
            "api": {"url": live.url, "username": live.username, "password": live.password}}))
    };
    let (dev, prod, mkt) = if scenario.live_airflow {
        // prod123's API does not answer (nothing listens on port 1).
        let silent = encrypt(json!({"db": {
            "external": true, "host": "127.0.0.1", "port": 5432, "user": "postgres", "password": "unused-with-trust",
            "database": external_airflow_db}, "api": {"url": "http://127.0.0.1:1", "username": "jade", "password": "x"}}));
        (Some(live(Airflow::Two)), Some(silent), Some(live(Airflow::Three)))
    } else {
        (Some(in_cluster.clone()), Some(external), None)
    };
    let mut environments: Vec<EnvironmentRow> = vec![
        (100, 10, "dev123", "Development", enabled.clone(), dev),
        (101, 10, "prod123", "Production", enabled.clone(), prod),
        (102, 11, "mkt123", "Marketing", enabled.clone(), mkt),
        (103, 11, "noflow123", "No Airflow", json!({"airflow": {"enabled": false}}), None),
        (200, 20, "globex123", "Globex production", enabled.clone(), Some(in_cluster)),
    ];
    if scenario.unreachable_environment {
        environments.push((104, 11, "broken123", "Broken", enabled.clone(), Some(unreachable)));
    }
    for (id, project_id, slug, name, services, airflow_config) in &environments {
        datacoves
            .execute(
                "INSERT INTO projects_environment (id, project_id, name, slug, type, services, airflow_config, dbt_home_path, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $7, $5, $6, 'transform', '2023-05-01T10:00:00Z', '2024-05-01T10:00:00Z')",
                &[id, project_id, name, slug, services, airflow_config, &environment_type(slug)],
            )
            .await
            .unwrap();
    }
    seed_permissions(&datacoves).await;

    // Airflow: one schema per environment in the shared database, prod123 in its own.
    let airflow_environments: Vec<(i64, &'static str)> =
        vec![(100, "dev123"), (101, "prod123"), (102, "mkt123"), (200, "globex123")];
    for (environment_id, slug) in &airflow_environments {
        let real = scenario.real_airflow && REAL_AIRFLOW.iter().any(|(real, _)| real == slug);
        if real || (scenario.live_airflow && LIVE_AIRFLOW.iter().any(|(live, _)| live == slug)) {
            continue;
        }
        let client = if *slug == "prod123" {
            connect(&external_airflow_db).await
        } else {
            let client = connect(&airflow_db).await;
            client.batch_execute(&format!("CREATE SCHEMA {slug}; SET search_path TO {slug};")).await.unwrap();
            client
        };
        client.batch_execute(AIRFLOW_SCHEMA).await.unwrap();
        seed_airflow(&client, *environment_id, scenario.runs_per_environment).await;
    }

    let acme = identity(
        (1, "acme"),
        &[(10, "analytics"), (11, "marketing")],
        &[(100, "dev123"), (101, "prod123"), (102, "mkt123"), (103, "noflow123"), (104, "broken123")],
    );
    let globex = identity((2, "globex"), &[(20, "globex-dbt")], &[(200, "globex123")]);
    let nobody = json!({"email": "x@y", "name": "Nobody", "permissions": [], "account_ids": [], "accounts": [],
                        "project_ids": [], "projects": [], "environment_ids": [], "environments": []});
    // The same scope without the permission to run jobs.
    let mut acme_reader = acme.clone();
    acme_reader["permissions"] = json!(["acme|dbt-api:manifest|write", "acme:analytics|workbench:airflow|read"]);
    let identities = HashMap::from([
        (ACME.to_owned(), acme),
        (ACME_READER.to_owned(), acme_reader),
        (GLOBEX.to_owned(), globex),
        (NOBODY.to_owned(), nobody),
    ]);
    Seeded {
        datacoves_db,
        jade_db,
        airflow_db,
        external_airflow_db,
        fernet_key,
        identities,
        airflow_environments,
        real_airflow: scenario.real_airflow,
    }
}

/// DAGs `daily`, `hourly` (active) and `paused` (inactive, no runs); `runs` runs alternating
/// between `daily` and `hourly`, queued ten minutes apart.
async fn seed_airflow(client: &tokio_postgres::Client, environment_id: i64, runs: i64) {
    for (dag_id, active) in [("daily", true), ("hourly", true), ("paused", false)] {
        client
            .execute(
                "INSERT INTO dag (dag_id, description, is_active, last_parsed_time, schedule_interval)
                 VALUES ($1, $2, $3, $4, '\"@daily\"')",
                &[&dag_id, &format!("The {dag_id} DAG"), &active, &at(-60)],
            )
            .await
            .unwrap();
    }
    for n in 1..=runs {
        add_run(client, environment_id, n).await;
    }
}

/// Adds the n-th run of the pattern `seed_airflow` uses.
pub async fn add_run(client: &impl tokio_postgres::GenericClient, environment_id: i64, n: i64) {
    let dag_id = if n % 2 == 0 { "daily" } else { "hourly" };
    let state = state(n);
    let queued = at(n * 10 + environment_id % 7);
    let started = (state != Some("queued") && state.is_some()).then(|| queued + Duration::seconds(30));
    let ended = matches!(state, Some("success" | "failed")).then(|| queued + Duration::seconds(30 + 60 * n));
    client
        .execute(
            "INSERT INTO dag_run (dag_id, run_id, state, queued_at, start_date, end_date, execution_date, run_type)
             VALUES ($1, $2, $3, $4, $5, $6, $4, 'scheduled')",
            &[
                &dag_id,
                &format!("scheduled__{}", queued.format("%Y-%m-%dT%H:%M:%S%.6f+00:00")),
                &state,
                &queued,
                &started,
                &ended,
            ],
        )
        .await
        .unwrap();
}

/// Users, tokens, groups and permissions for the database verifier (appendix A).
async fn seed_permissions(datacoves: &tokio_postgres::Client) {
    datacoves
        .batch_execute(
            "INSERT INTO users_user (id, email, name, deactivated_at) VALUES
               (1, 'ada@acme.example', 'Ada', NULL), (2, 'gone@acme.example', 'Gone', '2024-01-01T00:00:00Z'),
               (3, 'plain@acme.example', 'Plain', NULL), (4, 'mkt123@acme.example', 'mkt123 service', NULL);
             INSERT INTO auth_group (id, name) VALUES (1, 'acme developers'), (2, 'globex developers'), (3, 'mkt123 services');
             INSERT INTO users_extendedgroup (id, name, group_id, account_id) VALUES (1, 'acme devs', 1, 1), (2, 'globex devs', 2, 2), (3, 'mkt123 services', 3, 1);
             INSERT INTO users_user_groups (user_id, group_id) VALUES (1, 1), (2, 1), (4, 3);
             INSERT INTO auth_permission (id, name, codename) VALUES
               (1, 'acme:analytics|workbench:airflow|read', 'a'),
               (2, 'acme:analytics|dbt-api:manifest|write', 'b'),
               (3, 'acme:marketing:mkt123|workbench:airflow|read', 'c'),
               (4, 'acme:marketing:mkt123|dbt-api:manifest|write', 'd'),
               (5, 'acme:marketing:noflow123|dbt-api:manifest|read', 'e'),
               (6, 'globex:globex-dbt|dbt-api:manifest|write', 'f');
             INSERT INTO auth_group_permissions (group_id, permission_id) VALUES (1, 1), (1, 2), (1, 3), (1, 4), (2, 6), (3, 3), (3, 4);
             INSERT INTO users_user_user_permissions (user_id, permission_id) VALUES (1, 5);",
        )
        .await
        .unwrap();
    let day = Duration::days(1);
    for (token, user_id, scope, expiry) in [
        (DB_ACME, 1, KnoxScope::Project(10), None),
        (DB_DEACTIVATED, 2, KnoxScope::Project(10), None),
        (DB_PLAIN, 3, KnoxScope::Project(11), None),
        (DB_MKT_ENV, 4, KnoxScope::Environment(102), None),
        (DB_EXPIRED, 1, KnoxScope::Project(10), Some(Utc::now() - day)),
        (DB_TWIN_ADA, 1, KnoxScope::Project(10), Some(Utc::now() + day)),
        (DB_TWIN_PLAIN, 3, KnoxScope::Project(11), None),
        (DB_UNICODE, 1, KnoxScope::Project(10), None),
    ] {
        insert_knox_token(datacoves, token, user_id, scope, expiry).await;
    }
}

/// What a knox token is for: `type` 1 with `project_id`, `type` 2 with `environment_id`.
#[derive(Clone, Copy)]
pub enum KnoxScope {
    Project(i64),
    Environment(i64),
}

/// Adds a token row to `iam_datacovestoken` the way django-rest-knox 5 writes it (contract
/// appendix A §0): the token itself is not stored, only its SHA-512 and first 15 characters.
pub async fn insert_knox_token(
    datacoves: &tokio_postgres::Client,
    token: &str,
    user_id: i64,
    scope: KnoxScope,
    expiry: Option<DateTime<Utc>>,
) {
    let (kind, project_id, environment_id): (i16, Option<i64>, Option<i64>) = match scope {
        KnoxScope::Project(id) => (1, Some(id), None),
        KnoxScope::Environment(id) => (2, None, Some(id)),
    };
    datacoves
        .execute(
            "INSERT INTO iam_datacovestoken (digest, token_key, created, expiry, type, project_id, environment_id, user_id)
             VALUES (encode(sha512(convert_to($1, 'UTF8')), 'hex'), left($1, 15), now(), $2, $3, $4, $5, $6)",
            &[&token, &expiry, &kind, &project_id, &environment_id, &user_id],
        )
        .await
        .unwrap();
}
