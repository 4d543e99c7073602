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
from cairn.index.analyzer import Analyzer
from cairn.index.db import Database
from cairn.types import ChunkDraft, ParsedDocument

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


@dataclass(frozen=True, slots=True)
class WriteResult:
    source: str
    status: str  # "added", "updated" or "unchanged"
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


def vector_index_name(dim: int) -> str:
    return f"chunks_embedding_hnsw_{dim}"


class IndexStore:
    """Knowledge bases and documents in Postgres; see migrations/m001_init.sql for the schema."""

    def __init__(self, db: Database, analyzer: Analyzer | None = None) -> None:
        self.db = db
        self.analyzer = analyzer or Analyzer()

    # -- knowledge bases -------------------------------------------------------------------
    def ensure_kb(self, name: str, description: str = "") -> int:
        with self.db.connection() as conn:
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

    def kb_ids(self, names: Sequence[str]) -> list[int]:
        with self.db.connection() as conn:
            rows = conn.execute("SELECT name, id FROM knowledge_bases WHERE name = ANY(%s)", (list(names),)).fetchall()
        found = dict(rows)
        missing = [n for n in names if n not in found]
        if missing:
            raise NotFound(
                f"knowledge base {', '.join(repr(m) for m in missing)} does not exist",
                hint="create it with `cairn ingest DIR --kb NAME`",
            )
        return [int(found[n]) for n in names]

    def list_kbs(self) -> list[dict[str, Any]]:
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT kb.name, kb.description, count(d.id), coalesce(s.chunk_count, 0)"
                " FROM knowledge_bases kb LEFT JOIN documents d ON d.kb_id = kb.id"
                " LEFT JOIN kb_stats s ON s.kb_id = kb.id GROUP BY kb.id, s.chunk_count ORDER BY kb.name"
            ).fetchall()
        return [{"name": r[0], "description": r[1], "documents": r[2], "chunks": r[3]} for r in rows]

    # -- embedder bookkeeping -----------------------------------------------------------------
    def bind_embedder(self, name: str, dim: int) -> None:
        """Record which embedder builds the vectors, refusing to mix two, and build its HNSW index."""
        with self.db.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_VECTOR_INDEX_LOCK,))
            meta = dict(conn.execute("SELECT key, value FROM index_meta").fetchall())
            if not meta:
                conn.execute(
                    "INSERT INTO index_meta (key, value) VALUES ('embedder', %s), ('dim', %s)",
                    (name, str(dim)),
                )
            else:
                _require_same((meta["embedder"], int(meta["dim"])), name, dim)
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {vector_index_name(dim)} ON chunks"
                f" USING hnsw ((embedding::vector({dim})) vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
            )

    def bound_embedder(self) -> tuple[str, int] | None:
        with self.db.connection() as conn:
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
    def content_hashes(self, kb: str) -> dict[str, str]:
        kb_id = self.kb_ids([kb])[0]
        with self.db.connection() as conn:
            return dict(
                conn.execute("SELECT source, content_hash FROM documents WHERE kb_id = %s", (kb_id,)).fetchall()
            )

    def write_documents(self, kb: str, docs: Sequence[DocumentWrite], *, force: bool = False) -> list[WriteResult]:
        """Store new versions of ``docs`` in one transaction; unchanged content is left alone unless ``force``."""
        if not docs:
            return []
        kb_id = self.kb_ids([kb])[0]
        for doc in docs:
            if len(doc.chunks) != len(doc.embeddings):
                raise InputError(f"{doc.source}: {len(doc.chunks)} chunks but {len(doc.embeddings)} vectors")
        by_source: dict[str, WriteResult] = {}
        with self.db.connection() as conn, conn.transaction():
            # Writers of one knowledge base take turns (they would anyway, on its kb_stats row);
            # taking this lock first, and rows in source order, rules out deadlocks between them.
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_KB_WRITE_LOCK, kb_id))
            for doc in sorted(docs, key=lambda d: d.source):
                by_source[doc.source] = self._write_one(conn, kb_id, doc, force)
        return [by_source[doc.source] for doc in docs]

    def _write_one(self, conn: psycopg.Connection, kb_id: int, doc: DocumentWrite, force: bool) -> WriteResult:
        parsed = doc.parsed
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
        )
        inserted = conn.execute(
            "INSERT INTO documents (kb_id, source, title, mime, content_hash, size_bytes, page_count, body,"
            " page_spans, warnings, metadata) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (kb_id, source) DO NOTHING RETURNING id",
            (kb_id, doc.source, *values),
        ).fetchone()
        if inserted is not None:
            document_id, version, status = int(inserted[0]), 1, "added"
        else:
            row = conn.execute(
                "SELECT id, content_hash, version FROM documents WHERE kb_id = %s AND source = %s FOR UPDATE",
                (kb_id, doc.source),
            ).fetchone()
            assert row is not None
            document_id = int(row[0])
            if row[1] == doc.content_hash and not force:
                count = conn.execute("SELECT count(*) FROM chunks WHERE document_id = %s", (document_id,)).fetchone()
                return WriteResult(doc.source, "unchanged", document_id, int(row[2]), int(count[0]) if count else 0)
            conn.execute("DELETE FROM chunks WHERE document_id = %s", (document_id,))
            version_row = conn.execute(
                "UPDATE documents SET title = %s, mime = %s, content_hash = %s, size_bytes = %s, page_count = %s,"
                " body = %s, page_spans = %s, warnings = %s, metadata = %s, version = version + 1,"
                " updated_at = now() WHERE id = %s RETURNING version",
                (*values, document_id),
            ).fetchone()
            assert version_row is not None
            version, status = int(version_row[0]), "updated"
        self._insert_chunks(conn, kb_id, document_id, doc)
        return WriteResult(doc.source, status, document_id, version, len(doc.chunks))

    def _insert_chunks(self, conn: psycopg.Connection, kb_id: int, document_id: int, doc: DocumentWrite) -> None:
        if not doc.chunks:
            return
        ids = [
            int(r[0])
            for r in conn.execute(
                "SELECT nextval('chunks_id_seq') FROM generate_series(1, %s)", (len(doc.chunks),)
            ).fetchall()
        ]
        analysed = [self.analyzer.term_frequencies(c.text) for c in doc.chunks]
        with conn.cursor() as cur:
            with cur.copy(
                "COPY chunks (id, document_id, kb_id, ordinal, text, start_char, end_char, page, heading_path,"
                " length, embedding) FROM STDIN"
            ) as copy:
                for chunk_id, chunk, (_, length), vector in zip(ids, doc.chunks, analysed, doc.embeddings, strict=True):
                    copy.write_row(
                        (
                            chunk_id,
                            document_id,
                            kb_id,
                            chunk.ordinal,
                            chunk.text,
                            chunk.start,
                            chunk.end,
                            chunk.page,
                            list(chunk.heading_path),
                            length,
                            _vector_literal(vector),
                        )
                    )
            with cur.copy("COPY postings (kb_id, term, chunk_id, tf, dl) FROM STDIN") as copy:
                for chunk_id, (tfs, length) in zip(ids, analysed, strict=True):
                    for term, tf in tfs.items():
                        copy.write_row((kb_id, term, chunk_id, tf, length))

    def delete_documents(self, kb: str, sources: Sequence[str]) -> int:
        if not sources:
            return 0
        kb_id = self.kb_ids([kb])[0]
        with self.db.connection() as conn, conn.transaction():
            cur = conn.execute("DELETE FROM documents WHERE kb_id = %s AND source = ANY(%s)", (kb_id, list(sources)))
            return cur.rowcount

    def list_documents(self, kb: str | None = None) -> list[DocumentInfo]:
        query = (
            "SELECT d.id, kb.name, d.source, d.title, d.mime, d.version,"
            " (SELECT count(*) FROM chunks c WHERE c.document_id = d.id), d.page_count, d.content_hash"
            " FROM documents d JOIN knowledge_bases kb ON kb.id = d.kb_id"
        )
        params: tuple[Any, ...] = ()
        if kb is not None:
            query += " WHERE kb.name = %s"
            params = (kb,)
        with self.db.connection() as conn:
            rows = conn.execute(query + " ORDER BY kb.name, d.source", params).fetchall()
        return [DocumentInfo(*r) for r in rows]

    def drop_kb(self, kb: str) -> None:
        kb_id = self.kb_ids([kb])[0]
        with self.db.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM knowledge_bases WHERE id = %s", (kb_id,))


def _require_same(bound: tuple[str, int], name: str, dim: int) -> None:
    if bound != (name, dim):
        raise SchemaMismatch(
            f"the index was built with embedder {bound[0]!r} ({bound[1]}-d), not {name!r} ({dim}-d)",
            hint="set CAIRN_EMBEDDER back, or use a fresh CAIRN_HOME / database and re-ingest",
        )


def _vector_literal(vector: npt.NDArray[np.float32]) -> str:
    """pgvector's text form (9 significant digits: float32 round-trips exactly)."""
    return "[" + ",".join(f"{x:.9g}" for x in np.asarray(vector, dtype=np.float32).tolist()) + "]"
