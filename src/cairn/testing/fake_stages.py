"""Deterministic retrieval stages under the ``fake`` scheme, for testing the pipeline around them.

Each records what it was given (``calls``), so a test can check that a stage never saw a passage
its caller may not read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from urllib.parse import parse_qs

import numpy as np
import numpy.typing as npt

from cairn.retrieve.base import (
    COMPRESSORS,
    DECOMPOSERS,
    RERANKERS,
    REWRITERS,
    ROUTERS,
    Compressor,
    Decomposer,
    KbCard,
    KbRouter,
    QueryRewriter,
    Reranker,
    Rewrite,
)
from cairn.types import Hit


def _options(location: str) -> dict[str, list[str]]:
    return parse_qs(location.partition("?")[2])


class _Recorder:
    name = "fake"

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Hit, ...]]] = []

    def warm_up(self) -> None:
        """Nothing to load."""


class ReverseReranker(_Recorder):
    """Scores each hit by its position from the end: the re-ranked order is the input reversed."""

    def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        self.calls.append((query, tuple(hits)))
        n = len(hits)
        out = [
            replace(h, score=float(i + 1) / n, scores={**h.scores, "rerank": float(i + 1) / n})
            for i, h in enumerate(hits)
        ]
        return out[::-1]


class FixedRewriter(_Recorder):
    """Adds the queries given as ``?q=...`` (repeatable); ``?feedback=1`` asks for the first-pass hits."""

    def __init__(self, queries: list[str], needs_feedback: bool) -> None:
        super().__init__()
        self.queries = queries
        self.needs_feedback = needs_feedback

    def expand(self, query: str, feedback: Sequence[Hit]) -> list[Rewrite]:
        self.calls.append((query, tuple(feedback)))
        return [Rewrite(text=q, weight=1.0, source="fake") for q in self.queries]


class SemicolonDecomposer(_Recorder):
    """Splits a question at semicolons."""

    def decompose(self, question: str) -> list[str]:
        parts = [p.strip() for p in question.split(";") if p.strip()]
        return parts or [question]


class NameRouter(_Recorder):
    """Routes to the knowledge bases whose name appears in the query, else to all."""

    def __init__(self) -> None:
        super().__init__()
        self.offered: list[list[str]] = []

    def route(self, query: str, query_vector: npt.NDArray[np.float32], cards: Sequence[KbCard]) -> list[str]:
        self.offered.append([c.name for c in cards])
        named = [c.name for c in cards if c.name.lower() in query.lower()]
        return named or [c.name for c in cards]


class FirstSentenceCompressor(_Recorder):
    """Keeps each hit's first sentence (up to and including the first '. '), an exact slice."""

    def compress(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        self.calls.append((query, tuple(hits)))
        out = []
        for h in hits:
            cut = h.text.find(". ")
            end = len(h.text) if cut < 0 else cut + 1
            out.append(replace(h, text=h.text[:end], end=h.start + end))
        return out


@RERANKERS.register("fake")
def _reranker(location: str, **_: object) -> Reranker:
    return ReverseReranker()


@REWRITERS.register("fake")
def _rewriter(location: str, **_: object) -> QueryRewriter:
    options = _options(location)
    return FixedRewriter(options.get("q", []), options.get("feedback", ["0"])[-1] == "1")


@DECOMPOSERS.register("fake")
def _decomposer(location: str, **_: object) -> Decomposer:
    return SemicolonDecomposer()


@ROUTERS.register("fake")
def _router(location: str, **_: object) -> KbRouter:
    return NameRouter()


@COMPRESSORS.register("fake")
def _compressor(location: str, **_: object) -> Compressor:
    return FirstSentenceCompressor()
