use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use uuid::Uuid;

use crate::domain::manifest::Manifest;
use crate::ports::BackendError;
use crate::ports::clock::Clock;
use crate::ports::manifests::{InsertManifestError, ManifestQuery, ManifestStore, NewManifest};

pub struct MemoryManifestStore {
    clock: Arc<dyn Clock>,
    data: Mutex<Data>,
}

#[derive(Default)]
struct Data {
    next_id: i64,
    rows: Vec<Manifest>,
}

impl MemoryManifestStore {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryManifestStore { clock, data: Mutex::new(Data::default()) }
    }
}

fn matches(manifest: &Manifest, query: &ManifestQuery) -> bool {
    match query {
        ManifestQuery::Environment { environment_slug } => &manifest.environment_slug == environment_slug,
        ManifestQuery::Dag { environment_slug, dag_id } => {
            &manifest.environment_slug == environment_slug && manifest.dag_id.as_ref() == Some(dag_id)
        }
        ManifestQuery::Tag { environment_slug, tag } => {
            &manifest.environment_slug == environment_slug && manifest.tag.as_ref() == Some(tag)
        }
        ManifestQuery::Project { project_id } => manifest.project_id == *project_id,
        ManifestQuery::JobRun { account_id, job_run_id } => {
            manifest.account_id == *account_id && manifest.job_run_id == Some(*job_run_id)
        }
    }
}

#[async_trait]
impl ManifestStore for MemoryManifestStore {
    async fn reserve_id(&self) -> Result<i64, BackendError> {
        let mut data = self.data.lock().unwrap();
        data.next_id += 1;
        Ok(data.next_id)
    }

    async fn insert(&self, new: NewManifest) -> Result<Manifest, InsertManifestError> {
        let mut data = self.data.lock().unwrap();
        if let Some(tag) = &new.tag
            && data.rows.iter().any(|m| m.environment_slug == new.environment_slug && m.tag.as_ref() == Some(tag))
        {
            return Err(InsertManifestError::TagTaken);
        }
        let now = self.clock.now();
        let manifest = Manifest {
            id: new.id,
            slug: Uuid::new_v4(),
            account_id: new.account_id,
            project_id: new.project_id,
            environment_slug: new.environment_slug,
            tag: new.tag,
            dag_id: new.run.as_ref().map(|r| r.dag_id.clone()),
            dag_run_id: new.run.as_ref().map(|r| r.dag_run_id),
            dag_run_run_id: new.run.as_ref().map(|r| r.run_id.clone()),
            job_run_id: new.run.as_ref().map(|r| r.job_run_id),
            inserted_at: now,
            updated_at: now,
        };
        data.rows.push(manifest.clone());
        Ok(manifest)
    }

    async fn delete(&self, id: i64) -> Result<(), BackendError> {
        self.data.lock().unwrap().rows.retain(|m| m.id != id);
        Ok(())
    }

    async fn tag_taken(&self, environment_slug: &str, tag: &str) -> Result<bool, BackendError> {
        let query = ManifestQuery::Tag { environment_slug: environment_slug.into(), tag: tag.into() };
        Ok(self.find(&query).await?.is_some())
    }

    async fn count_for_run(&self, environment_slug: &str, dag_id: &str, run_id: &str) -> Result<u64, BackendError> {
        let data = self.data.lock().unwrap();
        Ok(data
            .rows
            .iter()
            .filter(|m| {
                m.environment_slug == environment_slug
                    && m.dag_id.as_deref() == Some(dag_id)
                    && m.dag_run_run_id.as_deref() == Some(run_id)
            })
            .count() as u64)
    }

    async fn find(&self, query: &ManifestQuery) -> Result<Option<Manifest>, BackendError> {
        let data = self.data.lock().unwrap();
        Ok(data.rows.iter().filter(|m| matches(m, query)).max_by_key(|m| (m.inserted_at, m.id)).cloned())
    }

    async fn for_job_runs(&self, account_id: i64, job_run_ids: &[i64]) -> Result<HashMap<i64, Manifest>, BackendError> {
        let data = self.data.lock().unwrap();
        let mut found: HashMap<i64, Manifest> = HashMap::new();
        for manifest in data.rows.iter().filter(|m| m.account_id == account_id) {
            let Some(job_run_id) = manifest.job_run_id.filter(|id| job_run_ids.contains(id)) else { continue };
            let newer =
                found.get(&job_run_id).is_none_or(|m| (m.inserted_at, m.id) < (manifest.inserted_at, manifest.id));
            if newer {
                found.insert(job_run_id, manifest.clone());
            }
        }
        Ok(found)
    }

    async fn legacy_content(&self, _id: i64, _trimmed: bool) -> Result<Option<Bytes>, BackendError> {
        // Rows of this store are never written by the first Jade.
        Ok(None)
    }
}
