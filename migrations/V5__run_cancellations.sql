-- Runs cancelled through Jade (`POST …/runs/{id}/cancel/`). Airflow only records that the
-- DAG run was marked failed; this is what makes it render as cancelled, across restarts and
-- replicas, and survives the run index being rebuilt.
CREATE TABLE IF NOT EXISTS run_cancellations (
  job_run_id bigint PRIMARY KEY REFERENCES job_run_ids(id) ON DELETE CASCADE,
  cancelled_at timestamptz NOT NULL DEFAULT now(),
  -- The email of the user whose token cancelled it, when known (the audit trail).
  cancelled_by text
);
