-- The answer cache (cairn.answer.cache): answers keyed by the normalised question, the knowledge
-- bases, the answering pipeline and the caller's effective permissions, each linked to the document
-- versions it was built from.
--
-- perm is the SHA-256 of the sorted ACL ids the caller may read (cairn_cache_perm(), computed here
-- from the database's own users and groups, never passed in), so callers who see exactly the same
-- documents share entries and nobody else can even see them: row-level security shows a caller
-- only the entries of its own permission set. An admin's set holds ACL 1 (no readers), which no
-- user's set ever holds, so an admin's entries are never another user's.
--
-- Serving is also checked against the documents themselves: an entry is valid only while every
-- supporting document still exists at the stored version and is readable by the caller (under the
-- caller's own RLS on documents). Triggers drop the entries of a document when its version or ACL
-- changes or when it is deleted, so stale entries do not even wait for their next lookup.

CREATE FUNCTION cairn_cache_perm() RETURNS bytea LANGUAGE sql STABLE
SET search_path = pg_catalog, public AS $$
    SELECT sha256(convert_to('cairn-cache-perm:' || array_to_string(
        ARRAY(SELECT a FROM unnest(cairn_visible_acls()) AS a ORDER BY a), ','), 'UTF8'))
$$;

CREATE TABLE answer_cache (
    id             bigserial PRIMARY KEY,
    perm           bytea NOT NULL CHECK (length(perm) = 32),
    scope          bytea NOT NULL CHECK (length(scope) = 32),  -- knowledge bases + pipeline + embedder
    key            bytea NOT NULL CHECK (length(key) = 32),    -- scope + normalised question
    question       text NOT NULL,                              -- normalised
    embedding      vector,                                     -- of the normalised question, any dimension
    dim            int CHECK (dim IS NULL OR dim > 0),
    refused        boolean NOT NULL,
    kb_fingerprint text,        -- refusals: the caller's visible documents of the knowledge bases
    doc_count      int NOT NULL DEFAULT 0 CHECK (doc_count >= 0),
    answer         jsonb NOT NULL,
    cost_ms        real NOT NULL DEFAULT 0,
    hits           bigint NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_hit_at    timestamptz,
    expires_at     timestamptz NOT NULL,
    UNIQUE (perm, key),
    CHECK (refused OR doc_count > 0),
    CHECK (NOT refused OR kb_fingerprint IS NOT NULL)
);
CREATE INDEX answer_cache_scope_idx ON answer_cache (perm, scope, dim);
CREATE INDEX answer_cache_expires_idx ON answer_cache (expires_at);

-- The document versions an entry was built from: every cited passage's and every searched passage's
-- (those given to the model are among them). Deleting a document removes its rows by cascade.
CREATE TABLE answer_cache_documents (
    entry_id    bigint NOT NULL REFERENCES answer_cache (id) ON DELETE CASCADE,
    document_id bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    version     int NOT NULL,
    PRIMARY KEY (entry_id, document_id)
);
CREATE INDEX answer_cache_documents_doc_idx ON answer_cache_documents (document_id);

-- A new version, a new reader list or a deletion of a document drops the entries it supported.
-- SECURITY DEFINER: the writer is the ingestion path (system scope) or a cascade, and the entries to
-- drop belong to every permission set.
CREATE FUNCTION cairn_cache_document_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    DELETE FROM answer_cache c
     WHERE c.id IN (SELECT l.entry_id FROM answer_cache_documents l WHERE l.document_id = OLD.id);
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER documents_answer_cache_changed AFTER UPDATE OF version, acl_id ON documents FOR EACH ROW
    WHEN (OLD.version IS DISTINCT FROM NEW.version OR OLD.acl_id IS DISTINCT FROM NEW.acl_id)
    EXECUTE FUNCTION cairn_cache_document_changed();
-- BEFORE: the cascade on answer_cache_documents would otherwise remove the links first.
CREATE TRIGGER documents_answer_cache_deleted BEFORE DELETE ON documents FOR EACH ROW
    EXECUTE FUNCTION cairn_cache_document_changed();

-- Row-level security: a caller sees, writes and deletes only the entries of its own permission set
-- (an identified caller: a connection nobody was named on sees nothing); the system scope maintains
-- all of them (purge, invalidation). The (SELECT ...) sub-select is an InitPlan, once per query.
-- The policies TO CURRENT_USER (the schema owner running this migration) let the SECURITY DEFINER
-- trigger work under FORCE when the owner is not a superuser; cairn_app is not a member of it.
ALTER TABLE answer_cache ENABLE ROW LEVEL SECURITY;
ALTER TABLE answer_cache FORCE ROW LEVEL SECURITY;
CREATE POLICY answer_cache_own ON answer_cache FOR ALL
    USING (cairn_user_id() IS NOT NULL AND perm = (SELECT cairn_cache_perm()))
    WITH CHECK (cairn_user_id() IS NOT NULL AND perm = (SELECT cairn_cache_perm()));
CREATE POLICY answer_cache_system ON answer_cache FOR ALL USING (cairn_is_system()) WITH CHECK (cairn_is_system());
CREATE POLICY answer_cache_definer ON answer_cache FOR ALL TO CURRENT_USER USING (true) WITH CHECK (true);

ALTER TABLE answer_cache_documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE answer_cache_documents FORCE ROW LEVEL SECURITY;
CREATE POLICY answer_cache_documents_own ON answer_cache_documents FOR ALL
    USING (EXISTS (SELECT 1 FROM answer_cache c WHERE c.id = answer_cache_documents.entry_id))
    WITH CHECK (EXISTS (SELECT 1 FROM answer_cache c WHERE c.id = answer_cache_documents.entry_id));
CREATE POLICY answer_cache_documents_definer ON answer_cache_documents FOR ALL TO CURRENT_USER
    USING (true) WITH CHECK (true);

-- m002 granted on the tables that existed then; these are granted one by one.
GRANT SELECT, INSERT, UPDATE, DELETE ON answer_cache, answer_cache_documents TO cairn_app;
GRANT USAGE, SELECT ON SEQUENCE answer_cache_id_seq TO cairn_app;
REVOKE ALL ON FUNCTION cairn_cache_document_changed() FROM PUBLIC;
