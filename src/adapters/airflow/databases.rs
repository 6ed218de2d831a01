//! The pools over the environments' Airflow databases.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::AirflowSettings;
use crate::adapters::pg::{self, PgError, read_only};
use crate::domain::Fault;
use crate::domain::catalog::{AirflowDatabase, Environment};
use crate::domain::job::Dag;
use crate::domain::job_run::DagRun;
use crate::ports::airflow::{AirflowError, AirflowRuns, DagRunChanges};
use secrecy::ExposeSecret;

/// The pools, opened on an environment's first use and reused; an environment created
/// after start-up is found the first time it is asked for. A pool is rebuilt when the
/// environment's settings change, and closed (its connections end) once unused for
/// `pool_idle`.
pub struct AirflowDatabases {
    settings: AirflowSettings,
    pools: Arc<moka::sync::Cache<i64, Arc<Entry>>>,
}

struct Entry {
    target: [u8; 32],
    pool: pg::Database,
    failed_at: Mutex<Option<Instant>>,
}

impl AirflowDatabases {
    /// Must be called within a Tokio runtime: a task closes idle pools on time.
    pub fn new(settings: AirflowSettings) -> Self {
        let pools = Arc::new(
            moka::sync::Cache::builder()
                .time_to_idle(settings.pool_idle)
                // Evicted when idle, or replaced by a pool to new settings: the pool closes
                // (it may still be in use by a request, which then finishes normally).
                .eviction_listener(|_, entry: Arc<Entry>, _| entry.pool.close())
                .build(),
        );
        // moka evicts on its own operations only: without traffic an idle pool would stay
        // open, so its pending evictions run on a clock (the task ends with the adapter).
        let weak = Arc::downgrade(&pools);
        let period = (settings.pool_idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(pools) = weak.upgrade() else { break };
                pools.run_pending_tasks();
            }
        });
        AirflowDatabases { settings, pools }
    }

    /// Where an environment's database is: its own settings, the template, or the
    /// in-cluster default. The password is part of the config, never of a log line.
    fn config(&self, environment: &Environment) -> Result<tokio_postgres::Config, AirflowError> {
        let not_configured = || AirflowError::NotConfigured { slug: environment.slug.clone() };
        let mut config = match environment.airflow.as_ref().ok_or_else(not_configured)? {
            AirflowDatabase::External { host, port, user, password, database } => {
                let mut config = tokio_postgres::Config::new();
                config.host(host).port(*port).user(user).password(password).dbname(database);
                config
            }
            AirflowDatabase::InCluster => match &self.settings.url_template {
                Some(template) => {
                    tokio_postgres::Config::from_str(&template.expose_secret().replace("{slug}", &environment.slug))
                        .map_err(|_| AirflowError::Unreachable {
                            slug: environment.slug.clone(),
                            cause: Fault::new("AIRFLOW_DB_URL_TEMPLATE does not make a valid URL"),
                        })?
                }
                None => {
                    let slug = &environment.slug;
                    let mut config = tokio_postgres::Config::new();
                    config
                        .host(format!("{slug}-airflow-postgresql.dcw-{slug}.svc.cluster.local"))
                        .port(5432)
                        .user("postgres")
                        .password("postgres")
                        .dbname("postgres");
                    config
                }
            },
            AirflowDatabase::Misconfigured(_) => return Err(not_configured()),
        };
        config.connect_timeout(self.settings.connect_timeout);
        config.application_name("jade");
        Ok(read_only(config))
    }

    /// A connection to the environment's database, or `Unreachable` (remembered for a
    /// while, so a dead database does not cost every request a connect timeout).
    async fn client(&self, environment: &Environment) -> Result<pg::Client, AirflowError> {
        let config = self.config(environment)?;
        let target = fingerprint(&config);
        let unreachable = |cause: Fault| AirflowError::Unreachable { slug: environment.slug.clone(), cause };
        let entry = match self.pools.get(&environment.id).filter(|entry| entry.target == target) {
            Some(entry) => entry,
            None => {
                let pool = pg::Database::new(
                    config,
                    self.settings.pool_size,
                    self.settings.tls,
                    self.settings.statement_timeout,
                )
                .map_err(unreachable)?;
                crate::adapters::metrics::watch_pool("airflow", pool.pool());
                let fresh = Arc::new(Entry { target, pool, failed_at: Mutex::new(None) });
                // Another request may have opened the same pool meanwhile: the first stays.
                self.pools
                    .entry(environment.id)
                    .and_upsert_with(|existing| match existing {
                        Some(existing) if existing.value().target == target => existing.into_value(),
                        _ => fresh,
                    })
                    .into_value()
            }
        };
        if let Some(failed_at) = *entry.failed_at.lock().unwrap()
            && failed_at.elapsed() < self.settings.failure_memory
        {
            return Err(unreachable(Fault::new("failed recently; not retried yet")));
        }
        let started = Instant::now();
        let got = entry.pool.client().await;
        crate::adapters::metrics::pool_wait("airflow", started);
        match got {
            Ok(client) => {
                *entry.failed_at.lock().unwrap() = None;
                Ok(client)
            }
            Err(error) => {
                *entry.failed_at.lock().unwrap() = Some(Instant::now());
                tracing::warn!(environment = %environment.slug, %error, "cannot connect to the Airflow database");
                Err(unreachable(error.fault("connecting")))
            }
        }
    }

    async fn query(
        &self,
        environment: &Environment,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, AirflowError> {
        let client = self.client(environment).await?;
        let statement = client.prepare_cached(sql).await.map_err(|e| failed(environment, e))?;
        client.query(&statement, params).await.map_err(|e| failed(environment, e))
    }
}

/// Identifies a connection target, password included (a rotated password makes a new pool),
/// without holding the password itself.
fn fingerprint(config: &tokio_postgres::Config) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    // Config's Debug leaves the password out; it is hashed on its own.
    hash.update(format!("{config:?}").as_bytes());
    hash.update(config.get_password().unwrap_or_default());
    hash.finalize().into()
}

/// A statement failed or timed out: the environment is left out of lists like an
/// unreachable one.
fn failed(environment: &Environment, error: PgError) -> AirflowError {
    AirflowError::Unreachable { slug: environment.slug.clone(), cause: error.fault("a query") }
}

const DAG: &str = "SELECT dag_id, description, is_active, is_paused, last_parsed_time, schedule_interval FROM dag";
const DAG_RUN: &str = "SELECT id, dag_id, run_id, state, run_type, queued_at, start_date, end_date FROM dag_run";

fn dag(row: &Row) -> Dag {
    Dag {
        dag_id: row.get("dag_id"),
        description: row.get("description"),
        is_active: row.get("is_active"),
        last_parsed_time: row.get("last_parsed_time"),
        schedule_interval: row.get("schedule_interval"),
        is_paused: row.get("is_paused"),
    }
}

fn dag_run(row: &Row) -> DagRun {
    DagRun {
        id: i64::from(row.get::<_, i32>("id")),
        dag_id: row.get("dag_id"),
        run_id: row.get("run_id"),
        state: row.get("state"),
        queued_at: row.get("queued_at"),
        start_date: row.get("start_date"),
        end_date: row.get("end_date"),
        run_type: row.get("run_type"),
    }
}

/// Ids of `dag_run.id`'s `integer` column; an id that cannot be one matches no run.
fn int4_ids(ids: &[i64]) -> Vec<i32> {
    ids.iter().filter_map(|id| i32::try_from(*id).ok()).collect()
}

#[async_trait]
impl AirflowRuns for AirflowDatabases {
    async fn dags(&self, environment: &Environment) -> Result<Vec<Dag>, AirflowError> {
        let rows = self.query(environment, &format!("{DAG} ORDER BY dag_id"), &[]).await?;
        Ok(rows.iter().map(dag).collect())
    }

    async fn dag(&self, environment: &Environment, dag_id: &str) -> Result<Option<Dag>, AirflowError> {
        let rows = self.query(environment, &format!("{DAG} WHERE dag_id = $1"), &[&dag_id]).await?;
        Ok(rows.first().map(dag))
    }

    async fn dag_run_changes(
        &self,
        environment: &Environment,
        after: i64,
        recheck: &[i64],
    ) -> Result<DagRunChanges, AirflowError> {
        let after = i32::try_from(after).unwrap_or(i32::MAX);
        let recheck = int4_ids(recheck);
        let client = self.client(environment).await?;
        let fail = |e| failed(environment, e);
        // Both statements go down the same connection, pipelined; the first is two index
        // scans (above `after`, and the ids to check again).
        let changed_sql = format!("{DAG_RUN} WHERE id > $1 OR id = ANY($2) ORDER BY id");
        let (changed, counted) = futures::try_join!(
            client.prepare_cached(&changed_sql),
            client.prepare_cached("SELECT count(*) FROM dag_run WHERE id <= $1"),
        )
        .map_err(fail)?;
        let changed_params: [&(dyn ToSql + Sync); 2] = [&after, &recheck];
        let counted_params: [&(dyn ToSql + Sync); 1] = [&after];
        let (rows, count) =
            futures::try_join!(client.query(&changed, &changed_params), client.query_one(&counted, &counted_params))
                .map_err(fail)?;
        Ok(DagRunChanges {
            runs: rows.iter().map(dag_run).collect(),
            at_or_below: u64::try_from(count.get::<_, i64>(0)).unwrap_or(0),
        })
    }

    async fn dag_runs_by_ids(&self, environment: &Environment, ids: &[i64]) -> Result<Vec<DagRun>, AirflowError> {
        let rows = self.query(environment, &format!("{DAG_RUN} WHERE id = ANY($1)"), &[&int4_ids(ids)]).await?;
        Ok(rows.iter().map(dag_run).collect())
    }

    async fn dag_run(&self, environment: &Environment, id: i64) -> Result<Option<DagRun>, AirflowError> {
        let Ok(id) = i32::try_from(id) else { return Ok(None) };
        let rows = self.query(environment, &format!("{DAG_RUN} WHERE id = $1"), &[&id]).await?;
        Ok(rows.first().map(dag_run))
    }

    async fn dag_run_by_run_id(
        &self,
        environment: &Environment,
        dag_id: &str,
        run_id: &str,
    ) -> Result<Option<DagRun>, AirflowError> {
        let sql = format!("{DAG_RUN} WHERE dag_id = $1 AND run_id = $2");
        let rows = self.query(environment, &sql, &[&dag_id, &run_id]).await?;
        Ok(rows.first().map(dag_run))
    }

    async fn latest_dag_run(
        &self,
        environment: &Environment,
        dag_id: Option<&str>,
        successful_only: bool,
    ) -> Result<Option<DagRun>, AirflowError> {
        let mut clauses = Vec::new();
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        if let Some(dag_id) = &dag_id {
            clauses.push("dag_id = $1");
            params.push(dag_id);
        }
        if successful_only {
            clauses.push("state = 'success'");
        }
        let conditions = if clauses.is_empty() { String::new() } else { format!(" WHERE {}", clauses.join(" AND ")) };
        let sql = format!("{DAG_RUN}{conditions} ORDER BY end_date DESC NULLS LAST, id DESC LIMIT 1");
        let rows = self.query(environment, &sql, &params).await?;
        Ok(rows.first().map(dag_run))
    }
}
