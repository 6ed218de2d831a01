//! `manifests` rows. Bodies live in object storage; `content` is only read for rows the
//! first Jade wrote.

use std::collections::HashMap;

use async_trait::async_trait;
use bytes::Bytes;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{JadeDatabase, NOW, db, int4, is_unique_violation, utc};
use crate::domain::manifest::Manifest;
use crate::ports::BackendError;
use crate::ports::manifests::{InsertManifestError, ManifestQuery, ManifestStore, NewManifest};

const COLUMNS: &str = "id, slug, account_id, project_id, environment_slug, tag, dag_id, dag_run_id, \
                       dag_run_run_id, job_run_id, inserted_at, updated_at";

fn manifest(row: &Row) -> Manifest {
    Manifest {
        id: row.get("id"),
        slug: row.get("slug"),
        account_id: row.get::<_, Option<i32>>("account_id").map_or(0, i64::from),
        project_id: row.get::<_, Option<i32>>("project_id").map_or(0, i64::from),
        environment_slug: row.get::<_, Option<String>>("environment_slug").unwrap_or_default(),
        tag: row.get("tag"),
        dag_id: row.get("dag_id"),
        dag_run_id: row.get::<_, Option<i32>>("dag_run_id").map(i64::from),
        dag_run_run_id: row.get("dag_run_run_id"),
        job_run_id: row.get("job_run_id"),
        inserted_at: utc(row.get("inserted_at")),
        updated_at: utc(row.get("updated_at")),
    }
}

#[async_trait]
impl ManifestStore for JadeDatabase {
    async fn reserve_id(&self) -> Result<i64, BackendError> {
        let client = self.client().await?;
        let row =
            client.query_one("SELECT nextval(pg_get_serial_sequence('manifests', 'id'))", &[]).await.map_err(db)?;
        Ok(row.get(0))
    }

    async fn insert(&self, new: NewManifest) -> Result<Manifest, InsertManifestError> {
        let account_id = int4(new.account_id)?;
        let project_id = int4(new.project_id)?;
        let dag_run_id = new.run.as_ref().map(|r| int4(r.dag_run_id)).transpose()?;
        let dag_id = new.run.as_ref().map(|r| r.dag_id.as_str());
        let run_id = new.run.as_ref().map(|r| r.run_id.as_str());
        let job_run_id = new.run.as_ref().map(|r| r.job_run_id);
        let client = self.client().await?;
        let sql = format!(
            "INSERT INTO manifests (id, account_id, project_id, environment_slug, tag, dag_id, dag_run_id, \
             dag_run_run_id, job_run_id, inserted_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, {NOW}, {NOW}) RETURNING {COLUMNS}"
        );
        let params: [&(dyn ToSql + Sync); 9] = [
            &new.id,
            &account_id,
            &project_id,
            &new.environment_slug,
            &new.tag,
            &dag_id,
            &dag_run_id,
            &run_id,
            &job_run_id,
        ];
        match client.query_one(&sql, &params).await {
            Ok(row) => Ok(manifest(&row)),
            Err(e) if is_unique_violation(&e) => Err(InsertManifestError::TagTaken),
            Err(e) => Err(db(e).into()),
        }
    }

    async fn delete(&self, id: i64) -> Result<(), BackendError> {
        let client = self.client().await?;
        client.execute("DELETE FROM manifests WHERE id = $1", &[&id]).await.map_err(db)?;
        Ok(())
    }

    async fn tag_taken(&self, environment_slug: &str, tag: &str) -> Result<bool, BackendError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM manifests WHERE environment_slug = $1 AND tag = $2)",
                &[&environment_slug, &tag],
            )
            .await
            .map_err(db)?;
        Ok(row.get(0))
    }

    async fn count_for_run(&self, environment_slug: &str, dag_id: &str, run_id: &str) -> Result<u64, BackendError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM manifests WHERE environment_slug = $1 AND dag_id = $2 AND dag_run_run_id = $3",
                &[&environment_slug, &dag_id, &run_id],
            )
            .await
            .map_err(db)?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    async fn find(&self, query: &ManifestQuery) -> Result<Option<Manifest>, BackendError> {
        let client = self.client().await?;
        let newest = "ORDER BY inserted_at DESC, id DESC LIMIT 1";
        let row = match query {
            ManifestQuery::Environment { environment_slug } => {
                let sql = format!("SELECT {COLUMNS} FROM manifests WHERE environment_slug = $1 {newest}");
                client.query_opt(&sql, &[environment_slug]).await
            }
            ManifestQuery::Dag { environment_slug, dag_id } => {
                let sql =
                    format!("SELECT {COLUMNS} FROM manifests WHERE environment_slug = $1 AND dag_id = $2 {newest}");
                client.query_opt(&sql, &[environment_slug, dag_id]).await
            }
            ManifestQuery::Tag { environment_slug, tag } => {
                let sql = format!("SELECT {COLUMNS} FROM manifests WHERE environment_slug = $1 AND tag = $2 {newest}");
                client.query_opt(&sql, &[environment_slug, tag]).await
            }
            ManifestQuery::Project { project_id } => {
                let sql = format!("SELECT {COLUMNS} FROM manifests WHERE project_id = $1 {newest}");
                client.query_opt(&sql, &[&int4(*project_id)?]).await
            }
            ManifestQuery::JobRun { account_id, job_run_id } => {
                let sql = format!("SELECT {COLUMNS} FROM manifests WHERE account_id = $1 AND job_run_id = $2 {newest}");
                client.query_opt(&sql, &[&int4(*account_id)?, job_run_id]).await
            }
        };
        Ok(row.map_err(db)?.as_ref().map(manifest))
    }

    async fn for_job_runs(&self, account_id: i64, job_run_ids: &[i64]) -> Result<HashMap<i64, Manifest>, BackendError> {
        if job_run_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT DISTINCT ON (job_run_id) {COLUMNS} FROM manifests \
                 WHERE account_id = $1 AND job_run_id = ANY($2) \
                 ORDER BY job_run_id, inserted_at DESC, id DESC"
            ))
            .await
            .map_err(db)?;
        let rows = client.query(&statement, &[&int4(account_id)?, &job_run_ids]).await.map_err(db)?;
        Ok(rows.iter().map(manifest).filter_map(|m| Some((m.job_run_id?, m))).collect())
    }

    async fn legacy_content(&self, id: i64, trimmed: bool) -> Result<Option<Bytes>, BackendError> {
        let client = self.client().await?;
        let sql = if trimmed {
            "SELECT jsonb_build_object('metadata', content->'metadata', 'nodes', content->'nodes')::text \
             FROM manifests WHERE id = $1 AND content IS NOT NULL"
        } else {
            "SELECT content::text FROM manifests WHERE id = $1 AND content IS NOT NULL"
        };
        let row = client.query_opt(sql, &[&id]).await.map_err(db)?;
        Ok(row.map(|row| Bytes::from(row.get::<_, String>(0))))
    }
}
