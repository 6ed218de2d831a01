//! Local-disk storage: each key is a file under one root directory.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use tokio_util::io::ReaderStream;

use crate::ports::storage::{Blob, BlobSource, BlobStorage, StorageError};

/// Stores objects as files under `root`. A key maps to `root/<key>` (one leading `/`
/// dropped); a key with an empty, `.` or `..` segment is refused, so nothing is ever read
/// or written outside the root. Writes go to a temporary file in the target directory that
/// is renamed into place, so a failed put leaves the previous object intact.
#[derive(Debug, Clone)]
pub struct FsStorage {
    root: PathBuf,
}

impl FsStorage {
    /// Creates the root directory if needed.
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(FsStorage { root: root.canonicalize()? })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        let relative = key.strip_prefix('/').unwrap_or(key);
        let invalid = || StorageError::InvalidKey(key.to_owned());
        if relative.is_empty() || relative.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(invalid());
        }
        let relative = Path::new(relative);
        // Belt and braces: only plain names may remain.
        if !relative.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(invalid());
        }
        Ok(self.root.join(relative))
    }
}

fn backend(error: std::io::Error) -> StorageError {
    StorageError::Backend(error.to_string())
}

#[async_trait]
impl BlobStorage for FsStorage {
    async fn put(&self, key: &str, source: BlobSource) -> Result<(), StorageError> {
        let target = self.path(key)?;
        let directory = target.parent().expect("a key path has a parent").to_path_buf();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&directory)?;
            let mut temp = tempfile::NamedTempFile::new_in(&directory)?;
            match source {
                BlobSource::Bytes(bytes) => std::io::Write::write_all(&mut temp, &bytes)?,
                BlobSource::File { path, .. } => {
                    std::io::copy(&mut std::fs::File::open(path)?, &mut temp)?;
                }
            }
            temp.as_file().sync_data()?;
            temp.persist(&target).map_err(|e| e.error)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageError::Backend(e.to_string()))?
        .map_err(backend)
    }

    async fn get(&self, key: &str) -> Result<Blob, StorageError> {
        let path = self.path(key)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(StorageError::NotFound),
            Err(e) => return Err(backend(e)),
        };
        let metadata = file.metadata().await.map_err(backend)?;
        if !metadata.is_file() {
            return Err(StorageError::NotFound);
        }
        Ok(Blob { len: Some(metadata.len()), body: Box::pin(ReaderStream::with_capacity(file, 64 * 1024)) })
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }

    fn backend(&self) -> &'static str {
        "fs"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_under_the_root_and_never_escape_it() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::new(dir.path()).unwrap();
        let root = storage.root().to_path_buf();
        assert_eq!(
            storage.path("/environments/dev/files/t/a.json").unwrap(),
            root.join("environments/dev/files/t/a.json")
        );
        assert_eq!(storage.path("accounts/1/m.json").unwrap(), root.join("accounts/1/m.json"));
        for bad in ["", "/", "../x", "a/../../x", "a//b", "./a", "//etc/passwd", "a/."] {
            assert!(matches!(storage.path(bad), Err(StorageError::InvalidKey(_))), "{bad:?} accepted");
        }
    }
}
