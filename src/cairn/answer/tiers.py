"""Model routing: which generator tier answers a question, and the rule it may never break.

Tiers are ordered cheapest first (a packaged local model, then a vLLM-served open model, then a
premium API). :func:`assess_complexity` scores a question from what the pipeline already knows
(its length and wording, whether it was decomposed, how well retrieval matched, how many documents
the answer must combine) and the router picks the most capable tier whose ``min_complexity`` the
score reaches. :func:`assess_sensitivity` then decides whether the context may leave the premises:
passages readable by fewer than everyone, a knowledge base classified confidential or restricted,
or personal data in the question or the passages keep the answer on ``local`` and ``onprem`` tiers.

The rule is enforced where text is handed to a model, not only where the route is chosen:
:meth:`TierSet.stream_answer` re-checks every attempt, so a forced tier (``--tier``, an A/B
variant) or a fallback cannot carry sensitive context to an external tier. A tier that fails
before producing any text falls back to the next allowed tier; one that fails mid-answer is an
error (its partial text may already be on the way to the user).
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cairn.answer.relevance import evidence
from cairn.answer.templates import PromptTemplate
from cairn.errors import CairnError, ConfigError, InputError, ModelError, ModelUnavailable
from cairn.index.analyzer import Analyzer
from cairn.settings import Classification, Locality, Sensitivity, TierSpec
from cairn.types import Hit, Principal

ON_PREMISES: frozenset[str] = frozenset({"local", "onprem"})
SENSITIVE_CLASSES: frozenset[str] = frozenset({"confidential", "restricted"})
EVERYONE = "group:everyone"
LEVELS = ((0.34, "simple"), (0.67, "moderate"), (1.01, "complex"))

# Weights of the complexity features (sum 1). Reasoning (decomposed or comparative wording) weighs
# most: it is what small models get wrong; weak retrieval and many documents to combine come next.
W_LENGTH, W_REASONING, W_DIFFICULTY, W_SPREAD = 0.2, 0.4, 0.25, 0.15
_LOCAL_SCHEMES = frozenset({"local", "extractive", "fake"})
_HTTP_SCHEMES = frozenset({"openai", "openais", "http", "https"})
_PRIVATE_SUFFIXES = (".local", ".internal", ".lan", ".home.arpa", ".svc", ".cluster.local", ".corp", ".intranet")
_REASONING = re.compile(
    r"\b(compare|comparison|contrast|versus|vs\.?|differences?|differ|trade-?offs?|pros and cons|why|"
    r"explain|analy[sz]e|evaluate|implications?|impact|relationship|step[- ]by[- ]step|both|whereas)\b",
    re.IGNORECASE,
)


def infer_locality(location: str) -> Locality:
    """Where a generator location runs, when the configuration does not say.

    Packaged models are local; an HTTP server on a loopback or private address, or on a host name
    that only resolves inside an organisation (one label, ``.internal``, ``.svc`` ...), is on-prem;
    any other host, and any scheme cairn does not know, is external: unknown means fail closed.
    """
    scheme = location.partition(":")[0].lower()
    if scheme in _LOCAL_SCHEMES:
        return "local"
    if scheme not in _HTTP_SCHEMES:
        return "external"
    host = (urlsplit(location).hostname or "").lower()
    if not host:
        return "external"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "onprem" if host == "localhost" or "." not in host or host.endswith(_PRIVATE_SUFFIXES) else "external"
    return "onprem" if address.is_private or address.is_loopback or address.is_link_local else "external"


# -- the two assessments ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Complexity:
    score: float
    features: dict[str, float]

    @property
    def level(self) -> str:
        return next(name for bound, name in LEVELS if self.score < bound)

    def to_json(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 3),
            "level": self.level,
            "features": {k: round(v, 3) for k, v in self.features.items()},
        }


def assess_complexity(
    question: str, passages: Sequence[Hit], analyzer: Analyzer, *, sub_questions: int = 0
) -> Complexity:
    """A 0..1 score of how hard the question is to answer well (weights above; docs/model-routing.md).

    - length: 8 words or fewer count 0, 40 or more count 1;
    - reasoning: 1 when decomposition split the question, 0.6 for comparative or explanatory wording;
    - difficulty: how far the best passage's evidence (cosine + term coverage) falls short of 0.75;
    - spread: how many distinct documents the passages come from (1 → 0, 4 or more → 1).
    """
    words = len(question.split())
    length = min(1.0, max(0.0, (words - 8) / 32))
    reasoning = 1.0 if sub_questions >= 2 else 0.6 if _REASONING.search(question) else 0.0
    q_terms = set(analyzer.terms(question))
    best = max((evidence(q_terms, hit, analyzer).score for hit in passages), default=0.0)
    difficulty = min(1.0, max(0.0, (0.75 - best) / 0.4))
    documents = len({hit.document_id for hit in passages})
    spread = min(1.0, max(0.0, (documents - 1) / 3))
    score = W_LENGTH * length + W_REASONING * reasoning + W_DIFFICULTY * difficulty + W_SPREAD * spread
    features = {"length": length, "reasoning": reasoning, "difficulty": difficulty, "spread": spread}
    return Complexity(score=min(1.0, score), features=features)


@dataclass(frozen=True, slots=True)
class SensitivityVerdict:
    """Why the context of an answer must stay on the premises (empty: it may leave).

    ``assessed`` is False when no tier could take the context out (every tier is local or on-prem):
    the assessment is then skipped, because it could not change the route.
    """

    reasons: tuple[str, ...] = ()
    assessed: bool = True

    @property
    def sensitive(self) -> bool:
        return bool(self.reasons)


def assess_sensitivity(
    question: str,
    passages: Sequence[Hit],
    *,
    signals: Sequence[Sensitivity],
    readers: Callable[[Sequence[int]], Mapping[int, Sequence[str]]],
    classification: Mapping[str, Classification],
    find_pii: Callable[[str], Sequence[str]] | None,
) -> SensitivityVerdict:
    """The reasons the context is sensitive, among the configured ``signals``.

    ``readers(chunk_ids)`` returns the readers (``group:…``/``user:…`` tokens) of each passage's
    document; a passage it cannot account for counts as restricted (fail closed).
    """
    reasons: list[str] = []
    if "acl" in signals and passages:
        known = readers([hit.chunk_id for hit in passages])
        if any(EVERYONE not in known.get(hit.chunk_id, ()) for hit in passages):
            reasons.append("acl")
    if "kb" in signals and any(classification.get(hit.kb) in SENSITIVE_CLASSES for hit in passages):
        reasons.append("kb")
    if "pii" in signals and find_pii is not None:
        kinds = sorted({kind for text in (question, *(h.text for h in passages)) for kind in find_pii(text)})
        reasons += [f"pii:{kind}" for kind in kinds]
    return SensitivityVerdict(tuple(reasons))


# -- the route ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tier:
    """A configured tier with its resolved location and locality."""

    name: str
    location: str
    locality: Locality
    min_complexity: float = 0.0
    prompt_cost_per_1k: float = 0.0
    completion_cost_per_1k: float = 0.0

    @property
    def on_premises(self) -> bool:
        return self.locality in ON_PREMISES

    def cost(self, tokens: Mapping[str, int]) -> float:
        return (
            tokens.get("prompt", 0) * self.prompt_cost_per_1k
            + tokens.get("completion", 0) * self.completion_cost_per_1k
        ) / 1000.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "location": self.location,
            "locality": self.locality,
            "min_complexity": self.min_complexity,
            "prompt_cost_per_1k": self.prompt_cost_per_1k,
            "completion_cost_per_1k": self.completion_cost_per_1k,
        }


def resolve_tiers(specs: Sequence[TierSpec], default_generator: str) -> tuple[Tier, ...]:
    """The tiers of a configuration; no tiers configured means one tier, the ``generator`` setting."""
    if not specs:
        return (Tier("default", default_generator, infer_locality(default_generator)),)
    tiers = []
    for i, spec in enumerate(specs):
        location = spec.generator or (default_generator if i == 0 else "")
        if not location:
            raise ConfigError(f"tier {spec.name!r} has no generator", hint="only the first tier may omit it")
        tiers.append(
            Tier(
                name=spec.name,
                location=location,
                locality=spec.locality or infer_locality(location),
                min_complexity=spec.min_complexity,
                prompt_cost_per_1k=spec.prompt_cost_per_1k,
                completion_cost_per_1k=spec.completion_cost_per_1k,
            )
        )
    return tuple(tiers)


@dataclass(slots=True)
class Route:
    """The routing decision for one answer and, once generated, what it cost (``record`` is audited)."""

    complexity: Complexity
    sensitivity: SensitivityVerdict
    chosen: str | None
    order: tuple[str, ...]
    forced: str | None = None
    used: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    tokens: dict[str, int] = field(default_factory=dict)
    cost: float = 0.0

    def record(self) -> dict[str, Any]:
        return {
            "tier": self.used,
            "chosen": self.chosen,
            "forced": self.forced,
            "order": list(self.order),
            "complexity": self.complexity.to_json(),
            "sensitive": self.sensitivity.sensitive if self.sensitivity.assessed else None,
            "sensitivity": list(self.sensitivity.reasons),
            "attempts": list(self.attempts),
            "tokens": dict(self.tokens),
            "cost": round(self.cost, 8),
        }


class TierRouter:
    """Picks the attempt order of tiers for one answer; pure, so it is tested on its own."""

    def __init__(self, tiers: Sequence[Tier]) -> None:
        if not tiers:
            raise ConfigError("model routing needs at least one tier")
        self.tiers = tuple(tiers)
        self.by_name = {t.name: t for t in self.tiers}

    def route(self, complexity: Complexity, sensitivity: SensitivityVerdict, *, force: str | None = None) -> Route:
        """Attempt order: the chosen tier, then the more capable ones, then the cheaper ones (nearest first).

        Tiers the context may not reach are left out of the order altogether; a forced tier the
        context may not reach is replaced by the routed choice (recorded as ``forced``).
        """
        if force is not None and force not in self.by_name:
            raise InputError(f"unknown tier {force!r}", hint=f"configured: {', '.join(self.by_name)}")
        allowed = [i for i, t in enumerate(self.tiers) if t.on_premises or not sensitivity.sensitive]
        if not allowed:
            return Route(complexity, sensitivity, chosen=None, order=(), forced=force)
        eligible = [i for i in allowed if self.tiers[i].min_complexity <= complexity.score] or allowed[:1]
        start = eligible[-1]
        if force is not None and self.by_name[force] in (self.tiers[i] for i in allowed):
            start = next(i for i in allowed if self.tiers[i].name == force)
        above = [i for i in allowed if i > start]
        below = sorted((i for i in allowed if i < start), reverse=True)
        order = tuple(self.tiers[i].name for i in (start, *above, *below))
        return Route(complexity, sensitivity, chosen=order[0], order=order, forced=force)


Readers = Callable[[Principal, Sequence[int]], Mapping[int, Sequence[str]]]


class TierSet:
    """The tiers of a deployment with their answerers, built on first use (a premium tier that is
    never routed to never opens a client), and the assessments that route between them."""

    def __init__(
        self,
        tiers: Sequence[Tier],
        build: Callable[[Tier], Any],
        *,
        analyzer: Analyzer,
        signals: Sequence[Sensitivity] = (),
        classification: Mapping[str, Classification] | None = None,
        readers: Readers | None = None,
        find_pii: Callable[[str], Sequence[str]] | None = None,
    ) -> None:
        if "acl" in signals and readers is None:
            raise ConfigError("the `acl` sensitivity signal needs a way to read passages' readers")
        self.router = TierRouter(tiers)
        self.analyzer = analyzer
        self.signals = tuple(signals)
        self.classification = dict(classification or {})
        self._readers = readers
        self._find_pii = find_pii
        self._build = build
        self._answerers: dict[str, Any] = {}

    @property
    def single(self) -> bool:
        """One tier and nothing to assess: routing cannot change anything."""
        return len(self.router.tiers) == 1 and not self.signals

    def route(
        self,
        question: str,
        passages: Sequence[Hit],
        principal: Principal,
        *,
        sub_questions: int = 0,
        force: str | None = None,
    ) -> Route:
        complexity = assess_complexity(question, passages, self.analyzer, sub_questions=sub_questions)
        if all(tier.on_premises for tier in self.router.tiers):
            return self.router.route(complexity, SensitivityVerdict(assessed=False), force=force)
        readers = self._readers

        def passage_readers(ids: Sequence[int]) -> Mapping[int, Sequence[str]]:
            return readers(principal, ids) if readers is not None else {}

        sensitivity = assess_sensitivity(
            question,
            passages,
            signals=self.signals,
            readers=passage_readers,
            classification=self.classification,
            find_pii=self._find_pii,
        )
        return self.router.route(complexity, sensitivity, force=force)

    @property
    def tiers(self) -> tuple[Tier, ...]:
        return self.router.tiers

    def answerer(self, name: str) -> Any:
        if name not in self._answerers:
            self._answerers[name] = self._build(self.router.by_name[name])
        return self._answerers[name]

    def stream_answer(
        self, route: Route, question: str, passages: Sequence[Hit], template: PromptTemplate | None = None
    ) -> Iterator[str]:
        """Stream the answer from the first tier of ``route`` that works; fills in the route's outcome.

        ``template``: the request's prompt template (an experiment's variant), given to whichever tier answers.
        """
        prompt = {} if template is None else {"template": template}
        failures: list[str] = []
        for name in route.order:
            tier = self.router.by_name[name]
            if route.sensitivity.sensitive and not tier.on_premises:
                # Unreachable through TierRouter; kept so that no other route can carry the context out.
                raise ModelUnavailable(f"tier {name!r} is {tier.locality}: sensitive context may not reach it")
            answerer = self.answerer(name)
            started = time.perf_counter()
            produced = False
            try:
                for piece in answerer.stream_answer(question, passages, **prompt):
                    produced = produced or bool(piece)
                    yield piece
            except CairnError as exc:
                if produced or not isinstance(exc, ModelError):
                    raise
                route.attempts.append(_attempt(name, started, error=exc.message))
                failures.append(f"{name}: {exc.message}")
                continue
            tokens = dict(getattr(answerer, "usage", {}) or {})
            route.used = name
            route.tokens = {"prompt": int(tokens.get("prompt", 0)), "completion": int(tokens.get("completion", 0))}
            route.cost = tier.cost(route.tokens)
            route.attempts.append(_attempt(name, started))
            return
        raise ModelUnavailable(
            "no model tier could answer: " + "; ".join(failures),
            hint="check the tiers' servers (cairn tiers list) or configure a fallback tier",
        )


def _attempt(name: str, started: float, *, error: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"tier": name, "ms": round((time.perf_counter() - started) * 1000.0, 1)}
    if error is not None:
        out["error"] = error[:300]
    return out


__all__ = [
    "Complexity",
    "Route",
    "Tier",
    "TierRouter",
    "TierSet",
    "assess_complexity",
    "assess_sensitivity",
    "infer_locality",
    "resolve_tiers",
]
