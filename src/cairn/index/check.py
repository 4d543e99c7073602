"""Verify the invariants the write path promises, so a crash, a bug or a manual edit cannot go unnoticed.

The store keeps the index consistent by writing each document version in one transaction, and the
BM25 statistics by triggers; nothing else enforces what retrieval silently relies on (postings that
match their chunk, exact collection statistics, chunk offsets that cite the right characters).
:func:`check_index` recomputes all of it from the tables in one ``REPEATABLE READ`` snapshot, so a
check run next to a writer compares one consistent state, never a half-seen commit. Every check is
one set-based query: the postings table, by far the largest, is scanned exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cairn.index.db import Database
from cairn.types import SYSTEM

# Per chunk, joined with its postings (aggregated once) and its document. A FULL JOIN rather than a
# LEFT JOIN so that postings whose chunk is gone show up in the same pass.
_CHUNKS_SQL = """
WITH p AS (
    SELECT chunk_id, count(*) AS n, sum(tf) AS tf_sum, min(dl) AS dl_min, max(dl) AS dl_max,
           min(kb_id) AS kb_min, max(kb_id) AS kb_max, min(acl_id) AS acl_min, max(acl_id) AS acl_max
      FROM postings GROUP BY chunk_id
), meta AS (
    SELECT (SELECT value::int FROM index_meta WHERE key = 'dim') AS dim
)
SELECT count(c.id),
       coalesce(sum(p.n) FILTER (WHERE c.id IS NULL), 0),
       count(*) FILTER (WHERE c.id IS NOT NULL AND d.id IS NULL),
       count(*) FILTER (WHERE d.id IS NOT NULL
                          AND substr(d.body, c.start_char + 1, c.end_char - c.start_char) IS DISTINCT FROM c.text),
       count(*) FILTER (WHERE c.length > 0 AND p.chunk_id IS NULL),
       count(*) FILTER (WHERE p.tf_sum <> c.length),
       count(*) FILTER (WHERE p.dl_min <> c.length OR p.dl_max <> c.length),
       count(*) FILTER (WHERE p.kb_min <> c.kb_id OR p.kb_max <> c.kb_id OR d.kb_id <> c.kb_id),
       count(*) FILTER (WHERE c.id IS NOT NULL AND meta.dim IS NOT NULL AND vector_dims(c.embedding) <> meta.dim),
       count(*) FILTER (WHERE c.id IS NOT NULL AND meta.dim IS NULL),
       count(*) FILTER (WHERE p.acl_min <> c.acl_id OR p.acl_max <> c.acl_id OR d.acl_id <> c.acl_id)
  FROM chunks c
  FULL JOIN p ON p.chunk_id = c.id
  LEFT JOIN documents d ON d.id = c.document_id
 CROSS JOIN meta
"""

# Per document: duplicate ordinals, and ordinals that are not exactly 0..n-1 (what a chunker
# produces; a gap or an offset means chunks of two versions, or a lost part of one).
_ORDINALS_SQL = """
WITH per_ordinal AS (
    SELECT document_id, ordinal, count(*) AS n FROM chunks GROUP BY document_id, ordinal
), per_doc AS (
    SELECT document_id, count(*) AS distinct_n, count(*) FILTER (WHERE n > 1) AS repeated,
           min(ordinal) AS lo, max(ordinal) AS hi
      FROM per_ordinal GROUP BY document_id
)
SELECT coalesce(sum(repeated), 0), count(*) FILTER (WHERE lo <> 0 OR hi <> distinct_n - 1)
  FROM per_doc
"""

_DOCUMENTS_SQL = """
SELECT (SELECT count(*) FROM documents),
       (SELECT count(*) FROM documents WHERE version < 1),
       (SELECT count(*) FROM (SELECT 1 FROM documents GROUP BY kb_id, source HAVING count(*) > 1) AS dup)
"""

# A knowledge base whose chunks are all gone may keep a zero row; any other difference is drift.
_STATS_SQL = """
WITH actual AS (SELECT kb_id, count(*) AS n, sum(length) AS len FROM chunks GROUP BY kb_id)
SELECT count(*)
  FROM actual FULL JOIN kb_stats s ON s.kb_id = actual.kb_id
 WHERE coalesce(actual.n, 0) <> coalesce(s.chunk_count, 0)
    OR coalesce(actual.len, 0) <> coalesce(s.total_length, 0)
"""

# The knowledge graph (m005_graph.sql): every row must belong to a chunk and agree with it on knowledge
# base and readers; a relation's ends must be mentioned by its evidence chunk; a chunk with graph rows
# must record the extraction that wrote them (``cairn graph build`` relies on it to resume).
_GRAPH_SQL = """
WITH g AS (
    SELECT chunk_id, kb_id, acl_id FROM chunk_entities
    UNION ALL SELECT chunk_id, kb_id, acl_id FROM entity_relations
    UNION ALL SELECT chunk_id, kb_id, acl_id FROM graph_extractions
)
SELECT (SELECT count(*) FILTER (WHERE c.id IS NULL) FROM g LEFT JOIN chunks c ON c.id = g.chunk_id),
       (SELECT count(*) FROM g JOIN chunks c ON c.id = g.chunk_id WHERE g.kb_id <> c.kb_id OR g.acl_id <> c.acl_id),
       (SELECT count(*) FROM entity_relations r
         WHERE NOT EXISTS (SELECT 1 FROM chunk_entities m
                            WHERE m.kb_id = r.kb_id AND m.key = r.source_key AND m.chunk_id = r.chunk_id)
            OR NOT EXISTS (SELECT 1 FROM chunk_entities m
                            WHERE m.kb_id = r.kb_id AND m.key = r.target_key AND m.chunk_id = r.chunk_id)),
       (SELECT count(DISTINCT g.chunk_id) FROM g JOIN chunks c ON c.id = g.chunk_id
         WHERE NOT EXISTS (SELECT 1 FROM graph_extractions x WHERE x.chunk_id = g.chunk_id))
"""

# Sentences for each non-zero count, in the order the report lists them.
_SENTENCES = {
    "orphan_postings": "{n} postings point at no chunk",
    "orphan_chunks": "{n} chunks belong to no document",
    "duplicate_ordinals": "{n} (document, ordinal) pairs are held by more than one chunk",
    "duplicate_sources": "{n} sources are stored more than once in one knowledge base",
    "ordinal_gaps": "{n} documents have chunk ordinals that are not 0..n-1 (mixed or partial versions)",
    "misplaced_text": "{n} chunks differ from their document's body at their start/end offsets",
    "missing_postings": "{n} chunks with analysed text have no postings (BM25 cannot find them)",
    "tf_mismatch": "{n} chunks have postings whose term frequencies do not add up to the chunk's length",
    "dl_mismatch": "{n} chunks have postings whose document length differs from the chunk's length",
    "kb_mismatch": "{n} chunks disagree with their document or postings on the knowledge base",
    "acl_mismatch": "{n} chunks disagree with their document or postings on who may read them",
    "kb_stats_drift": "{n} knowledge bases have kb_stats that differ from their chunks' real count or total length",
    "wrong_dimension": "{n} chunks have an embedding whose dimension differs from index_meta's 'dim'",
    "unbound_embedder": "{n} chunks exist but index_meta records no embedder dimension",
    "bad_versions": "{n} documents have a version below 1",
    "orphan_graph": "{n} knowledge-graph rows (entity mentions, relations, extraction records) point at no chunk",
    "graph_mismatch": "{n} knowledge-graph rows disagree with their chunk on the knowledge base or its readers",
    "dangling_relations": "{n} relations name an entity that their evidence chunk does not mention",
    "unrecorded_graph": "{n} chunks have entities or relations but no record of the extraction that wrote them",
}


@dataclass(frozen=True, slots=True)
class IndexReport:
    """The outcome of :func:`check_index`; ``violations`` has a count for every check, zero when it holds."""

    documents: int
    chunks: int
    violations: dict[str, int] = field(default_factory=dict)

    @property
    def orphans(self) -> int:
        return sum(self.violations.get(k, 0) for k in ("orphan_postings", "orphan_chunks", "orphan_graph"))

    @property
    def duplicates(self) -> int:
        return self.violations.get("duplicate_ordinals", 0) + self.violations.get("duplicate_sources", 0)

    @property
    def problems(self) -> list[str]:
        return [_SENTENCES[k].format(n=n) for k, n in self.violations.items() if n]

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "documents": self.documents,
            "chunks": self.chunks,
            "orphans": self.orphans,
            "duplicates": self.duplicates,
            "problems": self.problems,
        }


def check_index(db: Database) -> IndexReport:
    """Recompute every invariant of the index from its tables; read-only, safe next to running writers."""
    with db.connection(SYSTEM) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        chunk_row = conn.execute(_CHUNKS_SQL).fetchone()
        ordinal_row = conn.execute(_ORDINALS_SQL).fetchone()
        document_row = conn.execute(_DOCUMENTS_SQL).fetchone()
        stats_row = conn.execute(_STATS_SQL).fetchone()
        graph_row = conn.execute(_GRAPH_SQL).fetchone()
    assert chunk_row is not None and ordinal_row is not None and document_row is not None and stats_row is not None
    assert graph_row is not None
    orphan_graph, graph_mismatch, dangling_relations, unrecorded_graph = (int(x) for x in graph_row)
    (
        chunks,
        orphan_postings,
        orphan_chunks,
        misplaced,
        missing_postings,
        tf_mismatch,
        dl_mismatch,
        kb_mismatch,
        wrong_dim,
        unbound,
        acl_mismatch,
    ) = (int(x) for x in chunk_row)
    duplicate_ordinals, ordinal_gaps = (int(x) for x in ordinal_row)
    documents, bad_versions, duplicate_sources = (int(x) for x in document_row)
    counts = {
        "orphan_postings": orphan_postings,
        "orphan_chunks": orphan_chunks,
        "duplicate_ordinals": duplicate_ordinals,
        "duplicate_sources": duplicate_sources,
        "ordinal_gaps": ordinal_gaps,
        "misplaced_text": misplaced,
        "missing_postings": missing_postings,
        "tf_mismatch": tf_mismatch,
        "dl_mismatch": dl_mismatch,
        "kb_mismatch": kb_mismatch,
        "acl_mismatch": acl_mismatch,
        "kb_stats_drift": int(stats_row[0]),
        "wrong_dimension": wrong_dim,
        "unbound_embedder": unbound,
        "bad_versions": bad_versions,
        "orphan_graph": orphan_graph,
        "graph_mismatch": graph_mismatch,
        "dangling_relations": dangling_relations,
        "unrecorded_graph": unrecorded_graph,
    }
    return IndexReport(documents=documents, chunks=chunks, violations=counts)
