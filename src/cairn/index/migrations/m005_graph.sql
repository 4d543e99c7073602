-- The knowledge graph (cairn.index.graph): entities mentioned by each chunk, relations between them
-- with the chunk as evidence, and which extractor has processed which chunk.
--
-- Every row belongs to one chunk and is written in the chunk's transaction (cairn.index.store), so
-- deleting a chunk (a new document version, a deleted document, a dropped knowledge base) removes
-- its graph rows by cascade, and a crash never leaves half a graph. There is no shared entity table:
-- like postings carry their term, a mention carries the entity's normalised key, so an entity is
-- just the set of its visible mentions and nothing outlives the last chunk that names it.
--
-- Each row copies its chunk's acl_id (kept in step by cairn.index.store._set_acl), and row-level
-- security applies the rule of m002_access.sql: a caller sees an entity, a relation or a mention
-- only through a chunk it may read.

CREATE TABLE chunk_entities (
    kb_id    int NOT NULL,
    key      text NOT NULL CHECK (key <> '' AND length(key) <= 200),
    chunk_id bigint NOT NULL REFERENCES chunks (id) ON DELETE CASCADE,
    label    text NOT NULL DEFAULT '',
    name     text NOT NULL,
    mentions int NOT NULL DEFAULT 1 CHECK (mentions > 0),
    acl_id   int NOT NULL DEFAULT 1,
    PRIMARY KEY (kb_id, key, chunk_id) INCLUDE (acl_id)
);
CREATE INDEX chunk_entities_chunk_idx ON chunk_entities (chunk_id);

-- predicate '' is sentence co-occurrence (undirected, stored with source_key < target_key, weight =
-- the number of sentences naming both); any other predicate is a directed triple from an LLM.
CREATE TABLE entity_relations (
    kb_id      int NOT NULL,
    source_key text NOT NULL,
    target_key text NOT NULL CHECK (target_key <> source_key),
    predicate  text NOT NULL DEFAULT '' CHECK (length(predicate) <= 80),
    chunk_id   bigint NOT NULL REFERENCES chunks (id) ON DELETE CASCADE,
    weight     int NOT NULL DEFAULT 1 CHECK (weight > 0),
    acl_id     int NOT NULL DEFAULT 1,
    PRIMARY KEY (kb_id, source_key, target_key, predicate, chunk_id) INCLUDE (weight, acl_id)
);
CREATE INDEX entity_relations_target_idx ON entity_relations (kb_id, target_key) INCLUDE (source_key, weight, acl_id);
CREATE INDEX entity_relations_chunk_idx ON entity_relations (chunk_id);

-- A chunk has been through extractor ``extractor`` (possibly finding nothing): `cairn graph build`
-- resumes from the chunks without a row here, and a chunk whose extraction failed gets none.
CREATE TABLE graph_extractions (
    chunk_id  bigint PRIMARY KEY REFERENCES chunks (id) ON DELETE CASCADE,
    kb_id     int NOT NULL,
    extractor text NOT NULL,
    acl_id    int NOT NULL DEFAULT 1
);
CREATE INDEX graph_extractions_kb_idx ON graph_extractions (kb_id, extractor);

ALTER TABLE chunk_entities ENABLE ROW LEVEL SECURITY;
ALTER TABLE chunk_entities FORCE ROW LEVEL SECURITY;
CREATE POLICY chunk_entities_read ON chunk_entities FOR SELECT
    USING (acl_id = ANY ((SELECT cairn_visible_acls())::int[]));
CREATE POLICY chunk_entities_system ON chunk_entities FOR ALL USING (cairn_is_system()) WITH CHECK (cairn_is_system());

ALTER TABLE entity_relations ENABLE ROW LEVEL SECURITY;
ALTER TABLE entity_relations FORCE ROW LEVEL SECURITY;
CREATE POLICY entity_relations_read ON entity_relations FOR SELECT
    USING (acl_id = ANY ((SELECT cairn_visible_acls())::int[]));
CREATE POLICY entity_relations_system ON entity_relations FOR ALL
    USING (cairn_is_system()) WITH CHECK (cairn_is_system());

ALTER TABLE graph_extractions ENABLE ROW LEVEL SECURITY;
ALTER TABLE graph_extractions FORCE ROW LEVEL SECURITY;
CREATE POLICY graph_extractions_read ON graph_extractions FOR SELECT
    USING (acl_id = ANY ((SELECT cairn_visible_acls())::int[]));
CREATE POLICY graph_extractions_system ON graph_extractions FOR ALL
    USING (cairn_is_system()) WITH CHECK (cairn_is_system());

-- m002 granted on the tables that existed then; these are granted one by one.
GRANT SELECT, INSERT, UPDATE, DELETE ON chunk_entities, entity_relations, graph_extractions TO cairn_app;
