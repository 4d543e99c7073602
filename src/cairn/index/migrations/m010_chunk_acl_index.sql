-- When a filtered HNSW scan comes up short (a caller who may read only a sliver of a large index),
-- cairn.index.search.vector_search scans the rows the caller may read exactly; this index keeps that
-- scan in proportion to those rows instead of the whole knowledge base. It also serves every
-- (kb_id) lookup, so the single-column index goes.
CREATE INDEX chunks_kb_acl_idx ON chunks (kb_id, acl_id);
DROP INDEX chunks_kb_idx;
