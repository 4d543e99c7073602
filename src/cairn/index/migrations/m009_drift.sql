-- Drift reports (cairn.ops.drift): what `cairn drift report` and the server's periodic refresh found.
--
-- A report is computed in one process (a cron job, a server worker) and shown by every server as
-- Prometheus gauges: the servers read the newest published report from here instead of each
-- recomputing it on a scrape. The report holds audited questions (examples of new topics), so it is
-- read and written by administrators only, like the audit trail it is computed from. Only the newest
-- reports are kept (cairn.ops.drift.store.KEEP_REPORTS); older ones are deleted as new ones arrive.

CREATE TABLE drift_reports (
    id            bigserial PRIMARY KEY,
    computed_at   timestamptz NOT NULL DEFAULT now(),
    principal     text NOT NULL,
    reference_start timestamptz NOT NULL,
    reference_end   timestamptz NOT NULL,
    current_start   timestamptz NOT NULL,
    current_end     timestamptz NOT NULL,
    alerts        int NOT NULL CHECK (alerts >= 0),
    report        jsonb NOT NULL,
    CHECK (reference_start < reference_end AND current_start < current_end)
);
CREATE INDEX drift_reports_computed_idx ON drift_reports (computed_at);

ALTER TABLE drift_reports ENABLE ROW LEVEL SECURITY;
ALTER TABLE drift_reports FORCE ROW LEVEL SECURITY;
CREATE POLICY drift_reports_admin ON drift_reports FOR ALL USING (cairn_is_admin()) WITH CHECK (cairn_is_admin());

GRANT SELECT, INSERT, DELETE ON drift_reports TO cairn_app;
GRANT USAGE, SELECT ON SEQUENCE drift_reports_id_seq TO cairn_app;
