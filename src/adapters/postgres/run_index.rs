//! `run_index`: filtered, ordered pages of an account's runs in one indexed query, and the
//! upserts that keep it up to date. Every statement's text is one of a fixed set: values,
//! limits and offsets are parameters, so the prepared-statement cache stays small.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;

use super::registry::RUN_LOCK;
use super::{JadeDatabase, db, int4};
use crate::domain::job_run::{ApiCompat, IndexedRun, RunStatus};
use crate::domain::paging::{Listing, RunSort};
use crate::ports::BackendError;
use crate::ports::run_index::{Environments, IndexEntry, IndexedEnvironment, RunIndex, RunIndexQuery};

/// The index keeps statuses as the first Jade's codes (1 success, 2 error, 3 queued, 5
/// running), and dbt Cloud's 30 for a run cancelled through Jade.
fn status_code(status: RunStatus) -> i16 {
    match status {
        RunStatus::Cancelled => CANCELLED,
        status => status.code(ApiCompat::Jade) as i16,
    }
}

const CANCELLED: i16 = 30;

fn status(code: i16) -> RunStatus {
    if code == CANCELLED {
        return RunStatus::Cancelled;
    }
    RunStatus::with_code(i64::from(code), ApiCompat::Jade).next().unwrap_or(RunStatus::Queued)
}

/// The conditions of a page, for each way of naming its environments. Both forms keep the
/// statement texts fixed.
/// `$5`..`$8` bound `queued_at` and `end_date` (inclusive), each NULL when absent.
fn filter(environments: &Environments) -> &'static str {
    match environments {
        Environments::Only(_) => {
            "WHERE account_id = $1 AND environment_id = ANY($2) \
             AND ($3::int8[] IS NULL OR job_id = ANY($3)) AND ($4::int2[] IS NULL OR status = ANY($4)) \
             AND ($5::timestamptz IS NULL OR queued_at >= $5) AND ($6::timestamptz IS NULL OR queued_at <= $6) \
             AND ($7::timestamptz IS NULL OR end_date >= $7) AND ($8::timestamptz IS NULL OR end_date <= $8)"
        }
        Environments::AllBut(_) => {
            "WHERE account_id = $1 AND environment_id <> ALL($2) \
             AND ($3::int8[] IS NULL OR job_id = ANY($3)) AND ($4::int2[] IS NULL OR status = ANY($4)) \
             AND ($5::timestamptz IS NULL OR queued_at >= $5) AND ($6::timestamptz IS NULL OR queued_at <= $6) \
             AND ($7::timestamptz IS NULL OR end_date >= $7) AND ($8::timestamptz IS NULL OR end_date <= $8)"
        }
    }
}

/// An unfiltered page is counted from the per-environment totals. Both counts also answer
/// the account's index version (see [`Anchors`]).
fn count_totals(environments: &Environments) -> &'static str {
    match environments {
        Environments::Only(_) => {
            "SELECT coalesce(sum(runs) FILTER (WHERE environment_id = ANY($2)), 0)::int8, \
                    coalesce(sum(version), 0)::int8 \
             FROM run_index_environments WHERE account_id = $1"
        }
        Environments::AllBut(_) => {
            "SELECT coalesce(sum(runs) FILTER (WHERE environment_id <> ALL($2)), 0)::int8, \
                    coalesce(sum(version), 0)::int8 \
             FROM run_index_environments WHERE account_id = $1"
        }
    }
}

const VERSION: &str = "(SELECT coalesce(sum(version), 0)::int8 FROM run_index_environments WHERE account_id = $1)";

/// Deep pages start from a remembered position: the sort key of every `ANCHOR_EVERY`-th run
/// of a list, found by one scan and kept while the account's index version stays the same.
/// A page at any offset then reads at most `ANCHOR_EVERY` runs before its own.
const ANCHOR_EVERY: u64 = 500;

/// A position in a list: the sort key of the run there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anchor {
    Id(i64),
    Time(DateTime<Utc>, i64),
}

/// The anchors of one list at one version of the account's index.
#[derive(Debug)]
pub(super) struct Anchors {
    version: i64,
    keys: Vec<Anchor>,
}

/// What a list's anchors are remembered by: everything that selects and orders it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct ListShape {
    account_id: i32,
    only: bool,
    environments: Vec<i32>,
    job_ids: Option<Vec<i64>>,
    statuses: Option<Vec<i16>>,
    ranges: [Option<DateTime<Utc>>; 4],
    order: (u8, bool),
}

/// The sort key of a time order, a NULL time read as the far future (ascending) or far past
/// (descending) so unfinished runs sort last either way; `None` for the id order. Each
/// matches an index of `run_index`.
fn sort_key(field: RunSort, descending: bool) -> Option<&'static str> {
    match (field, descending) {
        (RunSort::Id, _) => None,
        (RunSort::CreatedAt, false) => Some("coalesce(queued_at, '9999-12-31T00:00:00Z'::timestamptz)"),
        (RunSort::CreatedAt, true) => Some("coalesce(queued_at, '0001-01-01T00:00:00Z'::timestamptz)"),
        (RunSort::FinishedAt, false) => Some("coalesce(end_date, '9999-12-31T00:00:00Z'::timestamptz)"),
        (RunSort::FinishedAt, true) => Some("coalesce(end_date, '0001-01-01T00:00:00Z'::timestamptz)"),
    }
}

/// Where a list starts: before every key.
fn start(field: RunSort, descending: bool) -> Anchor {
    let far =
        |year| chrono::NaiveDate::from_ymd_opt(year, 12, 31).unwrap_or_default().and_time(Default::default()).and_utc();
    match (field, descending) {
        (RunSort::Id, false) => Anchor::Id(i64::MIN),
        (RunSort::Id, true) => Anchor::Id(i64::MAX),
        (_, false) => Anchor::Time(far(1), i64::MIN),
        (_, true) => Anchor::Time(far(9999), i64::MAX),
    }
}

/// The columns of an [`IndexedRun`], read by [`indexed_run`].
const INDEXED_RUN: &str = "SELECT i.dag_run_id, j.dag_id, i.status, i.queued_at, i.end_date \
                           FROM run_index i JOIN job_ids j ON j.id = i.job_id";

fn indexed_run(row: &tokio_postgres::Row) -> IndexedRun {
    IndexedRun {
        dag_run_id: i64::from(row.get::<_, i32>(0)),
        dag_id: row.get::<_, Option<String>>(1).unwrap_or_default(),
        status: status(row.get(2)),
        queued_at: row.get(3),
        end_date: row.get(4),
    }
}

/// A write of at least this many runs (a first indexing, a rebuild) is followed by an
/// `ANALYZE`, so pages are planned on true statistics at once rather than after autovacuum
/// comes by. (Not a `VACUUM`: concurrent refreshes would keep it from marking pages
/// all-visible, and it would reset the insert count that brings autovacuum, which does.)
const BULK: usize = 1000;

/// The `ORDER BY` of each order (as [`crate::domain::job_run::compare`] orders runs).
fn order_by(field: RunSort, descending: bool) -> String {
    let direction = if descending { "DESC" } else { "ASC" };
    match sort_key(field, descending) {
        None => format!("ORDER BY job_run_id {direction}"),
        Some(key) => format!("ORDER BY {key} {direction}, job_run_id {direction}"),
    }
}

/// Runs from an anchor on (`$11`, and `$12` for the time orders), in the order's direction.
fn from_anchor(field: RunSort, descending: bool) -> String {
    let at_or_after = if descending { "<=" } else { ">=" };
    match sort_key(field, descending) {
        None => format!("AND job_run_id {at_or_after} $11"),
        Some(key) => format!("AND ({key}, job_run_id) {at_or_after} ($11, $12)"),
    }
}

#[async_trait]
impl RunIndex for JadeDatabase {
    async fn indexed(&self, environment_id: i64) -> Result<IndexedEnvironment, BackendError> {
        let environment_id = int4(environment_id)?;
        let client = self.client().await?;
        let unfinished =
            format!("{INDEXED_RUN} WHERE i.environment_id = $1 AND i.status IN (3, 5) ORDER BY i.dag_run_id");
        let (summary, unfinished) = futures::try_join!(
            client.prepare_cached(
                "SELECT newest, runs, changes_seen FROM run_index_environments WHERE environment_id = $1"
            ),
            client.prepare_cached(&unfinished),
        )
        .map_err(db)?;
        let params: [&(dyn ToSql + Sync); 1] = [&environment_id];
        let (summary, unfinished) =
            futures::try_join!(client.query_opt(&summary, &params), client.query(&unfinished, &params)).map_err(db)?;
        Ok(IndexedEnvironment {
            newest: summary.as_ref().and_then(|row| row.get::<_, Option<i32>>(0)).map(i64::from),
            count: summary.as_ref().map_or(0, |row| u64::try_from(row.get::<_, i64>(1)).unwrap_or(0)),
            unfinished: unfinished.iter().map(indexed_run).collect(),
            changes_seen: summary.and_then(|row| row.get(2)),
        })
    }

    async fn runs(&self, environment_id: i64, dag_run_ids: &[i64]) -> Result<Vec<IndexedRun>, BackendError> {
        let environment_id = int4(environment_id)?;
        let dag_run_ids: Vec<i32> = dag_run_ids.iter().filter_map(|id| i32::try_from(*id).ok()).collect();
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!("{INDEXED_RUN} WHERE i.environment_id = $1 AND i.dag_run_id = ANY($2)"))
            .await
            .map_err(db)?;
        let rows = client.query(&statement, &[&environment_id, &dag_run_ids]).await.map_err(db)?;
        Ok(rows.iter().map(indexed_run).collect())
    }

    async fn record(
        &self,
        account_id: i64,
        environment_id: i64,
        runs: &[IndexedRun],
        complete: bool,
        changes_seen: Option<DateTime<Utc>>,
    ) -> Result<(), BackendError> {
        let account_id = int4(account_id)?;
        let environment_id = int4(environment_id)?;
        let mut sorted: Vec<&IndexedRun> = runs.iter().collect();
        sorted.sort_by_key(|r| r.dag_run_id);
        let dag_run_ids = sorted.iter().map(|r| int4(r.dag_run_id)).collect::<Result<Vec<_>, _>>()?;
        let dag_ids: Vec<&str> = sorted.iter().map(|r| r.dag_id.as_str()).collect();
        let statuses: Vec<i16> = sorted.iter().map(|r| status_code(r.status)).collect();
        let queued: Vec<Option<DateTime<Utc>>> = sorted.iter().map(|r| r.queued_at).collect();
        let ended: Vec<Option<DateTime<Utc>>> = sorted.iter().map(|r| r.end_date).collect();

        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(db)?;
        transaction.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&RUN_LOCK, &environment_id]).await.map_err(db)?;
        // Runs inserted, changed or removed: only then is the environment's version bumped.
        let mut written = 0;
        if !sorted.is_empty() {
            transaction
                .execute(
                    "INSERT INTO job_ids (environment_id, dag_id) \
                     SELECT DISTINCT $1::int4, d FROM unnest($2::text[]) AS d ORDER BY 2 \
                     ON CONFLICT (environment_id, dag_id) DO NOTHING",
                    &[&environment_id, &dag_ids],
                )
                .await
                .map_err(db)?;
            // New runs get their job-run ids in `dag_run.id` order.
            transaction
                .execute(
                    "INSERT INTO job_run_ids (environment_id, dag_run_id) \
                     SELECT $1::int4, r FROM unnest($2::int4[]) AS r ORDER BY r \
                     ON CONFLICT (environment_id, dag_run_id) DO NOTHING",
                    &[&environment_id, &dag_run_ids],
                )
                .await
                .map_err(db)?;
            written += transaction
                .execute(
                    "INSERT INTO run_index AS i \
                       (job_run_id, account_id, environment_id, dag_run_id, job_id, status, queued_at, end_date) \
                     SELECT r.id, $1, $2, k.run, j.id, \
                       CASE WHEN k.status = 2 AND EXISTS (SELECT 1 FROM run_cancellations c WHERE c.job_run_id = r.id) \
                            THEN 30 ELSE k.status END, \
                       k.queued, k.ended \
                     FROM unnest($3::int4[], $4::text[], $5::int2[], $6::timestamptz[], $7::timestamptz[]) \
                          AS k(run, dag, status, queued, ended) \
                     JOIN job_run_ids r ON r.environment_id = $2 AND r.dag_run_id = k.run \
                     JOIN job_ids j ON j.environment_id = $2 AND j.dag_id = k.dag \
                     ON CONFLICT (job_run_id) DO UPDATE SET account_id = excluded.account_id, \
                       job_id = excluded.job_id, status = excluded.status, \
                       queued_at = excluded.queued_at, end_date = excluded.end_date \
                     WHERE (i.account_id, i.job_id, i.status, i.queued_at, i.end_date) IS DISTINCT FROM \
                       (excluded.account_id, excluded.job_id, excluded.status, excluded.queued_at, excluded.end_date)",
                    &[&account_id, &environment_id, &dag_run_ids, &dag_ids, &statuses, &queued, &ended],
                )
                .await
                .map_err(db)?;
        }
        if complete {
            written += transaction
                .execute(
                    "DELETE FROM run_index WHERE environment_id = $1 AND dag_run_id <> ALL($2::int4[])",
                    &[&environment_id, &dag_run_ids],
                )
                .await
                .map_err(db)?;
        }
        let bump = i64::from(written > 0);
        transaction
            .execute(
                "INSERT INTO run_index_environments (environment_id, account_id, runs, newest, changes_seen) \
                 SELECT $1, $2, count(*), max(dag_run_id), $4 FROM run_index WHERE environment_id = $1 \
                 ON CONFLICT (environment_id) DO UPDATE \
                 SET account_id = excluded.account_id, runs = excluded.runs, newest = excluded.newest, \
                     changes_seen = greatest(run_index_environments.changes_seen, excluded.changes_seen), \
                     version = run_index_environments.version + $3",
                &[&environment_id, &account_id, &bump, &changes_seen],
            )
            .await
            .map_err(db)?;
        transaction.commit().await.map_err(db)?;
        if written >= BULK as u64 {
            client.batch_execute("ANALYZE run_index").await.map_err(db)?;
        }
        Ok(())
    }

    async fn cancel(&self, job_run_id: i64, by: Option<&str>) -> Result<(), BackendError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(db)?;
        transaction
            .execute(
                "INSERT INTO run_cancellations (job_run_id, cancelled_by) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&job_run_id, &by],
            )
            .await
            .map_err(db)?;
        // The index holds it as cancelled at once (a failed run; one still marked unfinished
        // becomes failed at the next refresh, which keeps the cancellation).
        let changed = transaction
            .execute("UPDATE run_index SET status = 30 WHERE job_run_id = $1 AND status = 2", &[&job_run_id])
            .await
            .map_err(db)?;
        if changed > 0 {
            transaction
                .execute(
                    "UPDATE run_index_environments SET version = version + 1 \
                     WHERE environment_id = (SELECT environment_id FROM run_index WHERE job_run_id = $1)",
                    &[&job_run_id],
                )
                .await
                .map_err(db)?;
        }
        transaction.commit().await.map_err(db)
    }

    async fn cancelled(&self, job_run_ids: &[i64]) -> Result<HashSet<i64>, BackendError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT job_run_id FROM run_cancellations WHERE job_run_id = ANY($1)")
            .await
            .map_err(db)?;
        let rows = client.query(&statement, &[&job_run_ids]).await.map_err(db)?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn page(&self, query: &RunIndexQuery) -> Result<Listing<IndexEntry>, BackendError> {
        let account_id = int4(query.account_id)?;
        let statuses: Option<Vec<i16>> = query.statuses.as_ref().map(|s| s.iter().map(|s| status_code(*s)).collect());
        let limit = query.page.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let (Environments::Only(environments) | Environments::AllBut(environments)) = &query.environments;
        let environments = environments.iter().map(|e| int4(*e)).collect::<Result<Vec<_>, _>>()?;
        let (field, descending) = (query.order.field, query.order.descending);
        let filtered =
            query.job_ids.is_some() || statuses.is_some() || query.queued_at.is_some() || query.end_date.is_some();
        let (queued_from, queued_to) = (query.queued_at.map(|r| r.from), query.queued_at.map(|r| r.to));
        let (ended_from, ended_to) = (query.end_date.map(|r| r.from), query.end_date.map(|r| r.to));
        let filter = filter(&query.environments);
        let count_sql = if filtered {
            format!("SELECT (SELECT count(*) FROM run_index {filter}), {VERSION}")
        } else {
            count_totals(&query.environments).to_owned()
        };
        let filters: [&(dyn ToSql + Sync); 8] =
            [&account_id, &environments, &query.job_ids, &statuses, &queued_from, &queued_to, &ended_from, &ended_to];
        let count_params: &[&(dyn ToSql + Sync)] = if filtered { &filters } else { &filters[..2] };
        let client = self.client().await?;
        let count_statement = client.prepare_cached(&count_sql).await.map_err(db)?;
        let counted =
            |row: tokio_postgres::Row| (u64::try_from(row.get::<_, i64>(0)).unwrap_or(0), row.get::<_, i64>(1));

        // A page from an anchor on: at most ANCHOR_EVERY - 1 runs skipped, whatever the offset.
        let page_sql = format!(
            "SELECT job_run_id, environment_id, dag_run_id FROM run_index {filter} {} {} LIMIT $9 OFFSET $10",
            from_anchor(field, descending),
            order_by(field, descending)
        );
        let page_statement = client.prepare_cached(&page_sql).await.map_err(db)?;
        let read_page = |anchor: Anchor, skip: u64| {
            let skip = i64::try_from(skip).unwrap_or(i64::MAX);
            let client = &client;
            let page_statement = &page_statement;
            let filters = &filters;
            let limit = &limit;
            async move {
                let (id, at) = match anchor {
                    Anchor::Id(id) => (id, None),
                    Anchor::Time(at, id) => (id, Some(at)),
                };
                let mut params: Vec<&(dyn ToSql + Sync)> = filters.to_vec();
                params.extend([limit as &(dyn ToSql + Sync), &skip]);
                match &at {
                    Some(at) => params.extend([at as &(dyn ToSql + Sync), &id]),
                    None => params.push(&id),
                }
                client.query(page_statement, &params).await.map_err(db)
            }
        };
        let listing = |rows: Vec<tokio_postgres::Row>, total_count: u64| Listing {
            items: rows
                .iter()
                .map(|row| IndexEntry {
                    id: row.get(0),
                    environment_id: i64::from(row.get::<_, i32>(1)),
                    dag_run_id: i64::from(row.get::<_, i32>(2)),
                })
                .collect(),
            total_count,
        };

        let offset = query.page.offset;
        if offset < ANCHOR_EVERY {
            let (rows, count) = futures::try_join!(read_page(start(field, descending), offset), async {
                client.query_one(&count_statement, count_params).await.map_err(db)
            })?;
            return Ok(listing(rows, counted(count).0));
        }
        let (index, skip) = (usize::try_from(offset / ANCHOR_EVERY).unwrap_or(usize::MAX), offset % ANCHOR_EVERY);
        let shape = ListShape {
            account_id,
            only: matches!(query.environments, Environments::Only(_)),
            environments: environments.clone(),
            job_ids: query.job_ids.clone(),
            statuses: statuses.clone(),
            ranges: [queued_from, queued_to, ended_from, ended_to],
            order: (field as u8, descending),
        };
        // Anchors remembered at the index's current version serve at once.
        if let Some(anchors) = self.anchors.get(&shape)
            && let Some(anchor) = anchors.keys.get(index)
        {
            let (rows, count) = futures::try_join!(read_page(*anchor, skip), async {
                client.query_one(&count_statement, count_params).await.map_err(db)
            })?;
            let (total_count, version) = counted(count);
            if version == anchors.version {
                return Ok(listing(rows, total_count));
            }
        }
        let (total_count, version) = counted(client.query_one(&count_statement, count_params).await.map_err(db)?);
        let anchors_sql = format!(
            "SELECT k, job_run_id FROM (SELECT {} AS k, job_run_id, row_number() OVER ({}) AS n FROM run_index {filter}) s \
             WHERE n % {ANCHOR_EVERY} = 1 ORDER BY n",
            sort_key(field, descending).unwrap_or("job_run_id"),
            order_by(field, descending)
        );
        let anchors_statement = client.prepare_cached(&anchors_sql).await.map_err(db)?;
        let keys: Vec<Anchor> = client
            .query(&anchors_statement, &filters)
            .await
            .map_err(db)?
            .iter()
            .map(|row| match field {
                RunSort::Id => Anchor::Id(row.get(1)),
                _ => Anchor::Time(row.get(0), row.get(1)),
            })
            .collect();
        let anchor = keys.get(index).copied();
        self.anchors.insert(shape, std::sync::Arc::new(Anchors { version, keys }));
        let rows = match anchor {
            Some(anchor) => read_page(anchor, skip).await?,
            None => Vec::new(),
        };
        Ok(listing(rows, total_count))
    }
}
