-- What the console needs: each job's history, pausable crawls and queues, job search, and
-- counts that stay cheap at any table size.

-- A job's history: one row per status change or new attempt, written by a trigger so that no
-- code path (a claim, the reaper, a stop, a crawl's own trigger, a retry) can miss one.
CREATE TABLE job_events (
  id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id   integer NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  at       timestamptz NOT NULL DEFAULT now(),
  -- created | attempt | running (a crawl started) | retry | handed back | error (an attempt failed,
  -- another follows) | stopped | succeeded | failed
  type     text NOT NULL,
  status   text NOT NULL,
  attempt  integer NOT NULL,
  node_id  text,
  error    text
);
CREATE INDEX job_events_job ON job_events (job_id, id);

CREATE FUNCTION job_history() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  kind text;
BEGIN
  IF TG_OP = 'INSERT' THEN
    kind := 'created';
  ELSIF NEW.status = 'running' AND NEW.attempts > OLD.attempts THEN
    kind := 'attempt';
  ELSIF NEW.status = 'pending' AND OLD.status IN ('failed', 'cancelled', 'succeeded') THEN
    kind := 'retry';
  ELSIF NEW.status = 'pending' AND NEW.error LIKE 'handed back%' THEN
    kind := 'handed back';
  ELSIF NEW.status = 'pending' THEN
    kind := 'error';
  ELSIF NEW.status = 'cancelled' THEN
    kind := 'stopped';
  ELSIF NEW.status = OLD.status THEN
    RETURN NEW;
  ELSE
    kind := NEW.status;
  END IF;
  -- A failed attempt that goes back to pending clears node_id: the event keeps the node it failed on.
  INSERT INTO job_events (job_id, type, status, attempt, node_id, error)
  VALUES (NEW.id, kind, NEW.status, NEW.attempts, CASE WHEN TG_OP = 'UPDATE' THEN coalesce(NEW.node_id, OLD.node_id) ELSE NEW.node_id END, NEW.error);
  RETURN NEW;
END
$$;

CREATE TRIGGER job_history_insert AFTER INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION job_history();
-- Heartbeats and progress update jobs all the time: only a change of status or attempt is history.
CREATE TRIGGER job_history_update AFTER UPDATE OF status, attempts ON jobs
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.attempts IS DISTINCT FROM NEW.attempts)
  EXECUTE FUNCTION job_history();

-- Jobs that exist already start their history with what is known of them.
INSERT INTO job_events (job_id, at, type, status, attempt, node_id, error)
SELECT id, created_at, 'created', status, attempts, node_id, error FROM jobs ORDER BY id;

-- Job search (`q`): the id, a crawl's URL and the error text, as words, in a GIN index
-- (built in: no extension). Everything but letters and digits separates words, so each part of
-- a URL (host labels, path segments) and of an identifier (reject_all) is a word of its own.
-- An expression index, not a column: `SELECT *` stays as it was. models/jobs.ts (JOB_SEARCH)
-- writes the same expression. Filters and sorts by creation time use the other indexes.
CREATE INDEX jobs_search ON jobs USING gin (
  to_tsvector('simple', regexp_replace(id::text || ' ' || coalesce(params->>'url', '') || ' ' || coalesce(error, ''), '[^[:alnum:]]+', ' ', 'g'))
);
CREATE INDEX jobs_created ON jobs (created_at, id);
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE status IN ('succeeded', 'failed', 'cancelled');

-- A paused crawl keeps its frontier; crawlers lease none of its URLs until it resumes.
ALTER TABLE crawls ADD COLUMN paused boolean NOT NULL DEFAULT false;
CREATE INDEX crawl_urls_settled ON crawl_urls (crawl_id, updated_at) WHERE state IN ('failed', 'skipped');

-- Queues that can be paused for the whole cluster.
CREATE TABLE queues (
  name    text PRIMARY KEY CHECK (name IN ('crawl', 'insert', 'ids')),
  paused  boolean NOT NULL DEFAULT false,
  updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO queues (name) VALUES ('crawl'), ('insert'), ('ids');

-- Row counts kept in the same transaction as the write: each writing statement adds a delta
-- row (inserts never wait for each other, unlike one counter row), and the sum is the count.
-- A maintenance sweep folds the deltas into one row per table.
CREATE TABLE table_counts (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  table_name  text NOT NULL,
  delta       bigint NOT NULL
);
CREATE INDEX table_counts_table ON table_counts (table_name);
INSERT INTO table_counts (table_name, delta)
SELECT 'rows', count(*) FROM rows UNION ALL
SELECT 'pages', count(*) FROM pages UNION ALL
SELECT 'users', count(*) FROM users;

-- pages and users are written by upserts and by moleculer-db one row at a time: statement
-- triggers with transition tables count what each statement inserted or deleted. The bulk
-- rows table is counted by its writers (the insert job adds its rows with its commit).
CREATE FUNCTION count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO table_counts (table_name, delta) SELECT TG_TABLE_NAME, count(*) FROM new_rows HAVING count(*) > 0;
  RETURN NULL;
END
$$;
CREATE FUNCTION count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO table_counts (table_name, delta) SELECT TG_TABLE_NAME, -count(*) FROM old_rows HAVING count(*) > 0;
  RETURN NULL;
END
$$;
-- An emptied table starts again at 0, whoever truncates it.
CREATE FUNCTION count_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM table_counts WHERE table_name = TG_TABLE_NAME;
  INSERT INTO table_counts (table_name, delta) VALUES (TG_TABLE_NAME, 0);
  RETURN NULL;
END
$$;
CREATE TRIGGER rows_count_truncate AFTER TRUNCATE ON rows FOR EACH STATEMENT EXECUTE FUNCTION count_truncated();
CREATE TRIGGER pages_count_truncate AFTER TRUNCATE ON pages FOR EACH STATEMENT EXECUTE FUNCTION count_truncated();
CREATE TRIGGER users_count_truncate AFTER TRUNCATE ON users FOR EACH STATEMENT EXECUTE FUNCTION count_truncated();
CREATE TRIGGER pages_count_insert AFTER INSERT ON pages REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION count_inserted();
CREATE TRIGGER pages_count_delete AFTER DELETE ON pages REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION count_deleted();
CREATE TRIGGER users_count_insert AFTER INSERT ON users REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION count_inserted();
CREATE TRIGGER users_count_delete AFTER DELETE ON users REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION count_deleted();

-- Maintenance that runs once across the cluster per period: the first node to insert the
-- period's row runs it.
CREATE TABLE maintenance_runs (
  task     text NOT NULL,
  period   bigint NOT NULL,
  node_id  text NOT NULL,
  ran_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (task, period)
);
