//! Running a job: what a client asks for (contract §3 "Running jobs").

use serde::Serialize;
use serde_json::{Map, Value};

/// A request to run a job, with the fields dbt Cloud's `POST …/jobs/{id}/run/` takes. Airflow
/// is asked for a DAG run whose `conf` holds every field given, so the DAG can honour them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunRequest {
    /// Why the job runs (dbt Cloud requires it; [`RunRequest::DEFAULT_CAUSE`] when absent).
    pub cause: Option<String>,
    pub git_sha: Option<String>,
    pub git_branch: Option<String>,
    pub azure_pull_request_id: Option<i64>,
    pub github_pull_request_id: Option<i64>,
    pub gitlab_merge_request_id: Option<i64>,
    pub schema_override: Option<String>,
    pub dbt_version_override: Option<String>,
    pub threads_override: Option<i64>,
    pub target_name_override: Option<String>,
    pub generate_docs_override: Option<bool>,
    pub timeout_seconds_override: Option<i64>,
    pub steps_override: Option<Vec<String>>,
}

impl RunRequest {
    pub const DEFAULT_CAUSE: &'static str = "Triggered via API";

    /// The cause given, or [`RunRequest::DEFAULT_CAUSE`]; also the DAG run's note.
    pub fn cause(&self) -> &str {
        self.cause.as_deref().filter(|c| !c.trim().is_empty()).unwrap_or(Self::DEFAULT_CAUSE)
    }

    /// The DAG run's `conf`: every field given, the cause always.
    pub fn conf(&self) -> Value {
        let mut conf = match serde_json::to_value(self) {
            Ok(Value::Object(fields)) => fields.into_iter().filter(|(_, value)| !value.is_null()).collect(),
            _ => Map::new(),
        };
        conf.insert("cause".into(), Value::from(self.cause()));
        Value::Object(conf)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_conf_holds_every_field_given_and_the_cause() {
        assert_eq!(RunRequest::default().conf(), json!({"cause": "Triggered via API"}));
        let request = RunRequest {
            cause: Some("Nightly from Airflow".into()),
            git_branch: Some("main".into()),
            threads_override: Some(8),
            generate_docs_override: Some(false),
            steps_override: Some(vec!["dbt build -s orders".into()]),
            ..RunRequest::default()
        };
        assert_eq!(
            request.conf(),
            json!({"cause": "Nightly from Airflow", "git_branch": "main", "threads_override": 8,
                   "generate_docs_override": false, "steps_override": ["dbt build -s orders"]})
        );
        assert_eq!(RunRequest { cause: Some(" ".into()), ..RunRequest::default() }.cause(), "Triggered via API");
    }
}
