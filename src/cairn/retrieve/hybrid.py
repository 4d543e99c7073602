"""Hybrid retrieval: BM25 and dense top-k from Postgres, fused, optionally diversified with MMR.

All reads of one query run in a single REPEATABLE READ snapshot, so a document being re-indexed
is seen either entirely old or entirely new, never mixed; the caller's readable ACL ids are
computed in that same snapshot and restrict every statement.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from cairn.errors import InputError
from cairn.index.access import access_for
from cairn.index.analyzer import Analyzer
from cairn.index.db import Database
from cairn.index.search import BM25Params, Filters, bm25_search, fetch_hits, vector_search
from cairn.index.store import IndexStore, kb_ids
from cairn.models.base import Embedder
from cairn.retrieve.fusion import convex, min_max, ranked, rrf
from cairn.retrieve.mmr import mmr_order
from cairn.settings import Settings
from cairn.types import Hit, Principal

Mode = Literal["hybrid", "bm25", "dense"]


@dataclass(frozen=True, slots=True)
class RetrievalConfig:
    mode: Mode = "hybrid"
    candidates: int = 100
    top_k: int = 5
    fusion: Literal["rrf", "convex"] = "convex"
    alpha: float = 0.5
    rrf_k: int = 60
    mmr: bool = False
    mmr_lambda: float = 0.7
    ef_search: int = 200
    bm25: BM25Params = field(default_factory=BM25Params)

    def __post_init__(self) -> None:
        if not 1 <= self.top_k <= 1000 or not 1 <= self.candidates <= 1000:
            raise InputError("top_k and candidates must be between 1 and 1000")
        if not 0 <= self.alpha <= 1 or not 0 <= self.mmr_lambda <= 1:
            raise InputError("alpha and mmr_lambda must be between 0 and 1")

    @classmethod
    def from_settings(cls, settings: Settings) -> RetrievalConfig:
        return cls(
            candidates=settings.candidates,
            top_k=settings.top_k,
            fusion=settings.fusion,
            alpha=settings.fusion_alpha,
            rrf_k=settings.rrf_k,
            mmr=settings.mmr,
            mmr_lambda=settings.mmr_lambda,
            ef_search=settings.hnsw_ef_search,
            bm25=BM25Params(settings.bm25_k1, settings.bm25_b),
        )

    def with_(self, **changes: object) -> RetrievalConfig:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Retrieval:
    query: str
    hits: list[Hit]
    timings_ms: dict[str, float]
    audit_id: int | None = None


class HybridRetriever:
    """Cheap to build; the embedder and database start on first use (or ``warm_up``)."""

    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        *,
        config: RetrievalConfig | None = None,
        analyzer: Analyzer | None = None,
    ) -> None:
        self.db = db
        self.embedder = embedder
        self.config = config or RetrievalConfig()
        self.analyzer = analyzer or Analyzer()
        self.store = IndexStore(db, self.analyzer)
        self._checked_embedder = False

    def warm_up(self) -> None:
        self.db.warm_up()
        self.embedder.warm_up()

    def _check_embedder(self) -> None:
        if not self._checked_embedder:
            self.store.check_embedder(self.embedder.name, self.embedder.dim)
            self._checked_embedder = True

    def search(
        self,
        query: str,
        kbs: Sequence[str],
        config: RetrievalConfig | None = None,
        *,
        principal: Principal,
        filters: Filters | None = None,
    ) -> Retrieval:
        cfg = config or self.config
        query = query.strip()
        if not query:
            raise InputError("the query is empty")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        self.embedder.warm_up()
        self._check_embedder()
        terms = self.analyzer.terms(query)
        qvec = self.embedder.embed_query(query)
        timings["embed_query"] = _ms(t0)
        dim = int(qvec.shape[-1])
        pool = cfg.top_k * 4 if cfg.mmr else cfg.top_k
        with self.db.connection(principal) as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            access = access_for(conn, principal)
            kbs_searched = kb_ids(conn, list(kbs), access)
            lists: dict[str, list[tuple[int, float]]] = {}
            t1 = time.perf_counter()
            if cfg.mode in ("hybrid", "bm25"):
                lists["bm25"] = bm25_search(conn, kbs_searched, terms, cfg.candidates, cfg.bm25, filters, access=access)
            timings["bm25"] = _ms(t1)
            t2 = time.perf_counter()
            if cfg.mode in ("hybrid", "dense"):
                lists["dense"] = vector_search(
                    conn,
                    kbs_searched,
                    qvec,
                    cfg.candidates,
                    dim=dim,
                    ef_search=cfg.ef_search,
                    filters=filters,
                    access=access,
                )
            timings["dense"] = _ms(t2)
            fused = _fuse(lists, cfg)
            top = fused[: max(pool, cfg.top_k)]
            t3 = time.perf_counter()
            rows = fetch_hits(
                conn, [i for i, _ in top], access=access, query_vector=qvec, dim=dim, with_embeddings=cfg.mmr
            )
            timings["fetch"] = _ms(t3)
        per_list = {name: dict(items) for name, items in lists.items()}
        hits = []
        for chunk_id, score in top:
            if chunk_id not in rows:
                continue
            hit, _ = rows[chunk_id]
            scores = dict(hit.scores)
            for name, values in per_list.items():
                if chunk_id in values:
                    scores[name] = values[chunk_id]
            hits.append(replace(hit, score=score, scores=scores))
        if cfg.mmr and hits:
            vectors = np.stack([np.asarray(rows[h.chunk_id][1], dtype=np.float32) for h in hits])
            rel = min_max([(i, h.score) for i, h in enumerate(hits)])
            order = mmr_order([rel[i] for i in range(len(hits))], vectors, cfg.top_k, lam=cfg.mmr_lambda)
            hits = [hits[i] for i in order]
        timings["retrieve_total"] = _ms(t0)
        return Retrieval(query=query, hits=hits[: cfg.top_k], timings_ms=timings)


def _fuse(lists: dict[str, list[tuple[int, float]]], cfg: RetrievalConfig) -> list[tuple[int, float]]:
    if len(lists) == 1:
        return next(iter(lists.values()))
    if cfg.fusion == "rrf":
        return ranked(rrf(lists, k=cfg.rrf_k))
    return ranked(convex(lists, {"dense": cfg.alpha, "bm25": 1.0 - cfg.alpha}))


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
