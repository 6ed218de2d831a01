-- Jade's tables, as the first Jade's migrations left them (spec: jade-schema.sql).
-- Written to adopt a database the first Jade already migrated, at any of its versions,
-- without touching a row: every table and index is created only when missing, and the
-- first Jade's later changes (manifests.project_id and .tag, non-unique file tags) are
-- caught up with when absent.

CREATE TABLE IF NOT EXISTS job_ids (
  id bigserial PRIMARY KEY,
  environment_id integer,
  dag_id varchar(255)
);

CREATE TABLE IF NOT EXISTS job_run_ids (
  id bigserial PRIMARY KEY,
  environment_id integer,
  dag_run_id integer
);

CREATE TABLE IF NOT EXISTS manifests (
  id bigserial PRIMARY KEY,
  slug uuid NOT NULL DEFAULT gen_random_uuid(),
  account_id integer,
  environment_slug varchar(255),
  dag_id varchar(255),
  dag_run_id integer,
  dag_run_run_id varchar(255),
  job_run_id bigint REFERENCES job_run_ids(id),
  content jsonb,
  inserted_at timestamp(0) NOT NULL,
  updated_at timestamp(0) NOT NULL
);
ALTER TABLE manifests ADD COLUMN IF NOT EXISTS project_id integer;
ALTER TABLE manifests ADD COLUMN IF NOT EXISTS tag varchar(255);

CREATE TABLE IF NOT EXISTS files (
  id bigserial PRIMARY KEY,
  slug uuid NOT NULL DEFAULT gen_random_uuid(),
  filename varchar(255),
  environment_slug varchar(255),
  tag varchar(255),
  path varchar(255),
  inserted_at timestamp(0) NOT NULL,
  updated_at timestamp(0) NOT NULL
);

-- Creates an index unless the table already has one on exactly these columns (under any
-- name: the first Jade's Ecto names differ from those jade-schema.sql gives).
CREATE OR REPLACE FUNCTION pg_temp.ensure_index(tbl text, cols text[], is_unique boolean, name text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (
    SELECT 1
    FROM pg_index i
    JOIN pg_class t ON t.oid = i.indrelid
    WHERE t.oid = to_regclass(tbl)
      AND i.indisunique = is_unique
      AND ARRAY(
        SELECT a.attname::text
        FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
        JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
        ORDER BY k.n
      ) = cols
  ) THEN
    EXECUTE format('CREATE %s INDEX %I ON %I (%s)',
                   CASE WHEN is_unique THEN 'UNIQUE' ELSE '' END, name, tbl,
                   (SELECT string_agg(quote_ident(c), ', ') FROM unnest(cols) AS c));
  END IF;
END $$;

-- The first Jade dropped the unique (environment_slug, tag) index of files to allow versions.
DO $$
DECLARE
  idx record;
BEGIN
  FOR idx IN
    SELECT c.relname
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    WHERE i.indrelid = to_regclass('files') AND i.indisunique AND NOT i.indisprimary
      AND ARRAY(
        SELECT a.attname::text
        FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        ORDER BY k.n
      ) = ARRAY['environment_slug', 'tag']
  LOOP
    EXECUTE format('DROP INDEX %I', idx.relname);
  END LOOP;
END $$;

SELECT pg_temp.ensure_index('job_ids', ARRAY['environment_id', 'dag_id'], true, 'job_ids_environment_id_dag_id_index');
SELECT pg_temp.ensure_index('job_run_ids', ARRAY['environment_id', 'dag_run_id'], true, 'job_run_ids_environment_id_dag_run_id_index');
SELECT pg_temp.ensure_index('manifests', ARRAY['account_id', 'job_run_id'], false, 'manifests_account_id_job_run_id_index');
SELECT pg_temp.ensure_index('manifests', ARRAY['project_id'], false, 'manifests_project_id_index');
SELECT pg_temp.ensure_index('manifests', ARRAY['environment_slug', 'tag'], true, 'manifests_environment_slug_tag_index');
SELECT pg_temp.ensure_index('files', ARRAY['slug'], true, 'files_slug_index');
SELECT pg_temp.ensure_index('files', ARRAY['environment_slug', 'filename', 'tag'], false, 'files_environment_slug_filename_tag_index');
SELECT pg_temp.ensure_index('files', ARRAY['environment_slug', 'filename'], false, 'files_environment_slug_filename_index');
SELECT pg_temp.ensure_index('files', ARRAY['environment_slug', 'tag'], false, 'files_environment_slug_tag_index');
