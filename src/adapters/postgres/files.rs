//! `files` rows. Bodies live in object storage under each row's `storage_key`, or under its
//! `path` for rows of the first Jade (which has no such column).

use async_trait::async_trait;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{JadeDatabase, NOW, db, utc};
use crate::adapters::pg;
use crate::domain::file::{File, FileLookup, NewFile};
use crate::ports::BackendError;
use crate::ports::files::{FileStore, Written};

/// Those of the keys `$1` that no row reads the body of.
const UNREAD: &str = "SELECT DISTINCT k FROM unnest($1::text[]) AS k \
                      WHERE NOT EXISTS (SELECT 1 FROM files WHERE coalesce(storage_key, path) = k)";

const COLUMNS: &str = "id, slug, filename, environment_slug, tag, path, coalesce(storage_key, path) AS body_key, \
                       inserted_at, updated_at";

fn file(row: &Row) -> File {
    let text = |column: &str| row.get::<_, Option<String>>(column).unwrap_or_default();
    File {
        id: row.get("id"),
        slug: row.get("slug"),
        filename: text("filename"),
        environment_slug: text("environment_slug"),
        tag: text("tag"),
        path: text("path"),
        key: text("body_key"),
        inserted_at: utc(row.get("inserted_at")),
        updated_at: utc(row.get("updated_at")),
    }
}

/// Within a transaction, first of all: waits for the environment's other file writers to
/// finish. Every writer of `files` takes this one lock before it reads or locks any row, so
/// two writers of one path can neither leave its rows on different bodies nor deadlock on
/// each other's row locks (a replacement locks its row, then the rows of its new path).
async fn lock_environment(transaction: &pg::Transaction<'_>, environment_slug: &str) -> Result<(), BackendError> {
    transaction
        .execute("SELECT pg_advisory_xact_lock(hashtextextended('jade files ' || $1, 0))", &[&environment_slug])
        .await
        .map_err(db)?;
    Ok(())
}

/// Within a transaction holding the environment's lock: points every row of each path (each
/// given once) at its key, and answers the keys the rows were moved off.
async fn switch_paths(
    transaction: &pg::Transaction<'_>,
    environment_slug: &str,
    targets: &[(&str, &str)],
) -> Result<Vec<String>, BackendError> {
    let paths: Vec<&str> = targets.iter().map(|(path, _)| *path).collect();
    let keys: Vec<&str> = targets.iter().map(|(_, key)| *key).collect();
    let rows = transaction
        .query(
            "WITH target AS (SELECT * FROM unnest($2::text[], $3::text[]) AS t(path, key)), \
             switched AS ( \
               UPDATE files f SET storage_key = target.key \
               FROM files old JOIN target ON old.path = target.path \
               WHERE f.id = old.id AND old.environment_slug = $1 \
                 AND coalesce(old.storage_key, old.path) <> target.key \
               RETURNING coalesce(old.storage_key, old.path) AS released) \
             SELECT DISTINCT released FROM switched",
            &[&environment_slug, &paths, &keys],
        )
        .await
        .map_err(db)?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Those of `keys` that no row reads any more, in one query.
async fn unread(transaction: &pg::Transaction<'_>, keys: Vec<String>) -> Result<Vec<String>, BackendError> {
    let rows = transaction.query(UNREAD, &[&keys]).await.map_err(db)?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

#[async_trait]
impl FileStore for JadeDatabase {
    async fn insert(&self, files: &[NewFile]) -> Result<Written<Vec<File>>, BackendError> {
        let Some(first) = files.first() else { return Ok(Written::default()) };
        let column = |field: fn(&NewFile) -> &str| files.iter().map(field).collect::<Vec<&str>>();
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(db)?;
        // The last file given for a path wins its earlier rows.
        let targets = files.iter().rev().map(|f| (f.path.as_str(), f.key.as_str()));
        // Writes are per environment (one request's files share it).
        let environment = first.environment_slug.as_str();
        lock_environment(&transaction, environment).await?;
        let sql = format!(
            "INSERT INTO files (filename, environment_slug, tag, path, storage_key, inserted_at, updated_at) \
             SELECT f, e, t, p, k, {NOW}, {NOW} \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS u(f, e, t, p, k, n) \
             ORDER BY n RETURNING id"
        );
        let ids: Vec<i64> = transaction
            .query(
                &sql,
                &[
                    &column(|f| &f.filename),
                    &column(|f| &f.environment_slug),
                    &column(|f| &f.tag),
                    &column(|f| &f.path),
                    &column(|f| &f.key),
                ],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut unique = std::collections::BTreeMap::new();
        for (path, key) in targets {
            unique.entry(path).or_insert(key);
        }
        let targets: Vec<(&str, &str)> = unique.into_iter().collect();
        let moved = switch_paths(&transaction, environment, &targets).await?;
        let released = unread(&transaction, moved).await?;
        let sql = format!("SELECT {COLUMNS} FROM files WHERE id = ANY($1) ORDER BY id");
        let rows = transaction.query(&sql, &[&ids]).await.map_err(db)?;
        transaction.commit().await.map_err(db)?;
        Ok(Written { rows: rows.iter().map(file).collect(), released })
    }

    async fn find(&self, environment_slug: &str, lookup: &FileLookup) -> Result<Option<File>, BackendError> {
        let client = self.client().await?;
        let newest = "ORDER BY inserted_at DESC, id DESC LIMIT 1";
        let row = match lookup {
            FileLookup::Slug(slug) => {
                let Ok(slug) = Uuid::parse_str(slug) else { return Ok(None) };
                let sql = format!("SELECT {COLUMNS} FROM files WHERE environment_slug = $1 AND slug = $2 {newest}");
                client.query_opt(&sql, &[&environment_slug, &slug]).await
            }
            FileLookup::Tag(tag) => {
                let sql = format!("SELECT {COLUMNS} FROM files WHERE environment_slug = $1 AND tag = $2 {newest}");
                client.query_opt(&sql, &[&environment_slug, tag]).await
            }
            FileLookup::Filename(filename) => {
                let sql = format!("SELECT {COLUMNS} FROM files WHERE environment_slug = $1 AND filename = $2 {newest}");
                client.query_opt(&sql, &[&environment_slug, filename]).await
            }
        };
        Ok(row.map_err(db)?.as_ref().map(file))
    }

    async fn update(&self, id: i64, new: &NewFile) -> Result<Option<Written<File>>, BackendError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(db)?;
        lock_environment(&transaction, &new.environment_slug).await?;
        let old = transaction
            .query_opt("SELECT coalesce(storage_key, path) FROM files WHERE id = $1 FOR UPDATE", &[&id])
            .await
            .map_err(db)?;
        let Some(old) = old else { return Ok(None) };
        let old_key: String = old.get(0);
        transaction
            .execute(
                &format!(
                    "UPDATE files SET tag = $2, filename = $3, path = $4, storage_key = $5, updated_at = {NOW} \
                     WHERE id = $1"
                ),
                &[&id, &new.tag, &new.filename, &new.path, &new.key],
            )
            .await
            .map_err(db)?;
        let mut moved = switch_paths(&transaction, &new.environment_slug, &[(&new.path, &new.key)]).await?;
        moved.push(old_key);
        let released = unread(&transaction, moved).await?;
        let row =
            transaction.query_one(&format!("SELECT {COLUMNS} FROM files WHERE id = $1"), &[&id]).await.map_err(db)?;
        transaction.commit().await.map_err(db)?;
        Ok(Some(Written { rows: file(&row), released }))
    }

    async fn delete_by_path(&self, environment_slug: &str, path: &str, key: &str) -> Result<u64, BackendError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(db)?;
        lock_environment(&transaction, environment_slug).await?;
        let deleted = transaction
            .execute(
                "DELETE FROM files WHERE environment_slug = $1 AND path = $2 AND coalesce(storage_key, path) = $3",
                &[&environment_slug, &path, &key],
            )
            .await
            .map_err(db)?;
        transaction.commit().await.map_err(db)?;
        Ok(deleted)
    }

    async fn key_in_use(&self, key: &str) -> Result<bool, BackendError> {
        let client = self.client().await?;
        let unread = client.query(UNREAD, &[&[key].as_slice()]).await.map_err(db)?;
        Ok(unread.is_empty())
    }

    async fn keys_of_paths(&self, environment_slug: &str, paths: &[&str]) -> Result<Vec<String>, BackendError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT DISTINCT coalesce(storage_key, path) FROM files WHERE environment_slug = $1 AND path = ANY($2)",
                &[&environment_slug, &paths],
            )
            .await
            .map_err(db)?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }
}
