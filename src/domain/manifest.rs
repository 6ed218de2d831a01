//! dbt manifests: their rows, storage keys and trimmed form.

use std::io::{Read, Write};

use uuid::Uuid;

use crate::domain::catalog::Timestamp;

/// A manifest's metadata row. Its bodies live in object storage under [`Manifest::key`]
/// (the file as uploaded) and [`Manifest::trimmed_key`] (`metadata` and `nodes` only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub id: i64,
    pub slug: Uuid,
    pub account_id: i64,
    pub project_id: i64,
    pub environment_slug: String,
    pub tag: Option<String>,
    pub dag_id: Option<String>,
    pub dag_run_id: Option<i64>,
    pub dag_run_run_id: Option<String>,
    pub job_run_id: Option<i64>,
    pub inserted_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The run a manifest was uploaded for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRun {
    pub dag_id: String,
    pub dag_run_id: i64,
    pub run_id: String,
    pub job_run_id: i64,
}

impl Manifest {
    /// Where the uploaded file is stored, as the first Jade stored it:
    /// `accounts/{a}/environments/{env}/dags/{dag}/dag_runs/{run}/manifest.json` for a run
    /// (each `_ : . +` of the run id replaced by `-`), else
    /// `accounts/{a}/environments/{env}/manifests/{id}/manifest.json`.
    pub fn key(&self) -> String {
        format!("{}/manifest.json", self.directory())
    }

    /// Where the trimmed form is stored, next to the file.
    pub fn trimmed_key(&self) -> String {
        format!("{}/manifest.trimmed.json", self.directory())
    }

    fn directory(&self) -> String {
        let run = match (&self.job_run_id, &self.dag_id, &self.dag_run_run_id) {
            (Some(_), Some(dag_id), Some(run_id)) => Some((dag_id.as_str(), run_id.as_str())),
            _ => None,
        };
        directory(self.account_id, &self.environment_slug, self.id, run)
    }
}

/// The (full, trimmed) storage keys of a manifest about to be stored; the same as
/// [`Manifest::key`] and [`Manifest::trimmed_key`] once its row exists.
pub fn keys(account_id: i64, environment_slug: &str, id: i64, run: Option<&ManifestRun>) -> (String, String) {
    let run = run.map(|run| (run.dag_id.as_str(), run.run_id.as_str()));
    let directory = directory(account_id, environment_slug, id, run);
    (format!("{directory}/manifest.json"), format!("{directory}/manifest.trimmed.json"))
}

fn directory(account_id: i64, environment: &str, id: i64, run: Option<(&str, &str)>) -> String {
    match run {
        Some((dag_id, run_id)) => run_directory(account_id, environment, dag_id, run_id),
        None => format!("accounts/{account_id}/environments/{environment}/manifests/{id}"),
    }
}

/// Where a DAG run's manifest and other artifacts are stored (no trailing `/`):
/// `accounts/{a}/environments/{env}/dags/{dag}/dag_runs/{run}`, each `_ : . +` of the run id
/// replaced by `-`.
pub fn run_directory(account_id: i64, environment: &str, dag_id: &str, run_id: &str) -> String {
    format!("accounts/{account_id}/environments/{environment}/dags/{dag_id}/dag_runs/{}", safe_run_id(run_id))
}

fn safe_run_id(run_id: &str) -> String {
    run_id.replace(['_', ':', '.', '+'], "-")
}

/// Why an uploaded manifest is refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("is not valid JSON: {0}")]
    NotJson(String),
    #[error("must be a JSON object")]
    NotAnObject,
    #[error("could not be read: {0}")]
    Io(#[from] std::io::Error),
}

/// Validates that the manifest `read` yields is one JSON object and writes its trimmed form
/// to `out`: its top-level `metadata` and `nodes` members, byte for byte, in the manifest's
/// order (a member the manifest lacks is `null`, at the end); answers how many bytes were
/// written. One pass in constant memory: see [`super::manifest_trim`].
pub fn trim(read: impl Read, out: impl Write) -> Result<u64, ManifestError> {
    super::manifest_trim::trim_reader(read, out)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn manifest(job_run: bool) -> Manifest {
        Manifest {
            id: 42,
            slug: Uuid::nil(),
            account_id: 3,
            project_id: 4,
            environment_slug: "dev123".into(),
            tag: None,
            dag_id: job_run.then(|| "yaml_sample_dag".into()),
            dag_run_id: job_run.then_some(9),
            dag_run_run_id: job_run.then(|| "manual__2023-12-02T09:49:46.105347+00:00".into()),
            job_run_id: job_run.then_some(17),
            inserted_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn keys_follow_the_first_jade() {
        assert_eq!(
            manifest(true).key(),
            "accounts/3/environments/dev123/dags/yaml_sample_dag/dag_runs/\
             manual--2023-12-02T09-49-46-105347-00-00/manifest.json"
        );
        assert_eq!(manifest(false).key(), "accounts/3/environments/dev123/manifests/42/manifest.json");
        assert_eq!(manifest(false).trimmed_key(), "accounts/3/environments/dev123/manifests/42/manifest.trimmed.json");
    }

    fn trimmed(body: &[u8]) -> Result<Vec<u8>, ManifestError> {
        let mut out = Vec::new();
        let written = trim(body, &mut out)?;
        assert_eq!(written, out.len() as u64);
        Ok(out)
    }

    #[test]
    fn trimming_keeps_metadata_and_nodes_verbatim() {
        let body = br#"{"metadata": {"dbt_version": "1.6.9"}, "macros": {"m": [1, 2]},
                        "nodes": {"model.a": {"name": "a", "tags": []}}, "child_map": {}}"#;
        let trimmed = trimmed(&body[..]).unwrap();
        assert_eq!(
            String::from_utf8(trimmed).unwrap(),
            r#"{"metadata":{"dbt_version": "1.6.9"},"nodes":{"model.a": {"name": "a", "tags": []}}}"#
        );
    }

    #[test]
    fn missing_members_trim_to_null() {
        let trimmed = trimmed(&br#"{"nodes": {}}"#[..]).unwrap();
        assert_eq!(trimmed, br#"{"nodes":{},"metadata":null}"#);
    }

    #[test]
    fn non_json_and_non_objects_are_refused() {
        assert!(matches!(trimmed(&b"not json"[..]), Err(ManifestError::NotJson(_))));
        assert!(matches!(trimmed(&br#"{"nodes": {}"#[..]), Err(ManifestError::NotJson(_))));
        assert!(matches!(trimmed(&br#"{"nodes": {}} trailing"#[..]), Err(ManifestError::NotJson(_))));
        assert!(matches!(trimmed(&b"[1, 2]"[..]), Err(ManifestError::NotAnObject)));
        assert!(matches!(trimmed(&b"\"text\""[..]), Err(ManifestError::NotAnObject)));
        assert!(matches!(trimmed(&b""[..]), Err(ManifestError::NotJson(_))));
    }

    #[test]
    fn the_fixture_trims_to_its_metadata_and_nodes() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/manifest.json");
        let body = std::fs::read(path).unwrap();
        let trimmed: serde_json::Value = serde_json::from_slice(&trimmed(&body[..]).unwrap()).unwrap();
        let full: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let object = trimmed.as_object().unwrap();
        assert_eq!(object.len(), 2);
        assert_eq!(object["metadata"], full["metadata"]);
        assert_eq!(object["nodes"], full["nodes"]);
    }
}
