//! Job runs (contract §3): one per Airflow DAG run, listed across the account's environments.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::join_all;

use super::{Jade, backend, left_out, lookup_failed};
use crate::domain::Error;
use crate::domain::catalog::Environment;
use crate::domain::job::{EnvironmentRef, Job};
use crate::domain::job_run::{self, DagRun, DagRunFilter, JobRun, RunStatus};
use crate::domain::paging::{Listing, Page, RunOrder};
use crate::ports::airflow::{AirflowRuns, DagRunQuery};
use crate::ports::registry::{JobKey, RunKey};

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
}

/// A DAG run found in one of the environments, with its job-run id once known.
struct Found<'a> {
    environment: &'a Environment,
    run: DagRun,
    id: i64,
}

impl Jade {
    /// One page of the account's runs. Each environment's database is asked for its first
    /// `offset + limit` matching runs in the requested order and their count, concurrently;
    /// the answers are merged, and ids are looked up for the page's candidates only.
    /// Environments whose database cannot be reached are left out with a warning.
    pub async fn runs(
        &self,
        account_id: i64,
        filter: &RunFilter,
        order: RunOrder,
        page: Page,
        include_job: bool,
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
        let mut dags_of: Option<HashMap<i64, Vec<String>>> = None;
        if let Some(ids) = &filter.job_definition_ids {
            let keys = self.ports.registry.job_keys(ids).await.map_err(backend)?;
            let mut dags: HashMap<i64, Vec<String>> = HashMap::new();
            for (environment_id, dag_id) in keys.into_values() {
                dags.entry(environment_id).or_default().push(dag_id);
            }
            environments.retain(|e| dags.contains_key(&e.id));
            dags_of = Some(dags);
        }
        let statuses = filter.statuses.as_ref().map(|codes| {
            let mut statuses = Vec::new();
            for status in codes.iter().filter_map(|code| RunStatus::from_code(*code, self.settings.compat)) {
                if !statuses.contains(&status) {
                    statuses.push(status);
                }
            }
            statuses
        });
        let base = DagRunFilter { dag_ids: None, statuses };
        if environments.is_empty() || base.matches_nothing() {
            return Ok(empty);
        }

        let queries: Vec<DagRunQuery> = environments
            .iter()
            .map(|environment| DagRunQuery {
                filter: DagRunFilter {
                    dag_ids: dags_of.as_ref().map(|dags| dags[&environment.id].clone()),
                    statuses: base.statuses.clone(),
                },
                order,
                limit: page.end(),
            })
            .collect();
        let ids: Vec<i64> = environments.iter().map(|e| e.id).collect();
        let (watermarks, answers) = futures::join!(
            self.ports.registry.run_watermarks(&ids),
            join_all(environments.iter().zip(&queries).map(|(e, q)| airflow.dag_runs(e, q)))
        );
        let watermarks = watermarks.map_err(backend)?;

        let mut total_count = 0;
        let mut found = Vec::new();
        let mut grown = Vec::new();
        for (environment, answer) in environments.iter().zip(answers) {
            match answer {
                Ok(answer) => {
                    if answer.newest_id > watermarks.get(&environment.id).copied() {
                        grown.push(environment.clone());
                    }
                    total_count += answer.total;
                    found.extend(answer.runs.into_iter().map(|run| Found { environment, run, id: 0 }));
                }
                Err(error) => left_out(environment, &error, "runs"),
            }
        }
        // Runs added since the registry last looked get their ids before any is looked up.
        if !grown.is_empty() {
            self.register_new_runs(airflow.as_ref(), &grown, &watermarks).await?;
        }
        self.assign_run_ids(&mut found).await?;
        found.sort_by(|a, b| job_run::compare(order, (&a.run, a.id), (&b.run, b.id)));
        let found = page.slice(found);
        let items = self.assemble(account_id, found, include_job).await?;
        Ok(Listing { items, total_count })
    }

    pub async fn run(&self, account_id: i64, id: i64, include_job: bool) -> Result<JobRun, Error> {
        let (environment_id, dag_run_id) =
            self.ports.registry.run_key(id).await.map_err(backend)?.ok_or_else(Error::not_found)?;
        let environment = self.environment(account_id, environment_id).await?;
        let airflow = self.airflow_for(&environment)?;
        let run = airflow
            .dag_run(&environment, dag_run_id)
            .await
            .map_err(|e| lookup_failed(&environment, e))?
            .ok_or_else(Error::not_found)?;
        let found = vec![Found { environment: &environment, run, id }];
        Ok(self.assemble(account_id, found, include_job).await?.remove(0))
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
        self.assemble(account_id, found, false).await
    }

    /// Registers the environments' runs that have no id yet, oldest first, so that within an
    /// environment job-run ids grow with DAG run ids and paging by id is stable.
    pub(super) async fn sync_runs(&self, airflow: &dyn AirflowRuns, environments: &[Environment]) -> Result<(), Error> {
        let ids: Vec<i64> = environments.iter().map(|e| e.id).collect();
        let watermarks = self.ports.registry.run_watermarks(&ids).await.map_err(backend)?;
        self.register_new_runs(airflow, environments, &watermarks).await
    }

    /// Registers each environment's runs above its watermark (the highest registered DAG run
    /// id), in one batch.
    async fn register_new_runs(
        &self,
        airflow: &dyn AirflowRuns,
        environments: &[Environment],
        watermarks: &HashMap<i64, i64>,
    ) -> Result<(), Error> {
        let new = join_all(environments.iter().map(|environment| {
            airflow.dag_run_ids_after(environment, watermarks.get(&environment.id).copied().unwrap_or(0))
        }))
        .await;
        // An unreachable environment is reported by the read that follows.
        let keys: Vec<RunKey> = environments
            .iter()
            .zip(new)
            .filter_map(|(environment, ids)| Some(ids.ok()?.into_iter().map(|id| (environment.id, id))))
            .flatten()
            .collect();
        if !keys.is_empty() {
            self.ports.registry.register_runs(&keys).await.map_err(backend)?;
        }
        Ok(())
    }

    async fn assign_run_ids(&self, found: &mut [Found<'_>]) -> Result<(), Error> {
        let mut keys: Vec<RunKey> = found.iter().map(|f| (f.environment.id, f.run.id)).collect();
        keys.sort_unstable();
        keys.dedup();
        let ids = self.ports.registry.run_ids(&keys).await.map_err(backend)?;
        for f in found.iter_mut() {
            f.id = ids[&(f.environment.id, f.run.id)];
        }
        Ok(())
    }

    /// Completes found runs into job runs: job ids, uploaded manifests, and (with
    /// `include_job`) the jobs themselves.
    async fn assemble(&self, account_id: i64, found: Vec<Found<'_>>, include_job: bool) -> Result<Vec<JobRun>, Error> {
        let mut job_keys: Vec<JobKey> = found.iter().map(|f| (f.environment.id, f.run.dag_id.clone())).collect();
        job_keys.sort_unstable();
        job_keys.dedup();
        let run_ids: Vec<i64> = found.iter().map(|f| f.id).collect();
        let (job_ids, manifests) =
            futures::try_join!(async { self.ports.registry.job_ids(&job_keys).await.map_err(backend) }, async {
                self.ports.manifests.for_job_runs(account_id, &run_ids).await.map_err(backend)
            },)?;
        let jobs = if include_job { self.jobs_of(&found, &job_ids).await } else { HashMap::new() };
        Ok(found
            .into_iter()
            .map(|f| {
                let key = (f.environment.id, f.run.dag_id.clone());
                JobRun {
                    id: f.id,
                    job_id: job_ids[&key],
                    artifact_path: manifests.get(&f.id).map(|m| m.key()),
                    job: jobs.get(&key).cloned().map(Box::new),
                    dag_run: f.run,
                    environment: EnvironmentRef::from(f.environment),
                }
            })
            .collect())
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
                Some((key.clone(), Job::new(job_ids[&key], dag, EnvironmentRef::from(environment))))
            })
            .collect()
    }
}
