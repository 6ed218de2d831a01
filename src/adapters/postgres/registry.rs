//! `job_ids` and `job_run_ids`: ids assigned with `INSERT … ON CONFLICT DO NOTHING`, one
//! statement per batch, so concurrent requests and replicas agree on every id.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;

use async_trait::async_trait;
use moka::sync::Cache;

use super::{JadeDatabase, db, int4};
use crate::ports::BackendError;
use crate::ports::registry::{IdRegistry, JobKey, RunKey};

/// Namespace of the per-environment transaction locks that serialize run registration and
/// run-index writes of one environment across requests and replicas (the second key is the
/// environment id).
pub(super) const RUN_LOCK: i32 = 0x4A41_4445;

fn columns(keys: &[RunKey]) -> Result<(Vec<i32>, Vec<i32>), BackendError> {
    let mut environments = Vec::with_capacity(keys.len());
    let mut runs = Vec::with_capacity(keys.len());
    for key in keys {
        environments.push(int4(key.environment_id)?);
        runs.push(int4(key.dag_run_id)?);
    }
    Ok((environments, runs))
}

fn run_key(environment_id: i32, dag_run_id: i32) -> RunKey {
    RunKey { environment_id: i64::from(environment_id), dag_run_id: i64::from(dag_run_id) }
}

/// The ids of `keys`: those in `cache`, and the rest as `read` finds them (then kept).
async fn cached<K, F, Fut>(cache: &Cache<K, i64>, keys: &[K], read: F) -> Result<HashMap<K, i64>, BackendError>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    F: FnOnce(Vec<K>) -> Fut,
    Fut: Future<Output = Result<Vec<(K, i64)>, BackendError>>,
{
    let mut known = HashMap::with_capacity(keys.len());
    let mut missing = Vec::new();
    for key in keys {
        match cache.get(key) {
            Some(id) => {
                known.insert(key.clone(), id);
            }
            None => missing.push(key.clone()),
        }
    }
    if !missing.is_empty() {
        for (key, id) in read(missing).await? {
            cache.insert(key.clone(), id);
            known.insert(key, id);
        }
    }
    Ok(known)
}

impl JadeDatabase {
    /// The registered ids among `keys`, from the cache or else the database.
    async fn known_runs(&self, keys: &[RunKey]) -> Result<HashMap<RunKey, i64>, BackendError> {
        cached(&self.run_ids, keys, |missing| self.read_runs(missing)).await
    }

    async fn read_runs(&self, keys: Vec<RunKey>) -> Result<Vec<(RunKey, i64)>, BackendError> {
        let (environments, runs) = columns(&keys)?;
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT j.id, j.environment_id, j.dag_run_id FROM job_run_ids j \
                 JOIN unnest($1::int4[], $2::int4[]) AS k(e, r) \
                   ON j.environment_id = k.e AND j.dag_run_id = k.r",
            )
            .await
            .map_err(db)?;
        let rows = client.query(&statement, &[&environments, &runs]).await.map_err(db)?;
        Ok(rows.iter().map(|row| (run_key(row.get(1), row.get(2)), row.get::<_, i64>(0))).collect())
    }

    /// Registers the runs that have no id yet, in the order given, under the environments'
    /// locks.
    async fn register_runs(&self, keys: &[RunKey]) -> Result<(), BackendError> {
        if keys.is_empty() {
            return Ok(());
        }
        let (environments, runs) = columns(keys)?;
        let mut locked: Vec<i32> = environments.clone();
        locked.sort_unstable();
        locked.dedup();
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(db)?;
        // Environments are locked in ascending order, so concurrent registrations cannot
        // deadlock; within the lock the rows are inserted in the order given.
        transaction
            .execute("SELECT pg_advisory_xact_lock($1, e) FROM unnest($2::int4[]) AS e", &[&RUN_LOCK, &locked])
            .await
            .map_err(db)?;
        transaction
            .execute(
                "INSERT INTO job_run_ids (environment_id, dag_run_id) \
                 SELECT e, r FROM unnest($1::int4[], $2::int4[]) WITH ORDINALITY AS k(e, r, n) ORDER BY n \
                 ON CONFLICT (environment_id, dag_run_id) DO NOTHING",
                &[&environments, &runs],
            )
            .await
            .map_err(db)?;
        transaction.commit().await.map_err(db)
    }

    /// The registered ids among `keys`, from the cache or else the database.
    async fn known_jobs(&self, keys: &[JobKey]) -> Result<HashMap<JobKey, i64>, BackendError> {
        cached(&self.job_ids, keys, |missing| self.read_jobs(missing)).await
    }

    async fn read_jobs(&self, keys: Vec<JobKey>) -> Result<Vec<(JobKey, i64)>, BackendError> {
        let environments = keys.iter().map(|(e, _)| int4(*e)).collect::<Result<Vec<_>, _>>()?;
        let dags: Vec<&str> = keys.iter().map(|(_, d)| d.as_str()).collect();
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT j.id, j.environment_id, j.dag_id FROM job_ids j \
                 JOIN unnest($1::int4[], $2::text[]) AS k(e, d) ON j.environment_id = k.e AND j.dag_id = k.d",
            )
            .await
            .map_err(db)?;
        let rows = client.query(&statement, &[&environments, &dags]).await.map_err(db)?;
        Ok(rows
            .iter()
            .map(|row| ((i64::from(row.get::<_, i32>(1)), row.get::<_, String>(2)), row.get::<_, i64>(0)))
            .collect())
    }
}

#[async_trait]
impl IdRegistry for JadeDatabase {
    async fn ping(&self) -> Result<(), BackendError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(db)?;
        Ok(())
    }

    async fn run_ids(&self, keys: &[RunKey]) -> Result<HashMap<RunKey, i64>, BackendError> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let mut ids = self.known_runs(keys).await?;
        let missing: Vec<RunKey> = keys.iter().filter(|k| !ids.contains_key(k)).copied().collect();
        if !missing.is_empty() {
            self.register_runs(&missing).await?;
            ids.extend(self.known_runs(&missing).await?);
        }
        Ok(ids)
    }

    async fn run_key(&self, id: i64) -> Result<Option<RunKey>, BackendError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT environment_id, dag_run_id FROM job_run_ids WHERE id = $1")
            .await
            .map_err(db)?;
        let row = client.query_opt(&statement, &[&id]).await.map_err(db)?;
        Ok(row.and_then(|row| Some(run_key(row.get::<_, Option<i32>>(0)?, row.get::<_, Option<i32>>(1)?))))
    }

    async fn job_ids(&self, keys: &[JobKey]) -> Result<HashMap<JobKey, i64>, BackendError> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let mut ids = self.known_jobs(keys).await?;
        let missing: Vec<&JobKey> = keys.iter().filter(|k| !ids.contains_key(*k)).collect();
        if !missing.is_empty() {
            let environments = missing.iter().map(|(e, _)| int4(*e)).collect::<Result<Vec<_>, _>>()?;
            let dags: Vec<&str> = missing.iter().map(|(_, d)| d.as_str()).collect();
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO job_ids (environment_id, dag_id) \
                     SELECT e, d FROM unnest($1::int4[], $2::text[]) WITH ORDINALITY AS k(e, d, n) ORDER BY n \
                     ON CONFLICT (environment_id, dag_id) DO NOTHING",
                    &[&environments, &dags],
                )
                .await
                .map_err(db)?;
            drop(client);
            let missing: Vec<JobKey> = missing.into_iter().cloned().collect();
            ids.extend(self.known_jobs(&missing).await?);
        }
        Ok(ids)
    }

    async fn job_keys(&self, ids: &[i64]) -> Result<HashMap<i64, JobKey>, BackendError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT id, environment_id, dag_id FROM job_ids WHERE id = ANY($1)")
            .await
            .map_err(db)?;
        let rows = client.query(&statement, &[&ids]).await.map_err(db)?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let environment_id = row.get::<_, Option<i32>>(1)?;
                let dag_id = row.get::<_, Option<String>>(2)?;
                Some((row.get::<_, i64>(0), (i64::from(environment_id), dag_id)))
            })
            .collect())
    }
}
