//! The pools over the environments' Airflow databases, and what each reads there: Airflow 2
//! and Airflow 3 schemas alike.

use std::collections::HashSet;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::AirflowSettings;
use crate::adapters::pg::{self, PgError, read_only};
use crate::domain::Fault;
use crate::domain::catalog::{AirflowDatabase, Environment, Timestamp};
use crate::domain::job::Dag;
use crate::domain::job_run::{DagRun, TaskInstance};
use crate::ports::airflow::{AirflowError, AirflowRuns, DagRunChanges, DagRunCursor};
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
    /// The queries for what the database holds: found on first use, and again after a
    /// query names a column or table the database no longer has (an upgrade from Airflow 2
    /// to 3 while Jade runs).
    queries: Mutex<Option<Arc<Queries>>>,
}

impl Entry {
    fn queries(&self) -> Option<Arc<Queries>> {
        self.queries.lock().unwrap().clone()
    }

    /// Forgets what the database holds, and every statement prepared for it.
    fn forget_schema(&self) {
        *self.queries.lock().unwrap() = None;
        self.pool.pool().manager().statement_caches.clear();
    }
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

    /// A connection to the environment's database and its pool, or `Unreachable` (remembered
    /// for a while, so a dead database does not cost every request a connect timeout).
    async fn client(&self, environment: &Environment) -> Result<(Arc<Entry>, pg::Client), AirflowError> {
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
                let fresh = Arc::new(Entry { target, pool, failed_at: Mutex::new(None), queries: Mutex::new(None) });
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
                Ok((entry, client))
            }
            Err(error) => {
                *entry.failed_at.lock().unwrap() = Some(Instant::now());
                tracing::warn!(environment = %environment.slug, %error, "cannot connect to the Airflow database");
                Err(unreachable(error.fault("connecting")))
            }
        }
    }

    /// Runs `read` on a connection with the queries for what the database holds (found
    /// first if not known yet). When the database no longer has a column or table the
    /// queries name (upgraded while Jade runs), what it holds is found again and `read` runs
    /// once more.
    async fn read<T, F, Fut>(&self, environment: &Environment, read: F) -> Result<T, AirflowError>
    where
        F: Fn(pg::Client, Arc<Queries>) -> Fut,
        Fut: Future<Output = Result<T, PgError>>,
    {
        let mut retried = false;
        loop {
            let (entry, client) = self.client(environment).await?;
            let queries = match entry.queries() {
                Some(queries) => queries,
                None => {
                    let queries = Arc::new(Queries::detect(&client, environment).await?);
                    tracing::info!(environment = %environment.slug, schema = %queries.schema, "read the Airflow database's schema");
                    *entry.queries.lock().unwrap() = Some(Arc::clone(&queries));
                    queries
                }
            };
            match read(client, queries).await {
                Err(error) if !retried && schema_changed(&error) => {
                    tracing::info!(environment = %environment.slug, %error, "the Airflow database's schema changed; reading it again");
                    entry.forget_schema();
                    retried = true;
                }
                result => return result.map_err(|e| failed(environment, e)),
            }
        }
    }

    /// The rows of one statement.
    async fn rows(
        &self,
        environment: &Environment,
        sql: impl Fn(&Queries) -> String,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, AirflowError> {
        self.read(environment, |client, queries| {
            let sql = sql(&queries);
            async move {
                let statement = client.prepare_cached(&sql).await?;
                client.query(&statement, params).await
            }
        })
        .await
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

/// Whether a statement failed because the database's schema is not what its queries were
/// made for: a column or table gone, or a prepared statement whose result changed.
fn schema_changed(error: &PgError) -> bool {
    error.code().is_some_and(|code| {
        [SqlState::UNDEFINED_COLUMN, SqlState::UNDEFINED_TABLE, SqlState::FEATURE_NOT_SUPPORTED].contains(code)
    })
}

/// The statements for one environment's database, made for what it holds: Airflow 2 (2.2
/// and later) or Airflow 3, told apart by the columns of `dag`, `dag_run`, `task_instance`
/// and `dag_run_note` on the connection's search path (never by configuration).
struct Queries {
    /// What was found, for logs: e.g. `Airflow 3 (dag.is_stale, dag_run.updated_at)`.
    schema: String,
    /// `SELECT` of the DAGs (`dag_id, description, is_active, is_paused, last_parsed_time,
    /// schedule`).
    dag: String,
    /// `SELECT` of the DAG runs (`id, dag_id, run_id, state, run_type, queued_at, created_at,
    /// start_date, end_date, updated_at`, and the run's `note`), the columns a version lacks
    /// as NULL.
    dag_run: String,
    /// The task instances of the runs named by `$1` (dag ids) and `$2` (run ids); `None`
    /// without a `task_instance` table.
    task_instances: Option<String>,
    /// Whether `dag_run.updated_at` records changes (Airflow 2.5 and later).
    tracks_changes: bool,
}

impl Queries {
    async fn detect(client: &pg::Client, environment: &Environment) -> Result<Queries, AirflowError> {
        let statement = client
            .prepare_cached(
                "SELECT c.relname::text, a.attname::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                 WHERE c.oid = ANY(ARRAY[to_regclass('dag'), to_regclass('dag_run'), to_regclass('task_instance'), \
                                         to_regclass('dag_run_note')]::oid[]) \
                 AND a.attnum > 0 AND NOT a.attisdropped",
            )
            .await
            .map_err(|e| failed(environment, e))?;
        let rows = client.query(&statement, &[]).await.map_err(|e| failed(environment, e))?;
        let columns: HashSet<(String, String)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
        Queries::for_columns(&columns).ok_or_else(|| AirflowError::Unreachable {
            slug: environment.slug.clone(),
            cause: Fault::new("no Airflow tables (dag, dag_run) on the connection's search path"),
        })
    }

    /// The queries for a database with these (table, column) pairs; `None` when it has no
    /// `dag` and `dag_run` tables.
    fn for_columns(columns: &HashSet<(String, String)>) -> Option<Queries> {
        let has = |table: &str, column: &str| columns.contains(&(table.to_owned(), column.to_owned()));
        if !has("dag", "dag_id") || !has("dag_run", "id") {
            return None;
        }
        let stale = has("dag", "is_stale");
        let timetable = has("dag", "timetable_summary");
        let created = has("dag_run", "created_at");
        let updated = has("dag_run", "updated_at");
        let mapped = has("task_instance", "map_index");
        let noted = has("dag_run_note", "content");
        let column =
            |present: bool, name: &'static str, otherwise: &'static str| if present { name } else { otherwise };
        let mut schema = format!("Airflow {}", if stale || timetable { 3 } else { 2 });
        let found: Vec<&str> = [
            (stale, "dag.is_stale"),
            (timetable, "dag.timetable_summary"),
            (created, "dag_run.created_at"),
            (updated, "dag_run.updated_at"),
            (mapped, "task_instance.map_index"),
            (noted, "dag_run_note"),
        ]
        .into_iter()
        .filter_map(|(present, name)| present.then_some(name))
        .collect();
        schema.push_str(&format!(" ({})", found.join(", ")));
        Some(Queries {
            schema,
            dag: format!(
                "SELECT dag_id, description, {} AS is_active, is_paused, last_parsed_time, {} AS schedule FROM dag",
                column(stale, "NOT is_stale", "is_active"),
                column(timetable, "timetable_summary", "schedule_interval"),
            ),
            dag_run: format!(
                "SELECT dag_run.id, dag_run.dag_id, dag_run.run_id, dag_run.state, dag_run.run_type, \
                 dag_run.queued_at, {} AS created_at, dag_run.start_date, dag_run.end_date, {} AS updated_at, \
                 {} AS note FROM dag_run{}",
                column(created, "dag_run.created_at", "NULL::timestamptz"),
                column(updated, "dag_run.updated_at", "NULL::timestamptz"),
                column(noted, "dag_run_note.content", "NULL::text"),
                column(noted, " LEFT JOIN dag_run_note ON dag_run_note.dag_run_id = dag_run.id", ""),
            ),
            task_instances: has("task_instance", "task_id").then(|| {
                format!(
                    "SELECT t.dag_id, t.run_id, t.task_id, {} AS map_index, t.state, t.start_date, t.end_date \
                     FROM task_instance t JOIN unnest($1::text[], $2::text[]) AS r(dag_id, run_id) \
                     ON t.dag_id = r.dag_id AND t.run_id = r.run_id",
                    column(mapped, "t.map_index", "-1"),
                )
            }),
            tracks_changes: updated,
        })
    }
}

fn dag(row: &Row) -> Dag {
    Dag {
        dag_id: row.get("dag_id"),
        description: row.get("description"),
        is_active: row.get("is_active"),
        last_parsed_time: row.get("last_parsed_time"),
        schedule: row.get("schedule"),
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
        created_at: row.get("created_at"),
        start_date: row.get("start_date"),
        end_date: row.get("end_date"),
        run_type: row.get("run_type"),
        note: row.get("note"),
    }
}

/// Ids of `dag_run.id`'s `integer` column; an id that cannot be one matches no run.
fn int4_ids(ids: &[i64]) -> Vec<i32> {
    ids.iter().filter_map(|id| i32::try_from(*id).ok()).collect()
}

#[async_trait]
impl AirflowRuns for AirflowDatabases {
    async fn dags(&self, environment: &Environment) -> Result<Vec<Dag>, AirflowError> {
        let rows = self.rows(environment, |q| format!("{} ORDER BY dag_id", q.dag), &[]).await?;
        Ok(rows.iter().map(dag).collect())
    }

    async fn dag(&self, environment: &Environment, dag_id: &str) -> Result<Option<Dag>, AirflowError> {
        let rows = self.rows(environment, |q| format!("{} WHERE dag_id = $1", q.dag), &[&dag_id]).await?;
        Ok(rows.first().map(dag))
    }

    async fn dag_run_changes(
        &self,
        environment: &Environment,
        cursor: &DagRunCursor,
    ) -> Result<DagRunChanges, AirflowError> {
        let after = i32::try_from(cursor.after).unwrap_or(i32::MAX);
        let recheck = int4_ids(&cursor.recheck);
        self.read(environment, |client, queries| {
            let (after, recheck) = (&after, &recheck);
            async move {
                // Both statements go down the same connection, pipelined. The first is two
                // index scans (above `after`, the ids to check again), and where the
                // database records changes a scan of `updated_at`, which Airflow does not
                // index.
                let changed_sql = if queries.tracks_changes {
                    format!("{} WHERE id > $1 OR id = ANY($2) OR dag_run.updated_at >= $3 ORDER BY id", queries.dag_run)
                } else {
                    format!("{} WHERE id > $1 OR id = ANY($2) ORDER BY id", queries.dag_run)
                };
                let (changed, counted) = futures::try_join!(
                    client.prepare_cached(&changed_sql),
                    client.prepare_cached("SELECT count(*) FROM dag_run WHERE id <= $1"),
                )?;
                let changed_params: Vec<&(dyn ToSql + Sync)> = if queries.tracks_changes {
                    vec![after, recheck, &cursor.changed_since]
                } else {
                    vec![after, recheck]
                };
                let counted_params: [&(dyn ToSql + Sync); 1] = [after];
                let (rows, count) = futures::try_join!(
                    client.query(&changed, &changed_params),
                    client.query_one(&counted, &counted_params)
                )?;
                Ok(DagRunChanges {
                    runs: rows.iter().map(dag_run).collect(),
                    at_or_below: u64::try_from(count.get::<_, i64>(0)).unwrap_or(0),
                    tracks_changes: queries.tracks_changes,
                    changed_up_to: rows.iter().filter_map(|row| row.get::<_, Option<Timestamp>>("updated_at")).max(),
                })
            }
        })
        .await
    }

    async fn dag_runs_by_ids(&self, environment: &Environment, ids: &[i64]) -> Result<Vec<DagRun>, AirflowError> {
        let ids = int4_ids(ids);
        let rows = self.rows(environment, |q| format!("{} WHERE id = ANY($1)", q.dag_run), &[&ids]).await?;
        Ok(rows.iter().map(dag_run).collect())
    }

    async fn dag_run(&self, environment: &Environment, id: i64) -> Result<Option<DagRun>, AirflowError> {
        let Ok(id) = i32::try_from(id) else { return Ok(None) };
        let rows = self.rows(environment, |q| format!("{} WHERE id = $1", q.dag_run), &[&id]).await?;
        Ok(rows.first().map(dag_run))
    }

    async fn dag_run_by_run_id(
        &self,
        environment: &Environment,
        dag_id: &str,
        run_id: &str,
    ) -> Result<Option<DagRun>, AirflowError> {
        let sql = |q: &Queries| format!("{} WHERE dag_id = $1 AND run_id = $2", q.dag_run);
        let rows = self.rows(environment, sql, &[&dag_id, &run_id]).await?;
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
        let sql = |q: &Queries| format!("{}{conditions} ORDER BY end_date DESC NULLS LAST, id DESC LIMIT 1", q.dag_run);
        let rows = self.rows(environment, sql, &params).await?;
        Ok(rows.first().map(dag_run))
    }

    async fn task_instances(
        &self,
        environment: &Environment,
        runs: &[(String, String)],
    ) -> Result<Vec<TaskInstance>, AirflowError> {
        let dag_ids: Vec<&str> = runs.iter().map(|(dag_id, _)| dag_id.as_str()).collect();
        let run_ids: Vec<&str> = runs.iter().map(|(_, run_id)| run_id.as_str()).collect();
        let rows = self
            .read(environment, |client, queries| {
                let (dag_ids, run_ids) = (&dag_ids, &run_ids);
                async move {
                    let Some(sql) = &queries.task_instances else { return Ok(Vec::new()) };
                    let statement = client.prepare_cached(sql).await?;
                    client.query(&statement, &[dag_ids, run_ids]).await
                }
            })
            .await?;
        Ok(rows
            .iter()
            .map(|row| TaskInstance {
                dag_id: row.get("dag_id"),
                run_id: row.get("run_id"),
                task_id: row.get("task_id"),
                map_index: row.get("map_index"),
                state: row.get("state"),
                start_date: row.get("start_date"),
                end_date: row.get("end_date"),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(pairs: &[(&str, &str)]) -> HashSet<(String, String)> {
        pairs.iter().map(|(t, c)| ((*t).to_owned(), (*c).to_owned())).collect()
    }

    #[test]
    fn the_schema_is_told_from_the_columns() {
        let airflow_2_2 = columns(&[
            ("dag", "dag_id"),
            ("dag", "is_active"),
            ("dag", "schedule_interval"),
            ("dag_run", "id"),
            ("task_instance", "task_id"),
        ]);
        let queries = Queries::for_columns(&airflow_2_2).unwrap();
        assert!(
            queries.dag.contains("is_active AS is_active") && queries.dag.contains("schedule_interval AS schedule")
        );
        assert!(queries.dag_run.contains("NULL::timestamptz AS created_at"));
        assert!(queries.dag_run.contains("NULL::text AS note") && !queries.dag_run.contains("JOIN"));
        assert!(queries.task_instances.unwrap().contains("-1 AS map_index"));
        assert!(!queries.tracks_changes);
        assert_eq!(queries.schema, "Airflow 2 ()");

        let airflow_3 = columns(&[
            ("dag", "dag_id"),
            ("dag", "is_stale"),
            ("dag", "timetable_summary"),
            ("dag_run", "id"),
            ("dag_run", "created_at"),
            ("dag_run", "updated_at"),
            ("task_instance", "task_id"),
            ("task_instance", "map_index"),
            ("dag_run_note", "content"),
        ]);
        let queries = Queries::for_columns(&airflow_3).unwrap();
        assert!(
            queries.dag.contains("NOT is_stale AS is_active") && queries.dag.contains("timetable_summary AS schedule")
        );
        assert!(
            queries.dag_run.contains("created_at AS created_at")
                && queries.dag_run.contains("updated_at AS updated_at")
        );
        assert!(queries.tracks_changes);
        assert!(queries.schema.starts_with("Airflow 3 (dag.is_stale"));

        assert!(Queries::for_columns(&columns(&[("dag", "dag_id")])).is_none(), "no dag_run: not Airflow");
        let without_instances = columns(&[("dag", "dag_id"), ("dag_run", "id")]);
        assert!(Queries::for_columns(&without_instances).unwrap().task_instances.is_none());
    }
}
