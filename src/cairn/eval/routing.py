"""Routing accuracy: does a knowledge-base router send each labelled question where its answer is?

A labelled set is JSON lines, one question each::

    {"question": "How do I report a suspicious email?", "kbs": ["it"], "source": "samples", "split": "test"}

``kbs`` lists every knowledge base that holds an answer (a question answerable from two is right
in either), unless ``"needs": "all"`` marks a compound question that needs every one of them
(scored by coverage: all of ``kbs`` routed); ``split`` lets parameters be chosen on ``dev`` and
reported on ``test``. Measures, per
router: top-1 accuracy (the first knowledge base routed is a gold one), any-correct recall (some
routed knowledge base is gold: the search can find the answer), mean knowledge bases searched
(the cost), the same per gold knowledge base with their macro average (so that one large labelled
set does not hide the others), and a confusion table of gold against top-1.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cairn.errors import InputError
from cairn.models.base import Embedder
from cairn.retrieve.base import KbCard, KbRouter


@dataclass(frozen=True, slots=True)
class RoutingExample:
    question: str
    kbs: tuple[str, ...]  # the knowledge bases that hold an answer
    source: str = ""  # where the question comes from ("samples", "written", "beir-scifact/test" ...)
    split: str = ""  # "dev" or "test" (or empty)
    needs: str = "any"  # "any": one of ``kbs`` answers it; "all": it needs every one (a compound question)


@dataclass(frozen=True, slots=True)
class KbScore:
    n: int
    top1: float
    any_correct: float
    mean_kbs: float


@dataclass(frozen=True, slots=True)
class RoutingReport:
    router: str
    n: int
    top1: float
    any_correct: float
    mean_kbs: float
    macro_top1: float
    macro_any_correct: float
    covered: float  # the routed set holds what the question needs: one gold KB, or all for needs="all"
    per_kb: dict[str, KbScore]
    confusion: dict[str, dict[str, int]]  # gold (the first listed) -> top-1 routed -> count
    p50_ms: float
    misses: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = field(default=())  # question, gold, routed


def load_examples(path: Path) -> list[RoutingExample]:
    """Examples from a JSON-lines file (``question``, ``kbs``; optional ``source``, ``split``)."""
    out = []
    with Path(path).open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                question = str(row["question"]).strip()
                kbs = row["kbs"]
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(f"{path}:{number}: not a routing example ({exc})") from exc
            if isinstance(kbs, str):
                kbs = [kbs]
            needs = str(row.get("needs", "any"))
            if not question or not kbs or needs not in ("any", "all"):
                raise InputError(f"{path}:{number}: a routing example needs a question, kbs and needs 'any' or 'all'")
            out.append(
                RoutingExample(
                    question,
                    tuple(str(k) for k in kbs),
                    str(row.get("source", "")),
                    str(row.get("split", "")),
                    needs,
                )
            )
    return out


def embed_questions(embedder: Embedder, examples: Sequence[RoutingExample]) -> list[npt.NDArray[np.float32]]:
    """Query vectors of the examples, computed once and shared by every router evaluated."""
    return [embedder.embed_query(e.question) for e in examples]


def evaluate_routing(
    router: KbRouter,
    examples: Sequence[RoutingExample],
    cards: Sequence[KbCard],
    vectors: Sequence[npt.NDArray[np.float32]],
    *,
    name: str | None = None,
    keep_misses: int = 20,
) -> RoutingReport:
    """Route every example over ``cards`` and score the routed lists (see the module docstring)."""
    if len(vectors) != len(examples):
        raise InputError(f"{len(examples)} examples but {len(vectors)} query vectors")
    known = {c.name for c in cards}
    unknown = sorted({k for e in examples for k in e.kbs} - known)
    if unknown:
        raise InputError(f"labelled knowledge bases without a card: {', '.join(unknown)}")
    routed: list[list[str]] = []
    latencies: list[float] = []
    for example, vector in zip(examples, vectors, strict=True):
        start = time.perf_counter()
        routed.append(list(router.route(example.question, vector, cards)))
        latencies.append((time.perf_counter() - start) * 1000.0)
    return score_routing(examples, routed, name=name or router.name, latencies_ms=latencies, keep_misses=keep_misses)


def score_routing(
    examples: Sequence[RoutingExample],
    routed: Sequence[Sequence[str]],
    *,
    name: str = "",
    latencies_ms: Sequence[float] = (),
    keep_misses: int = 20,
) -> RoutingReport:
    """The measures of routed lists against the gold labels."""
    if not examples:
        raise InputError("no routing examples to score")
    top1: list[bool] = []
    anyc: list[bool] = []
    covered: list[bool] = []
    sizes: list[int] = []
    groups: dict[str, list[int]] = {}
    confusion: dict[str, Counter[str]] = {}
    misses: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []
    for i, (example, names) in enumerate(zip(examples, routed, strict=True)):
        gold = set(example.kbs)
        first = names[0] if names else "(none)"
        top1.append(first in gold)
        anyc.append(bool(gold & set(names)))
        covered.append(gold <= set(names) if example.needs == "all" else anyc[-1])
        sizes.append(len(names))
        groups.setdefault(example.kbs[0], []).append(i)
        confusion.setdefault(example.kbs[0], Counter())[first] += 1
        if not top1[-1] and len(misses) < keep_misses:
            misses.append((example.question, example.kbs, tuple(names)))
    per_kb = {
        kb: KbScore(
            n=len(idx),
            top1=_mean(top1[i] for i in idx),
            any_correct=_mean(anyc[i] for i in idx),
            mean_kbs=_mean(sizes[i] for i in idx),
        )
        for kb, idx in sorted(groups.items())
    }
    return RoutingReport(
        router=name,
        n=len(examples),
        top1=_mean(top1),
        any_correct=_mean(anyc),
        mean_kbs=_mean(sizes),
        macro_top1=_mean(s.top1 for s in per_kb.values()),
        macro_any_correct=_mean(s.any_correct for s in per_kb.values()),
        covered=_mean(covered),
        per_kb=per_kb,
        confusion={gold: dict(sorted(c.items())) for gold, c in sorted(confusion.items())},
        p50_ms=statistics.median(latencies_ms) if latencies_ms else 0.0,
        misses=tuple(misses),
    )


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items) if items else 0.0


def markdown_table(reports: Mapping[str, RoutingReport]) -> str:
    """One row per router: micro and macro top-1, any-correct, mean knowledge bases searched, p50 latency."""
    lines = [
        "| router | n | top-1 | any-correct | macro top-1 | macro any-correct | mean KBs searched | p50 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in reports.items():
        lines.append(
            f"| {label} | {r.n} | {r.top1:.3f} | {r.any_correct:.3f} | {r.macro_top1:.3f} | {r.macro_any_correct:.3f}"
            f" | {r.mean_kbs:.2f} | {r.p50_ms:.2f} |"
        )
    return "\n".join(lines)


def per_kb_table(reports: Mapping[str, RoutingReport]) -> str:
    """Top-1 / any-correct per gold knowledge base, one column per router."""
    kbs = sorted({kb for r in reports.values() for kb in r.per_kb})
    header = "| gold KB | n | " + " | ".join(reports) + " |"
    lines = [header, "|---|---:|" + "---:|" * len(reports)]
    for kb in kbs:
        n = next((r.per_kb[kb].n for r in reports.values() if kb in r.per_kb), 0)
        cells = []
        for r in reports.values():
            s = r.per_kb.get(kb)
            cells.append(f"{s.top1:.2f} / {s.any_correct:.2f}" if s else "-")
        lines.append(f"| {kb} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def confusion_table(report: RoutingReport) -> str:
    """Rows: gold knowledge base; columns: the top-1 routed one."""
    routed = sorted({p for row in report.confusion.values() for p in row})
    lines = ["| gold \\ top-1 | " + " | ".join(routed) + " |", "|---|" + "---:|" * len(routed)]
    for gold, row in report.confusion.items():
        lines.append(f"| {gold} | " + " | ".join(str(row.get(p, 0)) for p in routed) + " |")
    return "\n".join(lines)


__all__ = [
    "KbScore",
    "RoutingExample",
    "RoutingReport",
    "confusion_table",
    "embed_questions",
    "evaluate_routing",
    "load_examples",
    "markdown_table",
    "per_kb_table",
    "score_routing",
]
