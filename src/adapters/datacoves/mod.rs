//! The Datacoves database (Django): accounts, projects, environments, read in read-only
//! sessions. Environments' `airflow_config` is decrypted with `FERNET_KEY`.

use async_trait::async_trait;
use serde::Deserialize;
use tokio_postgres::Row;

use crate::adapters::pg::{self, PgError};
use crate::domain::catalog::{Account, AirflowApi, AirflowDatabase, Environment, Project};
use crate::ports::BackendError;
use crate::ports::catalog::Catalog;

pub struct DatacovesCatalog {
    pool: pg::Database,
    fernet: Option<fernet::Fernet>,
}

impl DatacovesCatalog {
    /// `pool` should open read-only sessions (see [`crate::adapters::pg::read_only`]); `fernet_key` decrypts the
    /// environments' Airflow settings (without it, Airflow-enabled environments are
    /// `Misconfigured`).
    pub fn new(pool: pg::Database, fernet_key: Option<&str>) -> Result<Self, BackendError> {
        let fernet = fernet_key
            .map(|key| {
                fernet::Fernet::new(key).ok_or_else(|| BackendError::new("FERNET_KEY is not a valid Fernet key"))
            })
            .transpose()?;
        Ok(DatacovesCatalog { pool, fernet })
    }

    async fn client(&self) -> Result<pg::Client, BackendError> {
        let started = std::time::Instant::now();
        let client = self.pool.client().await;
        crate::adapters::metrics::pool_wait("datacoves_db", started);
        client.map_err(db)
    }

    fn environment(&self, row: &Row) -> Environment {
        let slug: String = row.get::<_, Option<String>>("slug").unwrap_or_default();
        let services: Option<serde_json::Value> = row.get("services");
        let enabled = services.as_ref().and_then(|s| s.get("airflow")?.get("enabled")?.as_bool()).unwrap_or(false);
        let (airflow, airflow_api) = match enabled.then(|| self.airflow_config(row.get("airflow_config"))) {
            Some((database, api)) => (Some(database), api),
            None => (None, AirflowApi::default()),
        };
        if let Some(AirflowDatabase::Misconfigured(reason)) = &airflow {
            tracing::warn!(environment = %slug, %reason, "unusable Airflow settings");
        }
        Environment {
            id: row.get("id"),
            account_id: row.get::<_, Option<i64>>("account_id").unwrap_or_default(),
            project_id: row.get::<_, Option<i64>>("project_id").unwrap_or_default(),
            name: row.get("name"),
            slug,
            dbt_home_path: row.get("dbt_home_path"),
            kind: row.get("type"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
            airflow,
            airflow_api,
        }
    }

    /// The environment's Airflow database and REST API settings, from its encrypted
    /// `airflow_config`.
    fn airflow_config(&self, config: Option<Vec<u8>>) -> (AirflowDatabase, AirflowApi) {
        let unusable = |reason: &str| (AirflowDatabase::Misconfigured(reason.into()), AirflowApi::default());
        let Some(config) = config.filter(|c| !c.is_empty()) else {
            return (AirflowDatabase::InCluster, AirflowApi::default());
        };
        let Some(fernet) = &self.fernet else { return unusable("no FERNET_KEY to decrypt airflow_config") };
        let Ok(token) = std::str::from_utf8(&config) else { return unusable("airflow_config is not a Fernet token") };
        match fernet.decrypt(token.trim()) {
            Ok(plain) => (airflow_settings(&plain), api_settings(&plain)),
            Err(_) => unusable("airflow_config does not decrypt with FERNET_KEY"),
        }
    }
}

/// Reads the decrypted `airflow_config` JSON's `api` object: the REST API's `url`,
/// `username` and `password`, each optional (contract §6b).
fn api_settings(plain: &[u8]) -> AirflowApi {
    #[derive(Deserialize, Default)]
    struct Config {
        #[serde(default)]
        api: Option<Api>,
    }
    #[derive(Deserialize, Default)]
    struct Api {
        url: Option<String>,
        username: Option<String>,
        password: Option<String>,
    }
    let api = serde_json::from_slice::<Config>(plain).ok().and_then(|c| c.api).unwrap_or_default();
    let given = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
    AirflowApi { url: given(api.url), username: given(api.username), password: given(api.password) }
}

/// Reads the decrypted `airflow_config` JSON: its `db` object names an external database
/// when `external` is true, else the in-cluster default applies.
fn airflow_settings(plain: &[u8]) -> AirflowDatabase {
    #[derive(Deserialize)]
    struct Config {
        #[serde(default)]
        db: Option<Db>,
    }
    #[derive(Deserialize)]
    struct Db {
        #[serde(default)]
        external: bool,
        host: Option<String>,
        port: Option<serde_json::Value>,
        user: Option<String>,
        password: Option<String>,
        database: Option<String>,
    }
    let config: Config = match serde_json::from_slice(plain) {
        Ok(config) => config,
        Err(e) => return AirflowDatabase::Misconfigured(format!("airflow_config is not JSON: {e}")),
    };
    let Some(db) = config.db.filter(|db| db.external) else { return AirflowDatabase::InCluster };
    let port = match &db.port {
        None => Some(5432),
        Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        Some(_) => None,
    };
    match (db.host, port, db.user, db.password, db.database) {
        (Some(host), Some(port), Some(user), Some(password), Some(database)) => {
            AirflowDatabase::External { host, port, user, password, database }
        }
        _ => AirflowDatabase::Misconfigured("airflow_config.db is external but incomplete".into()),
    }
}

/// A Datacoves database failure; unavailable (503) when the database is down or too slow.
fn db(error: impl Into<PgError>) -> BackendError {
    error.into().fault("Datacoves database")
}

fn account(row: &Row) -> Account {
    Account {
        id: row.get("id"),
        name: row.get("name"),
        slug: row.get("slug"),
        developer_licenses: row.get("developer_licenses"),
        plan_id: row.get("plan_id"),
        trial_ends_at: row.get("trial_ends_at"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
}

fn project(row: &Row) -> Project {
    Project {
        id: row.get("id"),
        account_id: row.get::<_, Option<i64>>("account_id").unwrap_or_default(),
        name: row.get("name"),
        slug: row.get::<_, Option<String>>("slug").unwrap_or_default(),
        repository_id: row.get("repository_id"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
}

const ACCOUNT: &str =
    "SELECT id, name, slug, developer_licenses, plan_id, trial_ends_at, created_at, updated_at FROM users_account";
const PROJECT: &str = "SELECT id, account_id, name, slug, repository_id, created_at, updated_at FROM projects_project";
const ENVIRONMENT: &str = "SELECT e.id, p.account_id, e.project_id, e.name, e.slug, e.dbt_home_path, e.type, e.services, \
                           e.airflow_config, e.created_at, e.updated_at \
                           FROM projects_environment e JOIN projects_project p ON p.id = e.project_id";

#[async_trait]
impl Catalog for DatacovesCatalog {
    async fn ping(&self) -> Result<(), BackendError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(|e| BackendError::caused_by("Datacoves database", e))?;
        Ok(())
    }

    async fn account(&self, id: i64) -> Result<Option<Account>, BackendError> {
        let client = self.client().await?;
        let row = client.query_opt(&format!("{ACCOUNT} WHERE id = $1"), &[&id]).await.map_err(db)?;
        Ok(row.as_ref().map(account))
    }

    async fn accounts(&self, ids: &[i64]) -> Result<Vec<Account>, BackendError> {
        let client = self.client().await?;
        let rows = client.query(&format!("{ACCOUNT} WHERE id = ANY($1) ORDER BY id"), &[&ids]).await.map_err(db)?;
        Ok(rows.iter().map(account).collect())
    }

    async fn projects(&self, account_id: i64) -> Result<Vec<Project>, BackendError> {
        let client = self.client().await?;
        let rows =
            client.query(&format!("{PROJECT} WHERE account_id = $1 ORDER BY id"), &[&account_id]).await.map_err(db)?;
        Ok(rows.iter().map(project).collect())
    }

    async fn project(&self, account_id: i64, id: i64) -> Result<Option<Project>, BackendError> {
        let client = self.client().await?;
        let sql = format!("{PROJECT} WHERE account_id = $1 AND id = $2");
        Ok(client.query_opt(&sql, &[&account_id, &id]).await.map_err(db)?.as_ref().map(project))
    }

    async fn project_by_slug(&self, slug: &str) -> Result<Option<Project>, BackendError> {
        let client = self.client().await?;
        let sql = format!("{PROJECT} WHERE slug = $1 ORDER BY id LIMIT 1");
        Ok(client.query_opt(&sql, &[&slug]).await.map_err(db)?.as_ref().map(project))
    }

    async fn environments(&self, account_id: i64) -> Result<Vec<Environment>, BackendError> {
        let client = self.client().await?;
        let statement =
            client.prepare_cached(&format!("{ENVIRONMENT} WHERE p.account_id = $1 ORDER BY e.id")).await.map_err(db)?;
        let rows = client.query(&statement, &[&account_id]).await.map_err(db)?;
        Ok(rows.iter().map(|row| self.environment(row)).collect())
    }

    async fn environment(&self, account_id: i64, id: i64) -> Result<Option<Environment>, BackendError> {
        let client = self.client().await?;
        let sql = format!("{ENVIRONMENT} WHERE p.account_id = $1 AND e.id = $2");
        let row = client.query_opt(&sql, &[&account_id, &id]).await.map_err(db)?;
        Ok(row.as_ref().map(|row| self.environment(row)))
    }

    async fn environment_by_slug(&self, slug: &str) -> Result<Option<Environment>, BackendError> {
        let client = self.client().await?;
        let sql = format!("{ENVIRONMENT} WHERE e.slug = $1 ORDER BY e.id LIMIT 1");
        let row = client.query_opt(&sql, &[&slug]).await.map_err(db)?;
        Ok(row.as_ref().map(|row| self.environment(row)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_settings_need_every_field() {
        let external = br#"{"db": {"external": true, "host": "h", "port": "6543", "user": "u", "password": "p", "database": "d"}}"#;
        assert!(matches!(airflow_settings(external), AirflowDatabase::External { port: 6543, .. }));
        let internal = br#"{"db": {"external": false, "host": "ignored"}}"#;
        assert_eq!(airflow_settings(internal), AirflowDatabase::InCluster);
        assert_eq!(airflow_settings(b"{}"), AirflowDatabase::InCluster);
        let incomplete = br#"{"db": {"external": true, "host": "h"}}"#;
        assert!(matches!(airflow_settings(incomplete), AirflowDatabase::Misconfigured(_)));
        assert!(matches!(airflow_settings(b"nope"), AirflowDatabase::Misconfigured(_)));
    }

    #[test]
    fn the_api_settings_are_each_optional() {
        let api = br#"{"db": {"external": false}, "api": {"url": "https://airflow.example", "username": "jade", "password": "p"}}"#;
        let api = api_settings(api);
        assert_eq!((api.url.as_deref(), api.username.as_deref()), (Some("https://airflow.example"), Some("jade")));
        assert_eq!(api.password.as_deref(), Some("p"));
        assert!(!format!("{api:?}").contains("\"p\""), "the password never prints");
        assert_eq!(api_settings(br#"{"api": {"url": " "}}"#), AirflowApi::default());
        assert_eq!(api_settings(b"{}"), AirflowApi::default());
    }
}
