//! `files` rows. Bodies live in object storage under each row's `path`.

use async_trait::async_trait;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{JadeDatabase, NOW, db, utc};
use crate::domain::file::{File, FileLookup, NewFile};
use crate::ports::BackendError;
use crate::ports::files::FileStore;

const COLUMNS: &str = "id, slug, filename, environment_slug, tag, path, inserted_at, updated_at";

fn file(row: &Row) -> File {
    let text = |column: &str| row.get::<_, Option<String>>(column).unwrap_or_default();
    File {
        id: row.get("id"),
        slug: row.get("slug"),
        filename: text("filename"),
        environment_slug: text("environment_slug"),
        tag: text("tag"),
        path: text("path"),
        inserted_at: utc(row.get("inserted_at")),
        updated_at: utc(row.get("updated_at")),
    }
}

#[async_trait]
impl FileStore for JadeDatabase {
    async fn insert(&self, files: &[NewFile]) -> Result<Vec<File>, BackendError> {
        let column = |field: fn(&NewFile) -> &str| files.iter().map(field).collect::<Vec<&str>>();
        let client = self.client().await?;
        // One statement: all rows or none. Ids are drawn in input order.
        let sql = format!(
            "INSERT INTO files (filename, environment_slug, tag, path, inserted_at, updated_at) \
             SELECT f, e, t, p, {NOW}, {NOW} \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS k(f, e, t, p, n) \
             ORDER BY n RETURNING {COLUMNS}"
        );
        let rows = client
            .query(
                &sql,
                &[
                    &column(|f| &f.filename),
                    &column(|f| &f.environment_slug),
                    &column(|f| &f.tag),
                    &column(|f| &f.path),
                ],
            )
            .await
            .map_err(db)?;
        let mut inserted: Vec<File> = rows.iter().map(file).collect();
        inserted.sort_by_key(|f| f.id);
        Ok(inserted)
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

    async fn update(&self, id: i64, tag: &str, filename: &str, path: &str) -> Result<Option<File>, BackendError> {
        let client = self.client().await?;
        let sql = format!(
            "UPDATE files SET tag = $2, filename = $3, path = $4, updated_at = {NOW} WHERE id = $1 RETURNING {COLUMNS}"
        );
        let row = client.query_opt(&sql, &[&id, &tag, &filename, &path]).await.map_err(db)?;
        Ok(row.as_ref().map(file))
    }

    async fn delete_by_path(&self, environment_slug: &str, path: &str) -> Result<u64, BackendError> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM files WHERE environment_slug = $1 AND path = $2", &[&environment_slug, &path])
            .await
            .map_err(db)
    }

    async fn path_in_use(&self, path: &str) -> Result<bool, BackendError> {
        let client = self.client().await?;
        let row =
            client.query_one("SELECT EXISTS (SELECT 1 FROM files WHERE path = $1)", &[&path]).await.map_err(db)?;
        Ok(row.get(0))
    }
}
