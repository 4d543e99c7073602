"""The contracts of the retrieval stages that run around hybrid candidate retrieval.

Each stage is chosen by a location string in :class:`~cairn.retrieve.hybrid.RetrievalConfig`
(``rerank="maxsim:"``, ``rewrite="rm3:"`` ...) and built through its registry, so a request, a
knowledge base or a profile can switch stages without code. Stages that need an LLM receive the
configured generator at construction and refuse to build without one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from cairn.registry import Registry
from cairn.types import Hit


@runtime_checkable
class Reranker(Protocol):
    """Re-scores the top fused candidates with a stronger (slower) relevance model."""

    name: str

    def warm_up(self) -> None: ...

    def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        """``hits`` re-ordered best first; each carries ``scores["rerank"]`` and ``score`` set to it."""
        ...


@dataclass(frozen=True, slots=True)
class Rewrite:
    """One more query to retrieve with; its ranked lists are fused with the original's."""

    text: str  # embedded for dense search and, unless ``terms`` is given, analysed for BM25
    terms: Mapping[str, float] | None = None  # weighted BM25 terms in analysed form (e.g. RM3)
    weight: float = 1.0  # weight of this rewrite's lists in the fusion across queries
    source: str = ""  # what produced it ("llm", "rm3", "history"), for the audit record


@runtime_checkable
class QueryRewriter(Protocol):
    """Writes extra queries; pseudo-relevance feedback rewriters read the first-pass hits."""

    name: str
    needs_feedback: bool  # True: ``expand`` wants the first-pass hits, so retrieval runs twice

    def warm_up(self) -> None: ...

    def expand(self, query: str, feedback: Sequence[Hit]) -> list[Rewrite]: ...


@runtime_checkable
class Compressor(Protocol):
    """Keeps only what bears on the question; every kept span is an exact slice of the document."""

    name: str

    def warm_up(self) -> None: ...

    def compress(self, query: str, hits: Sequence[Hit]) -> list[Hit]: ...


@runtime_checkable
class Decomposer(Protocol):
    """Splits a complex question into sub-questions; a simple one comes back as ``[question]``."""

    name: str

    def warm_up(self) -> None: ...

    def decompose(self, question: str) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class KbCard:
    """What a router knows of one knowledge base the caller can read."""

    name: str
    description: str
    centroid: npt.NDArray[np.float32] | None  # (dim,) or (k, dim) unit-length centroids of the chunk embeddings
    chunks: int


@runtime_checkable
class KbRouter(Protocol):
    """Scores the caller's knowledge bases for a query; retrieval searches the chosen ones."""

    name: str

    def warm_up(self) -> None: ...

    def route(self, query: str, query_vector: npt.NDArray[np.float32], cards: Sequence[KbCard]) -> list[str]:
        """Names of the knowledge bases to search, best first (never empty when ``cards`` is not)."""
        ...


RERANKERS: Registry[Reranker] = Registry("reranker")
REWRITERS: Registry[QueryRewriter] = Registry("query rewriter")
COMPRESSORS: Registry[Compressor] = Registry("compressor")
DECOMPOSERS: Registry[Decomposer] = Registry("decomposer")
ROUTERS: Registry[KbRouter] = Registry("knowledge-base router")
