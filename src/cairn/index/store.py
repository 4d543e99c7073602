"""The write side of the index: every version of a document is swapped in one transaction.

Readers never see a document half-written or two versions mixed: chunks, vectors and postings of
a document are deleted and re-inserted together, under a row lock on the document.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from cairn.errors import InputError, NotFound, SchemaMismatch
from cairn.index.access import Access, access_for, acl_id
from cairn.index.analyzer import Analyzer
from cairn.index.db import Database
from cairn.index.graph import GraphWrite, set_graph_acl, write_graphs
from cairn.index.search import fetch_hits
from cairn.types import SYSTEM, ChunkDraft, Hit, ParsedDocument, Principal

_VECTOR_INDEX_LOCK = 0x0CA1_2001
_KB_WRITE_LOCK = 0x0CA1


@dataclass(frozen=True, slots=True)
class DocumentWrite:
    """One document version ready to be stored: parsed body, its chunks and their vectors."""

    source: str
    parsed: ParsedDocument
    chunks: Sequence[ChunkDraft]
    embeddings: npt.NDArray[np.float32]
    content_hash: str
    size_bytes: int
    metadata: dict[str, Any] = field(default_factory=dict)
    readers: tuple[str, ...] = ()  # normalised ACL tokens (cairn.index.access.readers); empty: admins only
    graph: GraphWrite | None = None  # entities and relations per chunk (cairn.index.graph), stored with them


@dataclass(frozen=True, slots=True)
class StoredState:
    """What the index holds for a source: enough to tell whether a file or its readers changed."""

    content_hash: str
    readers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WriteResult:
    source: str
    status: str  # "added", "updated", "unchanged" or "access" (same content, new readers)
    document_id: int
    version: int
    chunks: int


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    id: int
    kb: str
    source: str
    title: str
    mime: str
    version: int
    chunks: int
    pages: int | None
    content_hash: str
    readers: tuple[str, ...] = ()


class IndexStore:
    """Knowledge bases and documents in Postgres; see migrations/m001_init.sql for the schema."""

    def __init__(self, db: Database, analyzer: Analyzer | None = None) -> None:
        self.db = db
        self.analyzer = analyzer or Analyzer()

    # -- knowledge bases -------------------------------------------------------------------
    def ensure_kb(self, name: str, description: str = "") -> int:
        with self.db.connection(SYSTEM) as conn:
            try:
                row = conn.execute(
                    "INSERT INTO knowledge_bases (name, description) VALUES (%s, %s)"
                    " ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                    (name, description),
                ).fetchone()
            except psycopg.errors.CheckViolation as exc:
                raise InputError(
                    f"invalid knowledge base name {name!r}",
                    hint="letters, digits, '_', '-', '.'; up to 64 characters",
                ) from exc
            assert row is not None
            return int(row[0])

    def describe_kb(self, name: str, description: str) -> None:
        """Say what a knowledge base holds: listings show it and the knowledge-base router reads it."""
        with self.db.connection(SYSTEM) as conn:
            updated = conn.execute(
                "UPDATE knowledge_bases SET description = %s WHERE name = %s", (description.strip(), name)
            ).rowcount
        if not updated:
            raise NotFound(
                f"knowledge base {name!r} does not exist", hint="create it with `cairn ingest DIR --kb NAME`"
            )

    def kb_ids(self, names: Sequence[str], principal: Principal) -> list[int]:
        with self.db.connection(principal) as conn:
            return kb_ids(conn, names, access_for(conn, principal))

    def list_kbs(self, principal: Principal) -> list[dict[str, Any]]:
        """Knowledge bases with the documents and chunks ``principal`` can read (a reader never learns more)."""
        with self.db.connection(principal) as conn:
            access = access_for(conn, principal)
            doc_acl, params = access.clause("d.acl_id")
            chunk_acl, _ = access.clause("c.acl_id")
            rows = conn.execute(
                "SELECT kb.name, kb.description,"
                f" (SELECT count(*) FROM documents d WHERE d.kb_id = kb.id{doc_acl}),"
                f" (SELECT count(*) FROM chunks c WHERE c.kb_id = kb.id{chunk_acl})"
                f" FROM knowledge_bases kb WHERE {_kb_visible('kb', access)} ORDER BY kb.name",
                params,
            ).fetchall()
        return [{"name": r[0], "description": r[1], "documents": r[2], "chunks": r[3]} for r in rows]

    # -- embedder bookkeeping -----------------------------------------------------------------
    def bind_embedder(self, name: str, dim: int) -> None:
        """Record which embedder builds the vectors, refusing to mix two, and build its HNSW index."""
        with self.db.connection(SYSTEM) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_VECTOR_INDEX_LOCK,))
            meta = dict(conn.execute("SELECT key, value FROM index_meta").fetchall())
            if not meta:
                conn.execute(
                    "INSERT INTO index_meta (key, value) VALUES ('embedder', %s), ('dim', %s)",
                    (name, str(dim)),
                )
            else:
                _require_same((meta["embedder"], int(meta["dim"])), name, dim)
            conn.execute("SELECT cairn_ensure_vector_index(%s)", (dim,))

    def bound_embedder(self) -> tuple[str, int] | None:
        with self.db.connection(SYSTEM) as conn:
            meta = dict(conn.execute("SELECT key, value FROM index_meta").fetchall())
        if not meta:
            return None
        return meta["embedder"], int(meta["dim"])

    def check_embedder(self, name: str, dim: int) -> None:
        """Refuse to query with another embedder than the one that built the vectors (even of the same size)."""
        bound = self.bound_embedder()
        if bound is not None:
            _require_same(bound, name, dim)

    # -- documents -----------------------------------------------------------------------------
    def stored_state(self, kb: str, sources: Sequence[str] | None = None) -> dict[str, StoredState]:
        """What the index holds for every source of ``kb``, or only for ``sources`` (one queue job's files)."""
        kb_id = self.kb_ids([kb], SYSTEM)[0]
        only = "" if sources is None else " AND d.source = ANY(%s)"
        params: tuple[Any, ...] = (kb_id,) if sources is None else (kb_id, list(sources))
        with self.db.connection(SYSTEM) as conn:
            rows = conn.execute(
                "SELECT d.source, d.content_hash, a.principals FROM documents d JOIN acl_sets a ON a.id = d.acl_id"
                f" WHERE d.kb_id = %s{only}",
                params,
            ).fetchall()
        return {r[0]: StoredState(r[1], tuple(r[2])) for r in rows}

    def write_documents(self, kb: str, docs: Sequence[DocumentWrite], *, force: bool = False) -> list[WriteResult]:
        """Store new versions of ``docs`` in one transaction; unchanged content is left alone unless ``force``."""
        if not docs:
            return []
        kb_id = self.kb_ids([kb], SYSTEM)[0]
        for doc in docs:
            if len(doc.chunks) != len(doc.embeddings):
                raise InputError(f"{doc.source}: {len(doc.chunks)} chunks but {len(doc.embeddings)} vectors")
            if doc.graph is not None and len(doc.graph.extractions) != len(doc.chunks):
                raise InputError(f"{doc.source}: {len(doc.chunks)} chunks but {len(doc.graph.extractions)} graphs")
        by_source: dict[str, WriteResult] = {}
        with self.db.connection(SYSTEM) as conn, conn.transaction():
            # Writers of one knowledge base take turns (they would anyway, on its kb_stats row);
            # taking this lock first, and rows in source order, rules out deadlocks between them.
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_KB_WRITE_LOCK, kb_id))
            for doc in sorted(docs, key=lambda d: d.source):
                by_source[doc.source] = self._write_one(conn, kb_id, doc, force)
        return [by_source[doc.source] for doc in docs]

    def _write_one(self, conn: psycopg.Connection, kb_id: int, doc: DocumentWrite, force: bool) -> WriteResult:
        parsed = doc.parsed
        acl = acl_id(conn, doc.readers)
        values = (
            parsed.title,
            parsed.mime,
            doc.content_hash,
            doc.size_bytes,
            len(parsed.pages) or None,
            parsed.text,
            json.dumps([[p.number, p.start, p.end] for p in parsed.pages]),
            list(parsed.warnings),
            json.dumps(doc.metadata),
            acl,
        )
        inserted = conn.execute(
            "INSERT INTO documents (kb_id, source, title, mime, content_hash, size_bytes, page_count, body,"
            " page_spans, warnings, metadata, acl_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (kb_id, source) DO NOTHING RETURNING id",
            (kb_id, doc.source, *values),
        ).fetchone()
        if inserted is not None:
            document_id, version, status = int(inserted[0]), 1, "added"
        else:
            row = conn.execute(
                "SELECT id, content_hash, version, acl_id FROM documents WHERE kb_id = %s AND source = %s FOR UPDATE",
                (kb_id, doc.source),
            ).fetchone()
            assert row is not None
            document_id = int(row[0])
            if row[1] == doc.content_hash and not force:
                count = conn.execute("SELECT count(*) FROM chunks WHERE document_id = %s", (document_id,)).fetchone()
                status = "unchanged"
                if int(row[3]) != acl:
                    _set_acl(conn, document_id, acl)
                    status = "access"
                return WriteResult(doc.source, status, document_id, int(row[2]), int(count[0]) if count else 0)
            conn.execute("DELETE FROM chunks WHERE document_id = %s", (document_id,))
            version_row = conn.execute(
                "UPDATE documents SET title = %s, mime = %s, content_hash = %s, size_bytes = %s, page_count = %s,"
                " body = %s, page_spans = %s, warnings = %s, metadata = %s, acl_id = %s, version = version + 1,"
                " updated_at = now() WHERE id = %s RETURNING version",
                (*values, document_id),
            ).fetchone()
            assert version_row is not None
            version, status = int(version_row[0]), "updated"
        self._insert_chunks(conn, kb_id, document_id, acl, doc)
        return WriteResult(doc.source, status, document_id, version, len(doc.chunks))

    def _insert_chunks(
        self, conn: psycopg.Connection, kb_id: int, document_id: int, acl: int, doc: DocumentWrite
    ) -> None:
        if not doc.chunks:
            return
        ids = [
            int(r[0])
            for r in conn.execute(
                "SELECT nextval('chunks_id_seq') FROM generate_series(1, %s)", (len(doc.chunks),)
            ).fetchall()
        ]
        analysed = [self.analyzer.term_frequencies(c.text) for c in doc.chunks]
        # COPY is refused on tables with row-level security; one INSERT ... SELECT FROM unnest(...)
        # per table keeps it to two round trips per document.
        chunks = doc.chunks
        conn.execute(
            "INSERT INTO chunks (id, document_id, kb_id, ordinal, text, start_char, end_char, page, heading_path,"
            " length, embedding, acl_id, flags)"
            " SELECT c.id, %(doc)s, %(kb)s, c.ordinal, c.text, c.start_char, c.end_char, c.page,"
            " ARRAY(SELECT jsonb_array_elements_text(c.headings)), c.length, c.embedding::vector, %(acl)s,"
            " ARRAY(SELECT jsonb_array_elements_text(c.flags))"
            " FROM unnest(%(ids)s::bigint[], %(ordinals)s::int[], %(texts)s::text[], %(starts)s::int[],"
            " %(ends)s::int[], %(pages)s::int[], %(headings)s::jsonb[], %(lengths)s::int[], %(vectors)s::text[],"
            " %(flags)s::jsonb[])"
            " AS c(id, ordinal, text, start_char, end_char, page, headings, length, embedding, flags)",
            {
                "doc": document_id,
                "kb": kb_id,
                "acl": acl,
                "ids": ids,
                "ordinals": [c.ordinal for c in chunks],
                "texts": [c.text for c in chunks],
                "starts": [c.start for c in chunks],
                "ends": [c.end for c in chunks],
                "pages": [c.page for c in chunks],
                "headings": [json.dumps(list(c.heading_path)) for c in chunks],
                "flags": [json.dumps(list(c.flags)) for c in chunks],
                "lengths": [length for _, length in analysed],
                "vectors": [_vector_literal(v) for v in doc.embeddings],
            },
        )
        rows = [
            (term, chunk_id, tf, length)
            for chunk_id, (tfs, length) in zip(ids, analysed, strict=True)
            for term, tf in tfs.items()
        ]
        conn.execute(
            "INSERT INTO postings (kb_id, term, chunk_id, tf, dl, acl_id)"
            " SELECT %(kb)s, p.term, p.chunk_id, p.tf, p.dl, %(acl)s"
            " FROM unnest(%(terms)s::text[], %(chunk_ids)s::bigint[], %(tfs)s::int[], %(dls)s::int[])"
            " AS p(term, chunk_id, tf, dl)",
            {
                "kb": kb_id,
                "acl": acl,
                "terms": [r[0] for r in rows],
                "chunk_ids": [r[1] for r in rows],
                "tfs": [r[2] for r in rows],
                "dls": [r[3] for r in rows],
            },
        )
        # -- knowledge graph (cairn.index.graph): in this transaction, so it never outlives its chunks
        if doc.graph is not None:
            write_graphs(conn, doc.graph.extractor, list(zip(ids, doc.graph.extractions, strict=True)))

    def set_readers(self, kb: str, source: str, readers: tuple[str, ...]) -> None:
        """Change who may read a stored document (all its chunks and postings, in one transaction)."""
        kb_id = self.kb_ids([kb], SYSTEM)[0]
        with self.db.connection(SYSTEM) as conn, conn.transaction():
            row = conn.execute(
                "SELECT id FROM documents WHERE kb_id = %s AND source = %s FOR UPDATE", (kb_id, source)
            ).fetchone()
            if row is None:
                raise NotFound(f"{source} is not in knowledge base {kb!r}")
            _set_acl(conn, int(row[0]), acl_id(conn, readers))

    def delete_documents(self, kb: str, sources: Sequence[str]) -> int:
        if not sources:
            return 0
        kb_id = self.kb_ids([kb], SYSTEM)[0]
        with self.db.connection(SYSTEM) as conn, conn.transaction():
            cur = conn.execute("DELETE FROM documents WHERE kb_id = %s AND source = ANY(%s)", (kb_id, list(sources)))
            return cur.rowcount

    def list_documents(self, principal: Principal, kb: str | None = None) -> list[DocumentInfo]:
        with self.db.connection(principal) as conn:
            access = access_for(conn, principal)
            where, params = access.clause("d.acl_id")
            if kb is not None:
                kb_id = kb_ids(conn, [kb], access)[0]
                where += " AND d.kb_id = %(kb_id)s"
                params["kb_id"] = kb_id
            rows = conn.execute(
                "SELECT d.id, kb.name, d.source, d.title, d.mime, d.version,"
                " (SELECT count(*) FROM chunks c WHERE c.document_id = d.id), d.page_count, d.content_hash,"
                " a.principals FROM documents d JOIN knowledge_bases kb ON kb.id = d.kb_id"
                f" JOIN acl_sets a ON a.id = d.acl_id WHERE TRUE{where} ORDER BY kb.name, d.source",
                params,
            ).fetchall()
        return [DocumentInfo(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], tuple(r[9])) for r in rows]

    def passage(self, principal: Principal, chunk_id: int) -> tuple[Hit, str]:
        """A stored passage and its document's full text, for showing a citation in context.

        A passage the caller may not read is reported exactly like one that does not exist.
        """
        with self.db.connection(principal) as conn:
            access = access_for(conn, principal)
            hits = fetch_hits(conn, [chunk_id], access=access)
            body = None
            if chunk_id in hits:
                where, params = access.clause("acl_id")
                body = conn.execute(
                    f"SELECT body FROM documents WHERE id = %(id)s{where}",
                    params | {"id": hits[chunk_id][0].document_id},
                ).fetchone()
        if body is None:
            raise NotFound(f"passage {chunk_id} not found")
        return hits[chunk_id][0], str(body[0])

    def drop_kb(self, kb: str) -> None:
        kb_id = self.kb_ids([kb], SYSTEM)[0]
        with self.db.connection(SYSTEM) as conn, conn.transaction():
            conn.execute("DELETE FROM knowledge_bases WHERE id = %s", (kb_id,))


def kb_ids(conn: psycopg.Connection, names: Sequence[str], access: Access) -> list[int]:
    """Ids of the named knowledge bases; one the caller cannot read a document of does not exist for them.

    ``*`` stands for every knowledge base the caller can read (what the knowledge-base router chooses from).
    """
    if "*" in names:
        everything = conn.execute(
            f"SELECT id FROM knowledge_bases kb WHERE {_kb_visible('kb', access)} ORDER BY kb.name",
            access.clause("d.acl_id")[1],
        ).fetchall()
        return [int(r[0]) for r in everything]
    rows = conn.execute(
        f"SELECT name, id FROM knowledge_bases kb WHERE name = ANY(%(names)s) AND {_kb_visible('kb', access)}",
        {"names": list(names)} | access.clause("d.acl_id")[1],
    ).fetchall()
    found: dict[str, int] = dict(rows)
    missing = [n for n in names if n not in found]
    if missing:
        raise NotFound(
            f"knowledge base {', '.join(repr(m) for m in missing)} does not exist",
            hint="create it with `cairn ingest DIR --kb NAME`",
        )
    return [int(found[n]) for n in names]


def _kb_visible(alias: str, access: Access) -> str:
    if access.acl_ids is None:
        return "TRUE"
    where, _ = access.clause("d.acl_id")
    return f"EXISTS (SELECT 1 FROM documents d WHERE d.kb_id = {alias}.id{where})"


def _set_acl(conn: psycopg.Connection, document_id: int, acl: int) -> None:
    conn.execute("UPDATE documents SET acl_id = %s, updated_at = now() WHERE id = %s", (acl, document_id))
    conn.execute("UPDATE chunks SET acl_id = %s WHERE document_id = %s", (acl, document_id))
    conn.execute(
        "UPDATE postings SET acl_id = %s WHERE chunk_id IN (SELECT id FROM chunks WHERE document_id = %s)",
        (acl, document_id),
    )
    set_graph_acl(conn, document_id, acl)  # knowledge graph rows follow their chunks


def _require_same(bound: tuple[str, int], name: str, dim: int) -> None:
    if bound != (name, dim):
        raise SchemaMismatch(
            f"the index was built with embedder {bound[0]!r} ({bound[1]}-d), not {name!r} ({dim}-d)",
            hint="set CAIRN_EMBEDDER back, or use a fresh CAIRN_HOME / database and re-ingest",
        )


def _vector_literal(vector: npt.NDArray[np.float32]) -> str:
    """pgvector's text form (9 significant digits: float32 round-trips exactly)."""
    return "[" + ",".join(f"{x:.9g}" for x in np.asarray(vector, dtype=np.float32).tolist()) + "]"
