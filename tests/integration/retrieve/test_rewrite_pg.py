"""Weighted BM25 terms (RM3) in SQL, and RM3 rewriting through the retriever."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import cairn.retrieve.rewrite  # noqa: F401 - registers the rewriters
from cairn.assistant import Cairn
from cairn.index.access import Access
from cairn.index.search import BM25Params, bm25_search
from cairn.types import SYSTEM, ParsedDocument

CORPUS = {
    "chloroquine.txt": "Chloroquine prophylaxis against malaria can cause retinal toxicity after years of use.",
    "travel.txt": "Malaria prophylaxis for travellers: mefloquine, doxycycline or atovaquone with proguanil.",
    "eyes.txt": "Retinal screening finds early maculopathy before vision is lost.",
    "laptops.txt": "Laptops are refreshed every spring; damaged laptops are replaced immediately.",
    "policy.txt": "The travel policy covers trains and flights booked through the agency.",
}


def _index(cairn: Cairn) -> None:
    docs = [(source, ParsedDocument(text=text, title="", mime="text/plain")) for source, text in CORPUS.items()]
    cairn.ingestor.ingest_documents("kb", docs)


def test_weighted_terms_score_as_a_weighted_sum(make_cairn: Callable[..., Cairn]) -> None:
    cairn = make_cairn()
    _index(cairn)
    params = BM25Params(0.9, 0.4)
    access = Access(None)
    kb_ids = cairn.store.kb_ids(["kb"], SYSTEM)
    weights = {"malaria": 1.5, "retin": 0.25, "prophylaxi": 0.6, "train": 2.0, "absent": 3.0}
    with cairn.db.connection(SYSTEM) as conn:
        single = {t: dict(bm25_search(conn, kb_ids, [t], 50, params, access=access)) for t in weights}
        weighted = dict(bm25_search(conn, kb_ids, weights, 50, params, access=access))
        expected: dict[int, float] = {}
        for term, w in weights.items():
            for chunk_id, s in single[term].items():
                expected[chunk_id] = expected.get(chunk_id, 0.0) + w * s
        assert weighted.keys() == expected.keys() and len(expected) == 4
        for chunk_id, s in expected.items():
            assert weighted[chunk_id] == pytest.approx(s, rel=1e-9)
        # A sequence weighs repeats as query term frequency, exactly like the same counts as a mapping.
        repeated = bm25_search(conn, kb_ids, ["malaria", "malaria", "retin"], 50, params, access=access)
        as_mapping = bm25_search(conn, kb_ids, {"malaria": 2.0, "retin": 1.0}, 50, params, access=access)
        assert [c for c, _ in repeated] == [c for c, _ in as_mapping] and len(repeated) == 3
        assert [s for _, s in repeated] == pytest.approx([s for _, s in as_mapping], rel=1e-12)
        # Terms weighted zero or less contribute nothing; nothing left means no hits.
        assert bm25_search(conn, kb_ids, {"malaria": 1.0, "laptop": 0.0, "train": -2.0}, 50, params, access=access) == (
            bm25_search(conn, kb_ids, ["malaria"], 50, params, access=access)
        )
        assert bm25_search(conn, kb_ids, {"laptop": 0.0}, 50, params, access=access) == []
        assert bm25_search(conn, kb_ids, {}, 50, params, access=access) == []


def test_rm3_finds_a_passage_that_shares_no_query_term(make_cairn: Callable[..., Cairn]) -> None:
    cairn = make_cairn()
    _index(cairn)
    config = cairn.retrieval_config.with_(mode="bm25", top_k=5)
    plain = cairn.retriever.search("chloroquine", ["kb"], config, principal=SYSTEM)
    assert [h.source for h in plain.hits] == ["chloroquine.txt"]
    expanded = cairn.retriever.search(
        "chloroquine", ["kb"], config.with_(rewrite="rm3:?fb_docs=1&fb_terms=10&orig=0.5"), principal=SYSTEM
    )
    sources = [h.source for h in expanded.hits]
    # The feedback passage's terms (malaria, prophylaxis, retinal) reach documents without "chloroquine".
    assert sources[0] == "chloroquine.txt"
    assert {"travel.txt", "eyes.txt"} <= set(sources)
    assert "laptops.txt" not in sources
