"""Pipeline metrics read back from a fresh registry, stage spans, tracing, and the Grafana dashboard."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from cairn.ingest.sync import FileReport, SyncReport
from cairn.ops.telemetry import (
    PipelineMetrics,
    StageSpan,
    Telemetry,
    build_tracer_provider,
    configure_tracing,
    guard_stage,
    interaction_ms,
    stage_spans,
    trace_interaction,
)
from cairn.retrieve.hybrid import Retrieval
from cairn.server.metrics import Metrics
from cairn.types import Answer, Citation, Hit

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "cairn-dashboard.json"

HIT = Hit(chunk_id=1, document_id=1, source="a.md", text="Expenses are signed by managers.", start=0, end=32, score=0.9)
SEARCH_TIMINGS = {"embed_query": 12.0, "bm25": 3.0, "dense": 4.0, "fetch": 1.0, "rerank": 20.0, "retrieve_total": 45.0}


def _metrics() -> tuple[PipelineMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return PipelineMetrics(registry), registry


def _answer(**changes: Any) -> Answer:
    fields: dict[str, Any] = {
        "answer": "Managers sign expenses [1].",
        "refused": False,
        "citations": (Citation(1, "a.md", None, 0, 32, HIT.text, chunk_id=1),),
        "timings_ms": {**SEARCH_TIMINGS, "generate": 300.0, "total": 360.0},
        "searched": (HIT,),
        "query": "Who signs expenses?",
        "model": "openai:gpt-4o-mini",
        "tokens": {"prompt": 900, "completion": 40},
    }
    return Answer(**(fields | changes))


# -- metrics -----------------------------------------------------------------------------------


def test_retrieval_timings_become_stage_histograms() -> None:
    metrics, registry = _metrics()
    timings = {**SEARCH_TIMINGS, "Not A Stage": 5.0, "negative": -1.0}
    metrics.observe_retrieval(Retrieval(query="q", hits=[HIT], timings_ms=timings))

    def count(stage: str) -> float | None:
        return registry.get_sample_value("cairn_stage_duration_seconds_count", {"stage": stage, "kind": "search"})

    assert count("rerank") == 1
    assert registry.get_sample_value(
        "cairn_stage_duration_seconds_sum", {"stage": "rerank", "kind": "search"}
    ) == pytest.approx(0.02)
    assert count("retrieve") == 1, "retrieve_total is reported as the stage 'retrieve'"
    assert count("retrieve_total") is None
    assert count("Not A Stage") is None and count("negative") is None
    assert registry.get_sample_value("cairn_retrievals_empty_total", {"kind": "search"}) is None
    metrics.observe_retrieval(Retrieval(query="q", hits=[], timings_ms={}))
    assert registry.get_sample_value("cairn_retrievals_empty_total", {"kind": "search"}) == 1


def test_answer_outcome_tokens_grounding_and_guards() -> None:
    metrics, registry = _metrics()
    guards = (
        {"guard": "injection", "flagged": True, "score": 0.9, "chunk_id": 7},
        {"guard": "injection", "flagged": True, "score": 0.8},
        {"guard": "pii", "flagged": True, "score": 1.0},
        {"guard": "output", "flagged": False, "score": 0.0},
    )
    grounding = {"verdict": "partial", "supported_ratio": 0.5, "action": "kept"}
    metrics.observe_answer(_answer(grounding=grounding, guards=guards), "chat")

    value = registry.get_sample_value
    assert value("cairn_answers_total", {"kind": "chat", "outcome": "answered"}) == 1
    assert value("cairn_tokens_total", {"model": "openai:gpt-4o-mini", "direction": "prompt"}) == 900
    assert value("cairn_tokens_total", {"model": "openai:gpt-4o-mini", "direction": "completion"}) == 40
    assert value("cairn_stage_duration_seconds_count", {"stage": "generate", "kind": "chat"}) == 1
    assert value("cairn_stage_duration_seconds_sum", {"stage": "total", "kind": "chat"}) == pytest.approx(0.36)
    assert value("cairn_grounding_checks_total", {"verdict": "partial"}) == 1
    assert value("cairn_grounding_failures_total", {"action": "kept"}) == 1
    assert value("cairn_grounding_supported_ratio_count") == 1
    assert value("cairn_guard_detections_total", {"guard": "injection", "stage": "passage"}) == 1
    assert value("cairn_guard_detections_total", {"guard": "injection", "stage": "question"}) == 1
    assert value("cairn_guard_detections_total", {"guard": "pii", "stage": "answer"}) == 1
    assert value("cairn_guard_detections_total", {"guard": "output", "stage": "answer"}) is None, "not flagged"

    metrics.observe_answer(_answer(grounding={"verdict": "grounded", "supported_ratio": 1.0, "action": "kept"}))
    assert value("cairn_grounding_checks_total", {"verdict": "grounded"}) == 1
    assert value("cairn_grounding_failures_total", {"action": "kept"}) == 1, "a grounded answer is no failure"


def test_refusals_by_reason() -> None:
    metrics, registry = _metrics()
    metrics.observe_answer(_answer(refused=True, model="", tokens={}, searched=()), "ask")
    metrics.observe_answer(_answer(refused=True), "ask")
    metrics.observe_answer(
        _answer(refused=True, grounding={"verdict": "unsupported", "supported_ratio": 0.0, "action": "refused"}), "ask"
    )
    value = registry.get_sample_value
    assert value("cairn_answers_total", {"kind": "ask", "outcome": "refused"}) == 3
    assert value("cairn_answers_total", {"kind": "ask", "outcome": "answered"}) is None
    for reason in ("no_passages", "model", "grounding"):
        assert value("cairn_refusals_total", {"kind": "ask", "reason": reason}) == 1, reason
    assert value("cairn_grounding_failures_total", {"action": "refused"}) == 1
    assert value("cairn_retrievals_empty_total", {"kind": "ask"}) == 1


def test_blocked_cache_and_feedback() -> None:
    metrics, registry = _metrics()
    metrics.observe_blocked("ask", [{"guard": "injection", "flagged": True}])
    metrics.observe_cache("hit_exact", saved_ms=1500)
    metrics.observe_cache("hit_semantic", saved_ms=500)
    metrics.observe_cache("miss", saved_ms=999)
    metrics.observe_cache("bogus")
    for vote in (1, 1, -1, None):
        metrics.observe_feedback(vote)
    metrics.observe_feedback(None, flag=True, correction=True)
    value = registry.get_sample_value
    assert value("cairn_answers_total", {"kind": "ask", "outcome": "blocked"}) == 1
    assert value("cairn_guard_detections_total", {"guard": "injection", "stage": "question"}) == 1
    assert value("cairn_answer_cache_total", {"result": "hit_exact"}) == 1
    assert value("cairn_answer_cache_total", {"result": "miss"}) == 1
    assert value("cairn_answer_cache_total", {"result": "other"}) == 1
    assert value("cairn_answer_cache_saved_seconds_total") == pytest.approx(2.0), "misses save nothing"
    assert value("cairn_feedback_total", {"vote": "up"}) == 2
    assert value("cairn_feedback_total", {"vote": "down"}) == 1
    assert value("cairn_feedback_total", {"vote": "none"}) == 2
    assert value("cairn_feedback_flags_total") == 1
    assert value("cairn_feedback_corrections_total") == 1


def test_ingest_report() -> None:
    metrics, registry = _metrics()
    report = SyncReport(
        kb="handbook",
        files=[
            FileReport("a.pdf", "added", chunks=10, pages=4),
            FileReport("b.md", "updated", chunks=3, pages=1),
            FileReport("c.md", "unchanged", chunks=5, pages=2),
            FileReport("d.pdf", "error", message="not a PDF"),
        ],
        seconds=2.5,
    )
    metrics.observe_ingest(report)
    value = registry.get_sample_value
    assert value("cairn_ingest_runs_total", {"result": "errors"}) == 1
    assert value("cairn_ingest_files_total", {"status": "added"}) == 1
    assert value("cairn_ingest_files_total", {"status": "error"}) == 1
    assert value("cairn_ingest_files_total", {"status": "deleted"}) is None
    assert value("cairn_ingest_pages_total") == 5, "only added and updated files count"
    assert value("cairn_ingest_chunks_total") == 13
    assert value("cairn_ingest_duration_seconds_sum") == 2.5
    assert (value("cairn_ingest_last_run_timestamp_seconds") or 0) > 0


def test_labels_stay_bounded() -> None:
    metrics, registry = _metrics()
    long_model = "m" * 500
    metrics.observe_answer(_answer(model=long_model), "some-new-kind")
    assert registry.get_sample_value("cairn_answers_total", {"kind": "other", "outcome": "answered"}) == 1
    assert registry.get_sample_value("cairn_tokens_total", {"model": "m" * 64, "direction": "prompt"}) == 900
    metrics.observe_answer(_answer(model="", refused=True))
    assert registry.get_sample_value("cairn_tokens_total", {"model": "none", "direction": "prompt"}) == 900


def test_guard_stage_inference() -> None:
    assert guard_stage({"guard": "injection", "chunk_id": 3}) == "passage"
    assert guard_stage({"guard": "my-plugin"}) == "question"
    assert guard_stage({"guard": "pii"}) == "answer"
    assert guard_stage({"guard": "pii", "stage": "question"}) == "question", "an explicit stage wins"


def test_server_metrics_expose_the_pipeline_registry() -> None:
    server = Metrics()
    telemetry = Telemetry()
    server.include(telemetry.registry)
    server.include(telemetry.registry)  # idempotent
    telemetry.observe_answer(_answer(), kind="ask")
    text = server.render().decode()
    assert 'cairn_answers_total{kind="ask",outcome="answered"} 1.0' in text
    assert "cairn_http_requests_in_flight" in text
    assert server.registry.get_sample_value("cairn_answers_total", {"kind": "ask", "outcome": "answered"}) == 1


# -- stage spans -------------------------------------------------------------------------------


def test_search_spans_follow_the_stage_order() -> None:
    spans = {s.name: s for s in stage_spans({**SEARCH_TIMINGS, "decompose": 5.0, "future_stage": 2.0})}
    assert spans["retrieve"] == StageSpan("retrieve", None, 0.0, 45.0)
    assert spans["decompose"] == StageSpan("decompose", "retrieve", 0.0, 5.0)
    assert spans["embed_query"] == StageSpan("embed_query", "retrieve", 0.0, 12.0), "timed from the search's start"
    assert spans["bm25"] == StageSpan("bm25", "retrieve", 12.0, 15.0)
    assert spans["dense"] == StageSpan("dense", "retrieve", 15.0, 19.0)
    assert spans["fetch"] == StageSpan("fetch", "retrieve", 19.0, 20.0)
    assert spans["rerank"] == StageSpan("rerank", "retrieve", 20.0, 40.0)
    assert spans["future_stage"] == StageSpan("future_stage", "retrieve", 40.0, 42.0), "unknown: last, inside"
    assert interaction_ms(SEARCH_TIMINGS) == 45.0


def test_answer_spans_nest_retrieval_between_condense_and_generate() -> None:
    timings = {"condense": 30.0, **SEARCH_TIMINGS, "generate": 300.0, "total": 400.0, "audit_write": 4.0}
    spans = stage_spans(timings)
    names = [s.name for s in spans]
    assert names[:2] == ["condense", "retrieve"], "each parent comes before its children"
    assert names[-2:] == ["generate", "audit_write"]
    by_name = {s.name: s for s in spans}
    assert by_name["retrieve"] == StageSpan("retrieve", None, 30.0, 75.0)
    assert by_name["embed_query"].start_ms == 30.0
    assert by_name["generate"] == StageSpan("generate", None, 75.0, 375.0)
    assert by_name["audit_write"] == StageSpan("audit_write", None, 375.0, 379.0)
    assert interaction_ms(timings, spans) == 400.0
    assert interaction_ms({"generate": 10.0, "total": 5.0}, stage_spans({"generate": 10.0, "total": 5.0})) == 10.0
    assert stage_spans({}) == []


# -- tracing -----------------------------------------------------------------------------------


def test_tracing_without_an_sdk_is_a_no_op() -> None:
    from opentelemetry.trace import NoOpTracerProvider

    telemetry = Telemetry(tracer_provider=NoOpTracerProvider())
    telemetry.observe_answer(_answer())
    telemetry.observe_retrieval(Retrieval(query="q", hits=[], timings_ms=SEARCH_TIMINGS))
    trace_interaction("ask", SEARCH_TIMINGS, tracer=telemetry.tracer)
    assert telemetry.registry.get_sample_value("cairn_answers_total", {"kind": "ask", "outcome": "answered"}) == 1


def test_telemetry_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    telemetry = Telemetry()
    with caplog.at_level(logging.WARNING, logger="cairn.ops.telemetry"):
        telemetry.observe_answer(None)  # type: ignore[arg-type]
    assert "observe_answer failed" in caplog.text


def test_spans_per_stage_with_the_sdk() -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = Telemetry(tracer_provider=provider)

    end = 1_700_000_000_000_000_000
    trace_interaction("ask", _answer().timings_ms, {"cairn.client": "api"}, end_ns=end, tracer=telemetry.tracer)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {
        "cairn.ask",
        "cairn.retrieve",
        "cairn.embed_query",
        "cairn.bm25",
        "cairn.dense",
        "cairn.fetch",
        "cairn.rerank",
        "cairn.generate",
    }
    root = spans["cairn.ask"]
    assert root.parent is None and root.end_time == end
    assert root.start_time == end - 360_000_000
    assert root.attributes is not None and root.attributes["cairn.client"] == "api"
    retrieve = spans["cairn.retrieve"]
    assert retrieve.parent is not None and retrieve.parent.span_id == root.context.span_id
    rerank = spans["cairn.rerank"]
    assert rerank.parent is not None and rerank.parent.span_id == retrieve.context.span_id
    assert (rerank.start_time, rerank.end_time) == (end - 360_000_000 + 20_000_000, end - 360_000_000 + 40_000_000)
    assert rerank.attributes is not None and rerank.attributes["cairn.reconstructed"] is True
    generate = spans["cairn.generate"]
    assert generate.parent is not None and generate.parent.span_id == root.context.span_id
    assert generate.start_time == retrieve.end_time
    assert {s.context.trace_id for s in spans.values()} == {root.context.trace_id}

    exporter.clear()
    telemetry.observe_answer(_answer(audit_id=42, refused=True), kind="chat")
    telemetry.observe_blocked("ask", [{"guard": "injection", "flagged": True}])
    report = SyncReport(kb="handbook", files=[FileReport("a.md", "added", chunks=2, pages=1)], seconds=1.0)
    telemetry.observe_ingest(report)
    finished = {s.name: s for s in exporter.get_finished_spans()}
    chat = finished["cairn.chat"].attributes
    assert chat is not None
    assert (chat["cairn.audit_id"], chat["cairn.outcome"], chat["cairn.refusal_reason"]) == (42, "refused", "model")
    assert chat["gen_ai.usage.input_tokens"] == 900
    assert "cairn.grounding.verdict" not in chat, "None values are left out"
    blocked = finished["cairn.ask"].attributes
    assert blocked is not None and blocked["cairn.guards"] == ("injection",)
    ingest = finished["cairn.ingest"]
    assert ingest.end_time is not None and ingest.start_time is not None
    assert ingest.end_time - ingest.start_time == 1_000_000_000
    provider.shutdown()


def test_live_span_is_the_parent_of_an_interaction() -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from cairn.ops.telemetry import get_tracer, span

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = get_tracer(provider)
    with span("http.request", {"route": "/v1/ask"}, tracer=tracer) as outer:
        trace_interaction("search", SEARCH_TIMINGS, tracer=tracer)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    search = spans["cairn.search"]
    assert search.parent is not None and search.parent.span_id == outer.get_span_context().span_id
    provider.shutdown()


def test_exporter_needs_an_endpoint(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cairn.ops.telemetry"):
        assert build_tracer_provider(environ={}) is None
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" in caplog.text
        assert build_tracer_provider(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "x", "OTEL_SDK_DISABLED": "true"}) is None
        assert configure_tracing(environ={}) is False


def test_exporter_is_off_without_the_sdk(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with caplog.at_level(logging.WARNING, logger="cairn.ops.telemetry"):
        assert build_tracer_provider(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}) is None
    assert "cairn[otel]" in caplog.text


def test_exporter_with_the_sdk() -> None:
    pytest.importorskip("opentelemetry.sdk")
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318/"}
    provider = build_tracer_provider(service_name="cairn-test", environ=env)
    assert provider is not None
    try:
        assert provider.resource.attributes["service.name"] == "cairn-test"
        processor = provider._active_span_processor._span_processors[0]
        exporter = processor._batch_processor._exporter  # type: ignore[attr-defined]
        assert exporter._endpoint == "http://127.0.0.1:4318/v1/traces"
    finally:
        provider.shutdown()
    specific = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/t", "OTEL_SERVICE_NAME": "from-env"}
    provider = build_tracer_provider(environ=specific)
    assert provider is not None
    try:
        exporter = provider._active_span_processor._span_processors[0]._batch_processor._exporter  # type: ignore[attr-defined]
        assert exporter._endpoint == "http://127.0.0.1:9/t"
    finally:
        provider.shutdown()


# -- the dashboard -----------------------------------------------------------------------------


def _families(*registries: CollectorRegistry) -> dict[str, set[str]]:
    """Each metric family and the sample names it exposes (what PromQL can query)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    return {
        f.name: {f.name + s for s in suffixes.get(f.type, ("",))} for registry in registries for f in registry.collect()
    }


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if variable["type"] == "query":
            exprs.append(query["query"] if isinstance(query, dict) else str(query))
    return exprs


def test_dashboard_queries_only_metrics_the_code_defines() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["schemaVersion"] >= 39
    families = _families(Metrics().registry, PipelineMetrics().registry)
    defined = set().union(*families.values())
    used = {name for expr in _expressions(dashboard) for name in re.findall(r"\bcairn_[a-z0-9_]+", expr)}
    assert used, "the dashboard has queries"
    assert not used - defined, f"the dashboard queries metrics nobody defines: {sorted(used - defined)}"
    unused = sorted(family for family, names in families.items() if not names & used)
    assert not unused, f"metrics without a panel: {unused}"


def test_dashboard_panels_use_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
