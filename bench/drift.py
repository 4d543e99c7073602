"""Drift report runtime and figures over an audit trail of a few thousand records.

    python bench/drift.py                   # 1,000 reference + 1,000 current records
    python bench/drift.py --records 5000    # per window

A temporary embedded database gets two windows of audited answers: the reference asks SciFact claims
(../shared/datasets/scifact) and refuses 10%; the current window asks a mix of SciFact claims and the
handbook questions of tests/data/drift and refuses 25%. Prints the report's figures and where the time
went (reading the trail, embedding the questions, the statistics). The embedder is the packaged
MiniLM (``CAIRN_EMBEDDER`` to change it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np

from cairn.assistant import Cairn
from cairn.ops.audit import AuditEvent
from cairn.ops.drift import Window
from cairn.settings import get_settings
from cairn.types import SYSTEM

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact" / "queries.jsonl"
HANDBOOK = ROOT / "tests" / "data" / "drift" / "handbook_questions.txt"


def _event(question: str, rng: np.random.Generator, refusal: float) -> AuditEvent:
    refused = bool(rng.random() < refusal)
    top = float(np.clip(rng.normal(0.35 if refused else 0.62, 0.07), 0, 1))
    retrieved = [
        {
            "chunk_id": i,
            "document_id": i,
            "version": 1,
            "source": f"d{i}.md",
            "kb": "default",
            "score": 1 - i / 10,
            "cosine": round(top - 0.03 * i, 6),
        }
        for i in range(5)
    ]
    ratio = 1.0 if rng.random() < 0.85 else 0.5
    return AuditEvent(
        kind="ask",
        question=question,
        kbs=["default"],
        retrieved=retrieved,
        answer="" if refused else " ".join(["word"] * max(3, int(rng.normal(35, 6)))),
        refused=refused,
        grounding=None if refused else {"verdict": "grounded" if ratio == 1 else "partial", "supported_ratio": ratio},
        timings_ms={"total": 40.0},
    )


def _write(cairn: Cairn, questions: list[str], seed: int, refusal: float) -> Window:
    rng = np.random.default_rng(seed)
    ids = [cairn.audit.record(SYSTEM, _event(q, rng, refusal)).id for q in questions]
    at = {e.id: e.at for e in cairn.audit.list(SYSTEM, limit=len(ids))}
    return Window(at[ids[0]], at[ids[-1]] + timedelta(microseconds=1), f"{len(ids)} records")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000, help="records per window")
    args = parser.parse_args()
    if not SCIFACT.is_file():
        sys.exit(f"SciFact claims not found at {SCIFACT}")
    claims = [json.loads(line)["text"] for line in SCIFACT.read_text(encoding="utf-8").splitlines() if line.strip()]
    handbook = [q for q in HANDBOOK.read_text(encoding="utf-8").splitlines() if q.strip()]
    rng = np.random.default_rng(0)
    n = args.records
    reference = [claims[i] for i in rng.integers(0, len(claims), n)]
    current = [claims[i] for i in rng.integers(0, len(claims), n // 2)]
    current += [handbook[i] for i in rng.integers(0, len(handbook), n - len(current))]
    with tempfile.TemporaryDirectory() as home:
        settings = get_settings(home=Path(home), embedder=os.environ.get("CAIRN_EMBEDDER", "onnx:all-minilm-l6-v2"))
        cairn = Cairn(settings)
        try:
            started = time.perf_counter()
            ref = _write(cairn, reference, 1, 0.10)
            cur = _write(cairn, current, 2, 0.25)
            print(f"wrote {2 * n} audit records in {time.perf_counter() - started:.1f} s")
            cairn.embedder.warm_up()
            report = cairn.drift.report(SYSTEM, ref, cur)
            distinct = len(set(reference) | set(current))
            print(
                f"report: {report.seconds:.2f} s for {sum(report.records)} records, {distinct} distinct questions"
                f" ({', '.join(f'{k} {v:.2f} s' for k, v in report.timings_s.items())})"
            )
            print("| signal | reference | current | statistic | p-value | verdict |")
            print("|---|---|---|---|---|---|")
            for s in report.signals:
                stat = "" if s.statistic is None else f"{s.kind.statistic} {s.statistic:.4g}"
                p = "" if s.p_value is None else f"{s.p_value:.3g}"
                print(f"| {s.name} | {s.reference} | {s.current} | {stat} | {p} | {s.verdict} |")
            cairn.drift.config = replace(cairn.drift.config, permutations=2000)
            again = cairn.drift.report(SYSTEM, ref, cur)
            print(f"with 2000 permutations: {again.seconds:.2f} s ({again.timings_s})")
        finally:
            cairn.close()


if __name__ == "__main__":
    main()
