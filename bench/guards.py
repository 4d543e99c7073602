"""Guards benchmark: false positives on real benign text, detection on attacks, throughput; printed as markdown.

    python bench/guards.py                    # SciFact from ../shared/datasets, all of it
    python bench/guards.py --limit 500        # first 500 abstracts only

Benign sets: every SciFact claim (as a question) and every abstract split into ~1000-character
passages (as documents). Attacks: any prompt-injection data found under the datasets folder
(none today: the script says so), and tests/data/guards/attacks.jsonl, which the cairn developers
wrote while building the detector; it measures regressions, not real-world recall.
Throughput depends on the machine: the figures in docs/guards.md come from a 2-core runner.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from cairn.eval.guards import (
    evaluate_injection,
    load_injection_sets,
    load_labelled,
    scifact_passages,
    scifact_questions,
)
from cairn.guard.injection import DEFAULT_THRESHOLD, InjectionDetector
from cairn.guard.output import sanitize_markdown
from cairn.guard.pii import PiiDetector

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
ATTACKS = ROOT / "tests" / "data" / "guards" / "attacks.jsonl"
SWEEP = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


T = TypeVar("T")


def timed(fn: Callable[[str], T], texts: Sequence[str]) -> tuple[list[T], float]:
    start = time.perf_counter()
    out = [fn(t) for t in texts]
    elapsed = time.perf_counter() - start
    return out, len(texts) / elapsed if elapsed else float("inf")


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def rate(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def flags(scores: Sequence[float], threshold: float) -> list[bool]:
    return [s >= threshold for s in scores]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=Path, default=SHARED)
    parser.add_argument("--limit", type=int, default=None, help="read only the first N SciFact abstracts")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of markdown")
    args = parser.parse_args()

    detector = InjectionDetector()
    figures: dict[str, Any] = {"threshold": DEFAULT_THRESHOLD}
    scifact = args.datasets / "scifact"
    questions: list[str] = []
    passages: list[str] = []
    if (scifact / "corpus.jsonl").is_file():
        questions = scifact_questions(scifact)
        passages = scifact_passages(scifact, 1000, args.limit)
    else:
        print(f"- SciFact: absent, {scifact} not found", file=sys.stderr)

    # Scores once per text; flags at any threshold follow from them.
    q_scores, q_rate = timed(detector.score, questions)
    d_scores, d_rate = timed(detector.score, passages)
    rows = load_labelled(ATTACKS)
    a_scores = [detector.score(r.text) for r in rows]
    pos = [s for s, r in zip(a_scores, rows, strict=True) if r.label == 1]
    neg = [s for s, r in zip(a_scores, rows, strict=True) if r.label == 0]

    injection_rows, injection_reason = load_injection_sets(args.datasets)
    external = evaluate_injection(injection_rows, detector) if injection_rows else None

    per_kind: Counter[str] = Counter()
    per_kind_caught: Counter[str] = Counter()
    kinds = [json.loads(line)["kind"] for line in ATTACKS.read_text(encoding="utf-8").splitlines() if line.strip()]
    for score, row, kind in zip(a_scores, rows, kinds, strict=True):
        if row.label == 1:
            per_kind[kind] += 1
            per_kind_caught[kind] += score >= DEFAULT_THRESHOLD

    pii = PiiDetector()
    pii_found, pii_rate = timed(pii.find, passages)
    pii_kinds = Counter(f.kind for found in pii_found for f in found)
    pii_texts = sum(bool(found) for found in pii_found)
    sanitized, out_rate = timed(sanitize_markdown, passages)
    out_changed = sum(bool(r.removed) for r in sanitized)

    sweep = []
    for t in SWEEP:
        sweep.append(
            {
                "threshold": t,
                "fpr_questions": rate(flags(q_scores, t)),
                "fpr_passages": rate(flags(d_scores, t)),
                "fpr_hard_benign": rate(flags(neg, t)),
                "tpr_attack_set": rate(flags(pos, t)),
            }
        )
    flagged_examples = [p for p, s in zip(passages, d_scores, strict=True) if s >= DEFAULT_THRESHOLD]
    for p in flagged_examples[:10]:
        print(f"- flagged benign passage: {p[:160]!r}", file=sys.stderr)

    figures.update(
        {
            "scifact_questions": {"n": len(questions), "fpr": rate(flags(q_scores, DEFAULT_THRESHOLD))},
            "scifact_passages": {"n": len(passages), "fpr": rate(flags(d_scores, DEFAULT_THRESHOLD))},
            "injection_data": external if external else {"absent": injection_reason},
            "attack_set": {
                "n_pos": len(pos),
                "n_neg": len(neg),
                "tpr": rate(flags(pos, DEFAULT_THRESHOLD)),
                "fpr": rate(flags(neg, DEFAULT_THRESHOLD)),
                "tpr_by_kind": {k: per_kind_caught[k] / n for k, n in sorted(per_kind.items())},
            },
            "sweep": sweep,
            "pii_on_scifact_passages": {"texts_with_findings": pii_texts, "findings": dict(pii_kinds)},
            "output_on_scifact_passages": {"texts_changed": out_changed},
            "throughput_texts_per_s": {
                "injection_questions": q_rate,
                "injection_passages": d_rate,
                "pii_passages": pii_rate,
                "output_passages": out_rate,
            },
        }
    )
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print_markdown(figures, injection_reason, external)


def print_markdown(figures: dict[str, Any], injection_reason: str, external: dict[str, Any] | None) -> None:
    q = figures["scifact_questions"]
    d = figures["scifact_passages"]
    a = figures["attack_set"]
    print(f"### Prompt-injection detector (threshold {figures['threshold']})\n")
    print("| set | texts | flagged as injection |")
    print("|---|---:|---:|")
    print(f"| SciFact claims as questions (benign) | {q['n']} | FPR {pct(q['fpr'])} |")
    print(f"| SciFact abstracts as ~1000-char passages (benign) | {d['n']} | FPR {pct(d['fpr'])} |")
    print(
        f"| attack set written by cairn developers, not an independent benchmark: attacks | {a['n_pos']} "
        f"| TPR {pct(a['tpr'])} |"
    )
    print(f"| same set: hard benign enterprise sentences | {a['n_neg']} | FPR {pct(a['fpr'])} |")
    if external:
        print(
            f"| prompt-injection data from the datasets folder | {external['n_pos']} + {external['n_neg']} "
            f"| TPR {pct(external['tpr'])}, FPR {pct(external['fpr'])} |"
        )
        print(f"\nInjection data: {injection_reason}")
    else:
        print(f"\nIndependent prompt-injection data: absent ({injection_reason}); no TPR on real attacks.")
    by_kind = a["tpr_by_kind"]
    print("\nTPR on the developers' attack set by kind: " + ", ".join(f"{k} {pct(v)}" for k, v in by_kind.items()))
    print("\n| threshold | FPR claims | FPR passages | FPR hard benign | TPR attack set |")
    print("|---:|---:|---:|---:|---:|")
    for row in figures["sweep"]:
        print(
            f"| {row['threshold']} | {pct(row['fpr_questions'])} | {pct(row['fpr_passages'])} "
            f"| {pct(row['fpr_hard_benign'])} | {pct(row['tpr_attack_set'])} |"
        )
    pii = figures["pii_on_scifact_passages"]
    out = figures["output_on_scifact_passages"]
    thr = figures["throughput_texts_per_s"]
    print("\n### PII and output guards on the SciFact passages\n")
    findings = ", ".join(f"{k} {v}" for k, v in sorted(pii["findings"].items())) or "none"
    print(f"- PII: {pii['texts_with_findings']} passages with findings ({findings})")
    print(f"- Output sanitiser: {out['texts_changed']} passages changed")
    print("\n### Throughput (texts/s, one thread)\n")
    print("| guard | texts/s |")
    print("|---|---:|")
    print(f"| injection, SciFact claims | {thr['injection_questions']:.0f} |")
    print(f"| injection, ~1000-char passages | {thr['injection_passages']:.0f} |")
    print(f"| PII, ~1000-char passages | {thr['pii_passages']:.0f} |")
    print(f"| output sanitiser, ~1000-char passages | {thr['output_passages']:.0f} |")


if __name__ == "__main__":
    main()
