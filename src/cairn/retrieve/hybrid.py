"""Retrieval: hybrid candidates (BM25 + dense, fused) and the stages around them.

The pipeline, each stage optional and named in :class:`RetrievalConfig`:
decompose -> route knowledge bases -> candidates per (sub-)question and rewrite (+ graph list)
-> fuse -> re-rank the top N -> MMR -> small-to-big parents -> contextual compression.

All reads of one query run in a single REPEATABLE READ snapshot, so a document being re-indexed
is seen either entirely old or entirely new, never mixed; the caller's readable ACL ids are
computed in that same snapshot and restrict every statement, the stages' included.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import psycopg

from cairn.errors import InputError
from cairn.index.access import Access, access_for
from cairn.index.analyzer import Analyzer
from cairn.index.db import Database
from cairn.index.kb_cards import CentroidCache, kb_cards
from cairn.index.search import BM25Params, Filters, bm25_search, fetch_hits, vector_search
from cairn.index.store import IndexStore, kb_ids
from cairn.models.base import Embedder, Generator
from cairn.retrieve.base import Rewrite
from cairn.retrieve.fusion import convex, min_max, ranked, rrf
from cairn.retrieve.mmr import mmr_order
from cairn.retrieve.stages import StageSet
from cairn.settings import Settings
from cairn.types import Hit, Principal

log = logging.getLogger(__name__)
Ranked = list[tuple[int, float]]

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
    # Stages around candidate retrieval: a location string turns one on ("", "off" or None = off).
    decompose: str | None = None  # split complex questions: "heuristic:", "llm:"
    route: str | None = None  # choose among every readable KB (kbs ["*"]): "centroid:", "llm:", "all:"
    rewrite: str | None = None  # more queries, fused: "rm3:", "llm:?n=3"
    graph: float = 0.0  # weight of the knowledge-graph list in the fusion (0 = off)
    graph_hops: int = 1  # graph neighbours of the question's entities also bring their chunks (0 = direct only)
    rerank: str | None = None  # re-score the top rerank_depth candidates: "maxsim:", "tei://host"
    rerank_depth: int = 30
    parents: int = 0  # small-to-big: return the enclosing section, up to this many characters (0 = off)
    compress: str | None = None  # keep the sentences that bear on the question: "embedding:", "llm:"
    profile: str = "default"  # the named profile this config came from (recorded in the audit trail)

    def __post_init__(self) -> None:
        if not 1 <= self.top_k <= 1000 or not 1 <= self.candidates <= 1000:
            raise InputError("top_k and candidates must be between 1 and 1000")
        if not 0 <= self.alpha <= 1 or not 0 <= self.mmr_lambda <= 1:
            raise InputError("alpha and mmr_lambda must be between 0 and 1")
        if not 1 <= self.rerank_depth <= 1000 or self.parents < 0 or not 0 <= self.graph <= 1:
            raise InputError("rerank_depth must be 1..1000, parents >= 0 and graph between 0 and 1")
        if not 0 <= self.graph_hops <= 2:
            raise InputError("graph_hops must be 0, 1 or 2")
        for name in ("decompose", "route", "rewrite", "rerank", "compress"):
            value = getattr(self, name)
            if value is not None and value.strip().lower() in ("", "off", "none"):
                object.__setattr__(self, name, None)

    @classmethod
    def from_settings(cls, settings: Settings, profile: str | None = None) -> RetrievalConfig:
        """The settings' config with a named profile (default: the settings' own) laid over it."""
        from cairn.retrieve.profiles import profile_changes

        name = profile or settings.profile
        base = cls(
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
        return replace(base, profile=name, **profile_changes(name))

    def with_(self, **changes: object) -> RetrievalConfig:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Retrieval:
    query: str
    hits: list[Hit]
    timings_ms: dict[str, float]
    audit_id: int | None = None
    trace: dict[str, Any] = field(default_factory=dict)  # what the stages did: sub-questions, rewrites, routed kbs


class HybridRetriever:
    """Cheap to build; the embedder, database and stages start on first use (or ``warm_up``)."""

    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        *,
        config: RetrievalConfig | None = None,
        analyzer: Analyzer | None = None,
        generator: Generator | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.db = db
        self.embedder = embedder
        self.config = config or RetrievalConfig()
        self.analyzer = analyzer or Analyzer()
        self.store = IndexStore(db, self.analyzer)
        self.stages = StageSet(embedder=embedder, analyzer=self.analyzer, generator=generator, settings=settings)
        self.centroids = CentroidCache(db)  # what the knowledge-base router compares queries with
        self._checked_embedder = False

    def warm_up(self) -> None:
        self.db.warm_up()
        self.embedder.warm_up()
        cfg = self.config
        if cfg.rerank:
            self.stages.reranker(cfg.rerank).warm_up()
        if cfg.compress:
            self.stages.compressor(cfg.compress).warm_up()

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
        trace: dict[str, Any] = {}
        t0 = time.perf_counter()
        self.embedder.warm_up()
        self._check_embedder()
        questions = [query]
        if cfg.decompose:
            t = time.perf_counter()
            parts = [p for p in self.stages.decomposer(cfg.decompose).decompose(query) if p.strip()]
            if len(parts) > 1:
                # The whole question keeps its own list: documents that compare the parts answer it best.
                questions = [query, *[p for p in parts if p != query]]
                trace["sub_questions"] = questions[1:]
            timings["decompose"] = _ms(t)
        qvec = self.embedder.embed_query(query)
        qvectors = [qvec, *(self.embedder.embed_query(q) for q in questions[1:])]
        timings["embed_query"] = _ms(t0)
        dim = int(qvec.shape[-1])
        pool = cfg.top_k * 4 if cfg.mmr else cfg.top_k
        if cfg.rerank:
            pool = max(pool, cfg.rerank_depth)
        with self.db.connection(principal) as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            access = access_for(conn, principal)
            kbs_searched = kb_ids(conn, list(kbs), access)
            if cfg.route and "*" in kbs and len(kbs_searched) > 1:
                kbs_searched = self._route(conn, cfg.route, questions, qvectors, kbs_searched, access, timings, trace)
            scope = _Scope(conn, kbs_searched, access, filters, dim)
            rankings = [
                self._question_ranking(scope, question, vector, cfg, timings, trace)
                for question, vector in zip(questions, qvectors, strict=True)
            ]
            fused = rankings[0] if len(rankings) == 1 else _interleave(rankings)
            top = fused[: max(pool, cfg.top_k)]
            t3 = time.perf_counter()
            rows = fetch_hits(
                conn, [i for i, _ in top], access=access, query_vector=qvec, dim=dim, with_embeddings=cfg.mmr
            )
            timings["fetch"] = _ms(t3)
            hits = _hydrate(top, rows, scope.scores)
            if cfg.rerank and hits:
                t = time.perf_counter()
                depth = min(cfg.rerank_depth, len(hits))
                hits = self.stages.reranker(cfg.rerank).rerank(query, hits[:depth]) + hits[depth:]
                timings["rerank"] = _ms(t)
            if cfg.mmr and hits:
                vectors = np.stack([np.asarray(rows[h.chunk_id][1], dtype=np.float32) for h in hits])
                rel = min_max([(i, h.score) for i, h in enumerate(hits)])
                order = mmr_order([rel[i] for i in range(len(hits))], vectors, cfg.top_k, lam=cfg.mmr_lambda)
                hits = [hits[i] for i in order]
            hits = hits[: cfg.top_k]
            if cfg.parents and hits:
                from cairn.retrieve.parents import parent_hits

                t = time.perf_counter()
                hits = parent_hits(conn, hits, access=access, max_chars=cfg.parents)
                timings["parents"] = _ms(t)
        if cfg.compress and hits:
            t = time.perf_counter()
            hits = self.stages.compressor(cfg.compress).compress(query, hits)
            timings["compress"] = _ms(t)
        timings["retrieve_total"] = _ms(t0)
        return Retrieval(query=query, hits=hits, timings_ms=timings, trace=trace)

    def _route(
        self,
        conn: psycopg.Connection,
        location: str,
        questions: Sequence[str],
        vectors: Sequence[npt.NDArray[np.float32]],
        ids: list[int],
        access: Access,
        timings: dict[str, float],
        trace: dict[str, Any],
    ) -> list[int]:
        """The knowledge bases the whole question or any of its parts is routed to, best first."""
        t = time.perf_counter()
        cards = kb_cards(conn, ids, access=access, centroids=self.centroids)
        by_name = {card.name: i for card, i in zip(cards, ids, strict=True)}
        router = self.stages.router(location)
        routes = [router.route(q, v, cards) for q, v in zip(questions, vectors, strict=True)]
        chosen = list(dict.fromkeys(n for route in routes for n in route if n in by_name))
        timings["route"] = _ms(t)
        trace["routed_kbs"] = chosen
        return [by_name[n] for n in chosen] or ids

    def _question_ranking(
        self,
        scope: _Scope,
        question: str,
        qvec: npt.NDArray[np.float32],
        cfg: RetrievalConfig,
        timings: dict[str, float],
        trace: dict[str, Any],
    ) -> Ranked:
        """One question's fused ranking: its own lists, its rewrites' lists and the graph list."""
        lists = self._candidates(scope, self.analyzer.terms(question), qvec, cfg, timings)
        if cfg.graph > 0:
            from cairn.retrieve.graph import graph_candidates

            t = time.perf_counter()
            lists["graph"] = graph_candidates(
                scope.conn,
                question,
                scope.kb_ids,
                access=scope.access,
                analyzer=self.analyzer,
                limit=cfg.candidates,
                hops=cfg.graph_hops,
            )
            timings["graph"] = timings.get("graph", 0.0) + _ms(t)
        fused = _fuse(lists, cfg)
        if not cfg.rewrite:
            return fused
        rewriter = self.stages.rewriter(cfg.rewrite)
        feedback: list[Hit] = []
        t = time.perf_counter()
        if rewriter.needs_feedback and fused:
            head = fused[:20]
            rows = fetch_hits(scope.conn, [i for i, _ in head], access=scope.access)
            feedback = _hydrate(head, rows, scope.scores)
        rewrites = rewriter.expand(question, feedback)
        timings["rewrite"] = timings.get("rewrite", 0.0) + _ms(t)
        trace.setdefault("rewrites", []).extend(_describe(r) for r in rewrites)
        runs: list[tuple[Ranked, float]] = [(fused, 1.0)]
        for rewrite in rewrites:
            same_text = rewrite.text.strip() == question
            vector = qvec if same_text else self.embedder.embed_query(rewrite.text)
            terms: Sequence[str] | dict[str, float] = (
                dict(rewrite.terms) if rewrite.terms is not None else self.analyzer.terms(rewrite.text)
            )
            extra = self._candidates(scope, terms, vector, cfg, timings)
            runs.append((_fuse(extra, cfg), rewrite.weight))
        return _combine(runs)

    def _candidates(
        self,
        scope: _Scope,
        terms: Sequence[str] | dict[str, float],
        qvec: npt.NDArray[np.float32],
        cfg: RetrievalConfig,
        timings: dict[str, float],
    ) -> dict[str, Ranked]:
        lists: dict[str, Ranked] = {}
        t1 = time.perf_counter()
        if cfg.mode in ("hybrid", "bm25"):
            lists["bm25"] = bm25_search(
                scope.conn, scope.kb_ids, terms, cfg.candidates, cfg.bm25, scope.filters, access=scope.access
            )
            scope.note("bm25", lists["bm25"])
        timings["bm25"] = timings.get("bm25", 0.0) + _ms(t1)
        t2 = time.perf_counter()
        if cfg.mode in ("hybrid", "dense"):
            lists["dense"] = vector_search(
                scope.conn,
                scope.kb_ids,
                qvec,
                cfg.candidates,
                dim=scope.dim,
                ef_search=cfg.ef_search,
                filters=scope.filters,
                access=scope.access,
            )
            scope.note("dense", lists["dense"])
        timings["dense"] = timings.get("dense", 0.0) + _ms(t2)
        return lists


@dataclass
class _Scope:
    """The one snapshot, caller and knowledge bases every list of a query is drawn from."""

    conn: psycopg.Connection
    kb_ids: list[int]
    access: Access
    filters: Filters | None
    dim: int
    scores: dict[int, dict[str, float]] = field(default_factory=dict)

    def note(self, name: str, items: Ranked) -> None:
        """Keep each chunk's best score per list, shown with the hit (first query's list wins ties)."""
        for chunk_id, score in items:
            mine = self.scores.setdefault(chunk_id, {})
            if score > mine.get(name, float("-inf")):
                mine[name] = score


def _hydrate(top: Ranked, rows: dict[int, tuple[Hit, Any]], scores: dict[int, dict[str, float]]) -> list[Hit]:
    hits = []
    for chunk_id, score in top:
        if chunk_id not in rows:
            continue
        hit, _ = rows[chunk_id]
        hits.append(replace(hit, score=score, scores={**hit.scores, **scores.get(chunk_id, {})}))
    return hits


def _combine(runs: Sequence[tuple[Ranked, float]]) -> Ranked:
    """Weighted sum of each query's min-max normalised fused scores (absent = 0)."""
    total = sum(w for _, w in runs) or 1.0
    fused: dict[int, float] = {}
    for ranking, weight in runs:
        for item, score in min_max(ranking).items():
            fused[item] = fused.get(item, 0.0) + weight * score / total
    return ranked(fused)


def _interleave(rankings: Sequence[Ranked]) -> Ranked:
    """Round-robin over the whole question's and each sub-question's ranking, so every part is represented."""
    seen: set[int] = set()
    order: list[int] = []
    for rank in range(max(len(r) for r in rankings)):
        for ranking in rankings:
            if rank < len(ranking) and ranking[rank][0] not in seen:
                seen.add(ranking[rank][0])
                order.append(ranking[rank][0])
    n = len(order)
    return [(item, float(n - i) / n) for i, item in enumerate(order)]


def _describe(rewrite: Rewrite) -> dict[str, Any]:
    out: dict[str, Any] = {"text": rewrite.text, "weight": rewrite.weight, "source": rewrite.source}
    if rewrite.terms is not None:
        top = sorted(rewrite.terms.items(), key=lambda kv: -kv[1])[:10]
        out["terms"] = {k: round(v, 4) for k, v in top}
    return out


def _fuse(lists: dict[str, Ranked], cfg: RetrievalConfig) -> Ranked:
    lists = {name: items for name, items in lists.items() if items or name != "graph"}
    if len(lists) == 1:
        return next(iter(lists.values()))
    if cfg.fusion == "rrf":
        return ranked(rrf(lists, k=cfg.rrf_k, weights={"graph": cfg.graph}))
    dense = cfg.alpha if cfg.mode == "hybrid" else 1.0
    bm25 = 1.0 - cfg.alpha if cfg.mode == "hybrid" else 1.0
    return ranked(convex(lists, {"dense": dense, "bm25": bm25, "graph": cfg.graph}))


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
