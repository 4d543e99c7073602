"""Benchmarks: retrieval quality (BEIR) ablation and ingestion throughput, printed as markdown.

    python bench/run.py                      # SciFact (+ NFCorpus if present) and ingestion
    python bench/run.py --datasets scifact --limit 100 --skip-ingest

Datasets are read from ../shared/datasets (BEIR format); a missing one is skipped with a message.
Figures depend on the machine: the README's numbers come from a 2-core runner.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cairn.assistant import Cairn
from cairn.eval.beir import kb_name_for, latency_summary, load_beir, run_queries, score
from cairn.retrieve.hybrid import RetrievalConfig
from cairn.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"

VARIANTS: dict[str, dict[str, object]] = {
    "bm25": {"mode": "bm25"},
    "dense": {"mode": "dense"},
    "hybrid rrf": {"mode": "hybrid", "fusion": "rrf"},
    "hybrid convex (default)": {"mode": "hybrid", "fusion": "convex"},
    "hybrid convex + mmr": {"mode": "hybrid", "fusion": "convex", "mmr": True},
}


def bench_beir(cairn: Cairn, name: str, limit: int | None) -> list[dict[str, object]]:
    folder = SHARED / name
    if not (folder / "corpus.jsonl").is_file():
        print(f"- {name}: skipped, {folder} not found", file=sys.stderr)
        return []
    dataset = load_beir(folder, "test")
    kb = kb_name_for(dataset)
    t = time.perf_counter()
    report = cairn.ingestor.ingest_documents(kb, dataset.corpus())
    print(
        f"- {name}: indexed {report.count('added')} new documents in {time.perf_counter() - t:.0f} s",
        file=sys.stderr,
    )
    rows = []
    base: RetrievalConfig = cairn.retrieval_config
    for label, changes in VARIANTS.items():
        config = base.with_(**changes)
        run, latencies = run_queries(cairn.retriever, dataset, kb, config, limit=limit)
        metrics = score(dataset, run)
        rows.append({"dataset": name, "variant": label, **metrics, **latency_summary(latencies)})
        print(f"  {label}: nDCG@10 {metrics['ndcg@10']:.4f}", file=sys.stderr)
    return rows


def bench_ingest(tmp: Path) -> dict[str, object]:
    samples = tmp / "samples"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_samples.py"), str(samples)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    # Ten copies of the sample corpus make the run long enough to time.
    corpus = tmp / "corpus"
    for i in range(10):
        shutil.copytree(samples, corpus / f"copy{i}")
    cairn = Cairn(get_settings(home=tmp / "home"))
    report = cairn.ingestor.sync_folder(corpus, "bench")
    summary = report.to_json()
    again = cairn.ingestor.sync_folder(corpus, "bench")
    cairn.close()
    return {
        "files": summary["files"],
        "pages": summary["pages"],
        "chunks": summary["chunks"],
        "seconds": summary["seconds"],
        "pages_per_s": summary["pages_per_s"],
        "resync_unchanged_s": round(again.seconds, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", default=["scifact", "nfcorpus"])
    parser.add_argument("--limit", type=int, default=None, help="queries per dataset")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--home", type=Path, default=None, help="CAIRN_HOME for the BEIR indexes (kept between runs)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    home = args.home or ROOT / "build" / "bench-home"
    cairn = Cairn(get_settings(home=home))
    rows = [row for name in args.datasets for row in bench_beir(cairn, name, args.limit)]
    cairn.close()
    print("| dataset | variant | nDCG@10 | recall@100 | MRR@10 | p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['dataset']} | {r['variant']} | {r['ndcg@10']:.4f} | {r['recall@100']:.4f} | {r['mrr@10']:.4f}"
            f" | {r.get('p50_ms', 0):.1f} | {r.get('p95_ms', 0):.1f} |"
        )
    for name in {str(r["dataset"]) for r in rows}:
        by = {str(r["variant"]): r for r in rows if r["dataset"] == name}
        best_single = max(float(by["bm25"]["ndcg@10"]), float(by["dense"]["ndcg@10"]))  # type: ignore[arg-type]
        default = float(by["hybrid convex (default)"]["ndcg@10"])  # type: ignore[arg-type]
        print(f"\n{name}: default / best single retriever = {default / best_single:.3f} ({default - best_single:+.4f})")
    ingest = None
    if not args.skip_ingest:
        with tempfile.TemporaryDirectory() as tmp:
            ingest = bench_ingest(Path(tmp))
        print("\n| ingest | files | pages | chunks | seconds | pages/s | unchanged re-sync s |")
        print("|---|---|---|---|---|---|---|")
        print(
            f"| sample corpus x10 | {ingest['files']} | {ingest['pages']} | {ingest['chunks']} | {ingest['seconds']}"
            f" | {ingest['pages_per_s']} | {ingest['resync_unchanged_s']} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"beir": rows, "ingest": ingest}, indent=2))


if __name__ == "__main__":
    main()
