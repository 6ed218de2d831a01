//! Job runs (contract §3): one per Airflow DAG run, listed across the account's environments.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;

use super::{Jade, backend, left_out, lookup_failed, unregistered};
use crate::domain::Error;
use crate::domain::catalog::Environment;
use crate::domain::job::{EnvironmentRef, Job};
use crate::domain::job_run::{DagRun, IndexedRun, JobRun, RunStatus, RunStep};
use crate::domain::paging::{Listing, Page, RunOrder, TimeRange};
use crate::ports::airflow::{AirflowError, AirflowRuns, DagRunCursor};
use crate::ports::registry::{JobKey, RunKey};
use crate::ports::run_index::{Environments, RunIndexQuery};

/// The filters of a run list, as dbt Cloud names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Job ids (`job_definition_id`, `job_definition_id__in`).
    pub job_definition_ids: Option<Vec<i64>>,
    pub environment_id: Option<i64>,
    /// `project_id`, `project_id__in`.
    pub project_ids: Option<Vec<i64>>,
    /// Status codes in the API's compat mode (`status`, `status__in`).
    pub statuses: Option<Vec<i64>>,
    /// `created_at__range`: the DAG run's `queued_at`.
    pub created_at: Option<TimeRange>,
    /// `finished_at__range`: the DAG run's `end_date` (unfinished runs never match).
    pub finished_at: Option<TimeRange>,
}

/// What a run answer embeds (`include_related`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Embed {
    /// The run's job.
    pub job: bool,
    /// The run's steps: its DAG run's task instances.
    pub run_steps: bool,
}

/// How far back each refresh reads `dag_run.updated_at` again before the latest change it
/// has seen: Airflow dates a change when its session flushes it, which may come before the
/// transaction commits, so a change dated before a refresh can become visible after it.
const CHANGE_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// Where the database does not record when runs change (Airflow before 2.5), every run is
/// read again at most this many refresh intervals apart, so a finished run that changed is
/// found then.
const SWEEP_EVERY: u32 = 60;

/// A DAG run found in one of the environments, with its job-run id.
struct Found<'a> {
    environment: &'a Environment,
    run: DagRun,
    id: i64,
}

/// When each environment's run index was last brought up to date by this process.
#[derive(Default)]
pub(super) struct IndexFreshness {
    environments: std::sync::Mutex<HashMap<i64, Arc<EnvironmentFreshness>>>,
}

#[derive(Default)]
struct EnvironmentFreshness {
    refreshed_at: std::sync::Mutex<Option<Instant>>,
    /// When every run was last read (see [`SWEEP_EVERY`]).
    swept_at: std::sync::Mutex<Option<Instant>>,
    /// Held while one request refreshes the environment's index.
    refreshing: tokio::sync::Mutex<()>,
}

impl IndexFreshness {
    fn of(&self, environment_id: i64) -> Arc<EnvironmentFreshness> {
        Arc::clone(self.environments.lock().unwrap_or_else(|e| e.into_inner()).entry(environment_id).or_default())
    }
}

impl EnvironmentFreshness {
    fn refreshed_at(&self) -> Option<Instant> {
        *self.refreshed_at.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn swept_at(&self) -> Option<Instant> {
        *self.swept_at.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Jade {
    /// One page of the account's runs. The run index is brought up to date from each
    /// environment's Airflow database (what changed since it last looked, at most once per
    /// `run_index_refresh`), concurrently; the page is cut in the index by one indexed query;
    /// then only the page's runs are read from Airflow. Environments whose database cannot be
    /// reached are left out with a warning.
    pub async fn runs(
        &self,
        account_id: i64,
        filter: &RunFilter,
        order: RunOrder,
        page: Page,
        embed: Embed,
    ) -> Result<Listing<JobRun>, Error> {
        let empty = Listing { items: Vec::new(), total_count: 0 };
        let Some(airflow) = self.airflow() else { return Ok(empty) };
        let mut environments = self.ports.catalog.environments(account_id).await.map_err(backend)?;
        if let Some(id) = filter.environment_id {
            environments.retain(|e| e.id == id);
        }
        if let Some(ids) = &filter.project_ids {
            environments.retain(|e| ids.contains(&e.project_id));
        }
        let statuses = filter.statuses.as_ref().map(|codes| {
            let mut statuses = Vec::new();
            for status in codes.iter().flat_map(|code| RunStatus::with_code(*code, self.settings.compat)) {
                if !statuses.contains(&status) {
                    statuses.push(status);
                }
            }
            statuses
        });
        let empty_list = |list: Option<usize>| list == Some(0);
        if environments.is_empty()
            || empty_list(statuses.as_ref().map(Vec::len))
            || empty_list(filter.job_definition_ids.as_ref().map(Vec::len))
        {
            return Ok(empty);
        }

        let refreshed =
            join_all(environments.iter().map(|e| self.refresh_run_index(airflow.as_ref(), account_id, e))).await;
        let mut readable = Vec::with_capacity(environments.len());
        let mut unreadable = Vec::new();
        for (environment, refreshed) in environments.into_iter().zip(refreshed) {
            match refreshed? {
                Ok(()) => readable.push(environment),
                Err(error) => {
                    left_out(&environment, &error, "runs");
                    unreadable.push(environment.id);
                }
            }
        }
        if readable.is_empty() {
            return Ok(empty);
        }
        let narrowed = filter.environment_id.is_some() || filter.project_ids.is_some();
        let query = RunIndexQuery {
            account_id,
            environments: if narrowed {
                Environments::Only(readable.iter().map(|e| e.id).collect())
            } else {
                Environments::AllBut(unreadable)
            },
            job_ids: filter.job_definition_ids.clone(),
            statuses,
            queued_at: filter.created_at,
            end_date: filter.finished_at,
            order,
            page,
        };
        let listing = self.ports.run_index.page(&query).await.map_err(backend)?;

        // The page's runs, read from their environments' databases by id, concurrently.
        let mut wanted: HashMap<i64, Vec<i64>> = HashMap::new();
        for entry in &listing.items {
            wanted.entry(entry.environment_id).or_default().push(entry.dag_run_id);
        }
        let reads: Vec<(&Environment, &Vec<i64>)> =
            readable.iter().filter_map(|e| Some((e, wanted.get(&e.id)?))).collect();
        let answers = join_all(reads.iter().map(|(e, ids)| airflow.dag_runs_by_ids(e, ids))).await;
        let mut runs: HashMap<(i64, i64), (&Environment, DagRun)> = HashMap::with_capacity(listing.items.len());
        for ((environment, _), answer) in reads.iter().zip(answers) {
            match answer {
                Ok(found) => runs.extend(found.into_iter().map(|run| ((environment.id, run.id), (*environment, run)))),
                Err(error) => left_out(environment, &error, "runs"),
            }
        }
        // A run deleted from Airflow since the index last looked is left out of this page.
        let found: Vec<Found> = listing
            .items
            .iter()
            .filter_map(|entry| {
                let (environment, run) = runs.remove(&(entry.environment_id, entry.dag_run_id))?;
                Some(Found { environment, run, id: entry.id })
            })
            .collect();
        let items = self.assemble(account_id, found, embed).await?;
        Ok(Listing { items, total_count: listing.total_count })
    }

    /// Brings the environment's run index up to date with its Airflow database, unless this
    /// process did so less than `run_index_refresh` ago. Read from Airflow: runs above the
    /// newest indexed id (new), runs the index holds as unfinished, and runs Airflow changed
    /// since the latest change the index has seen (`dag_run.updated_at`, less
    /// [`CHANGE_MARGIN`]: a finished run cleared, marked by hand); those that differ from the
    /// index are recorded. The environment is read whole and indexed anew when the count of
    /// runs at or below the newest indexed id differs from the index's (a DAG run committed
    /// late, runs deleted by `airflow db clean`), and every [`SWEEP_EVERY`] intervals where
    /// the database does not record changes. The outer error is the Jade database failing,
    /// the inner one the environment's Airflow database.
    async fn refresh_run_index(
        &self,
        airflow: &dyn AirflowRuns,
        account_id: i64,
        environment: &Environment,
    ) -> Result<Result<(), AirflowError>, Error> {
        let freshness = self.run_index_freshness.of(environment.id);
        let interval = self.settings.run_index_refresh;
        let fresh = || freshness.refreshed_at().is_some_and(|at| at.elapsed() < interval);
        if fresh() {
            return Ok(Ok(()));
        }
        // While another request refreshes an environment indexed before, this one answers
        // from the index as it is; only an environment not indexed yet waits for it.
        let _refreshing = match freshness.refreshing.try_lock() {
            Ok(guard) => guard,
            Err(_) if freshness.refreshed_at().is_some() => return Ok(Ok(())),
            Err(_) => {
                let guard = freshness.refreshing.lock().await;
                if fresh() {
                    return Ok(Ok(()));
                }
                guard
            }
        };
        let index = &self.ports.run_index;
        let indexed = index.indexed(environment.id).await.map_err(backend)?;
        let newest = indexed.newest.unwrap_or(0);
        let cursor = DagRunCursor {
            after: newest,
            recheck: indexed.unfinished.iter().map(|r| r.dag_run_id).collect(),
            changed_since: indexed.changes_seen.map(|seen| seen - CHANGE_MARGIN),
        };
        let changes = match airflow.dag_run_changes(environment, &cursor).await {
            Ok(changes) => changes,
            Err(error) => return Ok(Err(error)),
        };
        let sweep_due = !changes.tracks_changes
            && freshness.swept_at().is_none_or(|at| at.elapsed() >= interval.saturating_mul(SWEEP_EVERY));
        if changes.at_or_below == indexed.count && !sweep_due {
            let mut known: HashMap<i64, IndexedRun> =
                indexed.unfinished.into_iter().map(|r| (r.dag_run_id, r)).collect();
            // Runs indexed as finished that Airflow changed since: compared with the index.
            let finished: Vec<i64> =
                changes.runs.iter().map(|r| r.id).filter(|id| *id <= newest && !known.contains_key(id)).collect();
            if !finished.is_empty() {
                let runs = index.runs(environment.id, &finished).await.map_err(backend)?;
                known.extend(runs.into_iter().map(|r| (r.dag_run_id, r)));
            }
            let changed: Vec<IndexedRun> = changes
                .runs
                .iter()
                .map(IndexedRun::from)
                .filter(|run| !known.get(&run.dag_run_id).is_some_and(|indexed| indexed.holds(run)))
                .collect();
            let seen = changes.changed_up_to.filter(|up_to| indexed.changes_seen.is_none_or(|seen| *up_to > seen));
            if !changed.is_empty() || seen.is_some() {
                index.record(account_id, environment.id, &changed, false, seen).await.map_err(backend)?;
            }
        } else {
            if changes.at_or_below != indexed.count {
                tracing::info!(
                    environment = %environment.slug,
                    indexed = indexed.count,
                    airflow = changes.at_or_below,
                    "runs appeared or vanished below the newest indexed one; indexing the environment anew"
                );
            }
            let all = match airflow.dag_run_changes(environment, &DagRunCursor::default()).await {
                Ok(all) => all,
                Err(error) => return Ok(Err(error)),
            };
            let runs: Vec<IndexedRun> = all.runs.iter().map(IndexedRun::from).collect();
            index.record(account_id, environment.id, &runs, true, all.changed_up_to).await.map_err(backend)?;
            *freshness.swept_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
        *freshness.refreshed_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        Ok(Ok(()))
    }

    pub async fn run(&self, account_id: i64, id: i64, embed: Embed) -> Result<JobRun, Error> {
        let (environment, run) = self.dag_run_of(account_id, id).await?;
        let found = vec![Found { environment: &environment, run, id }];
        Ok(self.assemble(account_id, found, embed).await?.remove(0))
    }

    /// The environment and DAG run a job-run id of the account stands for (404 for an
    /// unknown run or one of another account).
    pub(super) async fn dag_run_of(&self, account_id: i64, job_run_id: i64) -> Result<(Environment, DagRun), Error> {
        let key = self.ports.registry.run_key(job_run_id).await.map_err(backend)?.ok_or_else(Error::not_found)?;
        let environment = self.environment(account_id, key.environment_id).await?;
        let airflow = self.airflow_for(&environment)?;
        let dag_run = airflow
            .dag_run(&environment, key.dag_run_id)
            .await
            .map_err(|e| lookup_failed(&environment, e))?
            .ok_or_else(Error::not_found)?;
        Ok((environment, dag_run))
    }

    /// The environment and DAG of a job of the account.
    pub(super) async fn job_of(&self, account_id: i64, job_id: i64) -> Result<(Environment, String), Error> {
        let mut keys = self.ports.registry.job_keys(&[job_id]).await.map_err(backend)?;
        let (environment_id, dag_id) = keys.remove(&job_id).ok_or_else(Error::not_found)?;
        Ok((self.environment(account_id, environment_id).await?, dag_id))
    }

    /// The newest successful run (by end date) across the project's environments.
    pub async fn latest_run(&self, account_id: i64, project_id: i64) -> Result<JobRun, Error> {
        let project = self.project(account_id, project_id).await?;
        let Some(airflow) = self.airflow() else { return Err(Error::not_found()) };
        let mut environments = self.ports.catalog.environments(account_id).await.map_err(backend)?;
        environments.retain(|e| e.project_id == project.id);
        let latest = join_all(environments.iter().map(|e| airflow.latest_dag_run(e, None, true))).await;
        let best = environments
            .iter()
            .zip(latest)
            .filter_map(|(environment, answer)| match answer {
                Ok(run) => run.map(|run| (environment, run)),
                Err(error) => {
                    left_out(environment, &error, "latest-run");
                    None
                }
            })
            .max_by(|(_, a), (_, b)| a.end_date.cmp(&b.end_date).then(a.id.cmp(&b.id)));
        let (environment, run) = best.ok_or_else(Error::not_found)?;
        Ok(self.render_runs(account_id, environment, vec![run]).await?.remove(0))
    }

    /// Renders DAG runs of one environment as job runs, registering them if needed.
    pub(super) async fn render_runs(
        &self,
        account_id: i64,
        environment: &Environment,
        runs: Vec<DagRun>,
    ) -> Result<Vec<JobRun>, Error> {
        let mut found: Vec<Found> = runs.into_iter().map(|run| Found { environment, run, id: 0 }).collect();
        self.assign_run_ids(&mut found).await?;
        self.assemble(account_id, found, Embed::default()).await
    }

    async fn assign_run_ids(&self, found: &mut [Found<'_>]) -> Result<(), Error> {
        let key = |f: &Found| RunKey { environment_id: f.environment.id, dag_run_id: f.run.id };
        let mut keys: Vec<RunKey> = found.iter().map(key).collect();
        keys.sort_unstable();
        keys.dedup();
        let ids = self.ports.registry.run_ids(&keys).await.map_err(backend)?;
        for f in found.iter_mut() {
            f.id = *ids.get(&key(f)).ok_or_else(|| unregistered("job run", key(f)))?;
        }
        Ok(())
    }

    /// Completes found runs into job runs: job ids, uploaded manifests, and what `embed`
    /// asks for.
    async fn assemble(&self, account_id: i64, found: Vec<Found<'_>>, embed: Embed) -> Result<Vec<JobRun>, Error> {
        let mut job_keys: Vec<JobKey> = found.iter().map(|f| (f.environment.id, f.run.dag_id.clone())).collect();
        job_keys.sort_unstable();
        job_keys.dedup();
        let run_ids: Vec<i64> = found.iter().map(|f| f.id).collect();
        let (job_ids, manifests, cancelled) = futures::try_join!(
            async { self.ports.registry.job_ids(&job_keys).await.map_err(backend) },
            async { self.ports.manifests.for_job_runs(account_id, &run_ids).await.map_err(backend) },
            async { self.ports.run_index.cancelled(&run_ids).await.map_err(backend) },
        )?;
        let (jobs, mut steps) = futures::join!(
            async { if embed.job { self.jobs_of(&found, &job_ids).await } else { HashMap::new() } },
            async { if embed.run_steps { self.steps_of(&found).await } else { HashMap::new() } },
        );
        found
            .into_iter()
            .map(|f| {
                let key = (f.environment.id, f.run.dag_id.clone());
                let job_id = *job_ids.get(&key).ok_or_else(|| unregistered("job", &key))?;
                let run_steps = embed.run_steps.then(|| {
                    let run_key = (f.environment.id, f.run.dag_id.clone(), f.run.run_id.clone().unwrap_or_default());
                    steps.remove(&run_key).unwrap_or_default()
                });
                let mut run = JobRun {
                    id: f.id,
                    job_id,
                    artifact_path: manifests.get(&f.id).map(|m| m.key()),
                    job: jobs.get(&key).cloned().map(Box::new),
                    run_steps,
                    dag_run: f.run,
                    environment: EnvironmentRef::from(f.environment),
                    href: None,
                    cancelled: cancelled.contains(&f.id),
                    status_message: None,
                };
                run.href = self.settings.airflow_ui_url_template.as_deref().map(|t| run.href(t));
                Ok(run)
            })
            .collect()
    }

    /// The steps of the found runs, for `include_related=run_steps`, by (environment id,
    /// dag_id, run_id): one read per environment. An environment whose task instances cannot
    /// be read is left out with a warning (its runs answer no steps).
    async fn steps_of(&self, found: &[Found<'_>]) -> HashMap<(i64, String, String), Vec<RunStep>> {
        let Some(airflow) = self.airflow().map(Arc::clone) else { return HashMap::new() };
        // By environment id: the environment and its runs' (dag_id, run_id).
        type Wanted<'a> = (&'a Environment, Vec<(String, String)>);
        let mut wanted: HashMap<i64, Wanted> = HashMap::new();
        for f in found {
            if let Some(run_id) = &f.run.run_id {
                wanted
                    .entry(f.environment.id)
                    .or_insert((f.environment, Vec::new()))
                    .1
                    .push((f.run.dag_id.clone(), run_id.clone()));
            }
        }
        let reads = wanted
            .values()
            .map(|(environment, runs)| async { (*environment, airflow.task_instances(environment, runs).await) });
        let mut instances: HashMap<(i64, String, String), Vec<_>> = HashMap::new();
        for (environment, answer) in join_all(reads).await {
            match answer {
                Ok(found) => {
                    for instance in found {
                        let key = (environment.id, instance.dag_id.clone(), instance.run_id.clone());
                        instances.entry(key).or_default().push(instance);
                    }
                }
                Err(error) => left_out(environment, &error, "run_steps"),
            }
        }
        instances.into_iter().map(|(key, instances)| (key, RunStep::of(instances))).collect()
    }

    /// The jobs of the found runs, for `include_related=job`; a DAG that cannot be read is
    /// left out (its runs render `job: null`).
    async fn jobs_of(&self, found: &[Found<'_>], job_ids: &HashMap<JobKey, i64>) -> HashMap<JobKey, Job> {
        let Some(airflow) = self.airflow().map(Arc::clone) else { return HashMap::new() };
        let mut wanted: Vec<(&Environment, &str)> =
            found.iter().map(|f| (f.environment, f.run.dag_id.as_str())).collect();
        wanted.sort_unstable_by_key(|(e, dag)| (e.id, *dag));
        wanted.dedup_by_key(|(e, dag)| (e.id, *dag));
        let dags = join_all(wanted.iter().map(|(e, dag)| airflow.dag(e, dag))).await;
        wanted
            .into_iter()
            .zip(dags)
            .filter_map(|((environment, dag_id), dag)| {
                let dag = dag.ok()??;
                let key = (environment.id, dag_id.to_owned());
                let id = *job_ids.get(&key)?;
                Some((key, Job::new(id, dag, EnvironmentRef::from(environment))))
            })
            .collect()
    }
}
