"""Metrics and traces of the pipeline: what each interaction cost, stage by stage, and how it ended.

Three pieces, each usable alone:

:class:`PipelineMetrics`
    Prometheus counters and histograms in a registry of their own (the server exposes it at
    ``/metrics`` next to its HTTP metrics). They are read off the records the pipeline already
    returns (:class:`~cairn.retrieve.hybrid.Retrieval`, :class:`~cairn.types.Answer`,
    :class:`~cairn.ingest.sync.SyncReport`), so nothing in the stages has to know about them.
    Every label takes few values (stage, kind, outcome, model, guard, status): never a user, a
    question or a document, which would make a series per request.
:func:`trace_interaction`
    One OpenTelemetry span per interaction with a child span per stage. The stages already time
    themselves (``timings_ms``); the spans are built after the fact from those measured durations,
    laid out in the order the stages run (:func:`stage_spans`). Durations are exact, positions are
    reconstructed: stages that run several times (``bm25`` and ``dense`` once per sub-question and
    rewrite) appear as one span with their summed time. The alternative, a live span around each
    stage, would put tracing calls inside every stage for no better figure.
:class:`Telemetry`
    Both of the above behind the calls the interactions make (``observe_answer`` and so on); it
    never raises, so telemetry cannot fail an answer.

Without the OpenTelemetry SDK (only the API, which cairn depends on) every tracing call is a
no-op. :func:`configure_tracing` installs the SDK's batch exporter when the standard
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set and ``cairn[otel]`` is installed.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cairn import __version__
from cairn.ops.drift.metrics import DriftGauges

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.trace import Span, Tracer, TracerProvider
    from opentelemetry.util.types import AttributeValue

    from cairn.ingest.sync import SyncReport
    from cairn.ops.drift.report import DriftReport
    from cairn.retrieve.hybrid import Retrieval
    from cairn.types import Answer

log = logging.getLogger(__name__)

TRACER_NAME = "cairn"
KINDS = ("search", "ask", "chat")  # anything else is counted as "other"
OUTCOMES = ("answered", "refused", "blocked")
REFUSAL_REASONS = ("no_passages", "model", "grounding", "sensitive")
SENSITIVITY_REASONS = ("acl", "kb", "pii")
CACHE_RESULTS = ("hit_exact", "hit_semantic", "miss")
GROUNDING_VERDICTS = ("grounded", "partial", "unsupported")
INGEST_STATUSES = ("added", "updated", "unchanged", "deleted", "skipped", "error")
ANSWER_GUARDS = frozenset({"pii", "output"})  # the guards GuardSet runs on answers; the rest judge questions

# The stages of a retrieval in the order they run (cairn.retrieve.hybrid). ``embed_query`` is timed
# from the start of the search (it includes the decomposition), so its span starts there too.
RETRIEVAL_STAGES: tuple[str, ...] = (
    "decompose",
    "embed_query",
    "route",
    "bm25",
    "dense",
    "graph",
    "rewrite",
    "fetch",
    "rerank",
    "parents",
    "compress",
)
FROM_RETRIEVAL_START = frozenset({"embed_query"})
# Answer stages around the retrieval. ``condense`` is the chat-history rewrite of the question.
BEFORE_RETRIEVAL = ("condense",)
AFTER_RETRIEVAL = ("route_model", "generate")
TOTALS = {"retrieve_total": "retrieve", "total": "total"}  # timing key -> stage label

STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
INGEST_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0)
RATIO_BUCKETS = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)

_STAGE_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")
_MAX_LABEL = 64

P = ParamSpec("P")
R = TypeVar("R")


# -- labels ------------------------------------------------------------------------------------


def _one_of(value: object, allowed: Sequence[str], default: str = "other") -> str:
    text = str(value)
    return text if text in allowed else default


def _bounded(value: object, default: str = "none") -> str:
    """A free-form label from configuration (a model, a guard name), cut to a sane length."""
    text = " ".join(str(value or "").split())[:_MAX_LABEL]
    return text or default


def stage_label(key: str) -> str | None:
    """The ``stage`` label of a timing key: totals renamed, malformed keys dropped (None)."""
    if key in TOTALS:
        return TOTALS[key]
    return key if _STAGE_KEY.fullmatch(key) else None


def _durations(timings: Mapping[str, float]) -> dict[str, float]:
    """Timing keys that name a stage, with finite non-negative milliseconds."""
    out: dict[str, float] = {}
    for key, value in timings.items():
        try:
            ms = float(value)
        except (TypeError, ValueError):
            continue
        if _STAGE_KEY.fullmatch(key) and math.isfinite(ms) and ms >= 0:
            out[key] = ms
    return out


def guard_stage(verdict: Mapping[str, Any]) -> str:
    """Where a flagged verdict of ``Answer.guards`` was raised: question, passage or answer."""
    stage = verdict.get("stage")
    if stage in ("question", "passage", "answer"):
        return str(stage)
    if "chunk_id" in verdict:
        return "passage"
    return "answer" if verdict.get("guard") in ANSWER_GUARDS else "question"


def refusal_reason(answer: Answer) -> str:
    """Why an answer was refused: nothing usable was found, the model declined, the grounding check, or
    sensitive context with no local or on-prem tier to answer it."""
    if answer.grounding and answer.grounding.get("action") == "refused":
        return "grounding"
    if answer.route and answer.route.get("tier") is None and answer.route.get("sensitive"):
        return "sensitive"
    return "model" if answer.model else "no_passages"


# -- metrics -----------------------------------------------------------------------------------


class PipelineMetrics:
    """The pipeline's Prometheus metrics, registered on ``registry`` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.stage_seconds = Histogram(
            "cairn_stage_duration_seconds",
            "Time spent in each pipeline stage (retrieve and total are the wholes).",
            ["stage", "kind"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.answers = Counter(
            "cairn_answers",
            "Interactions by kind and outcome (answered, refused, blocked).",
            ["kind", "outcome"],
            registry=r,
        )
        self.refusals = Counter(
            "cairn_refusals",
            "Refused answers by reason (no_passages, model, grounding).",
            ["kind", "reason"],
            registry=r,
        )
        self.empty = Counter(
            "cairn_retrievals_empty", "Searches and answers whose retrieval found no passage.", ["kind"], registry=r
        )
        self.tokens = Counter(
            "cairn_tokens",
            "LLM tokens by model and direction (prompt, completion).",
            ["model", "direction"],
            registry=r,
        )
        self.tier_answers = Counter(
            "cairn_tier_answers",
            "Answers generated by each model tier (refusals by the model included).",
            ["tier"],
            registry=r,
        )
        self.tier_tokens = Counter(
            "cairn_tier_tokens",
            "LLM tokens by model tier and direction (prompt, completion).",
            ["tier", "direction"],
            registry=r,
        )
        self.tier_cost = Counter(
            "cairn_tier_cost",
            "Spend by model tier, in the currency of the tiers' configured prices.",
            ["tier"],
            registry=r,
        )
        self.tier_failures = Counter(
            "cairn_tier_failures",
            "Failed tier attempts (error or timeout before any text), each a fallback.",
            ["tier"],
            registry=r,
        )
        self.route_sensitive = Counter(
            "cairn_route_sensitive",
            "Answers whose context was kept on local/on-prem tiers, by reason (acl, kb, pii).",
            ["reason"],
            registry=r,
        )
        self.route_complexity = Histogram(
            "cairn_route_complexity", "Complexity score of routed questions.", buckets=RATIO_BUCKETS, registry=r
        )
        self.grounding_checks = Counter(
            "cairn_grounding_checks", "Answers checked for groundedness, by verdict.", ["verdict"], registry=r
        )
        self.grounding_failures = Counter(
            "cairn_grounding_failures",
            "Answers with unsupported claims, by what the policy did (kept, removed, refused).",
            ["action"],
            registry=r,
        )
        self.supported_ratio = Histogram(
            "cairn_grounding_supported_ratio",
            "Share of an answer's claims the passages support.",
            buckets=RATIO_BUCKETS,
            registry=r,
        )
        self.guard_detections = Counter(
            "cairn_guard_detections",
            "Flagged guard verdicts by guard and stage (question, passage, answer).",
            ["guard", "stage"],
            registry=r,
        )
        self.cache = Counter(
            "cairn_answer_cache", "Answer cache lookups (hit_exact, hit_semantic, miss).", ["result"], registry=r
        )
        self.cache_saved = Counter(
            "cairn_answer_cache_saved_seconds", "Pipeline time the answer cache saved.", registry=r
        )
        self.feedback = Counter("cairn_feedback", "Feedback on answers by vote (up, down, none).", ["vote"], registry=r)
        self.feedback_flags = Counter("cairn_feedback_flags", "Answers flagged by their recipients.", registry=r)
        self.feedback_corrections = Counter("cairn_feedback_corrections", "Corrections given to answers.", registry=r)
        self.ingest_runs = Counter(
            "cairn_ingest_runs", "Ingestion runs (a folder sync, an upload), ok or with errors.", ["result"], registry=r
        )
        self.ingest_files = Counter(
            "cairn_ingest_files", "Files seen by ingestion, by status (error: failed to load).", ["status"], registry=r
        )
        self.ingest_pages = Counter("cairn_ingest_pages", "Pages of the files added or updated.", registry=r)
        self.ingest_chunks = Counter(
            "cairn_ingest_chunks", "Chunks written for the files added or updated.", registry=r
        )
        self.ingest_seconds = Histogram(
            "cairn_ingest_duration_seconds", "Duration of an ingestion run.", buckets=INGEST_BUCKETS, registry=r
        )
        self.ingest_last = Gauge(
            "cairn_ingest_last_run_timestamp_seconds", "When the last ingestion run ended (Unix time).", registry=r
        )
        self.drift = DriftGauges(r)  # set from drift reports (docs/drift.md), never on a scrape

    def observe_timings(self, timings: Mapping[str, float], kind: str) -> None:
        kind = _one_of(kind, KINDS)
        for key, ms in _durations(timings).items():
            stage = stage_label(key)
            if stage is not None:
                self.stage_seconds.labels(stage, kind).observe(ms / 1000)

    def observe_retrieval(self, retrieval: Retrieval, kind: str = "search") -> None:
        """A search (for an answer's retrieval use :meth:`observe_answer`: its timings include it)."""
        self.observe_timings(retrieval.timings_ms, kind)
        if not retrieval.hits:
            self.empty.labels(_one_of(kind, KINDS)).inc()

    def observe_answer(self, answer: Answer, kind: str = "ask") -> None:
        kind = _one_of(kind, KINDS)
        self.observe_timings(answer.timings_ms, kind)
        self.answers.labels(kind, "refused" if answer.refused else "answered").inc()
        if answer.refused:
            self.refusals.labels(kind, refusal_reason(answer)).inc()
        if not answer.searched:
            self.empty.labels(kind).inc()
        model = _bounded(answer.model)
        for direction in ("prompt", "completion"):
            count = answer.tokens.get(direction, 0)
            if isinstance(count, int | float) and count > 0:
                self.tokens.labels(model, direction).inc(count)
        if answer.grounding:
            verdict = _one_of(answer.grounding.get("verdict"), GROUNDING_VERDICTS)
            self.grounding_checks.labels(verdict).inc()
            ratio = answer.grounding.get("supported_ratio")
            if isinstance(ratio, int | float) and 0 <= ratio <= 1:
                self.supported_ratio.observe(ratio)
            if verdict != "grounded":
                action = _one_of(answer.grounding.get("action"), ("kept", "removed", "refused"))
                self.grounding_failures.labels(action).inc()
        self.observe_guards(answer.guards)
        if answer.route:
            self.observe_route(answer.route)

    def observe_route(self, route: Mapping[str, Any]) -> None:
        """The model route of an answer (``Route.record()``): tier use, tokens, cost, fallbacks, sensitivity."""
        tier = route.get("tier")
        if tier is not None:
            label = _bounded(tier)
            self.tier_answers.labels(label).inc()
            tokens = route.get("tokens") or {}
            for direction in ("prompt", "completion"):
                count = tokens.get(direction, 0)
                if isinstance(count, int | float) and count > 0:
                    self.tier_tokens.labels(label, direction).inc(count)
            cost = route.get("cost")
            if isinstance(cost, int | float) and math.isfinite(cost) and cost > 0:
                self.tier_cost.labels(label).inc(cost)
        for attempt in route.get("attempts") or ():
            if attempt.get("error"):
                self.tier_failures.labels(_bounded(attempt.get("tier"))).inc()
        for reason in {str(r).partition(":")[0] for r in route.get("sensitivity") or ()}:
            self.route_sensitive.labels(_one_of(reason, SENSITIVITY_REASONS)).inc()
        score = (route.get("complexity") or {}).get("score")
        if isinstance(score, int | float) and 0 <= score <= 1:
            self.route_complexity.observe(score)

    def observe_guards(self, verdicts: Iterable[Mapping[str, Any]], stage: str | None = None) -> None:
        """Flagged verdicts (``GuardVerdict.to_json()``); ``stage`` overrides the inferred one."""
        for verdict in verdicts:
            if verdict.get("flagged", True):
                where = stage or guard_stage(verdict)
                self.guard_detections.labels(_bounded(verdict.get("guard")), where).inc()

    def observe_blocked(self, kind: str, verdicts: Iterable[Mapping[str, Any]] = ()) -> None:
        """A question a guard refused under a ``block`` policy: no retrieval, no answer."""
        self.answers.labels(_one_of(kind, KINDS), "blocked").inc()
        self.observe_guards(verdicts, stage="question")

    def observe_cache(self, result: str, saved_ms: float = 0.0) -> None:
        """An answer cache lookup; ``saved_ms``: the pipeline time a hit spared (the original's total)."""
        self.cache.labels(_one_of(result, CACHE_RESULTS)).inc()
        if result.startswith("hit") and math.isfinite(saved_ms) and saved_ms > 0:
            self.cache_saved.inc(saved_ms / 1000)

    def observe_feedback(self, vote: int | None, *, flag: bool = False, correction: bool = False) -> None:
        self.feedback.labels("up" if vote and vote > 0 else "down" if vote and vote < 0 else "none").inc()
        if flag:
            self.feedback_flags.inc()
        if correction:
            self.feedback_corrections.inc()

    def observe_ingest(self, report: SyncReport) -> None:
        self.ingest_runs.labels("ok" if report.ok else "errors").inc()
        for status in INGEST_STATUSES:
            count = sum(1 for f in report.files if f.status == status)
            if count:
                self.ingest_files.labels(status).inc(count)
        self.ingest_pages.inc(report.pages)
        self.ingest_chunks.inc(report.chunks)
        if math.isfinite(report.seconds) and report.seconds >= 0:
            self.ingest_seconds.observe(report.seconds)
        self.ingest_last.set(time.time())


# -- traces ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StageSpan:
    """A stage placed on the interaction's time line: milliseconds from the interaction's start."""

    name: str
    parent: str | None  # the enclosing stage span; None: the interaction span
    start_ms: float
    end_ms: float


def stage_spans(timings: Mapping[str, float]) -> list[StageSpan]:
    """Stage spans in start order, each parent before its children, from measured durations.

    Retrieval stages nest in a ``retrieve`` span and follow the order they run in; an answer's
    ``condense`` comes before it and ``generate`` after it. Keys this module does not know are laid
    after the known ones: inside ``retrieve`` for a retrieval's timings (no ``total``), else after
    ``generate``.
    """
    t = _durations(timings)
    is_answer = "total" in t or "generate" in t
    known = {*RETRIEVAL_STAGES, *BEFORE_RETRIEVAL, *AFTER_RETRIEVAL, *TOTALS}
    unknown = [k for k in t if k not in known]
    spans: list[StageSpan] = []
    cursor = 0.0
    for key in BEFORE_RETRIEVAL:
        if key in t:
            spans.append(StageSpan(key, None, cursor, cursor + t[key]))
            cursor += t[key]
    inner = [k for k in RETRIEVAL_STAGES if k in t] + ([] if is_answer else unknown)
    if inner or "retrieve_total" in t:
        start, children = cursor, []
        for key in inner:
            begin = start if key in FROM_RETRIEVAL_START else cursor
            children.append(StageSpan(key, "retrieve", begin, begin + t[key]))
            cursor = max(cursor, begin + t[key])
        end = max(start + t.get("retrieve_total", 0.0), cursor)
        spans += [StageSpan("retrieve", None, start, end), *children]
        cursor = end
    for key in [*AFTER_RETRIEVAL, *(unknown if is_answer else [])]:
        if key in t:
            spans.append(StageSpan(key, None, cursor, cursor + t[key]))
            cursor += t[key]
    return spans


def interaction_ms(timings: Mapping[str, float], spans: Sequence[StageSpan] = ()) -> float:
    """The interaction's length: its measured total, or the end of its last stage if that is later."""
    t = _durations(timings)
    total = t.get("total", t.get("retrieve_total", 0.0))
    return max([total, *(s.end_ms for s in spans)])


def _ns(ms: float) -> int:
    return round(ms * 1_000_000)


def _attributes(values: Mapping[str, Any] | None) -> dict[str, AttributeValue]:
    """Span attributes OpenTelemetry accepts: scalars and lists of strings; None dropped."""
    out: dict[str, AttributeValue] = {}
    for key, value in (values or {}).items():
        if isinstance(value, str | bool | int | float):
            out[key] = value
        elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            out[key] = [str(v) for v in value]
        elif value is not None:
            out[key] = str(value)
    return out


def get_tracer(provider: TracerProvider | None = None) -> Tracer:
    """cairn's tracer from ``provider``, else from the global provider (a no-op until one is set)."""
    from opentelemetry import trace

    return trace.get_tracer(TRACER_NAME, __version__, tracer_provider=provider)


def trace_interaction(
    kind: str,
    timings: Mapping[str, float],
    attributes: Mapping[str, Any] | None = None,
    *,
    end_ns: int | None = None,
    tracer: Tracer | None = None,
) -> None:
    """Emit the span ``cairn.<kind>`` ending at ``end_ns`` (now) and a child span per timed stage.

    The span is a child of the current span, if any (an HTTP request's, or one opened with
    :func:`span`). Stage spans carry ``cairn.reconstructed = true``: see :func:`stage_spans`.
    """
    from opentelemetry import trace

    tracer = tracer or get_tracer()
    spans = stage_spans(timings)
    end = end_ns if end_ns is not None else time.time_ns()
    start = end - _ns(interaction_ms(timings, spans))
    attrs = {"cairn.kind": kind, **_attributes(attributes)}
    root = tracer.start_span(f"cairn.{_one_of(kind, KINDS)}", start_time=start, attributes=attrs)
    if root.is_recording():
        made: dict[str | None, Span] = {None: root}
        for stage in spans:
            child = tracer.start_span(
                f"cairn.{stage.name}",
                context=trace.set_span_in_context(made[stage.parent]),
                start_time=start + _ns(stage.start_ms),
                attributes={
                    "cairn.stage": stage.name,
                    "cairn.duration_ms": round(stage.end_ms - stage.start_ms, 3),
                    "cairn.reconstructed": True,
                },
            )
            made[stage.name] = child
            child.end(end_time=start + _ns(stage.end_ms))
    root.end(end_time=end)


@contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None, *, tracer: Tracer | None = None) -> Iterator[Span]:
    """A live span, current inside the block: wrap a whole request or job so stage spans nest in it."""
    with (tracer or get_tracer()).start_as_current_span(name, attributes=_attributes(attributes)) as current:
        yield current


# -- the exporter ------------------------------------------------------------------------------


def _traces_url(env: Mapping[str, str], endpoint: str | None) -> str | None:
    """The OTLP/HTTP traces URL: ``endpoint`` as given, the signal variable, or the base URL + /v1/traces."""
    if endpoint:
        return endpoint
    specific = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if specific:
        return specific
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return base.rstrip("/") + "/v1/traces" if base else None


def build_tracer_provider(
    *, service_name: str = "cairn", endpoint: str | None = None, environ: Mapping[str, str] | None = None
) -> SdkTracerProvider | None:
    """An SDK provider batching spans to the OTLP/HTTP endpoint, or None (and why, in the log).

    ``endpoint`` (a full traces URL) overrides the standard variables read from ``environ``
    (default: the process environment): ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``,
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (+ ``/v1/traces``), ``OTEL_SERVICE_NAME``, ``OTEL_SDK_DISABLED``
    and ``OTEL_TRACES_EXPORTER=none``. Headers, timeouts and batching keep their ``OTEL_*`` variables.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" or (
        env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none"
    ):
        log.info("tracing off: disabled by OTEL_SDK_DISABLED or OTEL_TRACES_EXPORTER")
        return None
    url = _traces_url(env, endpoint)
    if url is None:
        log.info("tracing off: set OTEL_EXPORTER_OTLP_ENDPOINT to export traces")
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("tracing off: an OTLP endpoint is set but the OpenTelemetry SDK is not installed (cairn[otel])")
        return None
    if env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf").strip() not in ("", "http/protobuf"):
        log.warning("cairn exports traces over OTLP/HTTP (http/protobuf), whatever OTEL_EXPORTER_OTLP_PROTOCOL says")
    resource: dict[str, AttributeValue] = {"service.version": __version__}
    if not env.get("OTEL_SERVICE_NAME"):
        resource["service.name"] = service_name
    provider = SdkProvider(resource=Resource.create(resource))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    log.info("tracing on: exporting spans to %s", url)
    return provider


def configure_tracing(
    *, service_name: str = "cairn", endpoint: str | None = None, environ: Mapping[str, str] | None = None
) -> bool:
    """Install the OTLP exporter as the process's tracer provider when configured; True if tracing is on.

    Call once at process start (``cairn serve``, the CLI); a second call, or one after another
    library installed an SDK provider, keeps the provider in place. Without an endpoint or without
    the SDK it logs why and leaves tracing a no-op.
    """
    from opentelemetry import trace

    current = trace.get_tracer_provider()
    if type(current).__module__.startswith("opentelemetry.sdk"):
        log.info("tracing: a tracer provider is already installed; keeping it")
        return True
    provider = build_tracer_provider(service_name=service_name, endpoint=endpoint, environ=environ)
    if provider is None:
        return False
    trace.set_tracer_provider(provider)
    return True


# -- both, on the request path -------------------------------------------------------------------


def _never_raises(method: Callable[P, None]) -> Callable[P, None]:
    @functools.wraps(method)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            method(*args, **kwargs)
        except Exception:
            log.warning("telemetry: %s failed", method.__name__, exc_info=True)

    return guarded


class Telemetry:
    """Metrics and traces of one :class:`~cairn.assistant.Cairn`; its methods never raise.

    ``tracer_provider`` defaults to the global one (see :func:`configure_tracing`); tests pass an
    SDK provider with an in-memory exporter.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, tracer_provider: TracerProvider | None = None
    ) -> None:
        self.metrics = PipelineMetrics(registry)
        self._provider = tracer_provider
        self._tracer: Tracer | None = None

    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    @property
    def tracer(self) -> Tracer:
        if self._tracer is None:
            self._tracer = get_tracer(self._provider)
        return self._tracer

    @_never_raises
    def observe_retrieval(
        self, retrieval: Retrieval, *, kind: str = "search", attributes: Mapping[str, Any] | None = None
    ) -> None:
        self.metrics.observe_retrieval(retrieval, kind)
        attrs = {"cairn.hits": len(retrieval.hits), "cairn.audit_id": retrieval.audit_id}
        trace_interaction(kind, retrieval.timings_ms, attrs | dict(attributes or {}), tracer=self.tracer)

    @_never_raises
    def observe_answer(self, answer: Answer, *, kind: str = "ask", attributes: Mapping[str, Any] | None = None) -> None:
        self.metrics.observe_answer(answer, kind)
        grounding = answer.grounding or {}
        attrs = {
            "cairn.outcome": "refused" if answer.refused else "answered",
            "cairn.refusal_reason": refusal_reason(answer) if answer.refused else None,
            "cairn.model": answer.model or None,
            "cairn.hits": len(answer.searched),
            "cairn.citations": len(answer.citations),
            "cairn.grounding.verdict": grounding.get("verdict"),
            "cairn.grounding.action": grounding.get("action"),
            "cairn.guard.flags": len(answer.guards),
            "cairn.audit_id": answer.audit_id,
            "gen_ai.usage.input_tokens": answer.tokens.get("prompt"),
            "gen_ai.usage.output_tokens": answer.tokens.get("completion"),
        }
        trace_interaction(kind, answer.timings_ms, attrs | dict(attributes or {}), tracer=self.tracer)

    @_never_raises
    def observe_blocked(
        self, kind: str, verdicts: Iterable[Mapping[str, Any]] = (), attributes: Mapping[str, Any] | None = None
    ) -> None:
        verdicts = list(verdicts)
        self.metrics.observe_blocked(kind, verdicts)
        guards = sorted({str(v.get("guard")) for v in verdicts})
        attrs = {"cairn.outcome": "blocked", "cairn.guards": guards} | dict(attributes or {})
        trace_interaction(kind, {}, attrs, tracer=self.tracer)

    @_never_raises
    def observe_cache(self, result: str, saved_ms: float = 0.0) -> None:
        self.metrics.observe_cache(result, saved_ms)

    @_never_raises
    def observe_feedback(self, vote: int | None, *, flag: bool = False, correction: bool = False) -> None:
        self.metrics.observe_feedback(vote, flag=flag, correction=correction)

    @_never_raises
    def observe_drift(self, report: DriftReport) -> None:
        """Show a drift report as the ``cairn_drift_*`` gauges."""
        self.metrics.drift.show(report)

    @_never_raises
    def observe_ingest(self, report: SyncReport, attributes: Mapping[str, Any] | None = None) -> None:
        """An ingestion run: metrics, and a ``cairn.ingest`` span of its length."""
        self.metrics.observe_ingest(report)
        end = time.time_ns()
        attrs = {
            "cairn.kb": report.kb,
            "cairn.ingest.files": len(report.files),
            "cairn.ingest.errors": report.count("error"),
            "cairn.ingest.pages": report.pages,
            "cairn.ingest.chunks": report.chunks,
            **_attributes(attributes),
        }
        root = self.tracer.start_span("cairn.ingest", start_time=end - _ns(report.seconds * 1000), attributes=attrs)
        root.end(end_time=end)


__all__ = [
    "KINDS",
    "RETRIEVAL_STAGES",
    "PipelineMetrics",
    "StageSpan",
    "Telemetry",
    "build_tracer_provider",
    "configure_tracing",
    "get_tracer",
    "guard_stage",
    "interaction_ms",
    "refusal_reason",
    "span",
    "stage_label",
    "stage_spans",
    "trace_interaction",
]
