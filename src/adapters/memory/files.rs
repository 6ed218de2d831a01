use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::file::{File, FileLookup, NewFile};
use crate::ports::BackendError;
use crate::ports::clock::Clock;
use crate::ports::files::FileStore;

pub struct MemoryFileStore {
    clock: Arc<dyn Clock>,
    data: Mutex<Data>,
}

#[derive(Default)]
struct Data {
    next_id: i64,
    rows: Vec<File>,
}

impl MemoryFileStore {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryFileStore { clock, data: Mutex::new(Data::default()) }
    }
}

#[async_trait]
impl FileStore for MemoryFileStore {
    async fn insert(&self, files: &[NewFile]) -> Result<Vec<File>, BackendError> {
        let mut data = self.data.lock().unwrap();
        let now = self.clock.now();
        let mut inserted = Vec::with_capacity(files.len());
        for new in files {
            data.next_id += 1;
            let file = File {
                id: data.next_id,
                slug: Uuid::new_v4(),
                filename: new.filename.clone(),
                environment_slug: new.environment_slug.clone(),
                tag: new.tag.clone(),
                path: new.path.clone(),
                inserted_at: now,
                updated_at: now,
            };
            data.rows.push(file.clone());
            inserted.push(file);
        }
        Ok(inserted)
    }

    async fn find(&self, environment_slug: &str, lookup: &FileLookup) -> Result<Option<File>, BackendError> {
        let data = self.data.lock().unwrap();
        Ok(data
            .rows
            .iter()
            .filter(|f| f.environment_slug == environment_slug)
            .filter(|f| match lookup {
                FileLookup::Slug(slug) => Uuid::parse_str(slug).is_ok_and(|slug| f.slug == slug),
                FileLookup::Tag(tag) => &f.tag == tag,
                FileLookup::Filename(filename) => &f.filename == filename,
            })
            .max_by_key(|f| (f.inserted_at, f.id))
            .cloned())
    }

    async fn update(&self, id: i64, tag: &str, filename: &str, path: &str) -> Result<Option<File>, BackendError> {
        let mut data = self.data.lock().unwrap();
        let now = self.clock.now();
        Ok(data.rows.iter_mut().find(|f| f.id == id).map(|file| {
            file.tag = tag.to_owned();
            file.filename = filename.to_owned();
            file.path = path.to_owned();
            file.updated_at = now;
            file.clone()
        }))
    }

    async fn delete_by_path(&self, environment_slug: &str, path: &str) -> Result<u64, BackendError> {
        let mut data = self.data.lock().unwrap();
        let before = data.rows.len();
        data.rows.retain(|f| !(f.environment_slug == environment_slug && f.path == path));
        Ok((before - data.rows.len()) as u64)
    }

    async fn path_in_use(&self, path: &str) -> Result<bool, BackendError> {
        Ok(self.data.lock().unwrap().rows.iter().any(|f| f.path == path))
    }
}
