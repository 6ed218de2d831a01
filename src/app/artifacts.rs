//! Run artifacts (contract §3, "dbt Cloud clients"): the files of dbt's `target/` uploaded
//! for a DAG run, listed and served through the dbt Cloud artifact routes. Object storage
//! is their record; `manifest.json` is also the run's manifest (row, trimmed form and all).

use std::collections::BTreeSet;

use super::{Jade, STORAGE_WRITE_FAILED, Spooled, backend};
use crate::app::manifests::storage_read_failed;
use crate::app::{FoundManifest, ManifestUpload};
use crate::domain::Error;
use crate::domain::artifact::{self, ArtifactPath, ArtifactRun};
use crate::ports::manifests::ManifestQuery;
use crate::ports::storage::{Blob, Stat, StorageError};

use super::undo::{ArtifactWrites, Guard, Outcome};

/// A run's artifact, found for a read whose body is not opened yet: a conditional read
/// compares [`FoundArtifact::version`] first and may never open it.
#[derive(Debug, Clone)]
pub struct FoundArtifact(Found);

#[derive(Debug, Clone)]
enum Found {
    /// `manifest.json`: the run's manifest row.
    Manifest(FoundManifest),
    /// Any other path: object storage is its only record.
    Stored { key: String, stat: Stat },
}

impl FoundArtifact {
    /// Names the bytes the read answers: the manifest's version, or the stored object's key
    /// and the version storage gives it (which changes when the artifact is uploaded again
    /// with other bytes).
    pub fn version(&self) -> String {
        match &self.0 {
            Found::Manifest(manifest) => manifest.version(),
            Found::Stored { key, stat } => format!("{key}\n{}", stat.version),
        }
    }
}

/// A `POST /artifacts` as it arrived.
#[derive(Debug)]
pub struct ArtifactUpload {
    pub environment_slug: String,
    pub dag_id: Option<String>,
    pub run_id: Option<String>,
    /// Every file part: the form field it came in and the spooled body, whose filename is
    /// the artifact's path under `target/`.
    pub files: Vec<(String, Spooled)>,
}

impl Jade {
    /// Stores a run's artifacts, all or none: every path is checked and the run looked up
    /// before anything is written; the other artifacts are written first and the manifest
    /// (through the manifest upload) last, and when anything fails, or the request is cut
    /// off, what this request wrote is removed again. Waits for an upload permit. Answers
    /// the stored paths, sorted.
    pub async fn upload_artifacts(&self, upload: ArtifactUpload) -> Result<Vec<String>, Error> {
        let ArtifactUpload { environment_slug, dag_id, run_id, files } = upload;
        if files.is_empty() {
            return Err(Error::invalid("file", "can't be blank"));
        }
        let mut seen = BTreeSet::new();
        let mut parts = Vec::with_capacity(files.len());
        for (field, file) in files {
            let path = ArtifactPath::parse(&field, file.filename.as_deref().unwrap_or_default())?;
            if !seen.insert(path.clone()) {
                return Err(Error::invalid(&field, &format!("{:?} is given twice", path.as_str())));
            }
            parts.push((path, file));
        }
        let given = |value: Option<String>| value.filter(|v| !v.is_empty());
        let dag_id = given(dag_id).ok_or_else(|| Error::invalid("dag_id", "can't be blank"))?;
        let run_id = given(run_id).ok_or_else(|| Error::invalid("run_id", "can't be blank"))?;

        let environment = self.environment_by_slug(&environment_slug).await?;
        self.registered_dag_run(&environment, &dag_id, &run_id).await?;

        let run = ArtifactRun {
            account_id: environment.account_id,
            environment_slug: &environment.slug,
            dag_id: &dag_id,
            run_id: &run_id,
        };
        let _permit = self.upload_permit().await?;
        let mut manifest = None;
        let mut guard = Guard::new(self, ArtifactWrites::default());
        for (path, file) in parts {
            if path.is_manifest() {
                manifest = Some(file);
                continue;
            }
            let key = run.key(&path);
            guard.get().keys.push(key.clone());
            let source = file.source();
            if let Err(error) = self.ports.storage.put(&key, source).await {
                tracing::error!(%error, key, "storing an artifact failed");
                guard.finish(Outcome::Failed).await;
                return Err(Error::Unprocessable(STORAGE_WRITE_FAILED.into()));
            }
        }
        let mut stored: Vec<String> = seen.into_iter().map(ArtifactPath::into_string).collect();
        if let Some(file) = manifest {
            let upload = ManifestUpload {
                environment_slug: environment.slug.clone(),
                dag_id: Some(dag_id.clone()),
                run_id: Some(run_id.clone()),
                tag: None,
                file: Some(file),
            };
            if let Err(error) = self.store_manifest(upload).await {
                guard.finish(Outcome::Failed).await;
                return Err(error);
            }
        }
        guard.finish(Outcome::Done).await;
        stored.sort();
        Ok(stored)
    }

    /// The paths stored for a run of the account, sorted (404 for an unknown run or one of
    /// another account).
    pub async fn artifacts(&self, account_id: i64, job_run_id: i64) -> Result<Vec<String>, Error> {
        let (environment, dag_run) = self.dag_run_of(account_id, job_run_id).await?;
        let stored = match &dag_run.run_id {
            Some(run_id) => {
                let run = ArtifactRun {
                    account_id: environment.account_id,
                    environment_slug: &environment.slug,
                    dag_id: &dag_run.dag_id,
                    run_id,
                };
                self.ports.storage.list(&run.prefix()).await.map_err(|e| storage_read_failed(&e))?
            }
            None => Vec::new(),
        };
        let query = ManifestQuery::JobRun { account_id, job_run_id };
        let has_manifest = self.ports.manifests.find(&query).await.map_err(backend)?.is_some();
        Ok(artifact::listed(stored, has_manifest))
    }

    /// One artifact of a run of the account. `manifest.json` is the run's uploaded manifest
    /// (found by its row, as the first Jade served it); any other path is read from storage.
    pub async fn artifact(&self, account_id: i64, job_run_id: i64, path: &str) -> Result<Blob, Error> {
        let found = self.find_artifact(account_id, job_run_id, path).await?;
        self.open_artifact(&found).await
    }

    /// One artifact of a run of the account, found without reading its body: the manifest's
    /// row, or the stored object's metadata (see [`Self::open_artifact`]).
    pub async fn find_artifact(&self, account_id: i64, job_run_id: i64, path: &str) -> Result<FoundArtifact, Error> {
        let path = ArtifactPath::parse("path", path).map_err(|_| Error::not_found())?;
        if path.is_manifest() {
            let found = self.find_manifest(&ManifestQuery::JobRun { account_id, job_run_id }, false).await?;
            return Ok(FoundArtifact(Found::Manifest(found)));
        }
        let (environment, dag_run) = self.dag_run_of(account_id, job_run_id).await?;
        let run_id = dag_run.run_id.as_deref().ok_or_else(Error::not_found)?;
        let run = ArtifactRun {
            account_id: environment.account_id,
            environment_slug: &environment.slug,
            dag_id: &dag_run.dag_id,
            run_id,
        };
        let key = run.key(&path);
        match self.ports.storage.stat(&key).await {
            Ok(stat) => Ok(FoundArtifact(Found::Stored { key, stat })),
            Err(StorageError::NotFound) => Err(Error::not_found()),
            Err(error) => Err(storage_read_failed(&error)),
        }
    }

    /// Opens the body of an artifact found by [`Self::find_artifact`].
    pub async fn open_artifact(&self, found: &FoundArtifact) -> Result<Blob, Error> {
        match &found.0 {
            Found::Manifest(manifest) => self.open_manifest(manifest).await,
            Found::Stored { key, .. } => match self.ports.storage.get(key).await {
                Ok(blob) => Ok(blob),
                Err(StorageError::NotFound) => Err(Error::not_found()),
                Err(error) => Err(storage_read_failed(&error)),
            },
        }
    }
}
