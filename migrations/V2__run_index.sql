-- The run index: what Jade knows of each DAG run it has seen, enough to filter, order and
-- page a run list in this database with one indexed query, whatever order the job-run ids
-- were handed out in. It is refreshed from each environment's Airflow database by what
-- changed (new DAG run ids, runs not finished yet); the page's rows are then read from
-- Airflow by id. Jade owns it; the first Jade never had it, and it can be rebuilt from
-- Airflow at any time.

CREATE TABLE IF NOT EXISTS run_index (
  job_run_id bigint PRIMARY KEY REFERENCES job_run_ids(id) ON DELETE CASCADE,
  account_id integer NOT NULL,
  environment_id integer NOT NULL,
  dag_run_id integer NOT NULL,
  job_id bigint NOT NULL,
  -- 1 success, 2 error, 3 queued (or any other state), 5 running: the first Jade's codes.
  status smallint NOT NULL,
  queued_at timestamptz,
  end_date timestamptz
);

CREATE UNIQUE INDEX IF NOT EXISTS run_index_environment_run ON run_index (environment_id, dag_run_id);
CREATE INDEX IF NOT EXISTS run_index_unfinished ON run_index (environment_id, dag_run_id) WHERE status IN (3, 5);
-- One index per order of a run list (contract §3 `order_by`). Unfinished or unqueued runs
-- sort last either way, so the time orders sort on the time with NULL read as the far
-- future (ascending) or the far past (descending: the index is scanned backwards); ties go
-- by job-run id in the same direction. These keys also let a deep page start from a
-- remembered position (`(key, job_run_id) >= (..)`) instead of counting through an offset.
-- The included columns let a page and its count be index-only scans.
CREATE INDEX IF NOT EXISTS run_index_by_id ON run_index (account_id, job_run_id)
  INCLUDE (environment_id, dag_run_id, job_id, status);
CREATE INDEX IF NOT EXISTS run_index_by_created ON run_index
  (account_id, coalesce(queued_at, '9999-12-31T00:00:00Z'::timestamptz), job_run_id)
  INCLUDE (environment_id, dag_run_id, job_id, status);
CREATE INDEX IF NOT EXISTS run_index_by_created_desc ON run_index
  (account_id, coalesce(queued_at, '0001-01-01T00:00:00Z'::timestamptz), job_run_id)
  INCLUDE (environment_id, dag_run_id, job_id, status);
CREATE INDEX IF NOT EXISTS run_index_by_finished ON run_index
  (account_id, coalesce(end_date, '9999-12-31T00:00:00Z'::timestamptz), job_run_id)
  INCLUDE (environment_id, dag_run_id, job_id, status);
CREATE INDEX IF NOT EXISTS run_index_by_finished_desc ON run_index
  (account_id, coalesce(end_date, '0001-01-01T00:00:00Z'::timestamptz), job_run_id)
  INCLUDE (environment_id, dag_run_id, job_id, status);

-- Per environment: how many runs are indexed and the highest DAG run id, kept with the rows
-- in the same transactions, so an unfiltered list is counted without reading its rows.
CREATE TABLE IF NOT EXISTS run_index_environments (
  environment_id integer PRIMARY KEY,
  account_id integer NOT NULL,
  runs bigint NOT NULL,
  newest integer,
  -- Grows with every write of the environment's runs: remembered page positions of an
  -- account are good while the sum of its environments' versions stays the same.
  version bigint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS run_index_environments_account ON run_index_environments (account_id);
