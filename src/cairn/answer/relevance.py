"""Is any retrieved passage relevant enough to answer from? Decided before any LLM is called.

The evidence is the dense cosine between question and passage (a calibrated, query-independent
scale, unlike BM25 or fused scores) and how much of the question's vocabulary the passage covers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cairn.index.analyzer import Analyzer
from cairn.types import Hit


@dataclass(frozen=True, slots=True)
class Evidence:
    cosine: float
    coverage: float

    @property
    def score(self) -> float:
        return 0.5 * self.cosine + 0.5 * self.coverage


def evidence(q_terms: set[str], hit: Hit, analyzer: Analyzer) -> Evidence:
    """The evidence that ``hit`` answers a question whose analysed terms are ``q_terms``."""
    coverage = len(q_terms & set(analyzer.terms(hit.text))) / len(q_terms) if q_terms else 0.0
    return Evidence(cosine=float(hit.scores.get("cosine", 0.0)), coverage=coverage)


def relevant_hits(question: str, hits: Sequence[Hit], analyzer: Analyzer, threshold: float) -> list[Hit]:
    """The hits whose evidence clears ``threshold``, in their original order."""
    q_terms = set(analyzer.terms(question))
    return [h for h in hits if evidence(q_terms, h, analyzer).score >= threshold]
