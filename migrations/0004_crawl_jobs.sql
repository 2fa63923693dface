-- A crawl is a job of kind 'crawl': the jobs table is the one result backend for all long work.
-- The crawl's own row stays the source of truth for the frontier; a trigger keeps its job row's
-- status and timestamps in step, whichever statement changes them.
ALTER TABLE crawls ADD COLUMN job_id integer REFERENCES jobs (id);

CREATE FUNCTION crawl_job_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE jobs SET status = NEW.status, error = NEW.error, started_at = NEW.started_at,
                  finished_at = NEW.finished_at, updated_at = now()
   WHERE id = NEW.job_id;
  RETURN NEW;
END
$$;

CREATE TRIGGER crawl_job_follow AFTER UPDATE OF status, error, started_at, finished_at ON crawls
  FOR EACH ROW WHEN (NEW.job_id IS NOT NULL) EXECUTE FUNCTION crawl_job_follow();

-- Crawls created before this migration get their job rows.
WITH created AS (
  INSERT INTO jobs (kind, status, params, progress_total, error, created_at, started_at, finished_at, updated_at)
  SELECT 'crawl', status, jsonb_build_object('crawlId', id, 'url', url, 'maxPages', max_pages, 'maxDepth', max_depth),
         max_pages, error, created_at, started_at, finished_at, coalesce(finished_at, started_at, created_at)
    FROM crawls ORDER BY id
  RETURNING id, (params->>'crawlId')::int AS crawl_id
)
UPDATE crawls c SET job_id = created.id FROM created WHERE c.id = created.crawl_id;
