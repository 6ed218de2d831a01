//! Local-disk storage: each key is a file under one root directory.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use tokio_util::io::ReaderStream;

use crate::ports::storage::{Blob, BlobSource, BlobStorage, Stat, StorageError};

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

/// Bytes read per chunk of a download: large enough that a big body costs few hops to the
/// blocking pool, small enough to hold per request.
const READ_CHUNK: usize = 256 * 1024;

/// Name prefix of the temporary files a put writes before renaming them into place; `list`
/// leaves them out.
const PARTIAL: &str = ".jade-partial-";

/// Every file below `directory`, as `/`-joined paths relative to `base`. Names that are not
/// UTF-8 cannot be keys and are skipped, as are partial writes.
fn walk(directory: &Path, base: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        if name.starts_with(PARTIAL) {
            continue;
        }
        let relative = if base.is_empty() { name } else { format!("{base}/{name}") };
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), &relative, out)?;
        } else if kind.is_file() {
            out.push(relative);
        }
    }
    Ok(())
}

/// Size, modification time (ns) and inode: a put renames a new file into place, so the inode
/// changes with every put even when the clock is coarse.
fn version(metadata: &std::fs::Metadata) -> String {
    let modified = metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_nanos());
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(metadata);
    #[cfg(not(unix))]
    let inode = 0;
    format!("{}-{modified}-{inode}", metadata.len())
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
            let partial = || tempfile::Builder::new().prefix(PARTIAL).clone();
            let temp = match source {
                BlobSource::Bytes(bytes) => {
                    let mut temp = partial().tempfile_in(&directory)?;
                    std::io::Write::write_all(&mut temp, &bytes)?;
                    temp
                }
                // A spooled body on the same file system is linked, not copied (the port
                // promises it is never written again). Elsewhere the kernel copies it
                // (copy_file_range), nothing passes through user space.
                BlobSource::File { path, .. } => match partial().make_in(&directory, |name| {
                    std::fs::hard_link(&path, name)?;
                    std::fs::File::open(name)
                }) {
                    Ok(linked) => linked,
                    Err(_) => {
                        let mut temp = partial().tempfile_in(&directory)?;
                        std::io::copy(&mut std::fs::File::open(path)?, temp.as_file_mut())?;
                        temp
                    }
                },
            };
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
        Ok(Blob { len: Some(metadata.len()), body: Box::pin(ReaderStream::with_capacity(file, READ_CHUNK)) })
    }

    async fn stat(&self, key: &str) -> Result<Stat, StorageError> {
        let metadata = match tokio::fs::metadata(self.path(key)?).await {
            Ok(metadata) if metadata.is_file() => metadata,
            Ok(_) => return Err(StorageError::NotFound),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                return Err(StorageError::NotFound);
            }
            Err(e) => return Err(backend(e)),
        };
        Ok(Stat { len: metadata.len(), version: version(&metadata) })
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let directory =
            self.path(prefix.strip_suffix('/').ok_or_else(|| StorageError::InvalidKey(prefix.to_owned()))?)?;
        tokio::task::spawn_blocking(move || {
            let mut keys = Vec::new();
            walk(&directory, "", &mut keys)?;
            keys.sort();
            Ok(keys)
        })
        .await
        .map_err(|e| StorageError::Backend(e.to_string()))?
        .map_err(backend)
    }

    async fn ping(&self) -> Result<(), StorageError> {
        let metadata = tokio::fs::metadata(&self.root).await.map_err(backend)?;
        if metadata.is_dir() {
            Ok(())
        } else {
            Err(StorageError::Backend("the storage root is not a directory".into()))
        }
    }

    fn backend(&self) -> &'static str {
        "fs"
    }

    fn keeps_spool_files(&self) -> bool {
        true
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
