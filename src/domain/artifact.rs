//! Run artifacts: the files of dbt's `target/` directory uploaded for a DAG run, stored next
//! to the run's manifest. Object storage is their only record (no database row): a run's
//! artifacts are the keys below its directory.

use crate::domain::Error;
use crate::domain::manifest;

/// The artifact that is also the run's manifest (a row, a trimmed form and all).
pub const MANIFEST: &str = "manifest.json";
/// Where the manifest's trimmed form is kept in the run's directory: Jade's own, never an
/// artifact (not listed, not served, not uploadable).
pub const TRIMMED_MANIFEST: &str = "manifest.trimmed.json";
/// The longest artifact path accepted.
pub const MAX_PATH_LENGTH: usize = 512;

/// A path relative to dbt's `target/` (`run_results.json`, `compiled/a/b.sql`), checked
/// so that its key cannot leave the run's directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ArtifactPath(String);

impl ArtifactPath {
    /// Checks a path as given in `field`: present, at most [`MAX_PATH_LENGTH`] characters,
    /// no control character or `\`, no empty, `.` or `..` segment, not Jade's trimmed
    /// manifest. 422 naming the field otherwise.
    pub fn parse(field: &str, path: &str) -> Result<Self, Error> {
        let refuse = |message: &str| Err(Error::invalid(field, &format!("{path:?} {message}")));
        if path.is_empty() {
            return Err(Error::invalid(field, "can't be blank"));
        }
        if path.chars().count() > MAX_PATH_LENGTH {
            return refuse(&format!("should be at most {MAX_PATH_LENGTH} character(s)"));
        }
        if path.chars().any(char::is_control) {
            return refuse("must not contain control characters");
        }
        if path.contains('\\') {
            return refuse("must not contain '\\\\'");
        }
        if path.split('/').any(|segment| matches!(segment, "" | "." | "..")) {
            return refuse("must not contain empty, '.' or '..' path segments");
        }
        if path == TRIMMED_MANIFEST {
            return refuse("is reserved for Jade's trimmed manifest");
        }
        Ok(ArtifactPath(path.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    pub fn is_manifest(&self) -> bool {
        self.0 == MANIFEST
    }
}

/// The DAG run whose artifacts are meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRun<'a> {
    pub account_id: i64,
    pub environment_slug: &'a str,
    pub dag_id: &'a str,
    /// The DAG run's `run_id`.
    pub run_id: &'a str,
}

impl ArtifactRun<'_> {
    /// The run's directory with a trailing `/`, the prefix its artifacts are listed under.
    pub fn prefix(&self) -> String {
        format!("{}/", manifest::run_directory(self.account_id, self.environment_slug, self.dag_id, self.run_id))
    }

    /// `accounts/{a}/environments/{env}/dags/{dag}/dag_runs/{run as for manifests}/{path}`.
    pub fn key(&self, path: &ArtifactPath) -> String {
        format!("{}{}", self.prefix(), path.as_str())
    }
}

/// What a listing of the run's directory shows: every stored path but Jade's trimmed
/// manifest (and anything a path check would refuse), plus `manifest.json` when the run has
/// a manifest row (one of the first Jade's lives only in its row), sorted, once each.
pub fn listed(stored: Vec<String>, has_manifest_row: bool) -> Vec<String> {
    let mut paths: Vec<String> = stored.into_iter().filter(|path| ArtifactPath::parse("path", path).is_ok()).collect();
    if has_manifest_row {
        paths.push(MANIFEST.to_owned());
    }
    paths.sort();
    paths.dedup();
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sit_next_to_the_runs_manifest() {
        let run = ArtifactRun {
            account_id: 3,
            environment_slug: "dev123",
            dag_id: "yaml_sample_dag",
            run_id: "manual__2023-12-02T09:49:46.105347+00:00",
        };
        let path = ArtifactPath::parse("file", "compiled/a/b.sql").unwrap();
        assert_eq!(
            run.key(&path),
            "accounts/3/environments/dev123/dags/yaml_sample_dag/dag_runs/\
             manual--2023-12-02T09-49-46-105347-00-00/compiled/a/b.sql"
        );
        let manifest = ArtifactPath::parse("file", "manifest.json").unwrap();
        assert!(manifest.is_manifest());
        assert!(run.key(&manifest).ends_with("/manual--2023-12-02T09-49-46-105347-00-00/manifest.json"));
    }

    #[test]
    fn paths_that_could_leave_the_run_are_refused_with_the_field_named() {
        for bad in [
            "",
            ".",
            "..",
            "../x.json",
            "a/../b",
            "a\\b.sql",
            "a//b",
            "/abs.json",
            "dir/",
            "./a",
            "x\u{0}y",
            "new\nline",
            "manifest.trimmed.json",
        ] {
            let Err(Error::Invalid(errors)) = ArtifactPath::parse("file", bad) else {
                panic!("{bad:?} was accepted");
            };
            assert!(errors.contains_key("file"), "{bad:?}: {errors:?}");
        }
        assert!(ArtifactPath::parse("file", &"x".repeat(MAX_PATH_LENGTH + 1)).is_err());
        for good in
            ["run_results.json", "compiled/my project/models/a..b.sql", "graph.gpickle", "a/manifest.trimmed.json"]
        {
            assert_eq!(ArtifactPath::parse("file", good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn listings_hide_the_trimmed_manifest_and_add_a_legacy_one() {
        let stored = vec!["run_results.json".into(), "manifest.trimmed.json".into(), "compiled/a.sql".into()];
        assert_eq!(listed(stored.clone(), false), ["compiled/a.sql", "run_results.json"]);
        let mut with_manifest = stored;
        with_manifest.push("manifest.json".into());
        assert_eq!(listed(with_manifest, true), ["compiled/a.sql", "manifest.json", "run_results.json"]);
        assert_eq!(listed(vec![], true), ["manifest.json"]);
    }
}
