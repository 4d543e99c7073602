"""The offline re-rankers with their real weights, on real SciFact claims and abstracts.

No database: the candidates are the top 10 abstracts of a BM25 (bm25s) over the whole corpus, so
the test takes seconds. It checks that the models are wired right (a broken tokenizer, weight
layout or pooling drops the ranking to chance), not the benchmark figures: those come from
``bench/rerank_sweep.py`` over cairn's own hybrid candidates.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cairn.eval.beir import load_beir
from cairn.retrieve.rerank_local import MaxSimReranker, SpladeReranker, splade_folder
from cairn.types import Hit

SCIFACT = Path(__file__).resolve().parents[3].parent / "shared" / "datasets" / "scifact"
QUERIES = 20
DEPTH = 10

pytestmark = pytest.mark.skipif(
    not (SCIFACT / "corpus.jsonl").is_file(), reason=f"SciFact not found at {SCIFACT} (../shared/datasets)"
)


@pytest.fixture(scope="module")
def candidates() -> list[tuple[str, list[Hit], set[str]]]:
    bm25s = pytest.importorskip("bm25s")
    dataset = load_beir(SCIFACT, "test")
    ids, texts = [], []
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            ids.append(str(row["_id"]))
            texts.append(f"{row['title']}\n\n{row['text']}")
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    out = []
    for qid, query in list(dataset.queries.items())[:QUERIES]:
        docs, scores = retriever.retrieve(
            bm25s.tokenize([query], stopwords="en", show_progress=False), k=DEPTH, show_progress=False
        )
        hits = [
            Hit(
                chunk_id=int(d),
                document_id=int(d),
                source=ids[int(d)],
                text=texts[int(d)][:1200],
                start=0,
                end=min(1200, len(texts[int(d)])),
                score=float(s),
            )
            for d, s in zip(docs[0], scores[0], strict=True)
        ]
        out.append((query, hits, set(dataset.qrels[qid])))
    return out


def mrr(ranked: list[tuple[list[Hit], set[str]]]) -> float:
    total = 0.0
    for hits, relevant in ranked:
        for rank, hit in enumerate(hits[:10], start=1):
            if hit.source in relevant:
                total += 1 / rank
                break
    return total / len(ranked)


def test_splade_alone_ranks_like_a_retriever(candidates: list[tuple[str, list[Hit], set[str]]]) -> None:
    try:
        splade_folder()
    except Exception as exc:  # the weights package is optional
        pytest.skip(str(exc))
    reranker = SpladeReranker(weight=1.0)
    ranked = []
    for query, hits, relevant in candidates:
        out = reranker.rerank(query, hits)
        assert sorted(h.chunk_id for h in out) == sorted(h.chunk_id for h in hits)
        ranked.append((out, relevant))
    shuffled = mrr([(list(reversed(h)), r) for _, h, r in candidates])
    assert mrr(ranked) >= 0.45, mrr(ranked)  # chance on 10 candidates is ~0.3
    assert mrr(ranked) > shuffled + 0.15


def test_splade_scores_do_not_depend_on_batching(candidates: list[tuple[str, list[Hit], set[str]]]) -> None:
    try:
        splade_folder()
    except Exception as exc:
        pytest.skip(str(exc))
    query, hits, _ = candidates[0]
    one = {h.chunk_id: h.scores["splade"] for h in SpladeReranker(weight=1.0, batch_size=1).rerank(query, hits)}
    many = {h.chunk_id: h.scores["splade"] for h in SpladeReranker(weight=1.0, batch_size=10).rerank(query, hits)}
    assert np.allclose([one[k] for k in sorted(one)], [many[k] for k in sorted(one)], rtol=1e-4, atol=1e-4)


def test_maxsim_alone_ranks_like_a_retriever(candidates: list[tuple[str, list[Hit], set[str]]]) -> None:
    reranker = MaxSimReranker(weight=1.0)
    ranked = [(reranker.rerank(query, hits), relevant) for query, hits, relevant in candidates[:8]]
    assert mrr(ranked) >= 0.35, mrr(ranked)
