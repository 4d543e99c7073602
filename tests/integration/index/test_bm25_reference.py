"""Our SQL BM25 must give the same scores as a reference implementation (bm25s, Lucene variant)."""

from __future__ import annotations

from collections.abc import Callable

import bm25s
import numpy as np
import pytest

from cairn.assistant import Cairn
from cairn.index.access import Access
from cairn.index.search import BM25Params, bm25_search
from cairn.index.store import DocumentWrite
from cairn.types import SYSTEM, ChunkDraft, ParsedDocument

CORPUS = [
    "Multi-factor authentication is now mandatory for all internal systems.",
    "Report suspicious emails immediately to the security team.",
    "All company laptops must run approved endpoint detection and response software.",
    "Phishing awareness training is scheduled monthly for every employee.",
    "Data encryption at rest and in transit is enforced for all sensitive data.",
    "Employees are required to complete AI ethics training by Q3 2026.",
    "The corporate travel policy has been updated to reflect sustainable options.",
    "Remote work guidelines allow three days per week from home.",
    "Training budgets for AI skilling are available to all employees and contractors.",
    "The analytics dashboard release is targeted for June; the dashboard is powered by GenAI.",
    "Security incidents must be reported within one hour; report them by email or phone.",
    "Laptops are refreshed every three years; damaged laptops are replaced immediately.",
]
QUERIES = [
    "report suspicious email",
    "AI ethics training deadline",
    "laptop security software",
    "dashboard dashboard release",
    "travel",
    "what is the capital of france",
]


@pytest.mark.parametrize("params", [BM25Params(1.2, 0.75), BM25Params(0.9, 0.4), BM25Params(1.5, 1.0)])
def test_scores_match_bm25s(make_cairn: Callable[..., Cairn], params: BM25Params) -> None:
    cairn = make_cairn()
    cairn.store.ensure_kb("ref")
    cairn.store.bind_embedder(cairn.embedder.name, cairn.embedder.dim)
    writes = []
    for i, text in enumerate(CORPUS):
        vectors = cairn.embedder.embed_documents([text])
        writes.append(
            DocumentWrite(
                source=f"d{i}",
                parsed=ParsedDocument(text=text, title="", mime="text/plain"),
                chunks=[ChunkDraft(0, text, 0, len(text))],
                embeddings=vectors,
                content_hash=str(i),
                size_bytes=len(text),
            )
        )
    cairn.store.write_documents("ref", writes)
    analyzer = cairn.analyzer
    reference = bm25s.BM25(method="lucene", k1=params.k1, b=params.b)
    reference.index([analyzer.terms(t) for t in CORPUS], show_progress=False)
    kb_ids = cairn.store.kb_ids(["ref"], SYSTEM)
    with cairn.db.connection(SYSTEM) as conn:
        ids = {
            r[1]: int(r[0])
            for r in conn.execute("SELECT c.id, d.source FROM chunks c JOIN documents d ON d.id = c.document_id")
        }
        for query in QUERIES:
            terms = analyzer.terms(query)
            ours = dict(bm25_search(conn, kb_ids, terms, k=len(CORPUS), params=params, access=Access(None)))
            expected = reference.get_scores(terms) if terms else np.zeros(len(CORPUS))
            got = np.array([ours.get(ids[f"d{i}"], 0.0) for i in range(len(CORPUS))])
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=query)
            if query.startswith("what is the capital"):
                assert not ours
