//! Prometheus metrics (contract §9): the recorder, the storage decorator and the pool
//! gauges. Labels hold route templates, methods, statuses, database and backend names:
//! never a path, a slug, a token or a query string.

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::ports::storage::{Blob, BlobSource, BlobStorage, Stat, StorageError};

/// Seconds: from 1 ms to 60 s.
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// The process's Prometheus recorder, installed on first use. `None` when another recorder
/// was installed first.
pub fn handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new().set_buckets(LATENCY_BUCKETS).ok()?;
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
                Err(error) => {
                    tracing::warn!(%error, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

/// The exposition text, the pool gauges sampled first.
pub fn render(handle: &PrometheusHandle) -> String {
    sample_pools();
    handle.run_upkeep();
    handle.render()
}

/// One sampler per pool: `(database label, sample)`; a sampler answering `None` (its pool
/// was dropped) is forgotten.
type Sampler = Box<dyn Fn() -> Option<PoolStatus> + Send>;

static POOLS: Mutex<Vec<(&'static str, Sampler)>> = Mutex::new(Vec::new());

#[derive(Debug, Default, Clone, Copy)]
pub struct PoolStatus {
    pub max_size: usize,
    pub size: usize,
    pub available: usize,
    pub waiting: usize,
}

/// Samples `pool` at every scrape under `database` (pools of one label add up) while it lives.
#[cfg(any(feature = "postgres", feature = "airflow"))]
pub fn watch_pool(database: &'static str, pool: &deadpool_postgres::Pool) {
    let weak = pool.weak();
    let sampler: Sampler = Box::new(move || {
        let status = weak.upgrade()?.status();
        Some(PoolStatus {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        })
    });
    POOLS.lock().unwrap_or_else(|e| e.into_inner()).push((database, sampler));
}

fn sample_pools() {
    let mut totals: std::collections::BTreeMap<&'static str, (PoolStatus, usize)> = Default::default();
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    pools.retain(|(database, sampler)| match sampler() {
        Some(status) => {
            let (total, count) = totals.entry(database).or_default();
            total.max_size += status.max_size;
            total.size += status.size;
            total.available += status.available;
            total.waiting += status.waiting;
            *count += 1;
            true
        }
        None => false,
    });
    drop(pools);
    for (database, (status, count)) in totals {
        metrics::gauge!("jade_db_pool_max_connections", "database" => database).set(status.max_size as f64);
        metrics::gauge!("jade_db_pool_connections", "database" => database).set(status.size as f64);
        metrics::gauge!("jade_db_pool_idle_connections", "database" => database).set(status.available as f64);
        metrics::gauge!("jade_db_pool_waiting", "database" => database).set(status.waiting as f64);
        metrics::gauge!("jade_db_pools", "database" => database).set(count as f64);
    }
}

/// Records how long a pool made a caller wait for a connection.
pub fn pool_wait(database: &'static str, started: Instant) {
    metrics::histogram!("jade_db_pool_wait_seconds", "database" => database).record(started.elapsed().as_secs_f64());
}

/// A [`BlobStorage`] that records each operation's latency, outcome and bytes.
pub struct MeteredStorage<S: ?Sized> {
    inner: std::sync::Arc<S>,
}

impl<S: BlobStorage + ?Sized> MeteredStorage<S> {
    pub fn new(inner: std::sync::Arc<S>) -> Self {
        MeteredStorage { inner }
    }

    fn record<T>(&self, operation: &'static str, started: Instant, result: &Result<T, StorageError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(StorageError::NotFound) => "not_found",
            Err(_) => "error",
        };
        let backend = self.inner.backend();
        metrics::histogram!(
            "jade_storage_operation_duration_seconds",
            "backend" => backend, "operation" => operation, "outcome" => outcome
        )
        .record(started.elapsed().as_secs_f64());
    }

    fn bytes(&self, direction: &'static str, bytes: u64) {
        metrics::counter!("jade_storage_bytes_total", "backend" => self.inner.backend(), "direction" => direction)
            .increment(bytes);
    }
}

#[async_trait]
impl<S: BlobStorage + ?Sized> BlobStorage for MeteredStorage<S> {
    async fn put(&self, key: &str, source: BlobSource) -> Result<(), StorageError> {
        let started = Instant::now();
        let len = source.len();
        let result = self.inner.put(key, source).await;
        self.record("put", started, &result);
        if result.is_ok() {
            self.bytes("written", len);
        }
        result
    }

    async fn get(&self, key: &str) -> Result<Blob, StorageError> {
        use futures::StreamExt;
        let started = Instant::now();
        let result = self.inner.get(key).await;
        self.record("get", started, &result);
        let blob = result?;
        let counter =
            metrics::counter!("jade_storage_bytes_total", "backend" => self.inner.backend(), "direction" => "read");
        let body = blob
            .body
            .inspect(move |chunk| {
                if let Ok(chunk) = chunk {
                    counter.increment(chunk.len() as u64);
                }
            })
            .boxed();
        Ok(Blob { len: blob.len, body })
    }

    async fn stat(&self, key: &str) -> Result<Stat, StorageError> {
        let started = Instant::now();
        let result = self.inner.stat(key).await;
        self.record("stat", started, &result);
        result
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let started = Instant::now();
        let result = self.inner.delete(key).await;
        self.record("delete", started, &result);
        result
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let started = Instant::now();
        let result = self.inner.list(prefix).await;
        self.record("list", started, &result);
        result
    }

    async fn ping(&self) -> Result<(), StorageError> {
        let started = Instant::now();
        let result = self.inner.ping().await;
        self.record("ping", started, &result);
        result
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn keeps_spool_files(&self) -> bool {
        self.inner.keeps_spool_files()
    }
}
