//! Jobs (contract §3): one per Airflow DAG of each of the account's environments.

use std::cmp::Ordering;

use futures::future::join_all;

use super::{Jade, backend, left_out, lookup_failed, unregistered};
use crate::domain::Error;
use crate::domain::job::{Dag, EnvironmentRef, Job};
use crate::domain::paging::{JobOrder, JobSort, Listing, Page, icontains};
use crate::ports::registry::JobKey;

/// The filters of a job list, as dbt Cloud names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// `project_id`, `project_id__in`.
    pub project_ids: Option<Vec<i64>>,
    pub environment_id: Option<i64>,
    /// `name__icontains`
    pub name_icontains: Option<String>,
    /// 1 active; 2 (dbt Cloud) or 0 (the first Jade) inactive.
    pub state: Option<i64>,
}

impl JobFilter {
    fn matches(&self, dag: &Dag) -> bool {
        let active = dag.is_active.unwrap_or(true);
        self.name_icontains.as_deref().is_none_or(|n| icontains(Some(&dag.dag_id), n))
            && self.state.is_none_or(|state| match state {
                1 => active,
                0 | 2 => !active,
                _ => false,
            })
    }
}

impl Jade {
    /// The account's jobs. Environments are read concurrently; one whose database cannot be
    /// reached is left out with a warning.
    pub async fn jobs(
        &self,
        account_id: i64,
        filter: &JobFilter,
        order: JobOrder,
        page: Page,
    ) -> Result<Listing<Job>, Error> {
        let Some(airflow) = self.airflow() else { return Ok(Listing { items: Vec::new(), total_count: 0 }) };
        let mut environments = self.ports.catalog.environments(account_id).await.map_err(backend)?;
        environments.retain(|e| {
            filter.project_ids.as_ref().is_none_or(|ids| ids.contains(&e.project_id))
                && filter.environment_id.is_none_or(|id| e.id == id)
        });
        let answers = join_all(environments.iter().map(|e| airflow.dags(e))).await;
        let mut found = Vec::new();
        for (environment, answer) in environments.iter().zip(answers) {
            match answer {
                Ok(dags) => {
                    found.extend(dags.into_iter().filter(|dag| filter.matches(dag)).map(|dag| (environment, dag)))
                }
                Err(error) => left_out(environment, &error, "jobs"),
            }
        }
        let keys: Vec<JobKey> = found.iter().map(|(e, dag)| (e.id, dag.dag_id.clone())).collect();
        let ids = self.ports.registry.job_ids(&keys).await.map_err(backend)?;
        let mut jobs: Vec<Job> = found
            .into_iter()
            .map(|(environment, dag)| {
                let key = (environment.id, dag.dag_id.clone());
                let id = *ids.get(&key).ok_or_else(|| unregistered("job", &key))?;
                Ok(Job::new(id, dag, EnvironmentRef::from(environment)))
            })
            .collect::<Result<_, Error>>()?;
        jobs.sort_by(|a, b| compare_jobs(order, a, b));
        Ok(Listing::paged(jobs, page))
    }

    /// One job with its most recent run and its most recent successful run.
    pub async fn job(&self, account_id: i64, id: i64) -> Result<Job, Error> {
        let (environment_id, dag_id) =
            self.ports.registry.job_keys(&[id]).await.map_err(backend)?.remove(&id).ok_or_else(Error::not_found)?;
        let environment = self.environment(account_id, environment_id).await?;
        let airflow = self.airflow_for(&environment)?;
        let failed = |e| lookup_failed(&environment, e);
        let (dag, recent, completed) = futures::try_join!(
            async { airflow.dag(&environment, &dag_id).await.map_err(failed) },
            async { airflow.latest_dag_run(&environment, Some(&dag_id), false).await.map_err(failed) },
            async { airflow.latest_dag_run(&environment, Some(&dag_id), true).await.map_err(failed) },
        )?;
        let mut job = Job::new(id, dag.ok_or_else(Error::not_found)?, EnvironmentRef::from(&environment));
        let (has_recent, has_completed) = (recent.is_some(), completed.is_some());
        let runs: Vec<_> = recent.into_iter().chain(completed).collect();
        if !runs.is_empty() {
            let mut runs = self.render_runs(account_id, &environment, runs).await?.into_iter().map(Box::new);
            job.most_recent_run = if has_recent { runs.next() } else { None };
            job.most_recent_completed_run = if has_completed { runs.next() } else { None };
        }
        Ok(job)
    }
}

fn compare_jobs(order: JobOrder, a: &Job, b: &Job) -> Ordering {
    let primary = match order.field {
        JobSort::Id => Ordering::Equal,
        JobSort::Name => a.dag.dag_id.cmp(&b.dag.dag_id),
        // Both are the DAG's last parse time; jobs never parsed sort last.
        JobSort::CreatedAt | JobSort::UpdatedAt => match (a.dag.last_parsed_time, b.dag.last_parsed_time) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => return Ordering::Less,
            (None, Some(_)) => return Ordering::Greater,
            (None, None) => Ordering::Equal,
        },
    };
    let ordering = primary.then(a.id.cmp(&b.id));
    if order.descending { ordering.reverse() } else { ordering }
}
