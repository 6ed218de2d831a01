//! The run index (Jade database, `run_index`): what Jade knows of every DAG run it has seen,
//! so that a run list is filtered, ordered and paged by one indexed query, exactly, whatever
//! order job-run ids were handed out in. Airflow stays the source of truth: the app keeps
//! the index up to date from each environment's database, and reads the page's runs there.
//! Jade's own fact about runs, their cancellation through Jade, is kept here too.

use std::collections::HashSet;

use async_trait::async_trait;

use crate::domain::catalog::Timestamp;
use crate::domain::job_run::{IndexedRun, RunStatus};
use crate::domain::paging::{Listing, Page, RunOrder, TimeRange};
use crate::ports::BackendError;

/// What the index holds of one environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexedEnvironment {
    /// The highest indexed `dag_run.id` (`None`: nothing indexed yet).
    pub newest: Option<i64>,
    /// How many runs are indexed.
    pub count: u64,
    /// The indexed runs that were not finished when last seen, by `dag_run_id`.
    pub unfinished: Vec<IndexedRun>,
    /// The latest `dag_run.updated_at` the index has been brought up to (`None`: not known,
    /// or the database does not record it).
    pub changes_seen: Option<Timestamp>,
}

/// Which of an account's environments a page lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Environments {
    /// Only these.
    Only(Vec<i64>),
    /// All of the account's but these (usually none: the cheap way to list them all).
    AllBut(Vec<i64>),
}

/// A page of an account's runs: which environments, which filters, which order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunIndexQuery {
    pub account_id: i64,
    pub environments: Environments,
    /// Only runs of these jobs (`None`: all).
    pub job_ids: Option<Vec<i64>>,
    /// Only runs with one of these statuses (`None`: all).
    pub statuses: Option<Vec<RunStatus>>,
    /// Only runs queued in this range (`None`: all).
    pub queued_at: Option<TimeRange>,
    /// Only runs that ended in this range (`None`: all; else unfinished runs never match).
    pub end_date: Option<TimeRange>,
    /// [`crate::domain::job_run::compare`]'s order.
    pub order: RunOrder,
    pub page: Page,
}

/// A run of a page: its job-run id and where its DAG run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub id: i64,
    pub environment_id: i64,
    pub dag_run_id: i64,
}

/// Writes MUST be safe from concurrent requests and replicas (idempotent upserts), and
/// each call is one transaction. Failures are `BackendError`.
#[async_trait]
pub trait RunIndex: Send + Sync + 'static {
    async fn indexed(&self, environment_id: i64) -> Result<IndexedEnvironment, BackendError>;

    /// The indexed runs of the environment with these `dag_run_id`s (those indexed).
    async fn runs(&self, environment_id: i64, dag_run_ids: &[i64]) -> Result<Vec<IndexedRun>, BackendError>;

    /// Records these runs of the environment as they are now, registering job-run ids (in
    /// `dag_run_id` order) and job ids for the new ones. With `complete`, `runs` is all the
    /// environment has, and indexed runs not among them are removed. `changes_seen` moves
    /// the environment's [`IndexedEnvironment::changes_seen`] forward (never back). Runs
    /// recorded as they already were change nothing, so remembered page positions stay good.
    async fn record(
        &self,
        account_id: i64,
        environment_id: i64,
        runs: &[IndexedRun],
        complete: bool,
        changes_seen: Option<Timestamp>,
    ) -> Result<(), BackendError>;

    /// One page of matching runs in the query's order, and how many match in all. Its cost
    /// is bounded by the account's runs, never by the offset's size.
    async fn page(&self, query: &RunIndexQuery) -> Result<Listing<IndexEntry>, BackendError>;

    /// Records that the run was cancelled through Jade (Airflow only knows it failed), by
    /// whom when known. Kept apart from the index, so it outlives a rebuild; from then on the
    /// index holds the run as cancelled while Airflow has it failed. Idempotent.
    async fn cancel(&self, job_run_id: i64, by: Option<&str>) -> Result<(), BackendError>;

    /// Which of these runs were cancelled through Jade.
    async fn cancelled(&self, job_run_ids: &[i64]) -> Result<HashSet<i64>, BackendError>;
}
