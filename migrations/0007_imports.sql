-- Imports (CSV and NDJSON through COPY). A job's progress may carry more than done/total: an
-- import reports its phase, the bytes received and the rows staged (models/imports.ts).
ALTER TABLE jobs ADD COLUMN progress_detail jsonb;

-- An upload is staged in an unlogged table of its own, import_staging_<job id>, created by the
-- upload's transaction and dropped when the job ends (or by the maintenance sweep). Unlogged:
-- the staged copy skips the WAL; a crash of the database empties it, and the job then fails
-- saying so (models/imports.ts stagedRows).
