use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::ports::BackendError;
use crate::ports::registry::{IdRegistry, JobKey, RunKey};

#[derive(Default)]
pub struct MemoryRegistry {
    data: Mutex<Data>,
}

#[derive(Default)]
struct Data {
    runs: HashMap<RunKey, i64>,
    run_keys: HashMap<i64, RunKey>,
    jobs: HashMap<JobKey, i64>,
    job_keys: HashMap<i64, JobKey>,
}

#[async_trait]
impl IdRegistry for MemoryRegistry {
    async fn run_watermarks(&self, environment_ids: &[i64]) -> Result<HashMap<i64, i64>, BackendError> {
        let data = self.data.lock().unwrap();
        let mut marks = HashMap::new();
        for (environment_id, dag_run_id) in data.runs.keys() {
            if environment_ids.contains(environment_id) {
                let mark = marks.entry(*environment_id).or_insert(*dag_run_id);
                *mark = (*mark).max(*dag_run_id);
            }
        }
        Ok(marks)
    }

    async fn register_runs(&self, keys: &[RunKey]) -> Result<(), BackendError> {
        self.run_ids(keys).await.map(drop)
    }

    async fn run_ids(&self, keys: &[RunKey]) -> Result<HashMap<RunKey, i64>, BackendError> {
        let mut data = self.data.lock().unwrap();
        let mut ids = HashMap::with_capacity(keys.len());
        for key in keys {
            let next = data.runs.len() as i64 + 1;
            let id = *data.runs.entry(*key).or_insert(next);
            data.run_keys.insert(id, *key);
            ids.insert(*key, id);
        }
        Ok(ids)
    }

    async fn run_key(&self, id: i64) -> Result<Option<RunKey>, BackendError> {
        Ok(self.data.lock().unwrap().run_keys.get(&id).copied())
    }

    async fn job_ids(&self, keys: &[JobKey]) -> Result<HashMap<JobKey, i64>, BackendError> {
        let mut data = self.data.lock().unwrap();
        let mut ids = HashMap::with_capacity(keys.len());
        for key in keys {
            let next = data.jobs.len() as i64 + 1;
            let id = *data.jobs.entry(key.clone()).or_insert(next);
            data.job_keys.insert(id, key.clone());
            ids.insert(key.clone(), id);
        }
        Ok(ids)
    }

    async fn job_keys(&self, ids: &[i64]) -> Result<HashMap<i64, JobKey>, BackendError> {
        let data = self.data.lock().unwrap();
        Ok(ids.iter().filter_map(|id| Some((*id, data.job_keys.get(id)?.clone()))).collect())
    }
}
