//! dbt manifests: their rows, storage keys and trimmed form.

use std::fmt;
use std::io::Write;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
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

/// Validates that `manifest` is one JSON object and writes its trimmed form
/// `{"metadata": .., "nodes": ..}` to `out` (a member the manifest lacks is `null`); answers
/// how many bytes were written. The two members are borrowed from `manifest` as raw text and
/// written as they are: no tree of the manifest is built and nothing of it is copied, so
/// trimming needs no memory beyond the manifest's own bytes.
pub fn trim(manifest: &[u8], mut out: impl Write) -> Result<u64, ManifestError> {
    fn raw(value: Option<&RawValue>) -> &[u8] {
        value.map_or(b"null", |v| v.get().as_bytes())
    }
    let mut deserializer = serde_json::Deserializer::from_slice(manifest);
    let trimmed = deserializer.deserialize_map(TrimVisitor).map_err(|e| classify(&e))?;
    deserializer.end().map_err(|e| classify(&e))?;
    let parts: [&[u8]; 5] = [b"{\"metadata\":", raw(trimmed.metadata), b",\"nodes\":", raw(trimmed.nodes), b"}"];
    let mut written = 0u64;
    for part in parts {
        out.write_all(part)?;
        written += part.len() as u64;
    }
    out.flush()?;
    Ok(written)
}

fn classify(error: &serde_json::Error) -> ManifestError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Io => ManifestError::Io(std::io::Error::other(error.to_string())),
        // Only the top level can mismatch: every member kept is raw, every other ignored.
        Category::Data => ManifestError::NotAnObject,
        Category::Syntax | Category::Eof => ManifestError::NotJson(error.to_string()),
    }
}

#[derive(Default)]
struct Trimmed<'a> {
    metadata: Option<&'a RawValue>,
    nodes: Option<&'a RawValue>,
}

struct TrimVisitor;

impl<'de> Visitor<'de> for TrimVisitor {
    type Value = Trimmed<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Trimmed<'de>, A::Error> {
        let mut trimmed = Trimmed::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Metadata => trimmed.metadata = Some(map.next_value()?),
                Key::Nodes => trimmed.nodes = Some(map.next_value()?),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(trimmed)
    }
}

enum Key {
    Metadata,
    Nodes,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Key, E> {
                Ok(match name {
                    "metadata" => Key::Metadata,
                    "nodes" => Key::Nodes,
                    _ => Key::Other,
                })
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
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
        assert_eq!(trimmed, br#"{"metadata":null,"nodes":{}}"#);
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
