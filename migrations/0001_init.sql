-- Crawls, their frontier, the stored pages, and the jobs table (the result backend).

CREATE TABLE crawls (
  id           integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  url          text NOT NULL,
  status       text NOT NULL DEFAULT 'pending'
               CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
  max_pages    integer NOT NULL CHECK (max_pages > 0),
  max_depth    integer NOT NULL CHECK (max_depth >= 0),
  -- URLs admitted to the frontier so far; updated under the crawl's row lock so that
  -- concurrent crawler nodes never admit more than max_pages.
  discovered   integer NOT NULL DEFAULT 0,
  error        text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  started_at   timestamptz,
  finished_at  timestamptz
);
CREATE INDEX crawls_active ON crawls (id) WHERE status IN ('pending', 'running');

-- The frontier: one row per URL admitted to a crawl. The primary key is the per-crawl dedupe.
-- queued -> fetching (leased by a crawler) -> fetched (awaiting the ingestor) -> stored
--                                          -> failed | skipped
CREATE TABLE crawl_urls (
  crawl_id     integer NOT NULL REFERENCES crawls (id) ON DELETE CASCADE,
  url          text NOT NULL,
  depth        integer NOT NULL,
  state        text NOT NULL DEFAULT 'queued'
               CHECK (state IN ('queued', 'fetching', 'fetched', 'stored', 'failed', 'skipped')),
  reason       text,
  http_status  integer,
  leased_by    text,
  lease_until  timestamptz,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (crawl_id, url)
);
CREATE INDEX crawl_urls_queued ON crawl_urls (crawl_id, depth) WHERE state = 'queued';
CREATE INDEX crawl_urls_leased ON crawl_urls (lease_until) WHERE state IN ('fetching', 'fetched');

CREATE TABLE pages (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  url           text NOT NULL UNIQUE,
  crawl_id      integer REFERENCES crawls (id) ON DELETE SET NULL,
  status        integer NOT NULL,
  title         text,
  content_type  text,
  body          text,
  bytes         integer NOT NULL,
  links         integer NOT NULL,
  depth         integer NOT NULL,
  fetched_at    timestamptz NOT NULL,
  stored_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pages_crawl ON pages (crawl_id, id);

CREATE TABLE jobs (
  id              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind            text NOT NULL,
  status          text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
  params          jsonb NOT NULL DEFAULT '{}',
  progress_done   bigint NOT NULL DEFAULT 0,
  progress_total  bigint,
  throughput      double precision,
  node_id         text,
  attempts        integer NOT NULL DEFAULT 0,
  error           text,
  result          jsonb,
  heartbeat_at    timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  started_at      timestamptz,
  finished_at     timestamptz,
  updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_status ON jobs (status, kind, id);
