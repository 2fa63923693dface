-- Recurring schedules (Celery beat, BullMQ job schedulers): a cron pattern in a time zone that
-- makes a job of one kind (crawl, insert, import) at each tick. Every scheduler node polls for
-- due schedules (FOR UPDATE SKIP LOCKED) and fires a tick in the transaction that creates its
-- job, records its run and moves next_run_at on (services/schedules.service.ts).
CREATE TABLE schedules (
  id           integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  cron         text NOT NULL,
  timezone     text NOT NULL DEFAULT 'UTC',
  -- What a tick that comes more than the grace late becomes (lib/scheduling/cron.ts).
  misfire      text NOT NULL DEFAULT 'run_once' CHECK (misfire IN ('skip', 'run_once')),
  job_kind     text NOT NULL CHECK (job_kind IN ('crawl', 'insert', 'import')),
  -- The job's params as its create action checked them (a crawl's URL normalised, say).
  job_params   jsonb NOT NULL DEFAULT '{}',
  paused       boolean NOT NULL DEFAULT false,
  -- NULL while paused (resuming starts again from the next tick after now), or when the pattern
  -- has no tick left.
  next_run_at  timestamptz,
  last_run_at  timestamptz,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE NOT paused;

-- One row per fired tick. The primary key makes "one job per tick" a fact of the database: a
-- second node firing the same tick fails its insert and rolls its job back. A run whose job
-- could not be made (its target refused at that tick) has no job and says why; a job deleted
-- later leaves its run behind.
CREATE TABLE schedule_runs (
  schedule_id  integer NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
  fire_at      timestamptz NOT NULL,
  job_id       integer REFERENCES jobs (id) ON DELETE SET NULL,
  node_id      text NOT NULL,
  error        text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (schedule_id, fire_at)
);
CREATE INDEX schedule_runs_job ON schedule_runs (job_id);
