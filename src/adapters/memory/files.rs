use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::file::{File, FileLookup, NewFile};
use crate::ports::BackendError;
use crate::ports::clock::Clock;
use crate::ports::files::{FileStore, Written};

pub struct MemoryFileStore {
    clock: Arc<dyn Clock>,
    data: Mutex<Data>,
}

#[derive(Default)]
struct Data {
    next_id: i64,
    rows: Vec<File>,
}

impl Data {
    /// Points every row of the path at `key`; answers the keys no row reads any more.
    fn switch(&mut self, environment_slug: &str, path: &str, key: &str) -> Vec<String> {
        let mut replaced = Vec::new();
        for row in self.rows.iter_mut().filter(|f| f.environment_slug == environment_slug && f.path == path) {
            if row.key != key {
                replaced.push(std::mem::replace(&mut row.key, key.to_owned()));
            }
        }
        self.unused(replaced)
    }

    fn unused(&self, mut keys: Vec<String>) -> Vec<String> {
        keys.sort();
        keys.dedup();
        keys.retain(|key| !self.rows.iter().any(|f| &f.key == key));
        keys
    }
}

impl MemoryFileStore {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryFileStore { clock, data: Mutex::new(Data::default()) }
    }
}

#[async_trait]
impl FileStore for MemoryFileStore {
    async fn insert(&self, files: &[NewFile]) -> Result<Written<Vec<File>>, BackendError> {
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
                key: new.key.clone(),
                inserted_at: now,
                updated_at: now,
            };
            data.rows.push(file.clone());
            inserted.push(file);
        }
        let mut released = Vec::new();
        for new in files {
            released.extend(data.switch(&new.environment_slug, &new.path, &new.key));
        }
        let released = data.unused(released);
        let rows = inserted.iter().filter_map(|f| data.rows.iter().find(|r| r.id == f.id).cloned()).collect();
        Ok(Written { rows, released })
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

    async fn update(&self, id: i64, new: &NewFile) -> Result<Option<Written<File>>, BackendError> {
        let mut data = self.data.lock().unwrap();
        let now = self.clock.now();
        let Some(file) = data.rows.iter_mut().find(|f| f.id == id) else { return Ok(None) };
        file.tag = new.tag.clone();
        file.filename = new.filename.clone();
        file.path = new.path.clone();
        let old = std::mem::replace(&mut file.key, new.key.clone());
        file.updated_at = now;
        let mut released = data.switch(&new.environment_slug, &new.path, &new.key);
        released.push(old);
        let released = data.unused(released);
        let rows = data.rows.iter().find(|f| f.id == id).cloned().expect("updated above");
        Ok(Some(Written { rows, released }))
    }

    async fn delete_by_path(&self, environment_slug: &str, path: &str, key: &str) -> Result<u64, BackendError> {
        let mut data = self.data.lock().unwrap();
        let before = data.rows.len();
        data.rows.retain(|f| !(f.environment_slug == environment_slug && f.path == path && f.key == key));
        Ok((before - data.rows.len()) as u64)
    }

    async fn key_in_use(&self, key: &str) -> Result<bool, BackendError> {
        Ok(self.data.lock().unwrap().rows.iter().any(|f| f.key == key))
    }

    async fn keys_of_paths(&self, environment_slug: &str, paths: &[&str]) -> Result<Vec<String>, BackendError> {
        let data = self.data.lock().unwrap();
        let mut keys: Vec<String> = data
            .rows
            .iter()
            .filter(|f| f.environment_slug == environment_slug && paths.contains(&f.path.as_str()))
            .map(|f| f.key.clone())
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}
