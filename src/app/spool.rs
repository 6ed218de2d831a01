//! Bodies spooled to local disk: uploads as they arrive (written by the HTTP extractor) and
//! stored bodies being checked before they are served. One writer for both, so a body is
//! never held in memory.
//!
//! A manifest upload is trimmed while it arrives: the writer hands each chunk to a blocking
//! thread running the streaming [`Trimmer`], which writes the trimmed form to a second spool
//! file. Receiving, writing and validating overlap, and the body is read once.

use std::io::BufWriter;
use std::path::Path;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::{Jade, STORAGE_READ_FAILED};
use crate::domain::Error;
use crate::domain::manifest::ManifestError;
use crate::domain::manifest_trim::Trimmer;
use crate::ports::storage::{Blob, BlobSource};

/// Write buffer of a spool file.
const BUFFER: usize = 256 * 1024;
/// Chunks on their way to a trimming thread; the sender waits beyond this.
const TRIM_QUEUE: usize = 32;

/// A body spooled to local disk; the file is removed when this is dropped.
#[derive(Debug)]
pub struct Spooled {
    pub path: tempfile::TempPath,
    pub len: u64,
    /// The name the client gave the file.
    pub filename: Option<String>,
    /// A manifest's trimmed form, cut out while it arrived (see [`Jade::spool_writer`]), or
    /// why the body is not a manifest.
    pub trimmed: Option<Box<Result<Spooled, ManifestError>>>,
}

impl Spooled {
    /// The body to store.
    pub fn source(&self) -> BlobSource {
        BlobSource::File { path: self.path.to_path_buf(), len: self.len }
    }

    /// The spooled body as a stream. The file is unlinked at once; the open handle keeps it
    /// readable until the stream ends.
    pub async fn into_blob(self) -> std::io::Result<Blob> {
        let file = tokio::fs::File::open(&self.path).await?;
        let len = self.len;
        drop(self);
        let body = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024);
        Ok(Blob { len: Some(len), body: Box::pin(body) })
    }
}

/// Writes a body to a new spool file chunk by chunk.
pub struct SpoolWriter {
    file: tokio::io::BufWriter<tokio::fs::File>,
    path: tempfile::TempPath,
    len: u64,
    trim: Option<Trimming>,
}

/// A trimming thread and the queue feeding it.
struct Trimming {
    chunks: Option<mpsc::Sender<Bytes>>,
    thread: tokio::task::JoinHandle<Result<Spooled, ManifestError>>,
}

impl SpoolWriter {
    pub async fn write(&mut self, chunk: Bytes) -> std::io::Result<()> {
        self.len += chunk.len() as u64;
        if let Some(trim) = &mut self.trim
            && let Some(sender) = &trim.chunks
            && sender.send(chunk.clone()).await.is_err()
        {
            // The thread stopped at the first invalid byte: it needs no more.
            trim.chunks = None;
        }
        self.file.write_all(&chunk).await
    }

    /// The spooled body, with its trimmed form when it was being trimmed.
    pub async fn finish(mut self, filename: Option<String>) -> std::io::Result<Spooled> {
        self.file.flush().await?;
        let trimmed = match self.trim {
            Some(Trimming { chunks, thread }) => {
                drop(chunks);
                Some(Box::new(thread.await.map_err(std::io::Error::other)?))
            }
            None => None,
        };
        Ok(Spooled { path: self.path, len: self.len, filename, trimmed })
    }
}

/// Feeds a trimmer the chunks the queue brings, writing the trimmed form to `out`.
fn trim_chunks(
    mut chunks: mpsc::Receiver<Bytes>,
    out: std::fs::File,
    path: tempfile::TempPath,
) -> Result<Spooled, ManifestError> {
    let mut trimmer = Trimmer::new();
    let mut out = BufWriter::with_capacity(BUFFER, out);
    while let Some(chunk) = chunks.blocking_recv() {
        trimmer.feed(&chunk, &mut out)?;
    }
    let len = trimmer.finish(&mut out)?;
    out.into_inner().map_err(|e| e.into_error())?;
    Ok(Spooled { path, len, filename: None, trimmed: None })
}

/// A new, empty spool file in `dir` (the system's temporary directory when `None`).
fn spool_file(dir: Option<&Path>) -> std::io::Result<tempfile::NamedTempFile> {
    match dir {
        Some(dir) => tempfile::NamedTempFile::new_in(dir),
        None => tempfile::NamedTempFile::new(),
    }
}

impl Jade {
    fn spool_dir(&self) -> Option<&Path> {
        self.settings.spool_dir.as_deref()
    }

    /// A new, empty spool file.
    pub(super) fn spool_file(&self) -> std::io::Result<tempfile::NamedTempFile> {
        spool_file(self.spool_dir())
    }

    /// A writer to a new spool file; with `trim`, the body is also validated and trimmed as
    /// a manifest while it is written.
    pub fn spool_writer(&self, trim: bool) -> std::io::Result<SpoolWriter> {
        let (file, path) = spool_file(self.spool_dir())?.into_parts();
        let trim = if trim {
            let (out, out_path) = spool_file(self.spool_dir())?.into_parts();
            let (sender, receiver) = mpsc::channel(TRIM_QUEUE);
            let thread = tokio::task::spawn_blocking(move || trim_chunks(receiver, out, out_path));
            Some(Trimming { chunks: Some(sender), thread })
        } else {
            None
        };
        let file = tokio::io::BufWriter::with_capacity(BUFFER, tokio::fs::File::from_std(file));
        Ok(SpoolWriter { file, path, len: 0, trim })
    }

    /// Streams a stored body to a spool file, so it can be checked before it is served
    /// without being held in memory; with `trim`, as [`Self::spool_writer`].
    pub(super) async fn spool(&self, mut blob: Blob, trim: bool) -> Result<Spooled, Error> {
        use futures::StreamExt;

        let spooling = |e| Error::internal("writing a spool file", e);
        let mut writer = self.spool_writer(trim).map_err(spooling)?;
        while let Some(chunk) = blob.body.next().await {
            let chunk = chunk.map_err(|e| {
                tracing::error!(error = %e, "reading a body from storage failed");
                Error::Unprocessable(STORAGE_READ_FAILED.into())
            })?;
            writer.write(chunk).await.map_err(spooling)?;
        }
        writer.finish(None).await.map_err(spooling)
    }
}
