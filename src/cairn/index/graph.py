"""The knowledge graph in Postgres: entity mentions and relations per chunk (schema: m005_graph.sql).

An entity is identified within a knowledge base by its *key*, a normalised form of its name
(:func:`entity_key`: lowercase words, Snowball-stemmed, possessives dropped), so "LedgerLine's" and
"Ledgerline" are one entity and a question's words can be looked up directly (:func:`key_spans`).
Every graph row belongs to one chunk and copies its knowledge base and ACL id from the chunk when
written, so the graph is only ever visible through chunks the caller may read, and it disappears
with them.

Writes happen in the transaction that stores a document's chunks (:func:`write_graphs`, called by
:class:`~cairn.index.store.IndexStore`) or, for chunks indexed before extraction was switched on,
in the resumable backfill :func:`build_graph`. Reads take the caller's
:class:`~cairn.index.access.Access` like every read of the index.
"""

from __future__ import annotations

import functools
import logging
import re
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg

from cairn.errors import StoreError
from cairn.index.access import Access
from cairn.index.db import Database
from cairn.types import SYSTEM

log = logging.getLogger(__name__)

MAX_KEY = 200
MAX_NAME = 200
MAX_PREDICATE = 80
CO_OCCURS = ""  # the predicate of sentence co-occurrence
# Labels of entities that mark a value rather than a thing ("30 days", "Q3 2026"): stored, so a
# question can name them, but never related to other entities nor reached through them.
WEAK_LABELS = frozenset({"QUANTITY", "DATE", "TIME", "PERCENT", "MONEY", "CARDINAL", "ORDINAL"})

_WORD = re.compile(r"\w+")
_POSSESSIVE = re.compile(r"['’]s\b")


@dataclass(frozen=True, slots=True)
class Entity:
    """An entity named in a chunk: ``key`` identifies it, ``name`` is how the chunk wrote it."""

    key: str
    name: str
    label: str = ""
    mentions: int = 1


@dataclass(frozen=True, slots=True)
class Relation:
    """A relation between two entity keys of one chunk; ``predicate`` ``""`` is co-occurrence (undirected)."""

    source: str
    target: str
    predicate: str = CO_OCCURS
    weight: int = 1


@dataclass(frozen=True, slots=True)
class Extraction:
    """What an extractor found in one chunk."""

    entities: tuple[Entity, ...] = ()
    relations: tuple[Relation, ...] = ()

    def normalised(self) -> Extraction:
        """One entity per key (mentions added), relations only between its entities, merged, self-loops dropped.

        The store writes only normalised extractions, so a relation always has both ends mentioned
        by its evidence chunk (``cairn index check`` verifies it).
        """
        entities: dict[str, Entity] = {}
        for e in self.entities:
            key = e.key[:MAX_KEY]
            if not key:
                continue
            seen = entities.get(key)
            mentions = max(1, e.mentions)
            if seen is None:
                entities[key] = Entity(key, (e.name.strip() or key)[:MAX_NAME], e.label[:40], mentions)
            else:
                entities[key] = Entity(key, seen.name, seen.label or e.label[:40], seen.mentions + mentions)
        relations: dict[tuple[str, str, str], int] = {}
        for r in self.relations:
            source, target, predicate = r.source[:MAX_KEY], r.target[:MAX_KEY], r.predicate.strip()[:MAX_PREDICATE]
            if source == target or source not in entities or target not in entities:
                continue
            if predicate == CO_OCCURS and target < source:
                source, target = target, source
            ident = (source, target, predicate)
            relations[ident] = relations.get(ident, 0) + max(1, r.weight)
        return Extraction(tuple(entities.values()), tuple(Relation(s, t, p, w) for (s, t, p), w in relations.items()))


@dataclass(frozen=True, slots=True)
class GraphWrite:
    """The graph of a document's chunks, aligned with them; ``None``: extraction failed for that chunk."""

    extractor: str
    extractions: tuple[Extraction | None, ...]


@dataclass(frozen=True, slots=True)
class GraphCounts:
    chunks: int = 0
    entities: int = 0
    relations: int = 0


@functools.cache
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


def _words(text: str) -> list[str]:
    text = _POSSESSIVE.sub("", unicodedata.normalize("NFKC", text).lower())
    return _WORD.findall(text)


def entity_key(name: str) -> str:
    """The normalised key of an entity name: ``"LedgerLine's expense tool"`` -> ``"ledgerlin expens tool"``."""
    words = _words(name)
    if not words:
        return ""
    stems: list[str] = _stemmer().stemWords(words)
    return " ".join(stems)[:MAX_KEY]


def key_spans(text: str, max_words: int = 6) -> list[tuple[int, int, str]]:
    """Every run of up to ``max_words`` words of ``text`` as ``(first, end, key)``: what a question can link to."""
    words = _words(text)
    if not words:
        return []
    stems: list[str] = _stemmer().stemWords(words)
    return [
        (i, j, " ".join(stems[i:j]))
        for i in range(len(stems))
        for j in range(i + 1, min(len(stems), i + max_words) + 1)
    ]


# -- writing -------------------------------------------------------------------------------------


def write_graphs(
    conn: psycopg.Connection, extractor: str, items: Sequence[tuple[int, Extraction | None]]
) -> GraphCounts:
    """Store the graph of chunks ``(chunk_id, extraction)`` that have none yet (inside the caller's transaction).

    Knowledge base and ACL id are copied from each chunk row, so they cannot disagree with it; a
    chunk that no longer exists gets nothing. ``None`` (a failed extraction) stores no row at all,
    so a later :func:`build_graph` retries that chunk.
    """
    done = [(chunk_id, extraction.normalised()) for chunk_id, extraction in items if extraction is not None]
    if not done:
        return GraphCounts()
    mentions = [(chunk_id, e) for chunk_id, x in done for e in x.entities]
    relations = [(chunk_id, r) for chunk_id, x in done for r in x.relations]
    if mentions:
        conn.execute(
            "INSERT INTO chunk_entities (kb_id, key, chunk_id, label, name, mentions, acl_id)"
            " SELECT c.kb_id, u.key, c.id, u.label, u.name, u.mentions, c.acl_id"
            " FROM unnest(%(ids)s::bigint[], %(keys)s::text[], %(labels)s::text[], %(names)s::text[],"
            " %(mentions)s::int[]) AS u(chunk_id, key, label, name, mentions)"
            " JOIN chunks c ON c.id = u.chunk_id",
            {
                "ids": [c for c, _ in mentions],
                "keys": [e.key for _, e in mentions],
                "labels": [e.label for _, e in mentions],
                "names": [e.name for _, e in mentions],
                "mentions": [e.mentions for _, e in mentions],
            },
        )
    if relations:
        conn.execute(
            "INSERT INTO entity_relations (kb_id, source_key, target_key, predicate, chunk_id, weight, acl_id)"
            " SELECT c.kb_id, u.source, u.target, u.predicate, c.id, u.weight, c.acl_id"
            " FROM unnest(%(ids)s::bigint[], %(sources)s::text[], %(targets)s::text[], %(predicates)s::text[],"
            " %(weights)s::int[]) AS u(chunk_id, source, target, predicate, weight)"
            " JOIN chunks c ON c.id = u.chunk_id",
            {
                "ids": [c for c, _ in relations],
                "sources": [r.source for _, r in relations],
                "targets": [r.target for _, r in relations],
                "predicates": [r.predicate for _, r in relations],
                "weights": [r.weight for _, r in relations],
            },
        )
    conn.execute(
        "INSERT INTO graph_extractions (chunk_id, kb_id, extractor, acl_id)"
        " SELECT c.id, c.kb_id, %(extractor)s, c.acl_id FROM chunks c WHERE c.id = ANY(%(ids)s)",
        {"ids": [c for c, _ in done], "extractor": extractor},
    )
    return GraphCounts(len(done), len(mentions), len(relations))


def delete_graphs(conn: psycopg.Connection, chunk_ids: Sequence[int]) -> None:
    """Remove the graph rows of these chunks (the chunks stay)."""
    for table in ("chunk_entities", "entity_relations", "graph_extractions"):
        conn.execute(f"DELETE FROM {table} WHERE chunk_id = ANY(%s)", (list(chunk_ids),))


def set_graph_acl(conn: psycopg.Connection, document_id: int, acl: int) -> None:
    """Give the graph rows of a document's chunks its new ACL id (with the chunks, in one transaction)."""
    for table in ("chunk_entities", "entity_relations", "graph_extractions"):
        conn.execute(
            f"UPDATE {table} SET acl_id = %s WHERE chunk_id IN (SELECT id FROM chunks WHERE document_id = %s)",
            (acl, document_id),
        )


# -- reading -------------------------------------------------------------------------------------


def entity_frequencies(
    conn: psycopg.Connection, kb_ids: Sequence[int], keys: Sequence[str], *, access: Access
) -> dict[str, int]:
    """How many readable chunks mention each of ``keys`` (keys nobody mentions are absent)."""
    if not keys or not kb_ids:
        return {}
    acl, params = access.clause("acl_id")
    rows = conn.execute(
        "SELECT key, count(*) FROM chunk_entities WHERE kb_id = ANY(%(kbs)s) AND key = ANY(%(keys)s)"
        f"{acl} GROUP BY key",
        params | {"kbs": list(kb_ids), "keys": list(dict.fromkeys(keys))},
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def related(
    conn: psycopg.Connection, kb_ids: Sequence[int], keys: Sequence[str], *, access: Access, limit: int = 200
) -> list[tuple[str, str, int]]:
    """Readable relations touching ``keys``, both directions: ``(key, other, total weight)``, strongest first."""
    if not keys or not kb_ids:
        return []
    acl, params = access.clause("r.acl_id")
    rows = conn.execute(
        "WITH edges AS ("
        " SELECT r.source_key AS key, r.target_key AS other, r.weight FROM entity_relations r"
        f"  WHERE r.kb_id = ANY(%(kbs)s) AND r.source_key = ANY(%(keys)s){acl}"
        " UNION ALL"
        " SELECT r.target_key, r.source_key, r.weight FROM entity_relations r"
        f"  WHERE r.kb_id = ANY(%(kbs)s) AND r.target_key = ANY(%(keys)s){acl})"
        " SELECT key, other, sum(weight)::int AS w FROM edges GROUP BY key, other"
        " ORDER BY w DESC, key, other LIMIT %(limit)s",
        params | {"kbs": list(kb_ids), "keys": list(dict.fromkeys(keys)), "limit": limit},
    ).fetchall()
    return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]


def co_mentioned(
    conn: psycopg.Connection, kb_ids: Sequence[int], keys: Sequence[str], *, access: Access, limit: int = 200
) -> list[tuple[str, str, int]]:
    """Entities mentioned in the same readable chunks as ``keys``: ``(key, other, chunks)``, most shared first.

    The looser neighbourhood of the bipartite chunk-entity graph: a section heading ("Security
    incidents") and the address named under it are rarely in one sentence, but share the chunk.
    Values (:data:`WEAK_LABELS`) are left out: sharing "30 days" links nothing.
    """
    if not keys or not kb_ids:
        return []
    acl_a, params = access.clause("a.acl_id")
    acl_b, _ = access.clause("b.acl_id")
    rows = conn.execute(
        "SELECT a.key, b.key, count(*)::int AS n FROM chunk_entities a"
        " JOIN chunk_entities b ON b.chunk_id = a.chunk_id AND b.key <> a.key AND b.label <> ALL(%(weak)s)"
        f" WHERE a.kb_id = ANY(%(kbs)s) AND a.key = ANY(%(keys)s){acl_a}{acl_b}"
        " GROUP BY a.key, b.key ORDER BY n DESC, a.key, b.key LIMIT %(limit)s",
        params | {"kbs": list(kb_ids), "keys": list(dict.fromkeys(keys)), "limit": limit, "weak": sorted(WEAK_LABELS)},
    ).fetchall()
    return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]


def chunks_mentioning(
    conn: psycopg.Connection,
    kb_ids: Sequence[int],
    weights: Mapping[str, float],
    *,
    access: Access,
    limit: int = 100,
) -> list[tuple[int, float]]:
    """Readable chunks scored by the summed weights of the entities they mention, best first."""
    if not weights or not kb_ids:
        return []
    acl, params = access.clause("m.acl_id")
    rows = conn.execute(
        "WITH w AS MATERIALIZED (SELECT * FROM unnest(%(keys)s::text[], %(weights)s::float8[]) AS w(key, weight))"
        " SELECT m.chunk_id, sum(w.weight) AS score FROM chunk_entities m JOIN w ON w.key = m.key"
        f" WHERE m.kb_id = ANY(%(kbs)s) AND m.key = ANY(%(keys)s){acl}"
        " GROUP BY m.chunk_id ORDER BY score DESC, m.chunk_id LIMIT %(limit)s",
        params | {"kbs": list(kb_ids), "keys": list(weights), "weights": list(weights.values()), "limit": limit},
    ).fetchall()
    return [(int(r[0]), float(r[1])) for r in rows]


@dataclass(frozen=True, slots=True)
class EntityInfo:
    key: str
    name: str
    label: str
    chunks: int


def entities(
    conn: psycopg.Connection,
    kb_ids: Sequence[int],
    *,
    access: Access,
    keys: Sequence[str] | None = None,
    limit: int = 50,
) -> list[EntityInfo]:
    """The readable entities of knowledge bases (or just ``keys``), most mentioned first (for display)."""
    if not kb_ids:
        return []
    acl, params = access.clause("acl_id")
    only = " AND key = ANY(%(keys)s)" if keys is not None else ""
    rows = conn.execute(
        "SELECT key, mode() WITHIN GROUP (ORDER BY name), mode() WITHIN GROUP (ORDER BY label), count(*)"
        f" FROM chunk_entities WHERE kb_id = ANY(%(kbs)s){only}{acl}"
        " GROUP BY key ORDER BY count(*) DESC, key LIMIT %(limit)s",
        params | {"kbs": list(kb_ids), "keys": list(keys or ()), "limit": limit},
    ).fetchall()
    return [EntityInfo(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]


@dataclass(frozen=True, slots=True)
class GraphStats:
    chunks: int  # chunks of the knowledge bases
    extracted: int  # of which have been through an extractor
    entities: int  # distinct keys
    mentions: int
    relations: int
    extractors: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "chunks": self.chunks,
            "extracted": self.extracted,
            "entities": self.entities,
            "mentions": self.mentions,
            "relations": self.relations,
            "extractors": dict(self.extractors),
        }


def graph_stats(conn: psycopg.Connection, kb_ids: Sequence[int], *, access: Access) -> GraphStats:
    """Counts of what the caller can read of the graph of these knowledge bases."""
    kbs = {"kbs": list(kb_ids)}
    chunk_acl, params = access.clause("acl_id")
    params |= kbs

    def one(sql: str) -> int:
        row = conn.execute(sql + chunk_acl, params).fetchone()
        return int(row[0]) if row else 0

    per_extractor = conn.execute(
        f"SELECT extractor, count(*) FROM graph_extractions WHERE kb_id = ANY(%(kbs)s){chunk_acl} GROUP BY 1",
        params,
    ).fetchall()
    return GraphStats(
        chunks=one("SELECT count(*) FROM chunks WHERE kb_id = ANY(%(kbs)s)"),
        extracted=sum(int(r[1]) for r in per_extractor),
        entities=one("SELECT count(DISTINCT key) FROM chunk_entities WHERE kb_id = ANY(%(kbs)s)"),
        mentions=one("SELECT count(*) FROM chunk_entities WHERE kb_id = ANY(%(kbs)s)"),
        relations=one("SELECT count(*) FROM entity_relations WHERE kb_id = ANY(%(kbs)s)"),
        extractors={str(r[0]): int(r[1]) for r in per_extractor},
    )


# -- backfill ------------------------------------------------------------------------------------


class _Extracts(Protocol):
    """What :func:`build_graph` needs of an extractor (see :class:`cairn.ingest.entities.EntityExtractor`)."""

    @property
    def name(self) -> str: ...

    def extract_many(self, texts: Sequence[str]) -> list[Extraction | None]: ...


@dataclass(slots=True)
class GraphBuildReport:
    kb: str
    extractor: str
    chunks: int = 0  # chunks processed
    failed: int = 0  # chunks whose extraction failed (retried by the next build)
    entities: int = 0  # mentions written
    relations: int = 0
    seconds: float = 0.0
    extract_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "kb": self.kb,
            "extractor": self.extractor,
            "chunks": self.chunks,
            "failed": self.failed,
            "entities": self.entities,
            "relations": self.relations,
            "seconds": round(self.seconds, 3),
            "ms_per_chunk": round(1000 * self.extract_seconds / self.chunks, 2) if self.chunks else None,
        }


def build_graph(
    db: Database,
    kb: str,
    extractor: _Extracts,
    *,
    rebuild: bool = False,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> GraphBuildReport:
    """Extract the graph of a knowledge base's chunks that ``extractor`` has not processed yet (backfill).

    Resumable: each batch is one transaction that replaces its chunks' graph rows and marks them
    done, so an interrupted build continues where it stopped. ``rebuild`` re-extracts every chunk
    (e.g. after switching extractors). Runs next to ingestion: batches take the knowledge base's
    write lock, and a chunk replaced or deleted meanwhile is simply skipped.
    """
    from cairn.index.store import _KB_WRITE_LOCK, kb_ids

    started = time.perf_counter()
    report = GraphBuildReport(kb=kb, extractor=extractor.name)
    with db.connection(SYSTEM) as conn:
        kb_id = kb_ids(conn, [kb], Access(None))[0]
        todo_sql = (
            " FROM chunks c WHERE c.kb_id = %(kb)s AND c.id > %(after)s AND c.id <= %(upto)s"
            " AND (%(rebuild)s OR NOT EXISTS (SELECT 1 FROM graph_extractions g"
            " WHERE g.chunk_id = c.id AND g.extractor = %(extractor)s))"
        )
        upto_row = conn.execute("SELECT coalesce(max(id), 0) FROM chunks WHERE kb_id = %s", (kb_id,)).fetchone()
        params: dict[str, Any] = {
            "kb": kb_id,
            "after": 0,
            "upto": int(upto_row[0]) if upto_row else 0,
            "rebuild": rebuild,
            "extractor": extractor.name,
        }
        total_row = conn.execute("SELECT count(*)" + todo_sql, params).fetchone()
    total = int(total_row[0]) if total_row else 0
    while True:
        with db.connection(SYSTEM) as conn:
            batch = conn.execute(
                "SELECT c.id, c.text" + todo_sql + " ORDER BY c.id LIMIT %(n)s", params | {"n": batch_size}
            ).fetchall()
        if not batch:
            break
        ids = [int(r[0]) for r in batch]
        t = time.perf_counter()
        found = extractor.extract_many([str(r[1]) for r in batch])
        report.extract_seconds += time.perf_counter() - t
        if len(found) != len(ids):
            raise StoreError(f"extractor {extractor.name} returned {len(found)} results for {len(ids)} chunks")
        counts = _replace_graphs(db, kb_id, _KB_WRITE_LOCK, extractor.name, list(zip(ids, found, strict=True)))
        report.chunks += len(ids)
        report.failed += sum(1 for x in found if x is None)
        report.entities += counts.entities
        report.relations += counts.relations
        params["after"] = ids[-1]
        if progress is not None:
            progress(report.chunks, total)
    report.seconds = time.perf_counter() - started
    log.info("graph build %s: %s", kb, report.to_json())
    return report


def _replace_graphs(
    db: Database, kb_id: int, lock: int, extractor: str, items: list[tuple[int, Extraction | None]]
) -> GraphCounts:
    ids = [chunk_id for chunk_id, _ in items]
    for attempt in range(3):
        try:
            with db.connection(SYSTEM) as conn, conn.transaction():
                # Ingestion of this knowledge base waits (its write lock), and a document whose readers
                # change or that is deleted waits for its row: the ACL ids copied below stay right.
                conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (lock, kb_id))
                conn.execute(
                    "SELECT 1 FROM documents WHERE id IN (SELECT document_id FROM chunks WHERE id = ANY(%s))"
                    " ORDER BY id FOR SHARE",
                    (ids,),
                )
                delete_graphs(conn, ids)
                return write_graphs(conn, extractor, items)
        except StoreError as exc:
            if not isinstance(exc.__cause__, psycopg.errors.DeadlockDetected) or attempt == 2:
                raise
            log.warning("graph build: deadlock with a concurrent writer, retrying the batch")
    raise AssertionError("unreachable")


__all__ = [
    "CO_OCCURS",
    "WEAK_LABELS",
    "Entity",
    "EntityInfo",
    "Extraction",
    "GraphBuildReport",
    "GraphCounts",
    "GraphStats",
    "GraphWrite",
    "Relation",
    "build_graph",
    "chunks_mentioning",
    "co_mentioned",
    "delete_graphs",
    "entities",
    "entity_frequencies",
    "entity_key",
    "graph_stats",
    "key_spans",
    "related",
    "set_graph_acl",
    "write_graphs",
]
