"""Re-ranking: re-score the top fused candidates with a stronger (slower) relevance model.

A re-ranker gets the first ``N`` hits of hybrid retrieval and returns them re-ordered. Backends,
chosen by location through :data:`~cairn.retrieve.base.RERANKERS`:

==========================================  =========================================================
``tei://host:8080``                          Text Embeddings Inference ``POST /rerank`` (cross-encoder)
``infinity://host:7997?model=NAME``          Infinity ``POST /rerank``
``vllm://host:8000?model=NAME``              vLLM ``POST /v1/rerank``
``cohere://api.cohere.com/v2?model=NAME``    Cohere v2 ``POST /rerank`` (HTTPS)
``http(s)://host/path[?api=tei]``            any server: Cohere-style body at ``path/rerank`` (Jina,
                                             llama.cpp server, LocalAI ...), or TEI's with ``api=tei``
``splade:``                                  SPLADE-tiny (offline, numpy), blended with the fused score
``maxsim:``                                  late-interaction MaxSim over MiniLM token states (offline)
==========================================  =========================================================

See :mod:`cairn.retrieve.rerank_http` and :mod:`cairn.retrieve.rerank_local`. Each returned hit keeps
every field of its input; ``score`` and ``scores["rerank"]`` hold the re-ranker's final score,
``scores["fused"]`` the first-stage score it replaced, and the raw model score is kept under the
backend's own key (``scores["cross_encoder"]``, ``scores["splade"]`` ...).

Local models are weak next to a served cross-encoder, so they *blend*: ``weight * model + (1 - weight)
* fused``, both min-max normalised over the candidates (the same normalisation as convex fusion).
A served cross-encoder defaults to ``weight=1`` (its score alone).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from urllib.parse import parse_qs

from cairn.errors import ConfigError, ModelError
from cairn.models.base import LazyModel
from cairn.types import Hit

RERANK_KEY = "rerank"
FUSED_KEY = "fused"


class BaseReranker(LazyModel):
    """Blends, sorts and annotates; a backend writes ``_score`` (one raw relevance per hit) and ``_load``."""

    name: str = "reranker"
    score_key: str = "model"  # the ``scores`` key of the raw model score

    def __init__(self, *, weight: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= weight <= 1.0:
            raise ConfigError(f"re-ranker weight must be between 0 and 1, got {weight}")
        self.weight = weight
        self.last_ms = 0.0  # duration of the last ``rerank`` call, for timings and benchmarks

    def _score(self, query: str, hits: Sequence[Hit]) -> list[float]:
        raise NotImplementedError

    def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        t0 = time.perf_counter()
        if not hits:
            self.last_ms = 0.0
            return []
        self.warm_up()
        raw = self._score(query, hits)
        if len(raw) != len(hits):
            raise ModelError(f"re-ranker {self.name} scored {len(raw)} of {len(hits)} passages")
        final = blend(raw, [h.score for h in hits], self.weight)
        out = apply_scores(hits, final, extra={self.score_key: raw})
        self.last_ms = (time.perf_counter() - t0) * 1000.0
        return out


def blend(model: Sequence[float], fused: Sequence[float], weight: float) -> list[float]:
    """``weight * minmax(model) + (1 - weight) * minmax(fused)``; ``weight == 1`` keeps the raw model scores."""
    if weight >= 1.0:
        return [float(s) for s in model]
    m, f = _min_max(model), _min_max(fused)
    return [weight * a + (1.0 - weight) * b for a, b in zip(m, f, strict=True)]


def _min_max(values: Sequence[float]) -> list[float]:
    lo, hi = min(values), max(values)
    if hi - lo <= 1e-12:
        return [1.0] * len(values)  # as convex fusion does: a list of equals gives no order
    return [(float(v) - lo) / (hi - lo) for v in values]


def apply_scores(hits: Sequence[Hit], final: Sequence[float], *, extra: Mapping[str, Sequence[float]]) -> list[Hit]:
    """Hits best first by ``final`` (ties keep the input order); every other field unchanged."""
    out: list[Hit] = []
    for i, hit in enumerate(hits):
        scores = dict(hit.scores)
        scores.setdefault(FUSED_KEY, float(hit.score))
        for key, values in extra.items():
            scores[key] = float(values[i])
        scores[RERANK_KEY] = float(final[i])
        out.append(replace(hit, score=float(final[i]), scores=scores))
    order = sorted(range(len(out)), key=lambda i: -out[i].score)
    return [out[i] for i in order]


def passage_text(hit: Hit) -> str:
    """The passage as a relevance model should read it: its title and section path, then its text.

    The same rule as the embedder's contextual header (``cairn.ingest.sync.embedding_text``): a
    header part already present at the start of the chunk is not repeated.
    """
    header = [h for h in (hit.title, *hit.heading_path) if h and h not in hit.text[: len(h) + 200]]
    return " > ".join(dict.fromkeys(header)) + "\n" + hit.text if header else hit.text


def local_options(location: str, allowed: frozenset[str]) -> tuple[str, dict[str, str]]:
    """``scheme:[name][?k=v&...]`` -> (name, options); unknown options are refused."""
    rest = location.partition(":")[2]
    name, _, query = rest.partition("?")
    options = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} in {location!r}", hint=f"allowed: {', '.join(sorted(allowed))}"
        )
    return name.strip().strip("/"), options


def float_option(options: Mapping[str, str], key: str, default: float, low: float, high: float) -> float:
    raw = options.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"option {key}={raw!r} is not a number") from exc
    if not low <= value <= high:
        raise ConfigError(f"option {key}={value:g} is outside {low:g}..{high:g}")
    return value


def int_option(options: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    value = float_option(options, key, default, low, high)
    if value != int(value):
        raise ConfigError(f"option {key}={value:g} is not an integer")
    return int(value)


__all__ = [
    "FUSED_KEY",
    "RERANK_KEY",
    "BaseReranker",
    "apply_scores",
    "blend",
    "float_option",
    "int_option",
    "local_options",
    "passage_text",
]
