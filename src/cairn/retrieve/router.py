"""Knowledge-base routing: with several knowledge bases, search only the ones a query is about.

Backends, chosen by location through :data:`~cairn.retrieve.base.ROUTERS`; each scores the
:class:`~cairn.retrieve.base.KbCard` s it is given (only knowledge bases the caller can read, see
:mod:`cairn.index.kb_cards`) and returns names, best first, never an empty list.

``centroid:?description=0.25&margin=0.05&max_kbs=3``
    Cosine of the query with each knowledge base's closest centroid, mixed with its cosine to the
    embedded description (weight ``description``: 0 = centroids only, 1 = description only); the
    best knowledge base and every one within ``margin`` of its score, at most ``max_kbs``.
``llm:?max_kbs=2&shortlist=8``
    The generator picks from the names and descriptions (of the ``shortlist`` best by centroid
    when there are more); an unusable reply or a failed call falls back to ``centroid:``, which
    takes the same options (``description``, ``margin``).
``all:``
    Federate: every knowledge base (best first by centroid); the retriever fuses the results.

A knowledge base without a description is described by its name (``hr-policies`` -> "hr
policies"); one without chunks has no centroid and is scored by its description alone. The
defaults were chosen on the dev half of bench/routing.py (16 centroids per knowledge base).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qs

import numpy as np
import numpy.typing as npt

from cairn.errors import CairnError, ConfigError
from cairn.models.base import Embedder, Generator
from cairn.retrieve.base import ROUTERS, KbCard, KbRouter
from cairn.types import ChatMessage

log = logging.getLogger(__name__)

ROUTE_VERSION = "route-v1"
ROUTE_SYSTEM = (
    "You route questions to knowledge bases. Given a question and a list of knowledge bases with their "
    "descriptions, reply with the name of the knowledge base most likely to answer it; if the question needs "
    "several, list up to {max_kbs} names, best first, separated by commas. Reply with names from the list only."
)
MAX_DESCRIPTION_CHARS = 400
_NO_SCORE = -2.0  # below any cosine: a card with neither a centroid nor a description


def describe(card: KbCard) -> str:
    """The text embedded for a card: its description, or its name spelt as words."""
    text = " ".join(card.description.split())
    if text:
        return text[:MAX_DESCRIPTION_CHARS]
    return re.sub(r"[-_.]+", " ", card.name).strip()


class CentroidRouter:
    """Scores each card by ``(1 - w) * cos(q, centroid) + w * cos(q, description)``; see the module docstring.

    Description vectors are embedded on first use and cached by text (a changed description is a
    new entry), so routing costs a few dot products per query.
    """

    name = "centroid"

    def __init__(
        self,
        embedder: Embedder | None,
        *,
        description: float = 0.25,
        margin: float = 0.05,
        max_kbs: int = 3,
        max_cached: int = 4096,
    ) -> None:
        if not 0 <= description <= 1:
            raise ConfigError(f"centroid router: description weight must be in 0..1, got {description:g}")
        if not 0 <= margin <= 2:
            raise ConfigError(f"centroid router: margin must be in 0..2, got {margin:g}")
        if max_kbs < 1:
            raise ConfigError(f"centroid router: max_kbs must be at least 1, got {max_kbs}")
        if description > 0 and embedder is None:
            raise ConfigError("centroid router: scoring descriptions needs an embedder")
        self.embedder = embedder
        self.description = description
        self.margin = margin
        self.max_kbs = max_kbs
        self.max_cached = max_cached
        self._vectors: dict[str, npt.NDArray[np.float32]] = {}
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        if self.embedder is not None and self.description > 0:
            self.embedder.warm_up()

    def _description_vectors(self, cards: Sequence[KbCard]) -> list[npt.NDArray[np.float32]]:
        texts = [describe(c) for c in cards]
        with self._lock:
            missing = sorted({t for t in texts if t not in self._vectors})
        if missing:
            assert self.embedder is not None
            vectors = self.embedder.embed_documents(missing)
            with self._lock:
                if len(self._vectors) + len(missing) > self.max_cached:
                    self._vectors.clear()
                for text, vector in zip(missing, vectors, strict=True):
                    self._vectors[text] = np.asarray(vector, dtype=np.float32)
        with self._lock:
            return [self._vectors[t] for t in texts]

    def scores(self, query_vector: npt.NDArray[np.float32], cards: Sequence[KbCard]) -> dict[str, float]:
        """The score of each card's knowledge base for the query (higher is better).

        A card whose ``centroid`` holds several rows (``(k, dim)``, see :mod:`cairn.index.kb_cards`)
        scores by its closest one.
        """
        q = _unit(query_vector)
        w = self.description
        descriptions = self._description_vectors(cards) if w > 0 and cards else [None] * len(cards)
        out: dict[str, float] = {}
        for card, d_vec in zip(cards, descriptions, strict=True):
            c_score = _cos(q, card.centroid) if card.centroid is not None else None
            d_score = _cos(q, d_vec) if d_vec is not None else None
            if c_score is not None and d_score is not None:
                score = (1 - w) * c_score + w * d_score
            elif c_score is not None and w < 1:
                score = c_score
            elif d_score is not None:
                score = d_score
            else:
                score = c_score if c_score is not None else _NO_SCORE
            out[card.name] = score
        return out

    def route(self, query: str, query_vector: npt.NDArray[np.float32], cards: Sequence[KbCard]) -> list[str]:
        if len(cards) <= 1:
            return [c.name for c in cards]
        return choose(self.scores(query_vector, cards), margin=self.margin, max_kbs=self.max_kbs)


def choose(scores: Mapping[str, float], *, margin: float, max_kbs: int) -> list[str]:
    """The best name and every one within ``margin`` of it, best first, at most ``max_kbs`` (ties by name)."""
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    if not ranked:
        return []
    best = ranked[0][1]
    return [name for name, score in ranked if score >= best - margin][:max_kbs]


class LLMRouter:
    """The generator reads the names and descriptions and names the knowledge bases to search.

    Names are found in the reply wherever they appear (a small model adds words around them),
    best first by position; none found, or a failed call, falls back to the centroid router.
    The question is the caller's, so it may try to steer the choice: harmless, since only
    knowledge bases the caller can read are ever offered, and the search is filtered anyway.
    """

    def __init__(
        self,
        generator: Generator,
        fallback: CentroidRouter,
        *,
        max_kbs: int = 2,
        shortlist: int = 8,
        max_tokens: int = 24,
    ) -> None:
        if max_kbs < 1 or shortlist < 2:
            raise ConfigError("llm router: max_kbs must be at least 1 and shortlist at least 2")
        self.generator = generator
        self.fallback = fallback
        self.max_kbs = max_kbs
        self.shortlist = shortlist
        self.max_tokens = max_tokens
        self.name = f"llm:{generator.name}"
        self.fallbacks = 0  # how many queries the centroid router answered instead

    def warm_up(self) -> None:
        self.generator.warm_up()
        self.fallback.warm_up()

    def route(self, query: str, query_vector: npt.NDArray[np.float32], cards: Sequence[KbCard]) -> list[str]:
        if len(cards) <= 1:
            return [c.name for c in cards]
        offered = list(cards)
        if len(offered) > self.shortlist:
            scores = self.fallback.scores(query_vector, offered)
            keep = set(choose(scores, margin=2.0, max_kbs=self.shortlist))
            offered = [c for c in offered if c.name in keep]
        try:
            reply = self.generator.generate(
                route_messages(query, offered, self.max_kbs), max_tokens=self.max_tokens, temperature=0.0
            ).text
        except CairnError as exc:
            log.warning("knowledge-base routing by LLM failed, using centroids: %s", exc.message)
            reply = ""
        names = parse_kb_names(reply, [c.name for c in offered])[: self.max_kbs]
        if names:
            return names
        self.fallbacks += 1
        return self.fallback.route(query, query_vector, cards)


def route_messages(query: str, cards: Sequence[KbCard], max_kbs: int) -> list[ChatMessage]:
    listing = "\n".join(f"- {c.name}: {describe(c)}" for c in cards)
    return [
        ChatMessage("system", ROUTE_SYSTEM.format(max_kbs=max_kbs)),
        ChatMessage("user", f"Knowledge bases:\n{listing}\n\nQuestion: {' '.join(query.split())}\nKnowledge base:"),
    ]


def parse_kb_names(reply: str, names: Sequence[str]) -> list[str]:
    """The known ``names`` mentioned in ``reply``, by first position (case-insensitive, whole names only).

    A name that is part of a longer name also mentioned there (``hr`` inside ``hr-archive``) counts
    only where it stands alone.
    """
    text = reply.lower()
    found: list[tuple[int, str]] = []
    for name in sorted(names, key=len, reverse=True):
        pattern = re.compile(r"(?<![\w.-])" + re.escape(name.lower()) + r"(?![\w-]|\.\w)")
        for m in pattern.finditer(text):
            if not any(start <= m.start() < start + len(other) for start, other in found):
                found.append((m.start(), name))
                break
    return [name for _, name in sorted(found)]


class FederatedRouter:
    """Searches every knowledge base; the retriever fuses the results. Ordered by centroid when known."""

    name = "all"

    def warm_up(self) -> None:
        pass

    def route(self, query: str, query_vector: npt.NDArray[np.float32], cards: Sequence[KbCard]) -> list[str]:
        q = _unit(query_vector)
        keyed = [(-(_cos(q, c.centroid) if c.centroid is not None else _NO_SCORE), c.name) for c in cards]
        return [name for _, name in sorted(keyed)]


def _unit(vector: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def _cos(q: npt.NDArray[np.float32], other: npt.NDArray[np.float32]) -> float:
    """Cosine of ``q`` with ``other``, or with the closest row when ``other`` holds several centroids."""
    rows = np.atleast_2d(np.asarray(other, dtype=np.float32))
    if rows.shape[-1] != q.shape[0]:
        raise ConfigError(
            f"a knowledge-base vector has {rows.shape[-1]} dimensions, the query {q.shape[0]}",
            hint="the centroids were built by another embedder; re-ingest or clear the cache",
        )
    norms = np.linalg.norm(rows, axis=1)
    norms[norms == 0] = 1.0
    return float(np.max((rows @ q) / norms))


# -- registry --------------------------------------------------------------------------------------
_CENTROID_OPTIONS = {"description": (0.0, 1.0), "margin": (0.0, 2.0), "max_kbs": (1.0, 100.0)}


def _options(location: str, allowed: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    rest = location.partition(":")[2] if ":" in location else ""
    path, _, query = rest.partition("?")
    if path.strip():
        raise ConfigError(
            f"unexpected {path!r} in {location!r}", hint="options go after '?', e.g. 'centroid:?margin=0.05'"
        )
    out: dict[str, float] = {}
    for key, values in parse_qs(query, keep_blank_values=True).items():
        if key not in allowed:
            raise ConfigError(f"unknown option {key!r} in {location!r}", hint=f"known: {', '.join(sorted(allowed))}")
        try:
            value = float(values[-1])
        except ValueError as exc:
            raise ConfigError(f"option {key!r} in {location!r} is not a number") from exc
        lo, hi = allowed[key]
        if not lo <= value <= hi or (key in ("max_kbs", "shortlist") and not value.is_integer()):
            raise ConfigError(f"option {key!r} in {location!r} must be in {lo:g}..{hi:g}, got {values[-1]}")
        out[key] = value
    return out


def _centroid_router(options: Mapping[str, float], embedder: Embedder | None, max_kbs_default: int) -> CentroidRouter:
    return CentroidRouter(
        embedder,
        description=options.get("description", 0.25),
        margin=options.get("margin", 0.05),
        max_kbs=int(options.get("max_kbs", max_kbs_default)),
    )


@ROUTERS.register("centroid")
def _centroid(location: str, *, embedder: Embedder | None = None, **_: object) -> KbRouter:
    return _centroid_router(_options(location, _CENTROID_OPTIONS), embedder, 3)


@ROUTERS.register("llm")
def _llm(
    location: str, *, generator: Generator | None = None, embedder: Embedder | None = None, **_: object
) -> KbRouter:
    if generator is None:
        raise ConfigError(
            f"the router {location!r} needs an LLM generator, and only the extractive answerer is configured",
            hint="set CAIRN_GENERATOR to a model (e.g. 'local:qwen2.5-1.5b-instruct'), or route with 'centroid:'",
        )
    options = _options(location, {**_CENTROID_OPTIONS, "shortlist": (2.0, 100.0)})
    max_kbs = int(options.get("max_kbs", 2))
    return LLMRouter(
        generator,
        _centroid_router(options, embedder, max_kbs),
        max_kbs=max_kbs,
        shortlist=int(options.get("shortlist", 8)),
    )


@ROUTERS.register("all")
def _all(location: str, **_: object) -> KbRouter:
    _options(location, {})
    return FederatedRouter()


__all__ = [
    "ROUTE_SYSTEM",
    "ROUTE_VERSION",
    "CentroidRouter",
    "FederatedRouter",
    "LLMRouter",
    "choose",
    "describe",
    "parse_kb_names",
    "route_messages",
]
