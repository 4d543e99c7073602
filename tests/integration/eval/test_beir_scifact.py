"""Retrieval quality on the real SciFact test split (BEIR), through the whole ingest + index path.

BM25 runs in the default suite with the hash embedder (vectors are irrelevant to BM25, and it keeps
the run to about a minute); the hybrid default needs the real embedder over the full corpus
(tens of minutes on 2 cores), so it is marked slow.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cairn.assistant import Cairn
from cairn.eval.beir import load_beir, run_queries, score

SCIFACT = Path(__file__).resolve().parents[3].parent / "shared" / "datasets" / "scifact"

pytestmark = pytest.mark.skipif(
    not (SCIFACT / "corpus.jsonl").is_file(), reason=f"SciFact not found at {SCIFACT} (../shared/datasets)"
)


@pytest.mark.parametrize("database_url", ["embedded"], indirect=True)
def test_bm25_reaches_published_quality(make_cairn: Callable[..., Cairn]) -> None:
    cairn = make_cairn()
    dataset = load_beir(SCIFACT, "test")
    report = cairn.ingestor.ingest_documents("scifact", dataset.corpus())
    assert report.count("added") == 5183 and report.ok
    run, _ = run_queries(cairn.retriever, dataset, "scifact", cairn.retrieval_config.with_(mode="bm25"))
    metrics = score(dataset, run)
    assert metrics["ndcg@10"] >= 0.67, metrics  # published bm25s: .687 on whole (unchunked) abstracts
    assert metrics["recall@100"] >= 0.89, metrics


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["embedded"], indirect=True)
def test_hybrid_default_beats_both_retrievers(make_cairn: Callable[..., Cairn]) -> None:
    cairn = make_cairn(embedder="onnx:all-minilm-l6-v2")
    dataset = load_beir(SCIFACT, "test")
    cairn.ingestor.ingest_documents("scifact", dataset.corpus())
    results = {}
    for mode in ("bm25", "dense", "hybrid"):
        run, _ = run_queries(cairn.retriever, dataset, "scifact", cairn.retrieval_config.with_(mode=mode))
        results[mode] = score(dataset, run)
    hybrid = results["hybrid"]
    assert hybrid["ndcg@10"] >= 0.70, results
    assert hybrid["recall@100"] >= 0.93, results
    assert hybrid["ndcg@10"] >= max(results["bm25"]["ndcg@10"], results["dense"]["ndcg@10"]) - 0.01, results
