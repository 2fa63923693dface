-- Fetch history and conditional recrawls.
--
-- page_fetches: one row per request a crawl made for a URL (robots.txt refusals and refused
-- targets send none). It grows with every crawl, so it is partitioned by month, pg_partman's
-- way without the extension: page_fetches_pYYYYMM partitions are made ahead of time and those
-- past FETCH_RETENTION_MONTHS dropped by a maintenance task (models/page-fetches.ts). A row whose
-- month has no partition yet lands in the default partition, and moves to its own when that is
-- made. The key (url, fetched_at) makes a redelivered page message's history row a no-op.
CREATE TABLE page_fetches (
  url            text NOT NULL,
  fetched_at     timestamptz NOT NULL,
  crawl_id       integer,
  -- fetched: a new or changed body; unchanged: a 304, or the stored body's hash; failed, skipped.
  outcome        text NOT NULL CHECK (outcome IN ('fetched', 'unchanged', 'failed', 'skipped')),
  status         integer,
  -- Bytes that came over the wire (compressed, if the response was).
  bytes          integer NOT NULL DEFAULT 0,
  duration_ms    integer NOT NULL,
  etag           text,
  last_modified  text,
  -- sha256 of the decoded body, when one was read.
  content_hash   text,
  PRIMARY KEY (url, fetched_at)
) PARTITION BY RANGE (fetched_at);
CREATE TABLE page_fetches_default PARTITION OF page_fetches DEFAULT;
CREATE INDEX page_fetches_crawl ON page_fetches (crawl_id, fetched_at);

-- What a recrawl sends back to the server (If-None-Match, If-Modified-Since), compares a new
-- body with, and follows when the page is unchanged (its links, as extracted, without parsing it
-- again).
ALTER TABLE pages ADD COLUMN etag text, ADD COLUMN last_modified text, ADD COLUMN content_hash text,
  ADD COLUMN outlinks text[];

-- unchanged: a recrawl found the stored page current; its row is kept as it is.
ALTER TABLE crawl_urls DROP CONSTRAINT crawl_urls_state_check;
ALTER TABLE crawl_urls ADD CONSTRAINT crawl_urls_state_check
  CHECK (state IN ('queued', 'fetching', 'fetched', 'stored', 'failed', 'skipped', 'unchanged'));

-- sitemaps: the crawl's frontier is also seeded from the site's sitemaps.
ALTER TABLE crawls ADD COLUMN sitemaps boolean NOT NULL DEFAULT false;
