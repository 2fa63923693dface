-- Id-tasks (seed: the DRF + Celery scheduler): ids spread over the minutes of the hour, each
-- processed against an upstream API in its minute; users are what the processing stores.
-- Minutes are numbered on the scheduler's clock: minute n starts n * SCHEDULER_MINUTE_MS after
-- the epoch, and hour h holds minutes 60h .. 60h + 59.

CREATE TABLE users (
  id           integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  external_id  bigint NOT NULL UNIQUE,
  name         text,
  email        text,
  profile      jsonb,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);

-- An id-task is a job of kind 'id-task'; this row holds what only id-tasks have.
CREATE TABLE id_tasks (
  job_id        integer PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
  rpm           integer NOT NULL CHECK (rpm > 0),
  paused        boolean NOT NULL DEFAULT false,
  first_minute  bigint NOT NULL,
  last_minute   bigint NOT NULL
);

CREATE TABLE id_task_slots (
  task_id      integer NOT NULL REFERENCES id_tasks (job_id) ON DELETE CASCADE,
  external_id  bigint NOT NULL,
  minute       bigint NOT NULL,
  -- planned -> dispatched (sent on the ids channel in its minute) -> running -> done | failed
  state        text NOT NULL DEFAULT 'planned' CHECK (state IN ('planned', 'dispatched', 'running', 'done', 'failed')),
  attempts     integer NOT NULL DEFAULT 0,
  error        text,
  -- The node that dispatched it: if that node dies mid-minute, what it had not sent yet is planned again.
  dispatched_by text,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (task_id, external_id)
);
CREATE INDEX id_task_slots_due ON id_task_slots (minute) WHERE state = 'planned';
CREATE INDEX id_task_slots_dispatched ON id_task_slots (updated_at) WHERE state = 'dispatched';
CREATE INDEX id_task_slots_task_minute ON id_task_slots (task_id, minute);

-- The shared calendar: how many ids each minute holds, across all tasks.
CREATE TABLE calendar (
  minute   bigint PRIMARY KEY,
  planned  integer NOT NULL DEFAULT 0
);

-- Each minute is dispatched once, by whichever scheduler node inserts its row first.
CREATE TABLE dispatched_minutes (
  minute         bigint PRIMARY KEY,
  node_id        text NOT NULL,
  dispatched_at  timestamptz NOT NULL DEFAULT now()
);
