-- The audit trail (cairn.ops.audit) and the feedback given on answers (cairn.ops.feedback).
--
-- audit_log is an append-only hash chain: each record stores the hash of its predecessor, and its
-- own hash covers that link and its contents, so editing, deleting or reordering a record breaks
-- the chain. The hashes are computed by cairn (canonical JSON, SHA-256); PostgreSQL only enforces
-- that every insert extends the current head. audit_head anchors the newest record, so deleting
-- the tail is detected too; audit_checkpoints let a retention purge drop the oldest records while
-- the rest still verifies.
--
-- Chain appends are serialised by an advisory lock taken in cairn_audit_begin(), so any number of
-- processes append to one chain. A user id is stored without a foreign key: the trail must outlive
-- the users it mentions.

CREATE TABLE audit_log (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL,
    user_id   int,
    principal text NOT NULL,
    kind      text NOT NULL CHECK (kind IN ('ask', 'search', 'chat', 'feedback', 'purge')),
    record    jsonb NOT NULL,
    prev_hash bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash      bytea NOT NULL UNIQUE CHECK (length(hash) = 32)
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_user_idx ON audit_log (user_id, id);

-- One row: the newest record ever appended (id 0 and 32 zero bytes before the first).
CREATE TABLE audit_head (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_id    bigint NOT NULL DEFAULT 0,
    last_hash  bytea NOT NULL DEFAULT decode(repeat('00', 32), 'hex'),
    appended   bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO audit_head DEFAULT VALUES;

-- Written by a retention purge: records up to upto_id are gone, the first survivor links to
-- upto_hash. The purge also appends a 'purge' record (audit_id) stating the same, so a forged
-- checkpoint without its chain record is detected.
CREATE TABLE audit_checkpoints (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    upto_id   bigint NOT NULL,
    upto_hash bytea NOT NULL CHECK (length(upto_hash) = 32),
    purged    bigint NOT NULL CHECK (purged > 0),
    cutoff    timestamptz NOT NULL,
    audit_id  bigint NOT NULL
);

CREATE TABLE feedback (
    id         bigserial PRIMARY KEY,
    audit_id   bigint NOT NULL REFERENCES audit_log (id) ON DELETE CASCADE,
    user_id    int,
    principal  text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    vote       smallint CHECK (vote IN (-1, 1)),
    flag       boolean NOT NULL DEFAULT false,
    comment    text NOT NULL DEFAULT '',
    correction text NOT NULL DEFAULT ''
);
CREATE INDEX feedback_audit_idx ON feedback (audit_id);
CREATE INDEX feedback_user_idx ON feedback (user_id);

-- Takes the chain lock (held to the end of the caller's transaction) and hands out the next id,
-- the time and the predecessor's hash. SECURITY DEFINER: a plain user may append but not read
-- the head.
CREATE FUNCTION cairn_audit_begin() RETURNS TABLE (id bigint, at timestamptz, prev_hash bytea)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF NOT cairn_is_system() AND cairn_user_id() IS NULL THEN
        RAISE EXCEPTION 'an unidentified caller cannot write to the audit log'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM pg_advisory_xact_lock(211919057);  -- 0x0CA1A0D1, cairn.ops.audit.CHAIN_LOCK_ID
    RETURN QUERY SELECT nextval('audit_log_id_seq'), clock_timestamp(), h.last_hash FROM audit_head h;
END $$;

-- Every insert must extend the head; the conditional UPDATE also serialises writers that skipped
-- the lock, because a concurrent one re-checks the condition against the committed head.
CREATE FUNCTION cairn_audit_link() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    UPDATE audit_head
       SET last_id = NEW.id, last_hash = NEW.hash, appended = appended + 1, updated_at = NEW.at
     WHERE last_hash = NEW.prev_hash AND last_id < NEW.id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'audit record % does not extend the chain head', NEW.id
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_log_link BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION cairn_audit_link();

-- Records are immutable for everyone, the schema owner included (a superuser can still disable
-- triggers: that is what exporting the head elsewhere protects against).
CREATE FUNCTION cairn_audit_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit records cannot be changed' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_immutable BEFORE UPDATE ON audit_log FOR EACH ROW EXECUTE FUNCTION cairn_audit_immutable();
CREATE TRIGGER audit_checkpoints_immutable BEFORE UPDATE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION cairn_audit_immutable();

-- The hash of an answer the caller may give feedback on (its own, or any for the system scope);
-- NULL for one that does not exist or is someone else's, which the caller cannot tell apart.
CREATE FUNCTION cairn_feedback_target(p_audit_id bigint) RETURNS bytea
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT a.hash FROM audit_log a
     WHERE a.id = p_audit_id AND a.kind IN ('ask', 'chat')
       AND (cairn_is_system() OR (a.user_id IS NOT NULL AND a.user_id = cairn_user_id()))
$$;

-- Row-level security. Reads of the trail are for admins; nobody has an UPDATE policy; deleting
-- (retention) is for the system scope. The policies TO CURRENT_USER (the schema owner running this
-- migration) let the SECURITY DEFINER functions above work under FORCE when the owner is not a
-- superuser; cairn_app is not a member of the owner role, so they do not apply to it.
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_log_append ON audit_log FOR INSERT WITH CHECK (
    cairn_is_system() OR (user_id IS NOT NULL AND user_id = cairn_user_id() AND kind <> 'purge'));
CREATE POLICY audit_log_read ON audit_log FOR SELECT USING (cairn_is_admin());
CREATE POLICY audit_log_retention ON audit_log FOR DELETE USING (cairn_is_system());
CREATE POLICY audit_log_definer ON audit_log FOR SELECT TO CURRENT_USER USING (true);

ALTER TABLE audit_head ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_head FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_head_read ON audit_head FOR SELECT USING (cairn_is_admin());
CREATE POLICY audit_head_definer ON audit_head FOR ALL TO CURRENT_USER USING (true) WITH CHECK (true);

ALTER TABLE audit_checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_checkpoints_read ON audit_checkpoints FOR SELECT USING (cairn_is_admin());
CREATE POLICY audit_checkpoints_write ON audit_checkpoints FOR INSERT WITH CHECK (cairn_is_system());

ALTER TABLE feedback ENABLE ROW LEVEL SECURITY;
ALTER TABLE feedback FORCE ROW LEVEL SECURITY;
CREATE POLICY feedback_give ON feedback FOR INSERT WITH CHECK (
    cairn_feedback_target(audit_id) IS NOT NULL
    AND (cairn_is_system() OR (user_id IS NOT NULL AND user_id = cairn_user_id())));
CREATE POLICY feedback_read ON feedback FOR SELECT
    USING (cairn_is_admin() OR (user_id IS NOT NULL AND user_id = cairn_user_id()));

-- m002 granted on the tables that existed then; these are granted one by one, and no UPDATE.
GRANT SELECT, INSERT, DELETE ON audit_log TO cairn_app;
GRANT SELECT ON audit_head TO cairn_app;
GRANT SELECT, INSERT ON audit_checkpoints TO cairn_app;
GRANT SELECT, INSERT ON feedback TO cairn_app;
GRANT USAGE, SELECT ON SEQUENCE audit_log_id_seq, audit_checkpoints_id_seq, feedback_id_seq TO cairn_app;
REVOKE ALL ON FUNCTION cairn_audit_begin() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cairn_audit_begin() TO cairn_app;
REVOKE ALL ON FUNCTION cairn_feedback_target(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cairn_feedback_target(bigint) TO cairn_app;
REVOKE ALL ON FUNCTION cairn_audit_link() FROM PUBLIC;
