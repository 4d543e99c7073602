-- The ingestion queue (cairn.ingest.queue): `cairn ingest DIR --queue` writes a job here and any number
-- of `cairn worker` processes, on any number of hosts, share the work through this table alone.
--
-- A 'folder' job is one sync of a folder: the worker that takes it lists the folder, deletes the
-- documents of files that are gone, and turns every file into a 'file' job, so N workers share one big
-- folder file by file. A worker claims jobs with SELECT ... FOR UPDATE SKIP LOCKED (claimers never
-- wait for each other) and holds them under a lease that it keeps extending while it works; a job whose
-- lease ran out belongs to a worker that died, and the next claim takes it over (attempts counts every
-- claim, and a job that has used max_attempts fails with the reason instead of looping forever).
--
-- Access: enqueueing writes a knowledge base, which in cairn is for the system scope and administrators
-- only (like uploads), and a job names files, so ordinary users can neither see nor add a row.

CREATE TABLE ingest_jobs (
    id           bigserial PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('folder', 'file')),
    kb_id        int NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    path         text NOT NULL CHECK (path LIKE '/%'),  -- absolute, resolved, as the workers see it
    root         text NOT NULL CHECK (root LIKE '/%'),  -- the sync's folder: its .cairn-acl sidecars apply
    readers      text[] NOT NULL DEFAULT '{}',          -- ACL tokens for files no sidecar governs
    full_reindex boolean NOT NULL DEFAULT false,
    prune        boolean NOT NULL DEFAULT true,         -- folder jobs: delete documents of removed files
    parent_id    bigint REFERENCES ingest_jobs (id) ON DELETE SET NULL,
    state        text NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    attempts     int NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts int NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 100),
    run_after    timestamptz NOT NULL DEFAULT now(),    -- a retry waits out its back-off
    worker       text,                                  -- who holds it, or held it last
    lease_until  timestamptz,
    outcome      text,   -- file: added, updated, unchanged, deleted, skipped, error; folder: expanded
    error        text,   -- why the last attempt failed (kept on a later success, for the record)
    result       jsonb NOT NULL DEFAULT '{}',
    requested_by int,    -- the administrator's users.id; NULL for the system scope (the CLI operator)
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    CHECK ((state = 'running') = (lease_until IS NOT NULL)),
    CHECK (state <> 'running' OR worker IS NOT NULL),
    CHECK ((state IN ('done', 'failed', 'cancelled')) = (finished_at IS NOT NULL))
);
CREATE INDEX ingest_jobs_queued_idx ON ingest_jobs (id) WHERE state = 'queued';
CREATE INDEX ingest_jobs_lease_idx ON ingest_jobs (lease_until) WHERE state = 'running';
CREATE INDEX ingest_jobs_parent_idx ON ingest_jobs (parent_id, state);
CREATE INDEX ingest_jobs_finished_idx ON ingest_jobs (finished_at) WHERE finished_at IS NOT NULL;
-- A file waits in the queue once: a second sync that reaches it first updates the waiting job.
CREATE UNIQUE INDEX ingest_jobs_waiting_file_idx ON ingest_jobs (kb_id, path) WHERE state = 'queued' AND kind = 'file';

-- Row-level security: administrators and the system scope (workers, the CLI operator) see and manage
-- every job; an administrator enqueues in its own name only; anyone else sees no row and adds none.
ALTER TABLE ingest_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE ingest_jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY ingest_jobs_read ON ingest_jobs FOR SELECT USING (cairn_is_admin());
CREATE POLICY ingest_jobs_enqueue ON ingest_jobs FOR INSERT WITH CHECK (
    cairn_is_system() OR (cairn_is_admin() AND requested_by IS NOT NULL AND requested_by = cairn_user_id()));
CREATE POLICY ingest_jobs_manage ON ingest_jobs FOR UPDATE USING (cairn_is_admin()) WITH CHECK (cairn_is_admin());
CREATE POLICY ingest_jobs_purge ON ingest_jobs FOR DELETE USING (cairn_is_admin());

-- m002 granted on the tables that existed then; these are granted one by one.
GRANT SELECT, INSERT, UPDATE, DELETE ON ingest_jobs TO cairn_app;
GRANT USAGE, SELECT ON SEQUENCE ingest_jobs_id_seq TO cairn_app;
