-- Document-level access control, enforced twice: cairn adds the caller's readable ACL ids to every
-- query it writes, and row-level security applies the same rule inside PostgreSQL, for a role
-- (cairn_app) that owns nothing, cannot bypass RLS, and is what every pooled connection runs as.
--
-- Who the caller is travels in two session settings set by cairn.index.db when a connection is
-- borrowed and cleared when it is returned: cairn.user_id (a users.id) and cairn.system ('on' for
-- the local operator and the ingestion/maintenance paths). Unset means "nobody": nothing is visible.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cairn_app') THEN
        CREATE ROLE cairn_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- another database of this cluster created it at the same moment
END $$;

DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT pg_has_role(current_user, 'cairn_app', 'MEMBER') THEN
        EXECUTE format('GRANT cairn_app TO %I', current_user);
    END IF;
END $$;

CREATE TABLE users (
    id         serial PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$'),
    is_admin   boolean NOT NULL DEFAULT false,
    disabled   boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE groups (
    id          serial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' AND name <> 'everyone'),
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE group_members (
    group_id int NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id  int NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user_idx ON group_members (user_id);

-- Keys are random 256-bit secrets: a SHA-256 digest is enough at rest (no password stretching needed).
CREATE TABLE api_keys (
    id           serial PRIMARY KEY,
    user_id      int NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL DEFAULT '',
    prefix       text NOT NULL UNIQUE,
    digest       bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- Each distinct reader list ("group:hr", "user:alice", "group:everyone") is stored once; documents,
-- chunks and postings carry its id, so the ACL test is an integer comparison even in the BM25 scan.
CREATE TABLE acl_sets (
    id         serial PRIMARY KEY,
    principals text[] NOT NULL UNIQUE
);
CREATE INDEX acl_sets_principals_idx ON acl_sets USING gin (principals);
INSERT INTO acl_sets (id, principals) VALUES (1, '{}');  -- no readers: admins only (fail closed)
SELECT setval('acl_sets_id_seq', 1);

ALTER TABLE documents ADD COLUMN acl_id int NOT NULL DEFAULT 1 REFERENCES acl_sets (id);
ALTER TABLE chunks ADD COLUMN acl_id int NOT NULL DEFAULT 1;
ALTER TABLE postings ADD COLUMN acl_id int NOT NULL DEFAULT 1;
ALTER TABLE postings DROP CONSTRAINT postings_pkey;
ALTER TABLE postings ADD PRIMARY KEY (kb_id, term, chunk_id) INCLUDE (tf, dl, acl_id);

ALTER TABLE chat_sessions ADD COLUMN user_id int REFERENCES users (id) ON DELETE CASCADE;

CREATE FUNCTION cairn_is_system() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('cairn.system', true), '') = 'on'
$$;

CREATE FUNCTION cairn_user_id() RETURNS int LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('cairn.user_id', true), '')::int
$$;

-- The ACL ids the current caller may read, resolved from the database's own users and groups
-- (not from anything the application passes in), so revoking a membership applies at once.
CREATE FUNCTION cairn_visible_acls() RETURNS int[] LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public AS $$
    WITH me AS (
        SELECT u.id, u.name, u.is_admin FROM users u WHERE u.id = cairn_user_id() AND NOT u.disabled
    ), tokens AS (
        SELECT 'user:' || name AS t FROM me
        UNION ALL SELECT 'group:everyone' FROM me
        UNION ALL SELECT 'group:' || g.name FROM group_members m JOIN groups g ON g.id = m.group_id
                   WHERE m.user_id = (SELECT id FROM me)
    )
    SELECT CASE
        WHEN cairn_is_system() OR coalesce((SELECT is_admin FROM me), false) THEN ARRAY(SELECT id FROM acl_sets)
        ELSE ARRAY(SELECT a.id FROM acl_sets a WHERE a.principals && ARRAY(SELECT t FROM tokens))
    END
$$;

CREATE FUNCTION cairn_is_admin() RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public AS $$
    SELECT cairn_is_system() OR EXISTS (
        SELECT 1 FROM users u WHERE u.id = cairn_user_id() AND u.is_admin AND NOT u.disabled)
$$;

-- CREATE INDEX needs the table's owner; cairn_app asks for the one HNSW index per dimension here.
CREATE FUNCTION cairn_ensure_vector_index(dim int) RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public AS $$
BEGIN
    IF dim < 1 OR dim > 4000 THEN
        RAISE EXCEPTION 'invalid vector dimension %', dim;
    END IF;
    EXECUTE format(
        'CREATE INDEX IF NOT EXISTS %I ON chunks USING hnsw ((embedding::vector(%s)) vector_cosine_ops)'
        ' WITH (m = 16, ef_construction = 64)', 'chunks_embedding_hnsw_' || dim, dim);
END $$;

-- Row-level security. The (SELECT cairn_visible_acls()) sub-select is an InitPlan: evaluated once
-- per query, not per row. Writes to the index are for the system scope only.
ALTER TABLE documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE documents FORCE ROW LEVEL SECURITY;
CREATE POLICY documents_read ON documents FOR SELECT USING (acl_id = ANY ((SELECT cairn_visible_acls())::int[]));
CREATE POLICY documents_system ON documents FOR ALL USING (cairn_is_system()) WITH CHECK (cairn_is_system());

ALTER TABLE chunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE chunks FORCE ROW LEVEL SECURITY;
CREATE POLICY chunks_read ON chunks FOR SELECT USING (acl_id = ANY ((SELECT cairn_visible_acls())::int[]));
CREATE POLICY chunks_system ON chunks FOR ALL USING (cairn_is_system()) WITH CHECK (cairn_is_system());

ALTER TABLE postings ENABLE ROW LEVEL SECURITY;
ALTER TABLE postings FORCE ROW LEVEL SECURITY;
CREATE POLICY postings_read ON postings FOR SELECT USING (acl_id = ANY ((SELECT cairn_visible_acls())::int[]));
CREATE POLICY postings_system ON postings FOR ALL USING (cairn_is_system()) WITH CHECK (cairn_is_system());

-- A knowledge base without a readable document is indistinguishable from one that does not exist.
ALTER TABLE knowledge_bases ENABLE ROW LEVEL SECURITY;
ALTER TABLE knowledge_bases FORCE ROW LEVEL SECURITY;
CREATE POLICY knowledge_bases_read ON knowledge_bases FOR SELECT
    USING (cairn_is_admin() OR EXISTS (SELECT 1 FROM documents d WHERE d.kb_id = knowledge_bases.id));
CREATE POLICY knowledge_bases_system ON knowledge_bases FOR ALL USING (cairn_is_system()) WITH CHECK (cairn_is_system());

ALTER TABLE chat_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE chat_sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY chat_sessions_owner ON chat_sessions FOR ALL
    USING (cairn_is_system() OR user_id = cairn_user_id())
    WITH CHECK (cairn_is_system() OR user_id = cairn_user_id());

ALTER TABLE chat_messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE chat_messages FORCE ROW LEVEL SECURITY;
CREATE POLICY chat_messages_owner ON chat_messages FOR ALL
    USING (EXISTS (SELECT 1 FROM chat_sessions s WHERE s.id = chat_messages.session_id))
    WITH CHECK (EXISTS (SELECT 1 FROM chat_sessions s WHERE s.id = chat_messages.session_id));

-- Principals are managed by the system scope (the CLI operator, the server's admin endpoints after
-- their own check); any caller may read them, which is what authentication needs.
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY users_read ON users FOR SELECT USING (true);
CREATE POLICY users_system ON users FOR ALL USING (cairn_is_system()) WITH CHECK (cairn_is_system());
ALTER TABLE groups ENABLE ROW LEVEL SECURITY;
ALTER TABLE groups FORCE ROW LEVEL SECURITY;
CREATE POLICY groups_read ON groups FOR SELECT USING (true);
CREATE POLICY groups_system ON groups FOR ALL USING (cairn_is_system()) WITH CHECK (cairn_is_system());
ALTER TABLE group_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE group_members FORCE ROW LEVEL SECURITY;
CREATE POLICY group_members_read ON group_members FOR SELECT USING (true);
CREATE POLICY group_members_system ON group_members FOR ALL USING (cairn_is_system()) WITH CHECK (cairn_is_system());
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY api_keys_read ON api_keys FOR SELECT USING (true);
CREATE POLICY api_keys_system ON api_keys FOR ALL USING (cairn_is_system()) WITH CHECK (cairn_is_system());
ALTER TABLE acl_sets ENABLE ROW LEVEL SECURITY;
ALTER TABLE acl_sets FORCE ROW LEVEL SECURITY;
CREATE POLICY acl_sets_read ON acl_sets FOR SELECT USING (true);
CREATE POLICY acl_sets_system ON acl_sets FOR ALL USING (cairn_is_system()) WITH CHECK (cairn_is_system());

-- What the application role may do; later migrations grant on what they create.
GRANT USAGE ON SCHEMA public TO cairn_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO cairn_app;
REVOKE ALL ON cairn_migrations FROM cairn_app;
GRANT SELECT ON cairn_migrations TO cairn_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO cairn_app;
REVOKE ALL ON FUNCTION cairn_ensure_vector_index(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cairn_ensure_vector_index(int) TO cairn_app;
