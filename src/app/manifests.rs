//! Manifests (contract §4): uploaded with or without a DAG run, read whole or trimmed.

use std::io::BufWriter;

use bytes::Bytes;

use super::{Jade, STORAGE_READ_FAILED, STORAGE_WRITE_FAILED, Spooled, backend, blocking};
use crate::domain::Error;
use crate::domain::file::MAX_LENGTH;
use crate::domain::manifest::{self, Manifest, ManifestError, ManifestRun};
use crate::ports::manifests::{InsertManifestError, ManifestQuery, NewManifest};
use crate::ports::storage::{Blob, BlobSource, StorageError};

use super::undo::{Guard, ManifestWrites, Outcome};

/// A `POST /manifests` as it arrived.
#[derive(Debug)]
pub struct ManifestUpload {
    pub environment_slug: String,
    pub dag_id: Option<String>,
    pub run_id: Option<String>,
    pub tag: Option<String>,
    pub file: Option<Spooled>,
}

impl Jade {
    /// Stores a manifest: validates it and cuts out its trimmed form in one pass over the
    /// spooled upload, writes both bodies to storage, then inserts the row. The row only
    /// exists once both bodies do; when anything fails, or the request is cut off, what was
    /// written is removed (the row first). Waits for an upload permit.
    pub async fn upload_manifest(&self, upload: ManifestUpload) -> Result<Manifest, Error> {
        let _permit = self.upload_permit().await?;
        self.store_manifest(upload).await
    }

    /// [`Self::upload_manifest`] for a caller that holds the upload permit.
    pub(super) async fn store_manifest(&self, upload: ManifestUpload) -> Result<Manifest, Error> {
        let file = upload.file.ok_or_else(|| Error::invalid("file", "can't be blank"))?;
        let environment = self.environment_by_slug(&upload.environment_slug).await?;
        let tag = upload.tag.filter(|t| !t.is_empty());
        if let Some(tag) = &tag {
            if tag.chars().count() > MAX_LENGTH {
                return Err(Error::invalid("tag", "should be at most 255 character(s)"));
            }
            if self.ports.manifests.tag_taken(&environment.slug, tag).await.map_err(backend)? {
                return Err(Error::invalid("tag", "has already been taken"));
            }
        }
        let given = |value: Option<String>| value.filter(|v| !v.is_empty());
        let run = match (given(upload.dag_id), given(upload.run_id)) {
            (Some(dag_id), Some(run_id)) => {
                let (dag_run_id, job_run_id) = self.registered_dag_run(&environment, &dag_id, &run_id).await?;
                Some(ManifestRun { dag_id, dag_run_id, run_id, job_run_id })
            }
            // Only one of them: stored without a run, as the first Jade did.
            _ => None,
        };

        let (file, trimmed) = self.trimmed(file).await?;
        let trimmed = trimmed.map_err(|e| match e {
            ManifestError::Io(e) => Error::internal("trimming the spooled manifest", e),
            invalid => Error::invalid("file", &invalid.to_string()),
        })?;

        let id = self.ports.manifests.reserve_id().await.map_err(backend)?;
        let (key, trimmed_key) = manifest::keys(environment.account_id, &environment.slug, id, run.as_ref());
        let new = NewManifest {
            id,
            account_id: environment.account_id,
            project_id: environment.project_id,
            environment_slug: environment.slug.clone(),
            tag,
            run,
        };
        let mut guard = Guard::new(
            self,
            ManifestWrites {
                keys: Vec::new(),
                row: None,
                run: new.run.as_ref().map(|r| (new.environment_slug.clone(), r.dag_id.clone(), r.run_id.clone())),
            },
        );
        guard.get().keys.extend([key.clone(), trimmed_key.clone()]);
        // Both bodies at once: the manifest's own size bounds the time, not twice it.
        let (full, cut) = futures::join!(
            self.ports.storage.put(&key, file.source()),
            self.ports.storage.put(&trimmed_key, trimmed.source())
        );
        if let Err(error) = full.and(cut) {
            tracing::error!(%error, key, "storing a manifest failed");
            guard.finish(Outcome::Failed).await;
            return Err(Error::Unprocessable(STORAGE_WRITE_FAILED.into()));
        }
        guard.get().row = Some(id);
        match self.ports.manifests.insert(new).await {
            Ok(manifest) => {
                guard.finish(Outcome::Done).await;
                Ok(manifest)
            }
            Err(error) => {
                guard.finish(Outcome::Failed).await;
                match error {
                    InsertManifestError::TagTaken => Err(Error::invalid("tag", "has already been taken")),
                    InsertManifestError::Backend(e) => Err(backend(e)),
                }
            }
        }
    }

    /// The manifest a query names, whole or trimmed.
    pub async fn manifest(&self, query: &ManifestQuery, trimmed: bool) -> Result<Blob, Error> {
        let found = self.find_manifest(query, trimmed).await?;
        self.open_manifest(&found).await
    }

    /// The manifest a query names, by its row alone: storage is not asked (see
    /// [`Self::open_manifest`]).
    pub async fn find_manifest(&self, query: &ManifestQuery, trimmed: bool) -> Result<FoundManifest, Error> {
        let manifest = self.ports.manifests.find(query).await.map_err(backend)?.ok_or_else(Error::not_found)?;
        Ok(FoundManifest { manifest, trimmed })
    }

    /// The newest manifest of the project (found by slug) across its environments, by its row
    /// alone.
    pub async fn find_project_manifest(&self, project_slug: &str, trimmed: bool) -> Result<FoundManifest, Error> {
        let project =
            self.ports.catalog.project_by_slug(project_slug).await.map_err(backend)?.ok_or_else(Error::not_found)?;
        self.find_manifest(&ManifestQuery::Project { project_id: project.id }, trimmed).await
    }

    /// Opens the body of a manifest found by [`Self::find_manifest`].
    pub async fn open_manifest(&self, found: &FoundManifest) -> Result<Blob, Error> {
        if found.trimmed { self.trimmed_body(&found.manifest).await } else { self.full_body(&found.manifest).await }
    }

    async fn full_body(&self, manifest: &Manifest) -> Result<Blob, Error> {
        match self.ports.storage.get(&manifest.key()).await {
            Ok(blob) => Ok(blob),
            Err(StorageError::NotFound) => self.legacy_body(manifest, false).await,
            Err(error) => Err(storage_read_failed(&error)),
        }
    }

    /// The stored trimmed form; for a manifest of the first Jade, which stored none, it is
    /// built on first read from the full body (or the row's `content`) and kept.
    async fn trimmed_body(&self, manifest: &Manifest) -> Result<Blob, Error> {
        match self.ports.storage.get(&manifest.trimmed_key()).await {
            Ok(blob) => return Ok(blob),
            Err(StorageError::NotFound) => {}
            Err(error) => return Err(storage_read_failed(&error)),
        }
        let keep = |source: BlobSource| async move {
            if let Err(error) = self.ports.storage.put(&manifest.trimmed_key(), source).await {
                tracing::warn!(%error, manifest = manifest.id, "keeping a built trimmed manifest failed");
            }
        };
        match self.ports.storage.get(&manifest.key()).await {
            Ok(full) => {
                let (_, trimmed) = self.trimmed(self.spool(full, true).await?).await?;
                let trimmed = trimmed.map_err(|e| Error::internal(format!("stored manifest {}", manifest.id), e))?;
                keep(trimmed.source()).await;
                trimmed.into_blob().await.map_err(|e| Error::internal("reading a spool file", e))
            }
            Err(StorageError::NotFound) => {
                let legacy = self.ports.manifests.legacy_content(manifest.id, true).await.map_err(backend)?;
                let trimmed = legacy.ok_or_else(Error::not_found)?;
                keep(BlobSource::Bytes(trimmed.clone())).await;
                Ok(blob_of(trimmed))
            }
            Err(error) => Err(storage_read_failed(&error)),
        }
    }

    /// A spooled manifest and its trimmed form: the one cut out while it was spooled, or
    /// (for a body spooled without trimming) one written now in a pass over the spool file,
    /// off the async workers.
    async fn trimmed(&self, mut file: Spooled) -> Result<(Spooled, Result<Spooled, ManifestError>), Error> {
        if let Some(trimmed) = file.trimmed.take() {
            return Ok((file, *trimmed));
        }
        let (out, path) = self.spool_file().map_err(|e| Error::internal("creating a spool file", e))?.into_parts();
        let full = file.path.to_path_buf();
        let trimmed = blocking(move || {
            // Read in chunks: the manifest is never held in memory.
            let len = manifest::trim(std::fs::File::open(full)?, BufWriter::new(out))?;
            Ok(Spooled { path, len, filename: None, trimmed: None })
        })
        .await?;
        Ok((file, trimmed))
    }

    async fn legacy_body(&self, manifest: &Manifest, trimmed: bool) -> Result<Blob, Error> {
        let content = self.ports.manifests.legacy_content(manifest.id, trimmed).await.map_err(backend)?;
        content.map(blob_of).ok_or_else(Error::not_found)
    }
}

/// A manifest's row, found for a read whose body is not opened yet: a conditional read
/// compares [`FoundManifest::version`] first and may never open it.
#[derive(Debug, Clone)]
pub struct FoundManifest {
    manifest: Manifest,
    trimmed: bool,
}

impl FoundManifest {
    /// Names the bytes the read answers: the row and the form. A manifest's bodies do not
    /// change once its row exists (a new upload is a new row), and its trimmed form is built
    /// from its full one the same way every time. (Two uploads for one DAG run share their
    /// storage key: the older row, still found by its tag, then reads the newer body under
    /// its old version.)
    pub fn version(&self) -> String {
        format!("m{}-{}", self.manifest.id, if self.trimmed { "t" } else { "f" })
    }
}

pub(super) fn storage_read_failed(error: &StorageError) -> Error {
    tracing::error!(%error, "reading from storage failed");
    Error::Unprocessable(STORAGE_READ_FAILED.into())
}

fn blob_of(bytes: Bytes) -> Blob {
    Blob { len: Some(bytes.len() as u64), body: Box::pin(futures::stream::once(async move { Ok(bytes) })) }
}
