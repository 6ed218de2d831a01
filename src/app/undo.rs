//! Undoing what an upload wrote when it does not finish: when it fails, and when its
//! request future is dropped mid-way (the client went away, shutdown cut it off). A guard
//! owns what was written so far; `finish` runs the undo (or, on success, the removal of
//! replaced bodies) and `Drop` does it for an upload that never got there. Either way the
//! work runs in a task of its own, tracked by `Jade::tasks`, so it outlives the request and
//! shutdown waits for it.
//!
//! Bodies are written before rows and removed after them: no reader finds a row without its
//! body while an upload comes or goes.

use std::time::Duration;

use futures::future::BoxFuture;

use super::Jade;

/// How an upload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Its rows are written.
    Done,
    /// It failed before its rows were written.
    Failed,
    /// Its future was dropped; whether its rows were written is not known.
    Cut,
}

/// What an upload wrote, and how to take it back.
pub(super) trait Undo: Send + 'static {
    fn run(self, jade: Jade, outcome: Outcome) -> BoxFuture<'static, ()>;
}

pub(super) struct Guard<U: Undo> {
    jade: Jade,
    work: Option<U>,
}

impl<U: Undo> Guard<U> {
    pub(super) fn new(jade: &Jade, work: U) -> Self {
        Guard { jade: jade.clone(), work: Some(work) }
    }

    pub(super) fn get(&mut self) -> &mut U {
        self.work.as_mut().expect("a guard holds its work until finished")
    }

    /// Runs the work for `outcome` and waits for it. It runs in a tracked task: dropping
    /// the caller meanwhile does not stop it.
    pub(super) async fn finish(mut self, outcome: Outcome) {
        if let Some(work) = self.work.take() {
            let task = self.jade.tasks.spawn(work.run(self.jade.clone(), outcome));
            if let Err(error) = task.await {
                tracing::error!(%error, "undoing an upload failed");
            }
        }
    }
}

impl<U: Undo> Drop for Guard<U> {
    fn drop(&mut self) {
        let Some(work) = self.work.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                tracing::warn!("an upload was cut off; undoing what it wrote");
                self.jade.tasks.spawn_on(work.run(self.jade.clone(), Outcome::Cut), &runtime);
            }
            Err(_) => tracing::error!("an upload was cut off without a runtime to undo it: bodies or rows may remain"),
        }
    }
}

/// How long bodies the storage would not delete (it was down) are retried in the background.
const RETRY_FOR: Duration = Duration::from_secs(600);

/// What must still hold for a body to be deleted on a retry.
#[derive(Debug, Clone)]
pub(super) enum Recheck {
    /// Nothing: the key belongs to the upload alone.
    Nothing,
    /// No file row reads the key.
    FileKey,
    /// The run (environment, dag_id, run_id) has no manifest (its manifests share bodies).
    Run(String, String, String),
}

impl Recheck {
    async fn allows(&self, jade: &Jade, key: &str) -> bool {
        let answer = match self {
            Recheck::Nothing => Ok(true),
            Recheck::FileKey => jade.ports.files.key_in_use(key).await.map(|used| !used),
            Recheck::Run(environment, dag_id, run_id) => {
                jade.ports.manifests.count_for_run(environment, dag_id, run_id).await.map(|n| n == 0)
            }
        };
        answer.unwrap_or_else(|error| {
            tracing::warn!(%error, key, "cannot tell whether a body is still unused; kept for now");
            false
        })
    }
}

/// When bodies are deleted again, after the first try, for a write cut off mid-way whose
/// bytes were already on their way (it may still land after the first delete).
const LATE_ROUNDS: [u64; 5] = [1, 3, 10, 30, 60];

/// Deletes each body. Those the storage refuses now (it is down) are retried in a tracked
/// background task, with backoff, while `recheck` allows, for up to ten minutes: the body of
/// an upload cut off by a storage outage goes once storage is back. With `late`, every key is
/// also deleted again over the next two minutes (while `recheck` allows), for a write that
/// was cut off mid-way but lands anyway.
pub(super) async fn delete_bodies(jade: &Jade, keys: Vec<String>, what: &'static str, recheck: Recheck, late: bool) {
    let mut pending = Vec::new();
    for key in keys {
        match jade.ports.storage.delete(&key).await {
            Ok(()) if !late => {}
            Ok(()) => pending.push((key, true)),
            Err(error) => {
                tracing::warn!(%error, key, what, "removing a body failed; retrying in the background");
                pending.push((key, false));
            }
        }
    }
    if pending.is_empty() {
        return;
    }
    let retrying = jade.clone();
    let refused = pending.iter().any(|(_, deleted)| !deleted);
    let task = async move {
        let started = tokio::time::Instant::now();
        for round in 0.. {
            // Keys deleted once only come back in the late rounds; refused ones until storage
            // takes them.
            pending.retain(|(_, deleted)| !*deleted || round < LATE_ROUNDS.len());
            if pending.is_empty() {
                return;
            }
            if started.elapsed() > RETRY_FOR {
                let keys: Vec<&String> = pending.iter().filter(|(_, deleted)| !deleted).map(|(k, _)| k).collect();
                tracing::error!(?keys, what, "bodies of interrupted uploads could not be removed; they remain");
                return;
            }
            tokio::time::sleep(Duration::from_secs(LATE_ROUNDS.get(round).copied().unwrap_or(60))).await;
            let mut still = Vec::new();
            for (key, deleted) in pending {
                if !recheck.allows(&retrying, &key).await {
                    continue;
                }
                let done = retrying.ports.storage.delete(&key).await.is_ok();
                still.push((key, deleted || done));
            }
            pending = still;
        }
    };
    // Shutdown waits (a bounded while) for bodies storage refused, not for late re-deletes.
    if refused {
        jade.tasks.spawn(task);
    } else {
        tokio::spawn(task);
    }
}

/// Bodies an artifact upload wrote (recorded before each write starts).
#[derive(Default)]
pub(super) struct ArtifactWrites {
    pub keys: Vec<String>,
}

impl Undo for ArtifactWrites {
    fn run(self, jade: Jade, outcome: Outcome) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if outcome != Outcome::Done {
                delete_bodies(&jade, self.keys, "artifact", Recheck::Nothing, true).await;
            }
        })
    }
}

/// What a manifest upload wrote.
pub(super) struct ManifestWrites {
    /// Its bodies (recorded before each write starts).
    pub keys: Vec<String>,
    /// Its row id, once the insert has started.
    pub row: Option<i64>,
    /// (environment, dag_id, run_id): a run's manifests share their bodies.
    pub run: Option<(String, String, String)>,
}

impl Undo for ManifestWrites {
    fn run(self, jade: Jade, outcome: Outcome) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if outcome == Outcome::Done {
                return;
            }
            // The row first: no reader finds it without its body.
            if let Some(id) = self.row
                && let Err(error) = jade.ports.manifests.delete(id).await
            {
                tracing::error!(%error, id, "removing the row of an interrupted manifest upload failed; bodies kept");
                return;
            }
            let mut recheck = Recheck::Nothing;
            if let Some((environment, dag_id, run_id)) = &self.run {
                match jade.ports.manifests.count_for_run(environment, dag_id, run_id).await {
                    Ok(0) => {}
                    Ok(_) => return,
                    Err(error) => {
                        tracing::error!(%error, "cannot tell whether a run's manifest bodies are shared; kept");
                        return;
                    }
                }
                recheck = Recheck::Run(environment.clone(), dag_id.clone(), run_id.clone());
            }
            delete_bodies(&jade, self.keys, "manifest", recheck, true).await;
        })
    }
}

/// What a file upload or update wrote.
pub(super) struct FileWrites {
    /// The fresh keys of its bodies (recorded before each write starts).
    pub fresh: Vec<String>,
    /// The keys its rows replace: removed once the rows are written.
    pub replaced: Vec<String>,
    /// The rows' transaction has started (it may have committed).
    pub committing: bool,
}

impl Undo for FileWrites {
    fn run(self, jade: Jade, outcome: Outcome) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let committed = match outcome {
                Outcome::Done => true,
                Outcome::Failed => false,
                Outcome::Cut if !self.committing => false,
                Outcome::Cut => match self.fresh.first() {
                    None => false,
                    Some(key) => match jade.ports.files.key_in_use(key).await {
                        Ok(in_use) => in_use,
                        Err(error) => {
                            tracing::error!(%error, "cannot tell whether an interrupted file upload was stored; kept");
                            return;
                        }
                    },
                },
            };
            // Written: the replaced bodies go. Not written: the new ones go. Either way only
            // bodies no row reads.
            let candidates = if committed { self.replaced } else { self.fresh };
            for key in candidates {
                match jade.ports.files.key_in_use(&key).await {
                    Ok(false) => delete_bodies(&jade, vec![key], "file", Recheck::FileKey, !committed).await,
                    Ok(true) => {}
                    Err(error) => tracing::error!(%error, key, "cannot tell whether a file body is in use; kept"),
                }
            }
        })
    }
}
