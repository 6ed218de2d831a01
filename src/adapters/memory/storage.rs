use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use crate::ports::storage::{Blob, BlobSource, BlobStorage, Stat, StorageError};

/// Objects in a map. `set_failing` makes every call fail as a stopped server would;
/// `fail_puts_containing` makes only the puts of matching keys fail. Each put gets a new
/// number, the object's version.
#[derive(Default)]
pub struct MemoryStorage {
    objects: Mutex<HashMap<String, (Bytes, u64)>>,
    puts: AtomicU64,
    failing: AtomicBool,
    failing_puts: Mutex<Option<String>>,
}

impl MemoryStorage {
    pub fn fail_puts_containing(&self, fragment: Option<&str>) {
        *self.failing_puts.lock().unwrap() = fragment.map(str::to_owned);
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.objects.lock().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }

    fn check(&self) -> Result<(), StorageError> {
        if self.failing.load(Ordering::SeqCst) {
            Err(StorageError::Backend("memory storage set to fail".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl BlobStorage for MemoryStorage {
    async fn put(&self, key: &str, source: BlobSource) -> Result<(), StorageError> {
        self.check()?;
        if self.failing_puts.lock().unwrap().as_deref().is_some_and(|f| key.contains(f)) {
            return Err(StorageError::Backend(format!("memory storage set to fail puts of {key}")));
        }
        let bytes = match source {
            BlobSource::Bytes(bytes) => bytes,
            BlobSource::File { path, .. } => {
                Bytes::from(tokio::fs::read(&path).await.map_err(|e| StorageError::Backend(e.to_string()))?)
            }
        };
        let version = self.puts.fetch_add(1, Ordering::SeqCst) + 1;
        self.objects.lock().unwrap().insert(key.to_owned(), (bytes, version));
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Blob, StorageError> {
        self.check()?;
        let (bytes, _) = self.objects.lock().unwrap().get(key).cloned().ok_or(StorageError::NotFound)?;
        Ok(Blob { len: Some(bytes.len() as u64), body: Box::pin(futures::stream::once(async move { Ok(bytes) })) })
    }

    async fn stat(&self, key: &str) -> Result<Stat, StorageError> {
        self.check()?;
        let objects = self.objects.lock().unwrap();
        let (bytes, version) = objects.get(key).ok_or(StorageError::NotFound)?;
        Ok(Stat { len: bytes.len() as u64, version: format!("put-{version}") })
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.check()?;
        self.objects.lock().unwrap().remove(key);
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.check()?;
        let objects = self.objects.lock().unwrap();
        let mut keys: Vec<String> =
            objects.keys().filter_map(|key| key.strip_prefix(prefix)).map(str::to_owned).collect();
        keys.sort();
        Ok(keys)
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.check()
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}
