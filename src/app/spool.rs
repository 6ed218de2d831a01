//! Bodies spooled to local disk: uploads as they arrive (written by the HTTP extractor) and
//! stored bodies being checked before they are served. One writer for both, so a body is
//! never held in memory.
//!
//! The writer hands each chunk (shared, not copied) to a blocking thread that writes the spool
//! file, and for a manifest upload to a second one running the streaming [`Trimmer`], which
//! writes the trimmed form to a second spool file. Receiving, writing and validating overlap,
//! and the body is read once.

use std::io::{BufWriter, Write};
use std::path::Path;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Jade, STORAGE_READ_FAILED};
use crate::domain::Error;
use crate::domain::manifest::ManifestError;
use crate::domain::manifest_trim::Trimmer;
use crate::ports::storage::{Blob, BlobSource};

/// Write buffer of a spool file.
const BUFFER: usize = 256 * 1024;
/// Chunks on their way to a writing or trimming thread; the sender waits beyond this.
const QUEUE: usize = 32;
/// How often a spool file that storage keeps is written back to disk while it is written.
const WRITEBACK: u64 = 8 * 1024 * 1024;

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

/// Writes a body to a new spool file chunk by chunk. Blocking threads do the work while the
/// next chunks arrive: one writes the file, and when trimming, another trims.
pub struct SpoolWriter {
    path: tempfile::TempPath,
    len: u64,
    file: Pipe<std::io::Result<()>>,
    trim: Option<Pipe<Result<Spooled, ManifestError>>>,
}

/// A blocking thread and the queue of chunks feeding it.
struct Pipe<T> {
    chunks: Option<mpsc::Sender<Bytes>>,
    thread: Option<tokio::task::JoinHandle<T>>,
}

impl<T: Send + 'static> Pipe<T> {
    fn spawn(work: impl FnOnce(mpsc::Receiver<Bytes>) -> T + Send + 'static) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let thread = tokio::task::spawn_blocking(move || work(receiver));
        Pipe { chunks: Some(sender), thread: Some(thread) }
    }

    /// Hands `chunk` to the thread; `false` once the thread has stopped.
    async fn send(&mut self, chunk: Bytes) -> bool {
        let stopped = match &self.chunks {
            Some(sender) => sender.send(chunk).await.is_err(),
            None => true,
        };
        if stopped {
            self.chunks = None;
        }
        !stopped
    }

    /// What the thread answered, once its queue is closed and drained.
    async fn finish(&mut self) -> std::io::Result<T> {
        self.chunks = None;
        let thread = self.thread.take().ok_or_else(|| std::io::Error::other("the spool thread already ended"))?;
        thread.await.map_err(std::io::Error::other)
    }
}

impl SpoolWriter {
    pub async fn write(&mut self, chunk: Bytes) -> std::io::Result<()> {
        self.len += chunk.len() as u64;
        if let Some(trim) = &mut self.trim {
            // A trimmer that stopped found an invalid byte: it needs no more, and `finish`
            // tells why.
            trim.send(chunk.clone()).await;
        }
        if self.file.send(chunk).await {
            return Ok(());
        }
        // The writing thread stopped: it failed.
        Err(self.file.finish().await?.err().unwrap_or_else(|| std::io::Error::other("the spool writer stopped")))
    }

    /// The spooled body, with its trimmed form when it was being trimmed.
    pub async fn finish(mut self, filename: Option<String>) -> std::io::Result<Spooled> {
        self.file.finish().await??;
        let trimmed = match &mut self.trim {
            Some(trim) => Some(Box::new(trim.finish().await?)),
            None => None,
        };
        Ok(Spooled { path: self.path, len: self.len, filename, trimmed })
    }
}

/// A spool file being written, buffered. With `writeback`, the kernel is asked every
/// [`WRITEBACK`] bytes to start writing what came so far to disk (without waiting for it):
/// a storage that keeps the file and syncs it then finds little left to write.
struct SpoolFile {
    out: BufWriter<std::fs::File>,
    writeback: bool,
    /// Bytes written since the last writeback began.
    pending: u64,
}

impl SpoolFile {
    fn new(file: std::fs::File, writeback: bool) -> Self {
        SpoolFile { out: BufWriter::with_capacity(BUFFER, file), writeback, pending: 0 }
    }
}

impl Write for SpoolFile {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.out.write(bytes)?;
        self.pending += written as u64;
        if self.writeback && self.pending >= WRITEBACK {
            self.out.flush()?;
            start_writeback(self.out.get_ref());
            self.pending = 0;
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Starts writing the file's dirty pages to disk, without waiting (pages already being
/// written are skipped): `sync_file_range(SYNC_FILE_RANGE_WRITE)`, as PostgreSQL's
/// `*_flush_after` settings do. Advisory: an error only means the final sync does all the
/// writing.
#[cfg(target_os = "linux")]
fn start_writeback(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open (borrowed from `file`) and the call takes no pointer.
    unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &std::fs::File) {}

/// Writes the chunks the queue brings to a spool file.
fn write_chunks(mut chunks: mpsc::Receiver<Bytes>, mut out: SpoolFile) -> std::io::Result<()> {
    while let Some(chunk) = chunks.blocking_recv() {
        out.write_all(&chunk)?;
    }
    out.flush()
}

/// Feeds a trimmer the chunks the queue brings, writing the trimmed form to `out`.
fn trim_chunks(
    mut chunks: mpsc::Receiver<Bytes>,
    mut out: SpoolFile,
    path: tempfile::TempPath,
) -> Result<Spooled, ManifestError> {
    let mut trimmer = Trimmer::new();
    while let Some(chunk) = chunks.blocking_recv() {
        trimmer.feed(&chunk, &mut out)?;
    }
    let len = trimmer.finish(&mut out)?;
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
        let writeback = self.ports.storage.keeps_spool_files();
        let (file, path) = spool_file(self.spool_dir())?.into_parts();
        let trim = if trim {
            let (out, out_path) = spool_file(self.spool_dir())?.into_parts();
            let out = SpoolFile::new(out, writeback);
            Some(Pipe::spawn(move |chunks| trim_chunks(chunks, out, out_path)))
        } else {
            None
        };
        let file = SpoolFile::new(file, writeback);
        Ok(SpoolWriter { path, len: 0, file: Pipe::spawn(move |chunks| write_chunks(chunks, file)), trim })
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
