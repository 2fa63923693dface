-- The bulk-insert demo table (seed: the Flask/Celery `/insert/<num>` app). An insert job writes
-- its rows in one transaction, so the table holds all of a job's rows or none of them.
CREATE TABLE rows (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name        text NOT NULL,
  value       integer NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- The reaper looks for running jobs whose heartbeat stopped.
CREATE INDEX jobs_running ON jobs (heartbeat_at) WHERE status = 'running';
