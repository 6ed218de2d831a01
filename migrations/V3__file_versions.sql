-- Jade's own column: where a file's body is stored. New uploads write each body under a
-- fresh key and switch the rows of its path to it in one transaction, so a failed upload
-- never changes a stored file. Rows of the first Jade keep it NULL: their body is at `path`.
ALTER TABLE files ADD COLUMN IF NOT EXISTS storage_key text;
CREATE INDEX IF NOT EXISTS files_body_key_index ON files ((coalesce(storage_key, path)));
