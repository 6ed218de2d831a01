//! `run_index`: filtered, ordered pages of an account's runs in one indexed query, and the
//! upserts that keep it up to date. Every statement's text is one of a fixed set: values,
//! limits and offsets are parameters, so the prepared-statement cache stays small.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;

use super::registry::RUN_LOCK;
use super::{JadeDatabase, db, int4};
use crate::domain::job_run::{ApiCompat, IndexedRun, RunStatus};
use crate::domain::paging::{Listing, RunSort};
use crate::ports::BackendError;
use crate::ports::run_index::{Environments, IndexEntry, IndexedEnvironment, RunIndex, RunIndexQuery};

/// The index keeps statuses as the first Jade's codes.
fn status_code(status: RunStatus) -> i16 {
    status.code(ApiCompat::Jade) as i16
}

fn status(code: i16) -> RunStatus {
    RunStatus::from_code(i64::from(code), ApiCompat::Jade).unwrap_or(RunStatus::Queued)
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

/// An unfiltered page is counted from the per-environment totals.
fn count_totals(environments: &Environments) -> &'static str {
    match environments {
        Environments::Only(_) => {
            "SELECT coalesce(sum(runs), 0)::int8 FROM run_index_environments \
             WHERE account_id = $1 AND environment_id = ANY($2)"
        }
        Environments::AllBut(_) => {
            "SELECT coalesce(sum(runs), 0)::int8 FROM run_index_environments \
             WHERE account_id = $1 AND environment_id <> ALL($2)"
        }
    }
}

/// A write of at least this many runs (a first indexing, a rebuild) is followed by an
/// `ANALYZE`, so pages are planned on true statistics at once rather than after autovacuum
/// comes by. (Not a `VACUUM`: concurrent refreshes would keep it from marking pages
/// all-visible, and it would reset the insert count that brings autovacuum, which does.)
const BULK: usize = 1000;

/// The `ORDER BY` of each order, matching one of the table's indexes (and
/// [`crate::domain::job_run::compare`]).
fn order_by(field: RunSort, descending: bool) -> &'static str {
    match (field, descending) {
        (RunSort::Id, false) => "ORDER BY job_run_id",
        (RunSort::Id, true) => "ORDER BY job_run_id DESC",
        (RunSort::CreatedAt, false) => "ORDER BY queued_at ASC NULLS LAST, job_run_id ASC",
        (RunSort::CreatedAt, true) => "ORDER BY queued_at DESC NULLS LAST, job_run_id DESC",
        (RunSort::FinishedAt, false) => "ORDER BY end_date ASC NULLS LAST, job_run_id ASC",
        (RunSort::FinishedAt, true) => "ORDER BY end_date DESC NULLS LAST, job_run_id DESC",
    }
}

#[async_trait]
impl RunIndex for JadeDatabase {
    async fn indexed(&self, environment_id: i64) -> Result<IndexedEnvironment, BackendError> {
        let environment_id = int4(environment_id)?;
        let client = self.client().await?;
        let (summary, unfinished) = futures::try_join!(
            client.prepare_cached("SELECT newest, runs FROM run_index_environments WHERE environment_id = $1"),
            client.prepare_cached(
                "SELECT i.dag_run_id, j.dag_id, i.status, i.queued_at, i.end_date \
                 FROM run_index i JOIN job_ids j ON j.id = i.job_id \
                 WHERE i.environment_id = $1 AND i.status IN (3, 5) ORDER BY i.dag_run_id"
            ),
        )
        .map_err(db)?;
        let params: [&(dyn ToSql + Sync); 1] = [&environment_id];
        let (summary, unfinished) =
            futures::try_join!(client.query_opt(&summary, &params), client.query(&unfinished, &params)).map_err(db)?;
        Ok(IndexedEnvironment {
            newest: summary.as_ref().and_then(|row| row.get::<_, Option<i32>>(0)).map(i64::from),
            count: summary.map_or(0, |row| u64::try_from(row.get::<_, i64>(1)).unwrap_or(0)),
            unfinished: unfinished
                .iter()
                .map(|row| IndexedRun {
                    dag_run_id: i64::from(row.get::<_, i32>(0)),
                    dag_id: row.get::<_, Option<String>>(1).unwrap_or_default(),
                    status: status(row.get(2)),
                    queued_at: row.get(3),
                    end_date: row.get(4),
                })
                .collect(),
        })
    }

    async fn record(
        &self,
        account_id: i64,
        environment_id: i64,
        runs: &[IndexedRun],
        complete: bool,
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
            transaction
                .execute(
                    "INSERT INTO run_index AS i \
                       (job_run_id, account_id, environment_id, dag_run_id, job_id, status, queued_at, end_date) \
                     SELECT r.id, $1, $2, k.run, j.id, k.status, k.queued, k.ended \
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
            transaction
                .execute(
                    "DELETE FROM run_index WHERE environment_id = $1 AND dag_run_id <> ALL($2::int4[])",
                    &[&environment_id, &dag_run_ids],
                )
                .await
                .map_err(db)?;
        }
        transaction
            .execute(
                "INSERT INTO run_index_environments (environment_id, account_id, runs, newest) \
                 SELECT $1, $2, count(*), max(dag_run_id) FROM run_index WHERE environment_id = $1 \
                 ON CONFLICT (environment_id) DO UPDATE \
                 SET account_id = excluded.account_id, runs = excluded.runs, newest = excluded.newest",
                &[&environment_id, &account_id],
            )
            .await
            .map_err(db)?;
        transaction.commit().await.map_err(db)?;
        if runs.len() >= BULK {
            client.batch_execute("ANALYZE run_index").await.map_err(db)?;
        }
        Ok(())
    }

    async fn page(&self, query: &RunIndexQuery) -> Result<Listing<IndexEntry>, BackendError> {
        let account_id = int4(query.account_id)?;
        let statuses: Option<Vec<i16>> = query.statuses.as_ref().map(|s| s.iter().map(|s| status_code(*s)).collect());
        let limit = query.page.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let offset = i64::try_from(query.page.offset).unwrap_or(i64::MAX);
        let (Environments::Only(environments) | Environments::AllBut(environments)) = &query.environments;
        let environments = environments.iter().map(|e| int4(*e)).collect::<Result<Vec<_>, _>>()?;
        let page_sql = format!(
            "SELECT job_run_id, environment_id, dag_run_id FROM run_index {} {} LIMIT $9 OFFSET $10",
            filter(&query.environments),
            order_by(query.order.field, query.order.descending)
        );
        let filtered =
            query.job_ids.is_some() || statuses.is_some() || query.queued_at.is_some() || query.end_date.is_some();
        let (queued_from, queued_to) = (query.queued_at.map(|r| r.from), query.queued_at.map(|r| r.to));
        let (ended_from, ended_to) = (query.end_date.map(|r| r.from), query.end_date.map(|r| r.to));
        let count_sql = if filtered {
            format!("SELECT count(*) FROM run_index {}", filter(&query.environments))
        } else {
            count_totals(&query.environments).to_owned()
        };
        let client = self.client().await?;
        let (page, count) =
            futures::try_join!(client.prepare_cached(&page_sql), client.prepare_cached(&count_sql)).map_err(db)?;
        let page_params: [&(dyn ToSql + Sync); 10] = [
            &account_id,
            &environments,
            &query.job_ids,
            &statuses,
            &queued_from,
            &queued_to,
            &ended_from,
            &ended_to,
            &limit,
            &offset,
        ];
        let count_params = if filtered { &page_params[..8] } else { &page_params[..2] };
        let (rows, count) =
            futures::try_join!(client.query(&page, &page_params), client.query_one(&count, count_params))
                .map_err(db)?;
        Ok(Listing {
            items: rows
                .iter()
                .map(|row| IndexEntry {
                    id: row.get(0),
                    environment_id: i64::from(row.get::<_, i32>(1)),
                    dag_run_id: i64::from(row.get::<_, i32>(2)),
                })
                .collect(),
            total_count: u64::try_from(count.get::<_, i64>(0)).unwrap_or(0),
        })
    }
}
