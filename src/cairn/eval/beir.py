"""BEIR-format retrieval evaluation (corpus.jsonl, queries.jsonl, qrels/<split>.tsv).

The corpus is indexed through the normal ingest path (chunked, embedded, stored in Postgres) into
a knowledge base of its own; documents are ranked by their best chunk. Metrics come from
pytrec_eval (the trec_eval reference implementation), not from code of ours.
"""

from __future__ import annotations

import csv
import json
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from cairn.errors import InputError, NotFound
from cairn.retrieve.hybrid import HybridRetriever, RetrievalConfig
from cairn.types import SYSTEM, ParsedDocument

MEASURES = {"ndcg_cut.10", "recall.100", "recip_rank", "P.10", "recall.10"}


@dataclass(frozen=True, slots=True)
class BeirDataset:
    name: str
    root: Path
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    def corpus(self) -> Iterator[tuple[str, ParsedDocument]]:
        with (self.root / "corpus.jsonl").open(encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                row = json.loads(line)
                title = (row.get("title") or "").strip()
                body = (row.get("text") or "").strip()
                text = f"{title}\n\n{body}" if title else body
                yield str(row["_id"]), ParsedDocument(text=text, title=title, mime="text/plain")


def load_beir(root: Path, split: str = "test") -> BeirDataset:
    root = Path(root)
    for name in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (root / name).is_file():
            raise NotFound(f"{root / name} is missing: not a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    qrels: dict[str, dict[str, int]] = {}
    with (root / "qrels" / f"{split}.tsv").open(encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        for row in reader:
            if len(row) < 3 or row[0] == "query-id":
                continue
            qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    queries: dict[str, str] = {}
    with (root / "queries.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                if str(row["_id"]) in qrels:
                    queries[str(row["_id"])] = row["text"]
    if not queries:
        raise InputError(f"no queries of {root} have judgments in qrels/{split}.tsv")
    return BeirDataset(root.resolve().name, root, queries, qrels)


def kb_name_for(dataset: BeirDataset) -> str:
    return "beir-" + "".join(c if c.isalnum() or c in "-_." else "-" for c in dataset.name.lower())


def run_queries(
    retriever: HybridRetriever,
    dataset: BeirDataset,
    kb: str,
    config: RetrievalConfig,
    *,
    depth: int = 100,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, dict[str, float]], list[float]]:
    """Document rankings (best chunk per document) for every query, and per-query latency in ms.

    Small-to-big and compression shape the passages handed to the generator, not the ranking of
    documents, and are made for a handful of passages, not a 200-deep ranking: they are left out
    here and measured on the answer path (bench/ablation.py).
    """
    cfg = replace(
        config,
        top_k=max(depth * 2, config.candidates),
        candidates=max(config.candidates, depth * 2),
        parents=0,
        compress=None,
    )
    run: dict[str, dict[str, float]] = {}
    latencies: list[float] = []
    for n, (qid, text) in enumerate(list(dataset.queries.items())[:limit], start=1):
        t = time.perf_counter()
        hits = retriever.search(text, [kb], cfg, principal=SYSTEM).hits
        latencies.append((time.perf_counter() - t) * 1000.0)
        ranking: dict[str, float] = {}
        for rank, hit in enumerate(hits):
            # The fused order is authoritative; a strictly decreasing pseudo-score keeps it for trec_eval.
            ranking.setdefault(hit.source, float(len(hits) - rank))
            if len(ranking) >= depth:
                break
        run[qid] = ranking
        if progress is not None:
            progress(n)
    return run, latencies


def per_query_scores(dataset: BeirDataset, run: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """nDCG@10, recall@100 and MRR@10 of each query of ``run`` (0 for an empty ranking, as in BEIR).

    What a paired comparison of two pipelines needs: both scored on the same queries.
    """
    import pytrec_eval

    qrels = {q: dataset.qrels[q] for q in run}
    scored = pytrec_eval.RelevanceEvaluator(qrels, MEASURES).evaluate(run)
    return {
        q: {
            "ndcg@10": scored.get(q, {}).get("ndcg_cut_10", 0.0),
            "recall@100": scored.get(q, {}).get("recall_100", 0.0),
            "mrr@10": _mrr_at({q: qrels[q]}, {q: run[q]}, 10),
        }
        for q in run
    }


def score(dataset: BeirDataset, run: dict[str, dict[str, float]]) -> dict[str, float]:
    import pytrec_eval

    qrels = {q: dataset.qrels[q] for q in run}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, MEASURES)
    per_query = evaluator.evaluate(run)
    # pytrec_eval skips queries with an empty ranking; they count as zero like in BEIR.
    n = len(qrels)

    def mean(measure: str) -> float:
        return sum(v.get(measure, 0.0) for v in per_query.values()) / n if n else 0.0

    return {
        "ndcg@10": mean("ndcg_cut_10"),
        "recall@100": mean("recall_100"),
        "recall@10": mean("recall_10"),
        "mrr@10": _mrr_at(qrels, run, 10),
        "p@10": mean("P_10"),
    }


def _mrr_at(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], k: int) -> float:
    """MRR cut at k (trec_eval's recip_rank has no cut-off)."""
    total = 0.0
    for qid, ranking in run.items():
        ordered = sorted(ranking.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        for rank, (doc, _) in enumerate(ordered, start=1):
            if qrels[qid].get(doc, 0) > 0:
                total += 1.0 / rank
                break
    return total / len(run) if run else 0.0


def latency_summary(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {}
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": statistics.median(ordered), "p95_ms": p95}


def report(
    dataset: BeirDataset, config: RetrievalConfig, metrics: dict[str, float], latencies: list[float]
) -> dict[str, Any]:
    return {
        "dataset": dataset.name,
        "queries": len(latencies),
        **{k: round(v, 4) for k, v in metrics.items()},
        **{k: round(v, 1) for k, v in latency_summary(latencies).items()},
        "config": {k: v for k, v in asdict(config).items() if k not in ("bm25", "top_k")},
    }
