"""Builds the retrieval stages named in a config once, and keeps them for the next query.

Stages are heavy (models, HTTP clients), configs are per request: the cache is keyed by the
location string, so two requests that ask for the same re-ranker share one instance.
"""

from __future__ import annotations

import threading
from typing import Any, TypeVar

from cairn.index.analyzer import Analyzer
from cairn.models.base import Embedder, Generator
from cairn.registry import Registry
from cairn.retrieve.base import (
    COMPRESSORS,
    DECOMPOSERS,
    RERANKERS,
    REWRITERS,
    ROUTERS,
    Compressor,
    Decomposer,
    KbRouter,
    QueryRewriter,
    Reranker,
)

T = TypeVar("T")


class StageSet:
    def __init__(
        self,
        *,
        embedder: Embedder,
        analyzer: Analyzer,
        generator: Generator | None = None,
        settings: Any = None,
    ) -> None:
        self.embedder = embedder
        self.analyzer = analyzer
        self.generator = generator
        self.settings = settings
        self._built: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()

    def _get(self, registry: Registry[T], location: str) -> T:
        key = (registry.kind, location)
        with self._lock:
            stage = self._built.get(key)
            if stage is None:
                stage = registry.create(
                    location,
                    embedder=self.embedder,
                    analyzer=self.analyzer,
                    generator=self.generator,
                    settings=self.settings,
                )
                self._built[key] = stage
        return stage  # type: ignore[return-value]

    def reranker(self, location: str) -> Reranker:
        return self._get(RERANKERS, location)

    def rewriter(self, location: str) -> QueryRewriter:
        return self._get(REWRITERS, location)

    def compressor(self, location: str) -> Compressor:
        return self._get(COMPRESSORS, location)

    def decomposer(self, location: str) -> Decomposer:
        return self._get(DECOMPOSERS, location)

    def router(self, location: str) -> KbRouter:
        return self._get(ROUTERS, location)
