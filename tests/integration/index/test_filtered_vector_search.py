"""Vector search for a caller who may read a sliver of the index: exact answers where HNSW gives up.

pgvector's filtered HNSW scan stops after ``hnsw.max_scan_tuples`` index tuples; with a corpus much
larger than that and a narrow ACL it returns fewer rows than asked, or none (bench/scale.py). The tests
shrink the limit, and keep the planner off the scan-and-sort it prefers for a small table, so a
300-chunk index behaves as a large one does.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from cairn.assistant import Cairn
from cairn.index.access import access_for
from cairn.index.search import vector_search
from cairn.index.store import DocumentWrite
from cairn.types import SYSTEM, ChunkDraft, ParsedDocument

WORDS = "budget travel laptop salary holiday security printer parking canteen badge".split()


def _doc(cairn: Cairn, n: int, readers: tuple[str, ...]) -> DocumentWrite:
    texts = [f"{WORDS[n % 10]} {WORDS[(n + i) % 10]} note {n}-{i} " * 3 for i in range(5)]
    body = "\n\n".join(texts)
    chunks, start = [], 0
    for i, text in enumerate(texts):
        chunks.append(ChunkDraft(i, text, start, start + len(text)))
        start += len(text) + 2
    return DocumentWrite(
        source=f"doc{n:03d}",
        parsed=ParsedDocument(text=body, title=f"doc {n}", mime="text/plain"),
        chunks=chunks,
        embeddings=cairn.embedder.embed_documents(texts),
        content_hash=f"h{n}",
        size_bytes=len(body),
        readers=readers,
    )


@pytest.fixture
def cairn(make_cairn: Callable[..., Cairn]) -> Cairn:
    cairn = make_cairn()
    cairn.store.ensure_kb("big")
    cairn.embedder.warm_up()
    cairn.store.bind_embedder(cairn.embedder.name, cairn.embedder.dim)
    # 300 chunks: 290 for staff, 10 (two documents) for hr, the group alice is in.
    docs = [_doc(cairn, n, ("group:hr",) if n in (17, 41) else ("group:staff",)) for n in range(60)]
    cairn.store.write_documents("big", docs)
    cairn.principals.add_user("alice", groups=["hr"])
    return cairn


def _readable(cairn: Cairn, query: np.ndarray) -> dict[int, float]:
    """Cosine of every chunk alice may read (documents 17 and 41), computed here rather than in SQL."""
    with cairn.db.connection(SYSTEM) as conn:
        rows = conn.execute(
            "SELECT c.id, c.embedding FROM chunks c JOIN documents d ON d.id = c.document_id"
            " WHERE d.source IN ('doc017', 'doc041')"
        ).fetchall()
    return {int(r[0]): float(np.dot(query, np.asarray(r[1].to_numpy()))) for r in rows}


def test_a_narrow_reader_gets_the_exact_top_k_when_hnsw_gives_up(cairn: Cairn) -> None:
    alice = cairn.principals.resolve("alice")
    query = cairn.embedder.embed_query("printer security canteen")
    kb = cairn.store.kb_ids(["big"], SYSTEM)
    with cairn.db.connection(alice) as conn, conn.transaction():
        conn.execute("SET LOCAL hnsw.max_scan_tuples = 20")  # what 20,000 is to a corpus of millions
        conn.execute("SET LOCAL enable_sort = off")  # the HNSW order, as on a large table
        access = access_for(conn, alice)
        found = vector_search(conn, kb, query, 5, dim=cairn.embedder.dim, ef_search=10, access=access)
        everything = vector_search(conn, kb, query, 50, dim=cairn.embedder.dim, ef_search=10, access=access)
    readable = _readable(cairn, query)
    best = sorted(readable.values(), reverse=True)[:5]
    assert len(found) == 5 and {i for i, _ in found} <= set(readable)
    assert [round(s, 5) for _, s in found] == [round(s, 5) for s in best]  # the exact top 5 (ties aside)
    assert sorted(i for i, _ in everything) == sorted(readable)  # all 10, not what 20 index tuples held


def test_a_search_the_index_answers_in_full_is_left_alone(cairn: Cairn) -> None:
    query = cairn.embedder.embed_query("budget travel note")
    kb = cairn.store.kb_ids(["big"], SYSTEM)
    with cairn.db.connection(SYSTEM) as conn, conn.transaction():
        conn.execute("SET LOCAL enable_sort = off")  # the HNSW order, as on a large table
        access = access_for(conn, SYSTEM)
        plan = conn.execute(
            "EXPLAIN SELECT id FROM chunks WHERE kb_id = ANY(%s)"
            f" ORDER BY embedding::vector({cairn.embedder.dim}) <=> %s::vector({cairn.embedder.dim}) LIMIT 5",
            (kb, query),
        ).fetchall()
        found = vector_search(conn, kb, query, 5, dim=cairn.embedder.dim, access=access)
        index_only = vector_search(conn, kb, query, 5, dim=cairn.embedder.dim, access=access, exact_fallback=False)
    assert any("hnsw" in str(r[0]) for r in plan)
    assert len(found) == 5 and found == index_only
