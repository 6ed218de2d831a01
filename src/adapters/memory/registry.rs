use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::domain::catalog::Timestamp;
use crate::domain::job_run::{self, IndexedRun, RunStatus};
use crate::domain::paging::Listing;
use crate::ports::BackendError;
use crate::ports::registry::{IdRegistry, JobKey, RunKey};
use crate::ports::run_index::{Environments, IndexEntry, IndexedEnvironment, RunIndex, RunIndexQuery};

/// The id registries and the run index, in memory.
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
    /// By job-run id: (account id, environment id, job id, the run).
    index: HashMap<i64, (i64, i64, i64, IndexedRun)>,
    /// By environment id: the latest change recorded.
    changes_seen: HashMap<i64, Timestamp>,
    /// Job-run ids of runs cancelled through Jade.
    cancelled: HashSet<i64>,
}

impl Data {
    fn run_id(&mut self, key: RunKey) -> i64 {
        let next = self.runs.len() as i64 + 1;
        let id = *self.runs.entry(key).or_insert(next);
        self.run_keys.insert(id, key);
        id
    }

    fn job_id(&mut self, key: &JobKey) -> i64 {
        let next = self.jobs.len() as i64 + 1;
        let id = *self.jobs.entry(key.clone()).or_insert(next);
        self.job_keys.insert(id, key.clone());
        id
    }
}

#[async_trait]
impl IdRegistry for MemoryRegistry {
    async fn ping(&self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn run_ids(&self, keys: &[RunKey]) -> Result<HashMap<RunKey, i64>, BackendError> {
        let mut data = self.data.lock().unwrap();
        Ok(keys.iter().map(|key| (*key, data.run_id(*key))).collect())
    }

    async fn run_key(&self, id: i64) -> Result<Option<RunKey>, BackendError> {
        Ok(self.data.lock().unwrap().run_keys.get(&id).copied())
    }

    async fn job_ids(&self, keys: &[JobKey]) -> Result<HashMap<JobKey, i64>, BackendError> {
        let mut data = self.data.lock().unwrap();
        Ok(keys.iter().map(|key| (key.clone(), data.job_id(key))).collect())
    }

    async fn job_keys(&self, ids: &[i64]) -> Result<HashMap<i64, JobKey>, BackendError> {
        let data = self.data.lock().unwrap();
        Ok(ids.iter().filter_map(|id| Some((*id, data.job_keys.get(id)?.clone()))).collect())
    }
}

#[async_trait]
impl RunIndex for MemoryRegistry {
    async fn indexed(&self, environment_id: i64) -> Result<IndexedEnvironment, BackendError> {
        let data = self.data.lock().unwrap();
        let mut indexed = IndexedEnvironment::default();
        for (_, _, _, run) in data.index.values().filter(|(_, e, _, _)| *e == environment_id) {
            indexed.newest = indexed.newest.max(Some(run.dag_run_id));
            indexed.count += 1;
            if !run.status.is_finished() {
                indexed.unfinished.push(run.clone());
            }
        }
        indexed.unfinished.sort_by_key(|r| r.dag_run_id);
        indexed.changes_seen = data.changes_seen.get(&environment_id).copied();
        Ok(indexed)
    }

    async fn runs(&self, environment_id: i64, dag_run_ids: &[i64]) -> Result<Vec<IndexedRun>, BackendError> {
        let data = self.data.lock().unwrap();
        Ok(data
            .index
            .values()
            .filter(|(_, e, _, run)| *e == environment_id && dag_run_ids.contains(&run.dag_run_id))
            .map(|(_, _, _, run)| run.clone())
            .collect())
    }

    async fn record(
        &self,
        account_id: i64,
        environment_id: i64,
        runs: &[IndexedRun],
        complete: bool,
        changes_seen: Option<Timestamp>,
    ) -> Result<(), BackendError> {
        let mut data = self.data.lock().unwrap();
        if let Some(seen) = changes_seen {
            let known = data.changes_seen.entry(environment_id).or_insert(seen);
            *known = (*known).max(seen);
        }
        let mut sorted: Vec<&IndexedRun> = runs.iter().collect();
        sorted.sort_by_key(|r| r.dag_run_id);
        let mut kept = Vec::with_capacity(sorted.len());
        for run in sorted {
            let id = data.run_id(RunKey { environment_id, dag_run_id: run.dag_run_id });
            let job_id = data.job_id(&(environment_id, run.dag_id.clone()));
            let mut run = run.clone();
            if run.status == RunStatus::Error && data.cancelled.contains(&id) {
                run.status = RunStatus::Cancelled;
            }
            data.index.insert(id, (account_id, environment_id, job_id, run));
            kept.push(id);
        }
        if complete {
            data.index.retain(|id, (_, environment, _, _)| *environment != environment_id || kept.contains(id));
        }
        Ok(())
    }

    async fn cancel(&self, job_run_id: i64, _by: Option<&str>) -> Result<(), BackendError> {
        let mut data = self.data.lock().unwrap();
        data.cancelled.insert(job_run_id);
        if let Some((_, _, _, run)) = data.index.get_mut(&job_run_id)
            && run.status == RunStatus::Error
        {
            run.status = RunStatus::Cancelled;
        }
        Ok(())
    }

    async fn cancelled(&self, job_run_ids: &[i64]) -> Result<HashSet<i64>, BackendError> {
        let data = self.data.lock().unwrap();
        Ok(job_run_ids.iter().copied().filter(|id| data.cancelled.contains(id)).collect())
    }

    async fn page(&self, query: &RunIndexQuery) -> Result<Listing<IndexEntry>, BackendError> {
        let data = self.data.lock().unwrap();
        let mut matching: Vec<(i64, i64, &IndexedRun)> = data
            .index
            .iter()
            .filter(|(_, (account, environment, job, run))| {
                *account == query.account_id
                    && match &query.environments {
                        Environments::Only(ids) => ids.contains(environment),
                        Environments::AllBut(ids) => !ids.contains(environment),
                    }
                    && query.job_ids.as_ref().is_none_or(|ids| ids.contains(job))
                    && query.statuses.as_ref().is_none_or(|s| s.contains(&run.status))
                    && query.queued_at.is_none_or(|range| range.contains(run.queued_at))
                    && query.end_date.is_none_or(|range| range.contains(run.end_date))
            })
            .map(|(id, (_, environment, _, run))| (*id, *environment, run))
            .collect();
        matching.sort_by(|a, b| job_run::compare(query.order, (a.2, a.0), (b.2, b.0)));
        let entries = matching
            .into_iter()
            .map(|(id, environment_id, run)| IndexEntry { id, environment_id, dag_run_id: run.dag_run_id })
            .collect();
        Ok(Listing::paged(entries, query.page))
    }
}
