"""Re-ranking trade-off on SciFact: quality and latency of each re-ranker over the top N fused candidates.

    python bench/rerank_sweep.py                                  # splade: and maxsim:, N in 10..100
    python bench/rerank_sweep.py --rerankers splade: --depths 20,30 --timing-queries 100
    python bench/rerank_sweep.py --rerankers llm: --llm-queries 30 --depths 10   # the LLM judge, 30 test queries
    python bench/rerank_sweep.py --rerankers tei://host:8080 --depths 50          # a served cross-encoder

Steps: index the corpus (incremental, into ``--home``), retrieve the default hybrid's candidates for
every train and test query once (cached under ``--cache``), score every candidate with each re-ranker
once, then replay each N and blend weight from those scores: documents are ranked by their best
chunk as :func:`cairn.eval.beir.run_queries` does (the re-ranked top N first, then the rest of the
fused list), and pytrec_eval scores nDCG@10 / recall@100. The blend weight is tuned on train for
each N and reported on test. Latency is the wall time of ``rerank(query, hits[:N])`` itself,
timed separately on ``--timing-queries`` test queries (the machine's cores: set
``CAIRN_ONNX_THREADS``/``OPENBLAS_NUM_THREADS`` or ``taskset -c 0,1`` to pin to 2).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

import cairn.retrieve.rerank_http  # noqa: F401  (registers the /rerank schemes)
from cairn.eval.beir import BeirDataset, kb_name_for, load_beir, score
from cairn.retrieve.base import RERANKERS, Reranker
from cairn.retrieve.rerank import BaseReranker, blend, passage_text
from cairn.retrieve.rerank_local import LocalReranker
from cairn.types import SYSTEM, ChatMessage, Hit

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
DEPTH_DOCS = 100
POOL_CHUNKS = 200  # as run_queries: 2 x depth chunks, so 100 distinct documents remain after grouping


def candidates(home: Path, dataset_dir: Path, split: str, cache: Path) -> dict[str, list[Hit]]:
    """The default hybrid's top chunks for every query of ``split`` (cached: retrieval is not measured here)."""
    path = cache / f"candidates-{split}.pkl"
    if path.is_file():
        with path.open("rb") as fh:
            loaded: dict[str, list[Hit]] = pickle.load(fh)
        return loaded
    from cairn.assistant import Cairn
    from cairn.settings import get_settings

    dataset = load_beir(dataset_dir, split)
    cairn = Cairn(get_settings(home=home))
    kb = kb_name_for(dataset)
    t = time.perf_counter()
    report = cairn.ingestor.ingest_documents(kb, dataset.corpus())
    print(f"- indexed {report.count('added')} new documents in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    base = cairn.retrieval_config
    cfg = base.with_(top_k=max(POOL_CHUNKS, base.candidates), candidates=max(base.candidates, POOL_CHUNKS))
    out: dict[str, list[Hit]] = {}
    for qid, text in dataset.queries.items():
        out[qid] = cairn.retriever.search(text, [kb], cfg, principal=SYSTEM).hits
    cairn.close()
    cache.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pickle.dump(out, fh)
    return out


def doc_run(hits: Sequence[Hit], order: Sequence[int], depth: int) -> dict[str, float]:
    """Documents by best chunk: the re-ranked ``order`` of the first N hits, then the fused tail."""
    ranking: dict[str, float] = {}
    sequence = [hits[i] for i in order] + list(hits[len(order) :])
    for rank, hit in enumerate(sequence):
        ranking.setdefault(hit.source, float(len(sequence) - rank))
        if len(ranking) >= depth:
            break
    return ranking


def replay(
    dataset: BeirDataset,
    cands: dict[str, list[Hit]],
    raw: dict[str, list[float]],
    n: int,
    weight: float,
) -> dict[str, float]:
    run = {}
    for qid, hits in cands.items():
        top = hits[:n]
        if not top:
            run[qid] = {}
            continue
        final = blend(raw[qid][: len(top)], [h.score for h in top], weight)
        order = sorted(range(len(top)), key=lambda i: -final[i])
        run[qid] = doc_run(hits, order, DEPTH_DOCS)
    return score(dataset, run)


def model_scores(
    reranker: BaseReranker, queries: dict[str, str], cands: dict[str, list[Hit]], n: int
) -> dict[str, list[float]]:
    """Raw model scores of the first ``n`` candidates of every query (pointwise: one pass serves every N)."""
    out = {}
    t = time.perf_counter()
    for k, (qid, hits) in enumerate(cands.items(), start=1):
        top = hits[:n]
        out[qid] = reranker._score(queries[qid], top) if top else []
        if k % 100 == 0:
            print(f"  scored {k}/{len(cands)} queries ({time.perf_counter() - t:.0f} s)", file=sys.stderr)
    return out


def local_scores(
    reranker: LocalReranker,
    splits: dict[str, BeirDataset],
    cands: dict[str, dict[str, list[Hit]]],
    n: int,
    cache: Path,
) -> dict[str, dict[str, list[float]]]:
    """As :func:`model_scores`, but each chunk's query-independent side is computed once (and cached).

    ``_match`` over the kept passage arrays is the arithmetic of ``_score``; only float16 storage of
    the arrays differs (cosines/logits move by ~1e-3 at most).
    """
    folder = cache / f"passages-{reranker.score_key}-{reranker.max_tokens}"
    folder.mkdir(parents=True, exist_ok=True)
    passages: dict[int, Any] = {}
    for block_file in sorted(folder.glob("block-*.pkl")):  # blocks: a killed run resumes where it stopped
        with block_file.open("rb") as fh:
            passages.update(pickle.load(fh))
    todo: dict[int, str] = {}
    for split in splits:
        for hits in cands[split].values():
            for h in hits[:n]:
                if h.chunk_id not in passages:
                    todo[h.chunk_id] = passage_text(h)
    if todo:
        print(f"- {reranker.name}: encoding {len(todo)} passages", file=sys.stderr)
        ids = sorted(todo, key=lambda i: len(todo[i]))
        t = time.perf_counter()
        first = len(list(folder.glob("block-*.pkl")))
        for k, lo in enumerate(range(0, len(ids), 256)):
            block = ids[lo : lo + 256]
            rows = reranker._passages([todo[i] for i in block])
            encoded = {cid: r.astype(np.float16) for cid, r in zip(block, rows, strict=True)}
            with (folder / f"block-{first + k:05d}.pkl").open("wb") as fh:
                pickle.dump(encoded, fh)
            passages.update(encoded)
            print(f"  {lo + len(block)}/{len(ids)} ({time.perf_counter() - t:.0f} s)", file=sys.stderr)
    out: dict[str, dict[str, list[float]]] = {}
    for split, ds in splits.items():
        out[split] = {}
        for qid, hits in cands[split].items():
            top = hits[:n]
            query = reranker._query(ds.queries[qid])
            out[split][qid] = reranker._match(query, [passages[h.chunk_id].astype(np.float32) for h in top])
    return out


def latency(
    reranker: Reranker, queries: dict[str, str], cands: dict[str, list[Hit]], n: int, limit: int
) -> tuple[float, float, float]:
    """Wall p50 and p95 of ``rerank`` and the p50 of the process CPU time it used (all threads).

    On a shared machine wall time measures the neighbours too; with ``OPENBLAS_NUM_THREADS=1`` the
    CPU time is the single-core cost, which bounds the wall time on an idle core from above.
    """
    times, cpu = [], []
    for qid in list(cands)[:limit]:
        top = cands[qid][:n]
        t, c = time.perf_counter(), time.process_time()
        reranker.rerank(queries[qid], top)
        times.append((time.perf_counter() - t) * 1000.0)
        cpu.append((time.process_time() - c) * 1000.0)
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95, statistics.median(cpu)


class ListwiseLLM(BaseReranker):
    """A listwise LLM judge (prototype, measured here only): the generator ranks numbered passages."""

    score_key = "llm"

    def __init__(self, generator: Any, *, chars: int = 500) -> None:
        super().__init__(weight=1.0)
        self.generator = generator
        self.name = f"llm:{generator.name}"
        self.chars = chars

    def _load(self) -> None:
        self.generator.warm_up()

    def _score(self, query: str, hits: Sequence[Hit]) -> list[float]:
        import re

        blocks = [f"[{i + 1}] {' '.join(passage_text(h).split())[: self.chars]}" for i, h in enumerate(hits)]
        prompt = (
            "Rank the passages by how relevant they are to the claim (does the passage support or refute it?).\n\n"
            f"Claim: {query}\n\n" + "\n\n".join(blocks) + "\n\n"
            f"Answer with the passage numbers, most relevant first, separated by ' > ', e.g. [2] > [1] > [3]. "
            f"List all {len(hits)}."
        )
        reply = self.generator.generate([ChatMessage("user", prompt)], max_tokens=8 * len(hits), temperature=0.0)
        seen: list[int] = []
        for m in re.findall(r"\d+", reply.text):
            i = int(m) - 1
            if 0 <= i < len(hits) and i not in seen:
                seen.append(i)
        seen += [i for i in range(len(hits)) if i not in seen]  # unranked passages keep their fused order
        scores = [0.0] * len(hits)
        for rank, i in enumerate(seen):
            scores[i] = float(len(hits) - rank)
        return scores


def build(location: str, settings_home: Path) -> BaseReranker:
    if location.startswith("llm:"):
        from cairn.models.base import create_generator
        from cairn.settings import get_settings

        settings = get_settings(home=settings_home)
        model = location.partition(":")[2] or settings.generator
        return ListwiseLLM(create_generator(model, settings=settings))
    reranker = RERANKERS.create(location)
    if not isinstance(reranker, BaseReranker):
        raise SystemExit(f"{location}: not a BaseReranker, cannot replay its raw scores")
    return reranker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=SHARED / "scifact")
    parser.add_argument("--home", type=Path, default=ROOT / "build" / "rerank-sweep" / "home")
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "rerank-sweep")
    parser.add_argument("--rerankers", default="splade:,maxsim:")
    parser.add_argument("--depths", default="10,20,30,50,100")
    parser.add_argument("--timing-queries", type=int, default=100)
    parser.add_argument("--llm-queries", type=int, default=30, help="test queries for llm: (train not used)")
    parser.add_argument("--train-queries", type=int, help="tune on the first K train queries only (slow models)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    depths = sorted(int(d) for d in args.depths.split(","))
    splits = {s: load_beir(args.dataset, s) for s in ("train", "test")}
    cands = {s: candidates(args.home, args.dataset, s, args.cache) for s in splits}
    if args.train_queries:
        cands["train"] = dict(list(cands["train"].items())[: args.train_queries])
        train = splits["train"]
        splits["train"] = replace(train, queries={q: train.queries[q] for q in cands["train"]})
    rows: list[dict[str, Any]] = []
    for split, ds in splits.items():
        m = score(ds, {q: doc_run(h, [], DEPTH_DOCS) for q, h in cands[split].items()})
        print(f"- fused baseline {split}: nDCG@10 {m['ndcg@10']:.4f} recall@100 {m['recall@100']:.4f}", file=sys.stderr)
        rows.append({"reranker": "none (hybrid convex)", "split": split, "n": 0, "weight": 0.0, **m})
    for location in [x for x in args.rerankers.split(",") if x]:
        reranker = build(location, args.home)
        reranker.warm_up()
        llm = isinstance(reranker, ListwiseLLM)
        nmax = depths[-1]
        slug = "".join(c if c.isalnum() else "_" for c in location)
        raw_cache = args.cache / f"raw-{slug}-{nmax}-{len(cands['train'])}.pkl"
        raw: dict[str, dict[str, list[float]]] = {}
        if llm:
            test = dict(list(cands["test"].items())[: args.llm_queries])
            sub = load_beir(args.dataset, "test")
            sub = replace(sub, queries={q: sub.queries[q] for q in test})
            # Listwise scores depend on the whole list: one pass per N.
            for n in depths:
                t = time.perf_counter()
                raw_n = model_scores(reranker, sub.queries, test, n)
                ms = (time.perf_counter() - t) * 1000.0 / max(1, len(test))
                base = score(sub, {q: doc_run(h, [], DEPTH_DOCS) for q, h in test.items()})
                m = replay(sub, test, raw_n, n, 1.0)
                rows.append(
                    {
                        "reranker": location,
                        "split": f"test[:{len(test)}]",
                        "n": n,
                        "weight": 1.0,
                        **m,
                        "base_ndcg@10": base["ndcg@10"],
                        "p50_ms": ms,
                        "p95_ms": float("nan"),
                    }
                )
                print(
                    f"  {location} N={n}: nDCG@10 {m['ndcg@10']:.4f} (fused {base['ndcg@10']:.4f}), {ms:.0f} ms/query",
                    file=sys.stderr,
                )
            continue
        if raw_cache.is_file():
            with raw_cache.open("rb") as fh:
                raw = pickle.load(fh)
        else:
            if isinstance(reranker, LocalReranker):
                raw = local_scores(reranker, splits, cands, nmax, args.cache)
            else:
                for split, ds in splits.items():
                    print(f"- {location}: scoring {split} top {nmax}", file=sys.stderr)
                    raw[split] = model_scores(reranker, ds.queries, cands[split], nmax)
            with raw_cache.open("wb") as fh:
                pickle.dump(raw, fh)
        for n in depths:
            train = {w: replay(splits["train"], cands["train"], raw["train"], n, w) for w in WEIGHTS}
            best = max(WEIGHTS, key=lambda w: train[w]["ndcg@10"])
            p50, p95, cpu = latency(reranker, splits["test"].queries, cands["test"], n, args.timing_queries)
            for w in sorted({best, 1.0}):
                test_m = replay(splits["test"], cands["test"], raw["test"], n, w)
                rows.append(
                    {
                        "reranker": location,
                        "split": "test",
                        "n": n,
                        "weight": w,
                        **test_m,
                        "train_ndcg@10": train[w]["ndcg@10"],
                        "tuned": w == best,
                        "p50_ms": p50,
                        "p95_ms": p95,
                        "cpu_p50_ms": cpu,
                        "load": os.getloadavg()[0],
                    }
                )
            curve = " ".join(f"{w:.1f}:{train[w]['ndcg@10']:.4f}" for w in WEIGHTS)
            print(
                f"  {location} N={n}: train nDCG@10 by weight {curve}; p50 {p50:.0f} ms, "
                f"CPU p50 {cpu:.0f} ms (load {os.getloadavg()[0]:.1f})",
                file=sys.stderr,
            )
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


def print_table(rows: list[dict[str, Any]]) -> None:
    fmt: Callable[[Any], str] = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    print("| re-ranker | split | N | weight | nDCG@10 | recall@100 | train nDCG@10 | p50 ms | p95 ms | CPU p50 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        weight = f"{r['weight']:.1f}" + (" (tuned)" if r.get("tuned") else "")
        train = fmt(r["train_ndcg@10"]) if "train_ndcg@10" in r else ""
        p50 = f"{r['p50_ms']:.0f}" if "p50_ms" in r else ""
        p95 = f"{r['p95_ms']:.0f}" if "p95_ms" in r and r["p95_ms"] == r["p95_ms"] else ""
        cpu = f"{r['cpu_p50_ms']:.0f}" if "cpu_p50_ms" in r else ""
        print(
            f"| {r['reranker']} | {r['split']} | {r['n'] or '-'} | {weight} | {r['ndcg@10']:.4f} | "
            f"{r['recall@100']:.4f} | {train} | {p50} | {p95} | {cpu} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
