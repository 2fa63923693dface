-- Each claim of a URL counts as an attempt, so a URL whose lease keeps expiring (a node dies on
-- it, or its result cannot be stored) ends failed instead of being retried forever.
ALTER TABLE crawl_urls ADD COLUMN attempts integer NOT NULL DEFAULT 0;

-- Claims take the shallowest queued URLs across crawls: index that order.
DROP INDEX crawl_urls_queued;
CREATE INDEX crawl_urls_queued ON crawl_urls (depth, crawl_id) WHERE state = 'queued';
