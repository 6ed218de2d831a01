use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::catalog::{Environment, Timestamp};
use crate::domain::job::Dag;
use crate::domain::job_run::{DagRun, TaskInstance};
use crate::ports::airflow::{AirflowError, AirflowRuns, DagRunChanges, DagRunCursor};
use crate::ports::airflow_api::{AirflowControl, ControlError};

/// DAGs, DAG runs and task instances per environment id; each run remembers when it was
/// last added or changed, as Airflow's `dag_run.updated_at`. An environment without Airflow
/// settings answers `NotConfigured`; one marked unreachable answers `Unreachable`.
///
/// As Airflow's REST API it runs, cancels and retries DAG runs; with [`MemoryAirflow::running`]
/// a run it starts or retries goes on by itself (queued, running, then success), as in
/// `jade demo`, else it stays where it was put.
#[derive(Default)]
pub struct MemoryAirflow {
    data: Arc<RwLock<Data>>,
    /// How long a run it starts stays queued, then running (`None`: it stays queued).
    pace: Option<Duration>,
}

#[derive(Default)]
struct Data {
    dags: HashMap<i64, Vec<Dag>>,
    /// Each run with when it was last added or changed.
    runs: HashMap<i64, Vec<(DagRun, Timestamp)>>,
    task_instances: HashMap<i64, Vec<TaskInstance>>,
    unreachable: HashSet<i64>,
}

impl MemoryAirflow {
    /// One whose runs go on by themselves: queued for `pace`, running for `pace`, then
    /// successful. Must be used within a Tokio runtime.
    pub fn running(pace: Duration) -> Self {
        MemoryAirflow { pace: Some(pace), ..MemoryAirflow::default() }
    }

    pub fn add_dag(&self, environment_id: i64, dag: Dag) {
        let mut data = self.data.write().unwrap();
        let dags = data.dags.entry(environment_id).or_default();
        dags.push(dag);
        dags.sort_by(|a, b| a.dag_id.cmp(&b.dag_id));
    }

    /// Adds the run, or replaces the run with its id (as Airflow changes a run: cleared,
    /// marked by hand).
    pub fn add_run(&self, environment_id: i64, run: DagRun) {
        let mut data = self.data.write().unwrap();
        let runs = data.runs.entry(environment_id).or_default();
        runs.retain(|(r, _)| r.id != run.id);
        runs.push((run, chrono::Utc::now()));
    }

    /// Deletes the run with this id, as `airflow db clean` does.
    pub fn delete_run(&self, environment_id: i64, id: i64) {
        let mut data = self.data.write().unwrap();
        data.runs.entry(environment_id).or_default().retain(|(r, _)| r.id != id);
    }

    pub fn add_task_instance(&self, environment_id: i64, instance: TaskInstance) {
        self.data.write().unwrap().task_instances.entry(environment_id).or_default().push(instance);
    }

    /// The next free DAG run id of the environment, as Airflow's serial would give it.
    pub fn next_run_id(&self, environment_id: i64) -> i64 {
        let data = self.data.read().unwrap();
        data.runs.get(&environment_id).and_then(|runs| runs.iter().map(|(r, _)| r.id).max()).unwrap_or(0) + 1
    }

    pub fn set_unreachable(&self, environment_id: i64, unreachable: bool) {
        let mut data = self.data.write().unwrap();
        if unreachable {
            data.unreachable.insert(environment_id);
        } else {
            data.unreachable.remove(&environment_id);
        }
    }

    fn with<T>(&self, environment: &Environment, read: impl FnOnce(&Data) -> T) -> Result<T, AirflowError> {
        if environment.airflow.is_none() {
            return Err(AirflowError::NotConfigured { slug: environment.slug.clone() });
        }
        let data = self.data.read().unwrap();
        if data.unreachable.contains(&environment.id) {
            return Err(AirflowError::Unreachable {
                slug: environment.slug.clone(),
                cause: crate::domain::Fault::new("marked unreachable"),
            });
        }
        Ok(read(&data))
    }

    fn runs(&self, environment: &Environment) -> Result<Vec<DagRun>, AirflowError> {
        Ok(self.runs_changed(environment)?.into_iter().map(|(run, _)| run).collect())
    }

    fn runs_changed(&self, environment: &Environment) -> Result<Vec<(DagRun, Timestamp)>, AirflowError> {
        self.with(environment, |data| data.runs.get(&environment.id).cloned().unwrap_or_default())
    }
}

#[async_trait]
impl AirflowRuns for MemoryAirflow {
    async fn dags(&self, environment: &Environment) -> Result<Vec<Dag>, AirflowError> {
        self.with(environment, |data| data.dags.get(&environment.id).cloned().unwrap_or_default())
    }

    async fn dag(&self, environment: &Environment, dag_id: &str) -> Result<Option<Dag>, AirflowError> {
        Ok(self.dags(environment).await?.into_iter().find(|d| d.dag_id == dag_id))
    }

    async fn dag_run_changes(
        &self,
        environment: &Environment,
        cursor: &DagRunCursor,
    ) -> Result<DagRunChanges, AirflowError> {
        let all = self.runs_changed(environment)?;
        let at_or_below = all.iter().filter(|(r, _)| r.id <= cursor.after).count() as u64;
        let mut named: Vec<(DagRun, Timestamp)> = all
            .into_iter()
            .filter(|(r, changed)| {
                r.id > cursor.after
                    || cursor.recheck.contains(&r.id)
                    || cursor.changed_since.is_some_and(|since| *changed >= since)
            })
            .collect();
        named.sort_by_key(|(r, _)| r.id);
        let changed_up_to = named.iter().map(|(_, changed)| *changed).max();
        Ok(DagRunChanges {
            runs: named.into_iter().map(|(run, _)| run).collect(),
            at_or_below,
            tracks_changes: true,
            changed_up_to,
        })
    }

    async fn dag_runs_by_ids(&self, environment: &Environment, ids: &[i64]) -> Result<Vec<DagRun>, AirflowError> {
        Ok(self.runs(environment)?.into_iter().filter(|r| ids.contains(&r.id)).collect())
    }

    async fn dag_run(&self, environment: &Environment, id: i64) -> Result<Option<DagRun>, AirflowError> {
        Ok(self.runs(environment)?.into_iter().find(|r| r.id == id))
    }

    async fn dag_run_by_run_id(
        &self,
        environment: &Environment,
        dag_id: &str,
        run_id: &str,
    ) -> Result<Option<DagRun>, AirflowError> {
        Ok(self.runs(environment)?.into_iter().find(|r| r.dag_id == dag_id && r.run_id.as_deref() == Some(run_id)))
    }

    async fn latest_dag_run(
        &self,
        environment: &Environment,
        dag_id: Option<&str>,
        successful_only: bool,
    ) -> Result<Option<DagRun>, AirflowError> {
        let runs = self.runs(environment)?;
        Ok(runs
            .into_iter()
            .filter(|r| dag_id.is_none_or(|d| r.dag_id == d))
            .filter(|r| !successful_only || r.state.as_deref() == Some("success"))
            // Latest end date first, runs without one last, then the highest id.
            .max_by(|a, b| match (a.end_date, b.end_date) {
                (Some(x), Some(y)) => x.cmp(&y).then(a.id.cmp(&b.id)),
                (Some(_), None) => std::cmp::Ordering::Greater,
                (None, Some(_)) => std::cmp::Ordering::Less,
                (None, None) => a.id.cmp(&b.id),
            }))
    }

    async fn task_instances(
        &self,
        environment: &Environment,
        runs: &[(String, String)],
    ) -> Result<Vec<TaskInstance>, AirflowError> {
        self.with(environment, |data| {
            let all = data.task_instances.get(&environment.id).map(Vec::as_slice).unwrap_or_default();
            all.iter()
                .filter(|ti| runs.iter().any(|(dag_id, run_id)| ti.dag_id == *dag_id && ti.run_id == *run_id))
                .cloned()
                .collect()
        })
    }
}

/// The run `run_id` of the DAG in `runs`, as Airflow's API names it.
fn run_mut<'a>(
    runs: &'a mut [(DagRun, Timestamp)],
    dag_id: &str,
    run_id: &str,
) -> Result<&'a mut (DagRun, Timestamp), ControlError> {
    runs.iter_mut().find(|(r, _)| r.dag_id == dag_id && r.run_id.as_deref() == Some(run_id)).ok_or_else(|| {
        ControlError::Refused {
            status: 404,
            reason: format!("The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` was not found"),
        }
    })
}

impl MemoryAirflow {
    fn controllable(&self, environment: &Environment) -> Result<(), ControlError> {
        self.with(environment, |_| ()).map_err(|error| match error {
            AirflowError::NotConfigured { slug } => ControlError::NotConfigured { slug },
            AirflowError::Unreachable { slug, cause } => ControlError::Unavailable { slug, cause },
        })
    }

    /// Moves the run on by itself, as a scheduler would: running after one `pace`, success
    /// (its unfinished tasks too) after another.
    fn go_on(&self, environment_id: i64, dag_id: &str, run_id: &str) {
        let Some(pace) = self.pace else { return };
        let (data, dag_id, run_id) = (Arc::clone(&self.data), dag_id.to_owned(), run_id.to_owned());
        tokio::spawn(async move {
            for (state, wait) in [("running", pace), ("success", pace)] {
                tokio::time::sleep(wait).await;
                let mut data = data.write().unwrap();
                let now = chrono::Utc::now();
                let runs = data.runs.entry(environment_id).or_default();
                let Ok((run, changed)) = run_mut(runs, &dag_id, &run_id) else { return };
                // Cancelled or changed meanwhile: it goes no further.
                if run.state.as_deref() == Some("failed") {
                    return;
                }
                run.state = Some(state.into());
                match state {
                    "running" => run.start_date = run.start_date.or(Some(now)),
                    _ => run.end_date = Some(now),
                }
                *changed = now;
                let instances = data.task_instances.entry(environment_id).or_default();
                for instance in instances.iter_mut().filter(|i| i.dag_id == dag_id && i.run_id == run_id) {
                    if instance.state.as_deref() != Some("success") {
                        instance.state = Some(state.into());
                        match state {
                            "running" => instance.start_date = Some(now),
                            _ => instance.end_date = Some(now),
                        }
                    }
                }
            }
        });
    }
}

#[async_trait]
impl AirflowControl for MemoryAirflow {
    async fn trigger(
        &self,
        environment: &Environment,
        dag_id: &str,
        _conf: &serde_json::Value,
        note: &str,
    ) -> Result<String, ControlError> {
        self.controllable(environment)?;
        let now = chrono::Utc::now();
        let run_id = format!("manual__{}", now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        {
            let mut data = self.data.write().unwrap();
            let known = data.dags.get(&environment.id).is_some_and(|dags| dags.iter().any(|d| d.dag_id == dag_id));
            if !known {
                let reason = format!("Dag with dag_id: '{dag_id}' not found");
                return Err(ControlError::Refused { status: 404, reason });
            }
            let runs = data.runs.entry(environment.id).or_default();
            let id = runs.iter().map(|(r, _)| r.id).max().unwrap_or(0) + 1;
            let run = DagRun {
                id,
                dag_id: dag_id.into(),
                run_id: Some(run_id.clone()),
                state: Some("queued".into()),
                queued_at: Some(now),
                created_at: Some(now),
                start_date: None,
                end_date: None,
                run_type: Some("manual".into()),
                note: Some(note.to_owned()),
            };
            runs.push((run, now));
            let instance = TaskInstance {
                dag_id: dag_id.into(),
                run_id: run_id.clone(),
                task_id: "dbt_build".into(),
                map_index: -1,
                state: None,
                start_date: None,
                end_date: None,
            };
            data.task_instances.entry(environment.id).or_default().push(instance);
        }
        self.go_on(environment.id, dag_id, &run_id);
        Ok(run_id)
    }

    async fn cancel(&self, environment: &Environment, dag_id: &str, run_id: &str) -> Result<(), ControlError> {
        self.controllable(environment)?;
        let mut data = self.data.write().unwrap();
        let now = chrono::Utc::now();
        let (run, changed) = run_mut(data.runs.entry(environment.id).or_default(), dag_id, run_id)?;
        run.state = Some("failed".into());
        run.end_date = Some(now);
        *changed = now;
        let instances = data.task_instances.entry(environment.id).or_default();
        for instance in instances.iter_mut().filter(|i| i.dag_id == dag_id && i.run_id == run_id) {
            if instance.state.as_deref() != Some("success") {
                instance.state = Some("failed".into());
                instance.end_date = Some(now);
            }
        }
        Ok(())
    }

    async fn retry(&self, environment: &Environment, dag_id: &str, run_id: &str) -> Result<(), ControlError> {
        self.controllable(environment)?;
        {
            let mut data = self.data.write().unwrap();
            let now = chrono::Utc::now();
            let (run, changed) = run_mut(data.runs.entry(environment.id).or_default(), dag_id, run_id)?;
            run.state = Some("queued".into());
            (run.queued_at, run.start_date, run.end_date) = (Some(now), None, None);
            *changed = now;
            let instances = data.task_instances.entry(environment.id).or_default();
            for instance in instances.iter_mut().filter(|i| i.dag_id == dag_id && i.run_id == run_id) {
                if instance.state.as_deref() == Some("failed") {
                    instance.state = None;
                }
            }
        }
        self.go_on(environment.id, dag_id, run_id);
        Ok(())
    }
}
