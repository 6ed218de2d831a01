-- Where each environment's run index has read Airflow's changes up to: the latest
-- `dag_run.updated_at` seen (Airflow 2.5 and later set it on every change of a run), so a
-- refresh reads the runs Airflow changed since, finished ones included (cleared, marked by
-- hand). NULL where the database does not record changes.
ALTER TABLE run_index_environments ADD COLUMN IF NOT EXISTS changes_seen timestamptz;

-- The index's `queued_at` is now what a run's `created_at` shows (`queued_at`, else when
-- Airflow made the row, else its start), and runs that changed after they finished were not
-- seen before: the index is built anew from Airflow on the next list. The id registries are
-- kept, so no run's id changes.
DELETE FROM run_index;
DELETE FROM run_index_environments;
