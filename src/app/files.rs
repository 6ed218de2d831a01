//! Files (contract §4): tagged bodies an environment's DAGs share through Jade.

use std::io::BufReader;

use super::manifests::storage_read_failed;
use super::{Jade, STORAGE_WRITE_FAILED, Spooled, backend, blocking};
use crate::domain::Error;
use crate::domain::file::{File, FileLookup, NewFile};
use crate::ports::storage::StorageError;

use super::undo::{FileWrites, Guard, Outcome};

/// One file of a `POST …/files`, as it arrived.
#[derive(Debug)]
pub struct FileUpload {
    pub tag: Option<String>,
    pub file: Option<Spooled>,
}

/// A file with its body, spooled to local disk and checked.
#[derive(Debug)]
pub struct FileBody {
    pub file: File,
    pub contents: Spooled,
    /// Whether the body is one JSON value (rendered as is) or not (rendered as a string).
    pub is_json: bool,
}

const LOOKUP_REQUIRED: &str = "Give the file's slug, tag or filename as a query parameter.";
const SLUG_OR_TAG_REQUIRED: &str = "Give the file's slug or tag.";

impl Jade {
    /// Stores files: every body first, each under a fresh key, then all rows in one
    /// transaction that also points the earlier rows of each path at the new body; the
    /// bodies it replaced are removed last. All of them are stored or none is, and a stored
    /// file is never changed by an upload that fails or is cut off: on any failure the new
    /// bodies are removed again. Waits for an upload permit.
    pub async fn create_files(&self, environment_slug: &str, uploads: Vec<FileUpload>) -> Result<Vec<File>, Error> {
        if uploads.is_empty() {
            return Err(Error::invalid("file", "can't be blank"));
        }
        let mut checked = Vec::with_capacity(uploads.len());
        for upload in uploads {
            let file = upload.file.ok_or_else(|| Error::invalid("file", "can't be blank"))?;
            let new = NewFile::new(environment_slug, upload.tag.as_deref(), file.filename.as_deref())?;
            checked.push((new, file));
        }
        let _permit = self.upload_permit().await?;
        let paths: Vec<&str> = checked.iter().map(|(new, _)| new.path.as_str()).collect();
        let replaced = self.ports.files.keys_of_paths(environment_slug, &paths).await.map_err(backend)?;
        let mut guard = Guard::new(self, FileWrites { fresh: Vec::new(), replaced, committing: false });
        for (new, file) in &checked {
            guard.get().fresh.push(new.key.clone());
            let source = file.source();
            if let Err(error) = self.ports.storage.put(&new.key, source).await {
                tracing::error!(%error, key = new.key, "storing a file failed");
                guard.finish(Outcome::Failed).await;
                return Err(Error::Unprocessable(STORAGE_WRITE_FAILED.into()));
            }
        }
        let rows: Vec<NewFile> = checked.iter().map(|(new, _)| new.clone()).collect();
        guard.get().committing = true;
        match self.ports.files.insert(&rows).await {
            Ok(written) => {
                guard.get().replaced = written.released;
                guard.finish(Outcome::Done).await;
                Ok(written.rows)
            }
            Err(error) => {
                // The transaction did not commit (or its outcome is unknown: the undo asks).
                guard.finish(Outcome::Cut).await;
                Err(backend(error))
            }
        }
    }

    /// The newest file the lookup names, with its body.
    pub async fn file(&self, environment_slug: &str, lookup: Option<FileLookup>) -> Result<FileBody, Error> {
        let file = self.find_file_to_read(environment_slug, lookup).await?;
        self.open_file(file).await
    }

    /// The newest file the lookup names, with its stored bytes as they are (spooled).
    pub async fn file_bytes(
        &self,
        environment_slug: &str,
        lookup: Option<FileLookup>,
    ) -> Result<(File, Spooled), Error> {
        let file = self.find_file_to_read(environment_slug, lookup).await?;
        let contents = self.stored_body(&file).await?;
        Ok((file, contents))
    }

    /// The newest file the lookup names, by its row alone: storage is not asked (a
    /// conditional read compares [`File::version`] first).
    pub async fn find_file_to_read(&self, environment_slug: &str, lookup: Option<FileLookup>) -> Result<File, Error> {
        let lookup = lookup.ok_or_else(|| Error::BadRequest(LOOKUP_REQUIRED.into()))?;
        self.find_file(environment_slug, &lookup).await
    }

    /// A found file with its body, spooled and checked.
    pub async fn open_file(&self, file: File) -> Result<FileBody, Error> {
        let contents = self.stored_body(&file).await?;
        let path = contents.path.to_path_buf();
        let is_json = blocking(move || is_json(&path)).await?;
        Ok(FileBody { file, contents, is_json })
    }

    /// A found file's stored bytes as they are (spooled).
    pub async fn open_file_bytes(&self, file: &File) -> Result<Spooled, Error> {
        self.stored_body(file).await
    }

    /// Replaces a file's body and filename (`upload`), renames its tag (`new_tag`), or both;
    /// the body is stored under a fresh key first, then the row changes (and the other rows
    /// of its new path follow it to the new body), then the replaced bodies are removed. On
    /// any failure, or when the request is cut off, the file stays as it was and the new body
    /// is removed. Waits for an upload permit. Answers the file with its body.
    pub async fn update_file(
        &self,
        environment_slug: &str,
        lookup: Option<FileLookup>,
        upload: Option<Spooled>,
        new_tag: Option<String>,
    ) -> Result<FileBody, Error> {
        let lookup = lookup.ok_or_else(|| Error::BadRequest(SLUG_OR_TAG_REQUIRED.into()))?;
        let existing = self.find_file(environment_slug, &lookup).await?;
        let new_tag = new_tag.filter(|tag| !tag.is_empty() && *tag != existing.tag);
        let tag = new_tag.as_deref().unwrap_or(&existing.tag);
        let (new, upload) = match upload {
            Some(upload) => (NewFile::new(environment_slug, Some(tag), upload.filename.as_deref())?, upload),
            None if new_tag.is_some() => {
                // A rename alone: the stored body moves to the new path as it is.
                let new = NewFile::new(environment_slug, Some(tag), Some(&existing.filename))?;
                (new, self.stored_body(&existing).await?)
            }
            None => return Err(Error::invalid("file", "can't be blank")),
        };
        let _permit = self.upload_permit().await?;
        let mut replaced = self.ports.files.keys_of_paths(environment_slug, &[&new.path]).await.map_err(backend)?;
        replaced.push(existing.key.clone());
        let mut guard = Guard::new(self, FileWrites { fresh: vec![new.key.clone()], replaced, committing: false });
        let source = upload.source();
        if let Err(error) = self.ports.storage.put(&new.key, source).await {
            tracing::error!(%error, key = new.key, "storing a file failed");
            guard.finish(Outcome::Failed).await;
            return Err(Error::Unprocessable(STORAGE_WRITE_FAILED.into()));
        }
        guard.get().committing = true;
        let updated = match self.ports.files.update(existing.id, &new).await {
            Ok(Some(written)) => {
                guard.get().replaced = written.released;
                guard.finish(Outcome::Done).await;
                written.rows
            }
            Ok(None) => {
                guard.finish(Outcome::Failed).await;
                return Err(Error::not_found());
            }
            Err(error) => {
                guard.finish(Outcome::Cut).await;
                return Err(backend(error));
            }
        };
        let path = upload.path.to_path_buf();
        let is_json = blocking(move || is_json(&path)).await?;
        Ok(FileBody { file: updated, contents: upload, is_json })
    }

    /// Removes a file's body, then its row (and the rows of earlier uploads stored under the
    /// same path, which read that body).
    pub async fn delete_file(&self, environment_slug: &str, lookup: Option<FileLookup>) -> Result<(), Error> {
        let lookup = lookup.ok_or_else(|| Error::BadRequest(SLUG_OR_TAG_REQUIRED.into()))?;
        let file = self.find_file(environment_slug, &lookup).await?;
        if let Err(error) = self.ports.storage.delete(&file.key).await {
            tracing::error!(%error, key = file.key, "deleting a file body failed");
            return Err(Error::Unprocessable(
                "Deletion of file contents from storage failed. File record and contents remain.".into(),
            ));
        }
        self.ports.files.delete_by_path(environment_slug, &file.path, &file.key).await.map_err(backend)?;
        Ok(())
    }

    /// A file's stored body, spooled to local disk.
    async fn stored_body(&self, file: &File) -> Result<Spooled, Error> {
        let blob = match self.ports.storage.get(&file.key).await {
            Ok(blob) => blob,
            Err(StorageError::NotFound) => {
                return Err(Error::not_found_with("File found but could not download contents from storage bucket."));
            }
            Err(error) => return Err(storage_read_failed(&error)),
        };
        self.spool(blob, false).await
    }

    async fn find_file(&self, environment_slug: &str, lookup: &FileLookup) -> Result<File, Error> {
        self.ports.files.find(environment_slug, lookup).await.map_err(backend)?.ok_or_else(Error::not_found)
    }
}

/// Whether a file holds exactly one JSON value in valid UTF-8, checked while streaming it (no
/// tree is built). serde_json does not check the UTF-8 of strings it skips, so that is checked
/// first: a body inlined into an answer must keep the answer valid JSON.
fn is_json(path: &std::path::Path) -> bool {
    if !is_utf8(path) {
        return false;
    }
    let Ok(file) = std::fs::File::open(path) else { return false };
    let mut deserializer = serde_json::Deserializer::from_reader(BufReader::new(file));
    serde::de::Deserialize::deserialize(&mut deserializer).map(|_: serde::de::IgnoredAny| ()).is_ok()
        && deserializer.end().is_ok()
}

/// Whether a file is valid UTF-8, read block by block.
fn is_utf8(path: &std::path::Path) -> bool {
    use std::io::Read;
    let Ok(mut file) = std::fs::File::open(path) else { return false };
    let mut block = vec![0u8; 64 * 1024];
    // Bytes of a sequence the previous block cut short (at most 3) move to the front.
    let mut carried = 0;
    loop {
        let read = match file.read(&mut block[carried..]) {
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        let filled = carried + read;
        if read == 0 {
            return carried == 0;
        }
        match std::str::from_utf8(&block[..filled]) {
            Ok(_) => carried = 0,
            Err(error) if error.error_len().is_none() => {
                let valid = error.valid_up_to();
                block.copy_within(valid..filled, 0);
                carried = filled - valid;
            }
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, bytes).unwrap();
        file
    }

    #[test]
    fn json_must_be_utf8_even_inside_strings() {
        assert!(is_json(written("{\"a\": \"\\u00e9 é\"}".as_bytes()).path()));
        assert!(!is_json(written(b"{\"a\": \"\xff\"}").path()));
        assert!(!is_json(written(b"plain").path()));
    }

    #[test]
    fn utf8_is_checked_across_blocks() {
        // A 4-byte sequence straddling the 64 KiB block boundary.
        let mut bytes = vec![b'a'; 64 * 1024 - 2];
        bytes.extend_from_slice("\u{1F600}".as_bytes());
        assert!(is_utf8(written(&bytes).path()));
        bytes.push(0xf0);
        assert!(!is_utf8(written(&bytes).path()), "cut short at the end");
        bytes.pop();
        bytes[10] = 0x80;
        assert!(!is_utf8(written(&bytes).path()));
    }
}
