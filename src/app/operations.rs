//! Operations (contract §9): readiness, the bound on concurrent uploads, and shutdown.

use std::time::Duration;

use super::Jade;
use crate::domain::Error;

/// How long each part of readiness may take to answer.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// How one part answered a readiness check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Ok,
    /// It failed or did not answer within 2 s.
    Unavailable,
    /// Not asked: shutdown has begun.
    Unchecked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub jade_db: Part,
    pub datacoves_db: Part,
    pub storage: Part,
    /// Shutdown has begun: not ready, whatever the parts say.
    pub shutting_down: bool,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        !self.shutting_down && [self.jade_db, self.datacoves_db, self.storage].iter().all(|p| *p == Part::Ok)
    }

    fn shutting_down() -> Self {
        Readiness {
            jade_db: Part::Unchecked,
            datacoves_db: Part::Unchecked,
            storage: Part::Unchecked,
            shutting_down: true,
        }
    }
}

async fn check<E: std::fmt::Display>(part: &str, ping: impl Future<Output = Result<(), E>>) -> Part {
    match tokio::time::timeout(READINESS_TIMEOUT, ping).await {
        Ok(Ok(())) => Part::Ok,
        Ok(Err(error)) => {
            tracing::warn!(part, %error, "readiness: unavailable");
            Part::Unavailable
        }
        Err(_) => {
            tracing::warn!(part, "readiness: no answer within 2 s");
            Part::Unavailable
        }
    }
}

impl Jade {
    /// Asks the Jade database, the Datacoves database and storage, at once, each bounded by
    /// 2 s. From the moment shutdown begins (even while the checks run) the answer is "shutting
    /// down".
    pub async fn readiness(&self) -> Readiness {
        if self.shutdown.is_cancelled() {
            return Readiness::shutting_down();
        }
        let checks = async {
            tokio::join!(
                check("jade_db", self.ports.registry.ping()),
                check("datacoves_db", self.ports.catalog.ping()),
                check("storage", self.ports.storage.ping()),
            )
        };
        tokio::select! {
            (jade_db, datacoves_db, storage) = checks => {
                Readiness { jade_db, datacoves_db, storage, shutting_down: self.shutdown.is_cancelled() }
            }
            () = self.shutdown.cancelled() => Readiness::shutting_down(),
        }
    }

    /// Marks the start of shutdown: readiness answers 503 from now on.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// How shutdown spends `SHUTDOWN_GRACE_SECONDS`: requests in flight get the first part,
    /// the undo of uploads cut off the rest (a quarter, at most 5 s), so the process ends
    /// within the grace.
    pub fn shutdown_phases(&self) -> (Duration, Duration) {
        let grace = self.settings.shutdown_grace;
        let undo = (grace / 4).min(Duration::from_secs(5));
        (grace - undo, undo)
    }

    /// Waits, at most `bound`, until the undo tasks of uploads that did not finish are done;
    /// answers whether they all are. Undo tasks started later are not waited for.
    pub async fn finish_undo(&self, bound: Duration) -> bool {
        self.tasks.close();
        let finished = tokio::time::timeout(bound, self.tasks.wait()).await.is_ok();
        if !finished {
            tracing::warn!(
                pending = self.tasks.len(),
                "undo of interrupted uploads (or its late re-deletes) still running at exit: bodies may remain"
            );
        }
        finished
    }

    /// A permit to store an upload's bodies; waits while `MAX_CONCURRENT_UPLOADS` others
    /// hold one.
    pub(super) async fn upload_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Error> {
        self.uploads
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Unavailable("Service temporarily unavailable. Please retry.".into()))
    }
}
