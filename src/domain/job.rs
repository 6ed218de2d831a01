//! Jobs: one per Airflow DAG of an environment.

use crate::domain::catalog::{Environment, Timestamp};
use crate::domain::job_run::JobRun;

/// The columns of Airflow's `dag` table that Jade reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dag {
    pub dag_id: String,
    pub description: Option<String>,
    pub is_active: Option<bool>,
    pub is_paused: Option<bool>,
    pub last_parsed_time: Option<Timestamp>,
    pub schedule_interval: Option<String>,
}

/// The environment facts a job or run carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentRef {
    pub id: i64,
    pub slug: String,
    pub account_id: i64,
    pub project_id: i64,
}

impl From<&Environment> for EnvironmentRef {
    fn from(environment: &Environment) -> Self {
        EnvironmentRef {
            id: environment.id,
            slug: environment.slug.clone(),
            account_id: environment.account_id,
            project_id: environment.project_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Jade's integer id for (environment, dag_id), from the `job_ids` registry.
    pub id: i64,
    pub dag: Dag,
    pub environment: EnvironmentRef,
    /// On show only: the latest run by end date (unfinished runs last).
    pub most_recent_run: Option<Box<JobRun>>,
    /// On show only: the latest successful run.
    pub most_recent_completed_run: Option<Box<JobRun>>,
}

impl Job {
    pub fn new(id: i64, dag: Dag, environment: EnvironmentRef) -> Self {
        Job { id, dag, environment, most_recent_run: None, most_recent_completed_run: None }
    }

    /// 1 when the DAG is active, else 0 (a DAG without the flag counts as active, as
    /// Airflow's column default says).
    pub fn state(&self) -> i32 {
        if self.is_active() { 1 } else { 0 }
    }

    pub fn is_active(&self) -> bool {
        self.dag.is_active.unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_follows_is_active() {
        let env = EnvironmentRef { id: 1, slug: "dev".into(), account_id: 1, project_id: 1 };
        let mut dag = Dag {
            dag_id: "d".into(),
            description: None,
            is_active: Some(false),
            last_parsed_time: None,
            schedule_interval: None,
            is_paused: None,
        };
        assert_eq!(Job::new(1, dag.clone(), env.clone()).state(), 0);
        dag.is_active = Some(true);
        assert_eq!(Job::new(1, dag, env).state(), 1);
    }
}
