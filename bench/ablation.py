"""Ablation of the retrieval pipeline: what each stage adds, and what it costs, on BEIR folders.

    python bench/ablation.py                               # SciFact (+ NFCorpus when present)
    python bench/ablation.py --datasets scifact /data/fiqa --limit 100
    python bench/ablation.py --variants bm25 hybrid "+rerank" --split train

For every variant: nDCG@10, recall@100 and p50/p95 latency of the ranking (documents ranked by
their best chunk, 200 candidates per list as in `cairn eval beir`); then, on the answer path (the
top 5 passages a question hands to the generator), the latency and the words of context. Small-to-
big and compression do not change which documents rank where (they reshape the passages), so
their rows show the same ranking figures and differ in the answer-path columns.

Writes ablation.md and ablation.png to --out (default build/ablation). Datasets are read from
../shared/datasets by name, or given as paths; a missing one is skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from cairn.assistant import Cairn
from cairn.eval.beir import BeirDataset, kb_name_for, latency_summary, load_beir, run_queries, score
from cairn.retrieve.hybrid import RetrievalConfig
from cairn.retrieve.profiles import PROFILES, STAGES_OFF, profile_changes
from cairn.settings import get_settings
from cairn.types import SYSTEM

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"


def variants(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Each row's changes over the plain hybrid config (profiles' stages turned off first)."""
    stages = {
        "+rerank": {"rerank": args.rerank, "rerank_depth": args.rerank_depth},
        "+multi-query": {"rewrite": args.rewrite},
        "+decompose": {"decompose": args.decompose},
        "+graph": {"graph": args.graph, "graph_hops": args.graph_hops},
        "+small-to-big": {"parents": args.parents},
        "+compression": {"compress": args.compress},
    }
    rows: dict[str, dict[str, Any]] = {
        "bm25": {"mode": "bm25"},
        "dense": {"mode": "dense"},
        "hybrid": {},
        "+mmr": {"mmr": True},
        **stages,
        "full": {k: v for changes in stages.values() for k, v in changes.items()},
    }
    rows.update({f"profile {name}": profile_changes(name) for name in PROFILES})
    return rows


def answer_path(
    cairn: Cairn, dataset: BeirDataset, kb: str, config: RetrievalConfig, limit: int | None
) -> dict[str, float]:
    """Latency and words of the top-5 passages, the context one question hands to the generator."""
    cfg = replace(config, top_k=5)
    latencies, words = [], []
    for text in list(dataset.queries.values())[:limit]:
        t = time.perf_counter()
        hits = cairn.retriever.search(text, [kb], cfg, principal=SYSTEM).hits
        latencies.append((time.perf_counter() - t) * 1000.0)
        words.append(sum(len(h.text.split()) for h in hits))
    summary = latency_summary(latencies)
    return {"ctx_p50_ms": summary["p50_ms"], "ctx_p95_ms": summary["p95_ms"], "ctx_words": statistics.mean(words)}


def run_dataset(cairn: Cairn, folder: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    dataset = load_beir(folder, args.split)
    kb = kb_name_for(dataset)
    t = time.perf_counter()
    report = cairn.ingestor.ingest_documents(kb, dataset.corpus())
    print(
        f"- {dataset.name}: {report.count('added')} new documents indexed in {time.perf_counter() - t:.0f} s",
        file=sys.stderr,
    )
    plain = replace(RetrievalConfig.from_settings(cairn.settings, "default"), **STAGES_OFF)
    rows = []
    chosen = variants(args)
    for label in args.variants or list(chosen):
        if label not in chosen:
            raise SystemExit(f"unknown variant {label!r}; known: {', '.join(chosen)}")
        config = replace(plain, **chosen[label])
        run, latencies = run_queries(cairn.retriever, dataset, kb, config, limit=args.limit)
        row: dict[str, Any] = {"dataset": dataset.name, "variant": label, **score(dataset, run)}
        row |= latency_summary(latencies)
        row |= answer_path(cairn, dataset, kb, config, args.context_limit)
        rows.append(row)
        print(
            f"  {label}: nDCG@10 {row['ndcg@10']:.4f} recall@100 {row['recall@100']:.4f}"
            f" p50 {row['p50_ms']:.0f} ms, answer path p50 {row['ctx_p50_ms']:.0f} ms",
            file=sys.stderr,
        )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| dataset | variant | nDCG@10 | recall@100 | p50 ms | p95 ms | answer path p50 ms | context words (top 5) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['variant']} | {r['ndcg@10']:.4f} | {r['recall@100']:.4f} | {r['p50_ms']:.1f}"
            f" | {r['p95_ms']:.1f} | {r['ctx_p50_ms']:.1f} | {r['ctx_words']:.0f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({str(r["dataset"]) for r in rows})
    fig, axes = plt.subplots(1, len(names), figsize=(6.5 * len(names), 4.8), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        mine = [r for r in rows if r["dataset"] == name]
        for r in mine:
            ax.scatter(r["ctx_p50_ms"], r["ndcg@10"], s=36)
            ax.annotate(
                str(r["variant"]),
                (r["ctx_p50_ms"], r["ndcg@10"]),
                fontsize=8,
                xytext=(4, 3),
                textcoords="offset points",
            )
        ax.set_xscale("log")
        ax.set_xlabel("p50 latency of a question's retrieval (top 5), ms, log scale")
        ax.set_ylabel("nDCG@10")
        ax.set_title(f"{name}: quality vs cost per pipeline variant")
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--datasets", nargs="*", default=["scifact", "nfcorpus"], help="names under ../shared/datasets or paths"
    )
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="queries per dataset for the ranking figures")
    parser.add_argument("--context-limit", type=int, default=100, help="queries for the answer-path figures")
    parser.add_argument("--variants", nargs="*", default=None, help="rows to run (default: all)")
    parser.add_argument("--rerank", default="splade:")
    parser.add_argument("--rerank-depth", type=int, default=30)
    parser.add_argument("--rewrite", default="rm3:")
    parser.add_argument("--decompose", default="heuristic:")
    parser.add_argument("--graph", type=float, default=0.1, help="graph list weight (needs `cairn index graph`)")
    parser.add_argument("--graph-hops", type=int, default=0)
    parser.add_argument("--parents", type=int, default=2400)
    parser.add_argument("--compress", default="embedding:")
    parser.add_argument("--home", type=Path, default=ROOT / "build" / "bench-home", help="CAIRN_HOME (indexes kept)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "ablation")
    args = parser.parse_args()

    cairn = Cairn(get_settings(home=args.home))
    rows: list[dict[str, Any]] = []
    for name in args.datasets:
        folder = Path(name) if "/" in name else SHARED / name
        if not (folder / "corpus.jsonl").is_file():
            print(f"- {name}: skipped, {folder} has no corpus.jsonl", file=sys.stderr)
            continue
        rows += run_dataset(cairn, folder, args)
    cairn.close()
    if not rows:
        raise SystemExit("no dataset found")
    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown(rows)
    (args.out / "ablation.md").write_text(table + "\n", encoding="utf-8")
    (args.out / "ablation.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    plot(rows, args.out / "ablation.png")
    print(table)
    print(f"\nwritten: {args.out / 'ablation.md'}, {args.out / 'ablation.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
