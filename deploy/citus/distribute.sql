-- Shard a cairn database with Citus: run once, as the schema owner, on the coordinator, after cairn's
-- migrations have created the schema (`cairn kb list` with the owner's URL) and before any data is loaded.
--
--   psql "$OWNER_URL" -v ON_ERROR_STOP=1 -f deploy/citus/distribute.sql
--
-- NOT TESTED ON CITUS. tests/integration/deploy/test_citus_script.py runs this file against a plain
-- PostgreSQL with cairn's schema, Citus' functions replaced by stubs that check their arguments, and
-- then checks Citus' documented rules on the result (unique keys and foreign keys include the
-- distribution column, no foreign key from a coordinator table into a sharded one) and that cairn
-- still ingests, searches and passes `cairn index check` on the altered constraints. docs/deployment.md
-- lists what remains open (identity propagation for row-level security on the worker nodes).
--
-- The distribution column is kb_id: every row of a knowledge base (its documents, chunks, BM25
-- postings and statistics, knowledge graph) lands on one shard, so
--   - a search of one knowledge base is routed to one shard, with the same plan as on one server;
--   - BM25's collection statistics (kb_stats, document frequencies from postings) are per knowledge
--     base already, so they stay exact: no shard computes IDF over a part of the collection;
--   - each shard builds its own HNSW graph over its own rows; a search over several knowledge bases
--     takes the top k from each shard and the coordinator merges them.
-- The price: one knowledge base cannot grow past one node. Split a very large collection into several
-- knowledge bases (a search can span them) rather than distributing by document.
--
-- Tables, each in exactly one class (the test checks that every table of the schema is listed):
-- distributed: documents, chunks, postings, kb_stats, chunk_entities, entity_relations, graph_extractions
-- reference: knowledge_bases, users, groups, group_members, acl_sets, index_meta
-- local: cairn_migrations, chat_sessions, chat_messages, api_keys, audit_log, audit_head, audit_checkpoints, feedback, answer_cache, answer_cache_documents, experiments, experiment_variants, experiment_changes, ingest_jobs, drift_reports
-- Reference tables have a copy on every node: the row-level security policies and the shards' joins
-- read them locally. Local tables stay on the coordinator: low volume, read and written there only;
-- those with a foreign key to a reference table become "Citus local tables" by themselves.
-- The audit trail is one hash chain appended under one lock by design: it stays on one node (one
-- insert per question is not what needs sharding). The ingestion queue claims rows with FOR UPDATE
-- SKIP LOCKED, which Citus supports only on single-shard queries: it stays local too.

\set ON_ERROR_STOP on

DO $$
BEGIN
    IF to_regproc('create_distributed_table') IS NULL THEN
        RAISE EXCEPTION 'the citus extension is not installed in this database'
            USING HINT = 'shared_preload_libraries = ''citus'' on every node, CREATE EXTENSION citus, citus_add_node() for each worker';
    END IF;
END $$;

BEGIN;

-- Distributing tables that have foreign keys to reference tables inside one transaction.
SET LOCAL citus.multi_shard_modify_mode TO 'sequential';
-- chunks keeps its BM25 statistics triggers (they write kb_stats, colocated: the same shard's node).
SET LOCAL citus.enable_unsafe_triggers TO on;

-- 1. Unique keys and foreign keys of the sharded tables must include kb_id. The ids stay unique
--    (bigserial); the keys only grow a column. Foreign keys are dropped from the leaves up.
ALTER TABLE postings DROP CONSTRAINT postings_chunk_id_fkey;
ALTER TABLE chunk_entities DROP CONSTRAINT chunk_entities_chunk_id_fkey;
ALTER TABLE entity_relations DROP CONSTRAINT entity_relations_chunk_id_fkey;
ALTER TABLE graph_extractions DROP CONSTRAINT graph_extractions_chunk_id_fkey;
ALTER TABLE chunks DROP CONSTRAINT chunks_document_id_fkey;
-- The answer cache stays on the coordinator and cannot keep a foreign key into a sharded table, nor
-- can triggers on the shards write a coordinator table: entries are still checked against the
-- documents' current versions when served (m006_answer_cache.sql); only the eager invalidation goes.
ALTER TABLE answer_cache_documents DROP CONSTRAINT answer_cache_documents_document_id_fkey;
DROP TRIGGER documents_answer_cache_changed ON documents;
DROP TRIGGER documents_answer_cache_deleted ON documents;

ALTER TABLE documents DROP CONSTRAINT documents_pkey, ADD PRIMARY KEY (kb_id, id);
ALTER TABLE chunks DROP CONSTRAINT chunks_pkey, ADD PRIMARY KEY (kb_id, id);
ALTER TABLE chunks DROP CONSTRAINT chunks_document_id_ordinal_key, ADD UNIQUE (kb_id, document_id, ordinal);
ALTER TABLE graph_extractions DROP CONSTRAINT graph_extractions_pkey, ADD PRIMARY KEY (kb_id, chunk_id);

ALTER TABLE chunks ADD CONSTRAINT chunks_document_fkey
    FOREIGN KEY (kb_id, document_id) REFERENCES documents (kb_id, id) ON DELETE CASCADE;
ALTER TABLE postings ADD CONSTRAINT postings_chunk_fkey
    FOREIGN KEY (kb_id, chunk_id) REFERENCES chunks (kb_id, id) ON DELETE CASCADE;
ALTER TABLE chunk_entities ADD CONSTRAINT chunk_entities_chunk_fkey
    FOREIGN KEY (kb_id, chunk_id) REFERENCES chunks (kb_id, id) ON DELETE CASCADE;
ALTER TABLE entity_relations ADD CONSTRAINT entity_relations_chunk_fkey
    FOREIGN KEY (kb_id, chunk_id) REFERENCES chunks (kb_id, id) ON DELETE CASCADE;
ALTER TABLE graph_extractions ADD CONSTRAINT graph_extractions_chunk_fkey
    FOREIGN KEY (kb_id, chunk_id) REFERENCES chunks (kb_id, id) ON DELETE CASCADE;

-- 2. Reference tables: principals and access lists (read by the row-level security policies on
--    every shard), knowledge bases and the embedder record.
SELECT create_reference_table('knowledge_bases');
SELECT create_reference_table('users');
SELECT create_reference_table('groups');
SELECT create_reference_table('group_members');
SELECT create_reference_table('acl_sets');
SELECT create_reference_table('index_meta');

-- 3. The index, sharded by knowledge base, all colocated with documents.
SELECT create_distributed_table('documents', 'kb_id');
SELECT create_distributed_table('chunks', 'kb_id', colocate_with => 'documents');
SELECT create_distributed_table('postings', 'kb_id', colocate_with => 'documents');
SELECT create_distributed_table('kb_stats', 'kb_id', colocate_with => 'documents');
SELECT create_distributed_table('chunk_entities', 'kb_id', colocate_with => 'documents');
SELECT create_distributed_table('entity_relations', 'kb_id', colocate_with => 'documents');
SELECT create_distributed_table('graph_extractions', 'kb_id', colocate_with => 'documents');

-- 4. The functions the row-level security policies and the statistics triggers call must exist on
--    the worker nodes too.
SELECT create_distributed_function('cairn_is_system()');
SELECT create_distributed_function('cairn_user_id()');
SELECT create_distributed_function('cairn_visible_acls()');
SELECT create_distributed_function('cairn_is_admin()');
SELECT create_distributed_function('kb_stats_after_insert()');
SELECT create_distributed_function('kb_stats_after_delete()');

COMMIT;
