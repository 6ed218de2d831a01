//! Jobs: one per Airflow DAG of an environment.

use crate::domain::catalog::{Environment, Timestamp};
use crate::domain::job_run::JobRun;

/// The columns of Airflow's `dag` table that Jade reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dag {
    pub dag_id: String,
    pub description: Option<String>,
    /// Airflow 2's `is_active`; Airflow 3's `NOT is_stale`.
    pub is_active: Option<bool>,
    pub is_paused: Option<bool>,
    pub last_parsed_time: Option<Timestamp>,
    /// As Airflow stores it: Airflow 2's `schedule_interval` (JSON text: `"@daily"`,
    /// `"0 5 * * *"`, `null`, a timedelta object), or Airflow 3's `timetable_summary` (plain
    /// text: `0 0 * * *`, `None` for no schedule; JSON text until a DAG migrated from
    /// Airflow 2 is parsed again).
    pub schedule: Option<String>,
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

    /// Whether the DAG runs on a schedule that is not paused (dbt Cloud's `triggers.schedule`).
    pub fn is_scheduled(&self) -> bool {
        self.is_active() && !self.dag.is_paused.unwrap_or(false) && self.schedule().is_some()
    }

    /// The DAG's schedule as the first Jade rendered it, Airflow 2's `schedule_interval`
    /// JSON text, whichever Airflow stored it: `"\"@daily\""`, `"null"` for none.
    pub fn schedule_interval(&self) -> Option<String> {
        let stored = self.dag.schedule.as_deref()?;
        if serde_json::from_str::<serde_json::Value>(stored).is_ok() {
            return Some(stored.to_owned());
        }
        Some(match self.schedule() {
            Some(text) => serde_json::Value::String(text).to_string(),
            None => "null".to_owned(),
        })
    }

    /// The DAG's schedule as text (`@daily`, `0 5 * * *`); `None` for no schedule.
    pub fn schedule(&self) -> Option<String> {
        let stored = self.dag.schedule.as_deref()?.trim();
        let value = match serde_json::from_str::<serde_json::Value>(stored) {
            Ok(serde_json::Value::String(text)) => text,
            Ok(serde_json::Value::Null) => return None,
            Ok(other) => other.to_string(),
            Err(_) => stored.to_owned(),
        };
        (!value.is_empty() && value != "None").then_some(value)
    }

    /// The schedule as a cron expression, when it is one (Airflow's presets included).
    pub fn cron(&self) -> Option<String> {
        let schedule = self.schedule()?;
        let preset = match schedule.as_str() {
            "@hourly" => Some("0 * * * *"),
            "@daily" | "@midnight" => Some("0 0 * * *"),
            "@weekly" => Some("0 0 * * 0"),
            "@monthly" => Some("0 0 1 * *"),
            "@quarterly" => Some("0 0 1 */3 *"),
            "@yearly" | "@annually" => Some("0 0 1 1 *"),
            _ => None,
        };
        match preset {
            Some(cron) => Some(cron.to_owned()),
            None if schedule.split_whitespace().count() == 5 && !schedule.starts_with('{') => Some(schedule),
            None => None,
        }
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
            schedule: None,
            is_paused: None,
        };
        assert_eq!(Job::new(1, dag.clone(), env.clone()).state(), 0);
        dag.is_active = Some(true);
        assert_eq!(Job::new(1, dag, env).state(), 1);
    }

    #[test]
    fn schedules_read_as_cron_when_they_are() {
        let env = EnvironmentRef { id: 1, slug: "dev".into(), account_id: 1, project_id: 1 };
        let job = |schedule: Option<&str>, paused: bool| {
            let dag = Dag {
                dag_id: "d".into(),
                description: None,
                is_active: Some(true),
                is_paused: Some(paused),
                last_parsed_time: None,
                schedule: schedule.map(str::to_owned),
            };
            Job::new(1, dag, env.clone())
        };
        assert_eq!(job(Some("\"@daily\""), false).cron().as_deref(), Some("0 0 * * *"));
        assert_eq!(job(Some("\"5 4 * * 1\""), false).cron().as_deref(), Some("5 4 * * 1"));
        assert_eq!(job(Some("{\"type\": \"timedelta\", \"attrs\": {\"days\": 1}}"), false).cron(), None);
        assert!(job(Some("{\"type\": \"timedelta\"}"), false).schedule().is_some());
        assert_eq!(job(Some("null"), false).schedule(), None);
        assert_eq!(job(None, false).schedule(), None);
        assert!(job(Some("\"@daily\""), false).is_scheduled());
        assert!(!job(Some("\"@daily\""), true).is_scheduled());
        assert!(!job(Some("null"), false).is_scheduled());
        // Airflow 3's timetable_summary: plain text, `None` for no schedule.
        assert_eq!(job(Some("0 0 * * *"), false).cron().as_deref(), Some("0 0 * * *"));
        assert_eq!(job(Some("None"), false).schedule(), None);
        assert!(!job(Some("None"), false).is_scheduled());
    }

    #[test]
    fn schedule_intervals_render_as_airflow_2_stored_them() {
        let env = EnvironmentRef { id: 1, slug: "dev".into(), account_id: 1, project_id: 1 };
        let interval = |stored: Option<&str>| {
            let dag = Dag {
                dag_id: "d".into(),
                description: None,
                is_active: Some(true),
                is_paused: Some(false),
                last_parsed_time: None,
                schedule: stored.map(str::to_owned),
            };
            Job::new(1, dag, env.clone()).schedule_interval()
        };
        // Airflow 2 (and Airflow 3 before a migrated DAG is parsed again): as stored.
        for stored in ["\"@daily\"", "null", "{\"type\": \"timedelta\", \"attrs\": {\"days\": 1}}"] {
            assert_eq!(interval(Some(stored)).as_deref(), Some(stored));
        }
        // Airflow 3: plain text becomes the JSON text Airflow 2 would have stored.
        assert_eq!(interval(Some("0 0 * * *")).as_deref(), Some("\"0 0 * * *\""));
        assert_eq!(interval(Some("None")).as_deref(), Some("null"));
        assert_eq!(interval(None), None);
    }
}
