"""The index store against real PostgreSQL (embedded and TCP): atomic swaps, no orphans, exact stats."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest

from cairn.assistant import Cairn
from cairn.errors import NotFound, SchemaMismatch
from cairn.index.store import DocumentWrite
from cairn.types import SYSTEM, ChunkDraft, ParsedDocument


def _doc(cairn: Cairn, source: str, paragraphs: list[str]) -> DocumentWrite:
    text = "\n\n".join(paragraphs)
    chunks, offset = [], 0
    for i, para in enumerate(paragraphs):
        start = text.index(para, offset)
        chunks.append(ChunkDraft(i, para, start, start + len(para)))
        offset = start + len(para)
    vectors = cairn.embedder.embed_documents([c.text for c in chunks])
    return DocumentWrite(
        source=source,
        parsed=ParsedDocument(text=text, title=source, mime="text/plain"),
        chunks=chunks,
        embeddings=vectors,
        content_hash=str(hash(text)),
        size_bytes=len(text),
    )


def _invariants(cairn: Cairn) -> dict[str, int]:
    with cairn.db.connection(SYSTEM) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM chunks),"
            " (SELECT count(*) FROM postings p WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = p.chunk_id)),"
            " (SELECT count(*) FROM (SELECT document_id, ordinal FROM chunks GROUP BY 1, 2 HAVING count(*) > 1) d),"
            " (SELECT coalesce(sum(chunk_count), 0) FROM kb_stats),"
            " (SELECT coalesce(sum(total_length), 0) FROM kb_stats),"
            " (SELECT coalesce(sum(length), 0) FROM chunks),"
            " (SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.document_id"
            "   WHERE substr(d.body, c.start_char + 1, c.end_char - c.start_char) <> c.text)"
        ).fetchone()
    assert row is not None
    chunks, orphans, dups, stat_n, stat_len, real_len, misplaced = (int(x) for x in row)
    assert orphans == 0 and dups == 0 and misplaced == 0
    assert stat_n == chunks and stat_len == real_len
    return {"chunks": chunks}


def setup(make_cairn: Callable[..., Cairn]) -> Cairn:
    cairn = make_cairn()
    cairn.store.ensure_kb("kb")
    cairn.embedder.warm_up()
    cairn.store.bind_embedder(cairn.embedder.name, cairn.embedder.dim)
    return cairn


def test_write_search_replace_delete(make_cairn: Callable[..., Cairn]) -> None:
    cairn = setup(make_cairn)
    first = _doc(cairn, "a.txt", ["Alpha policy covers remote work.", "Travel must be sustainable."])
    other = _doc(cairn, "b.txt", ["The cafeteria opens at eight."])
    results = cairn.store.write_documents("kb", [first, other])
    assert [r.status for r in results] == ["added", "added"]
    assert _invariants(cairn)["chunks"] == 3

    hits = cairn.retriever.search("remote work policy", ["kb"], principal=SYSTEM).hits
    assert hits[0].source == "a.txt" and "remote work" in hits[0].text

    again = cairn.store.write_documents("kb", [first])
    assert again[0].status == "unchanged"

    shrunk = _doc(cairn, "a.txt", ["Beta policy: remote work is allowed on Fridays."])
    (updated,) = cairn.store.write_documents("kb", [shrunk])
    assert (updated.status, updated.version, updated.chunks) == ("updated", 2, 1)
    assert _invariants(cairn)["chunks"] == 2
    texts = [h.text for h in cairn.retriever.search("travel sustainable", ["kb"], principal=SYSTEM).hits]
    assert not any("sustainable" in t for t in texts), "a chunk of the old version survived"

    assert cairn.store.delete_documents("kb", ["a.txt"]) == 1
    assert _invariants(cairn)["chunks"] == 1
    assert all(h.source != "a.txt" for h in cairn.retriever.search("remote work policy", ["kb"], principal=SYSTEM).hits)


def test_unknown_kb_and_embedder_mismatch(make_cairn: Callable[..., Cairn]) -> None:
    cairn = setup(make_cairn)
    with pytest.raises(NotFound):
        cairn.retriever.search("anything", ["nope"], principal=SYSTEM)
    with pytest.raises(SchemaMismatch):
        cairn.store.bind_embedder("another-model", 32)


def test_kb_filter_and_drop(make_cairn: Callable[..., Cairn]) -> None:
    cairn = setup(make_cairn)
    cairn.store.ensure_kb("other")
    cairn.store.write_documents("kb", [_doc(cairn, "a.txt", ["Quarterly payroll closes on the 25th."])])
    cairn.store.write_documents("other", [_doc(cairn, "b.txt", ["Quarterly payroll is outsourced."])])
    assert {h.source for h in cairn.retriever.search("quarterly payroll", ["kb"], principal=SYSTEM).hits} == {"a.txt"}
    assert {h.source for h in cairn.retriever.search("quarterly payroll", ["kb", "other"], principal=SYSTEM).hits} == {
        "a.txt",
        "b.txt",
    }
    cairn.store.drop_kb("other")
    _invariants(cairn)
    assert [k["name"] for k in cairn.store.list_kbs(SYSTEM)] == ["kb"]


def test_readers_never_see_two_versions(make_cairn: Callable[..., Cairn]) -> None:
    """While a document is rewritten over and over, every query sees exactly one version of it."""
    cairn = setup(make_cairn)
    cairn.store.write_documents("kb", [_doc(cairn, "v.txt", [f"marker version0 part{i}" for i in range(6)])])
    stop = threading.Event()
    errors: list[str] = []

    def writer() -> None:
        for v in range(1, 25):
            cairn.store.write_documents("kb", [_doc(cairn, "v.txt", [f"marker version{v} part{i}" for i in range(6)])])
        stop.set()

    thread = threading.Thread(target=writer)
    thread.start()
    config = cairn.retrieval_config.with_(top_k=20)
    seen = 0
    while not stop.is_set() or seen < 5:
        hits = cairn.retriever.search("marker part", ["kb"], config, principal=SYSTEM).hits
        versions = {h.text.split()[1] for h in hits}
        if len(versions) != 1 or len(hits) != 6:
            errors.append(f"{len(hits)} hits from {sorted(versions)}")
        seen += 1
    thread.join()
    assert not errors, errors[:5]
    _invariants(cairn)


def test_vectors_roundtrip_exactly(make_cairn: Callable[..., Cairn]) -> None:
    cairn = setup(make_cairn)
    doc = _doc(cairn, "a.txt", ["Exact vectors matter for cosine scores."])
    cairn.store.write_documents("kb", [doc])
    with cairn.db.connection(SYSTEM) as conn:
        stored = conn.execute("SELECT embedding FROM chunks").fetchone()
    assert stored is not None
    np.testing.assert_allclose(np.asarray(stored[0].to_numpy()), doc.embeddings[0], atol=1e-6)
