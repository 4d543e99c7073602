"""Drift reports over a real audit trail: no drift, a topic shift, a refusal jump, who may ask, publishing.

Records are written through the audit log (as ``Cairn.ask`` does) in two bursts; the windows are the
bursts' spans on the database clock. Input drift uses the packaged MiniLM embedder: topics mean
something only to a real model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from cairn.assistant import Cairn
from cairn.errors import Forbidden
from cairn.ops.audit import AuditEvent
from cairn.ops.drift import DRIFT, INSUFFICIENT, OK, DriftConfig, DriftMonitor, DriftStore, Window
from cairn.ops.drift import store as drift_store
from cairn.ops.drift.data import load_windows
from cairn.ops.telemetry import Telemetry
from cairn.types import SYSTEM

ROOT = Path(__file__).resolve().parents[3]
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact" / "queries.jsonl"
HANDBOOK = ROOT / "tests" / "data" / "drift" / "handbook_questions.txt"
CONFIG = DriftConfig(min_samples=40, permutations=500)


def _scifact(n: int, seed: int) -> list[str]:
    if not SCIFACT.is_file():
        pytest.skip(f"SciFact claims not found at {SCIFACT} (../shared/datasets/scifact): no topic-shift scenario")
    claims = [json.loads(line)["text"] for line in SCIFACT.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = np.random.default_rng(seed)
    return [claims[i] for i in rng.choice(len(claims), n, replace=False)]


def _handbook() -> list[str]:
    return [q for q in HANDBOOK.read_text(encoding="utf-8").splitlines() if q.strip()]


def _event(question: str, rng: np.random.Generator, *, refusal: float) -> AuditEvent:
    """An answer as the engine audits it: top passages with cosines, grounding, timings."""
    refused = bool(rng.random() < refusal)
    top = float(np.clip(rng.normal(0.35 if refused else 0.62, 0.07), 0.0, 1.0))
    retrieved = [
        {
            "chunk_id": i,
            "document_id": i,
            "version": 1,
            "source": f"doc{i}.md",
            "kb": "default",
            "score": 1.0 - i / 10,
            "cosine": round(top - i * 0.03, 6),
        }
        for i in range(3)
    ]
    words = max(3, int(rng.normal(35, 6)))
    answer = "I could not find this in the documents." if refused else " ".join(["text"] * words) + " [1]."
    ratio = 1.0 if rng.random() < 0.85 else 0.5
    grounding = None if refused else {"verdict": "grounded" if ratio == 1.0 else "partial", "supported_ratio": ratio}
    return AuditEvent(
        kind="ask",
        question=question,
        kbs=["default"],
        retrieved=retrieved,
        answer=answer,
        refused=refused,
        grounding=grounding,
        timings_ms={"retrieve_total": 12.0, "total": 40.0},
        model="" if refused else "extractive",
    )


def _burst(cairn: Cairn, questions: Sequence[str], *, seed: int, refusal: float = 0.1) -> Window:
    """Audit one answer per question; the window is the burst's span on the database clock."""
    rng = np.random.default_rng(seed)
    ids = [cairn.audit.record(SYSTEM, _event(q, rng, refusal=refusal)).id for q in questions]
    for audit_id in ids[: len(ids) // 3]:
        cairn.feedback.add(SYSTEM, audit_id, vote=-1 if rng.random() < 0.2 else 1)
    entries = {e.id: e.at for e in cairn.audit.list(SYSTEM, limit=len(ids) + len(ids) // 3)}
    start, end = entries[ids[0]], entries[ids[-1]] + timedelta(microseconds=1)
    time.sleep(0.01)
    return Window(start, end, f"records {ids[0]}..{ids[-1]}")


def _verdicts(report: Any) -> dict[str, str]:
    return {s.name: s.verdict for s in report.signals}


@pytest.fixture
def minilm(make_cairn: Callable[..., Cairn]) -> Cairn:
    cairn = make_cairn(embedder="onnx:all-minilm-l6-v2")
    cairn.drift.config = CONFIG
    return cairn


def test_the_same_distribution_is_no_drift(minilm: Cairn) -> None:
    claims = _scifact(240, seed=0)
    ref = _burst(minilm, claims[:120], seed=1)
    cur = _burst(minilm, claims[120:], seed=2)
    report = minilm.drift.report(SYSTEM, ref, cur)
    assert report.records == (120, 120)
    assert set(_verdicts(report).values()) == {OK}, _verdicts(report)
    assert report.signal("query_mmd").p_value > 0.05
    assert report.signal("top_score_ks").details["field"] == "cosine"


def test_a_topic_shift_is_input_drift(minilm: Cairn) -> None:
    handbook = _handbook()
    ref = _burst(minilm, _scifact(120, seed=0), seed=1)
    cur = _burst(minilm, handbook, seed=2)
    report = minilm.drift.report(SYSTEM, ref, cur)
    verdicts = _verdicts(report)
    print("\ntopic shift:", json.dumps({s.name: [s.statistic, s.p_value, s.verdict] for s in report.signals}))
    assert verdicts["query_mmd"] == DRIFT and verdicts["query_topics"] == DRIFT
    mmd, topics = report.signal("query_mmd"), report.signal("query_topics")
    assert mmd.p_value == pytest.approx(1 / (CONFIG.permutations + 1)), "no permutation comes close"
    assert topics.statistic is not None and topics.statistic > 1.0
    assert topics.current["novel_share"] > 0.5 > topics.reference["novel_share"]
    assert set(topics.details["novel_examples"]) <= set(handbook)
    # what users ask changed; how retrieval and answers behave did not
    assert verdicts["refusal_rate"] == OK and verdicts["answer_length"] == OK


def test_a_refusal_jump_is_retrieval_drift(make_cairn: Callable[..., Cairn]) -> None:
    cairn = make_cairn()  # the hash embedder: the questions are one distribution either way
    cairn.drift.config = CONFIG
    handbook = _handbook()
    ref = _burst(cairn, handbook, seed=1, refusal=0.1)
    cur = _burst(cairn, handbook, seed=2, refusal=0.5)
    report = cairn.drift.report(SYSTEM, ref, cur)
    verdicts = _verdicts(report)
    refusal = report.signal("refusal_rate")
    assert verdicts["refusal_rate"] == DRIFT, refusal
    assert refusal.current["rate"] > refusal.reference["rate"] and refusal.statistic > 0.2
    assert verdicts["top_score_ks"] == DRIFT, "refused questions found weaker passages"
    assert verdicts["query_mmd"] == OK and verdicts["query_topics"] == OK


def test_too_few_records_give_no_verdict(make_cairn: Callable[..., Cairn]) -> None:
    cairn = make_cairn()
    ref = _burst(cairn, _handbook()[:10], seed=1)
    cur = _burst(cairn, _handbook()[10:20], seed=2)
    report = cairn.drift.report(SYSTEM, ref, cur)
    assert {s.verdict for s in report.signals} == {INSUFFICIENT}
    assert not report.drift


def test_only_administrators_compute_drift(make_cairn: Callable[..., Cairn]) -> None:
    cairn = make_cairn()
    cairn.principals.add_user("alice")
    cairn.principals.add_user("carol", admin=True)
    alice, carol = cairn.principals.resolve("alice"), cairn.principals.resolve("carol")
    ref = _burst(cairn, _handbook()[:30], seed=1)
    cur = _burst(cairn, _handbook()[30:], seed=2)
    with pytest.raises(Forbidden, match="administrators"):
        cairn.drift.report(alice, ref, cur)
    with pytest.raises(Forbidden):
        DriftStore(cairn.db).latest_ref(alice)
    # the database half: even past the Python check, the trail reads as empty for her
    mine = load_windows(cairn.db, alice, ref, cur)
    assert [d.records for d in mine] == [0, 0]
    assert cairn.drift.report(carol, ref, cur).records == (30, 30)


def test_reports_are_published_and_shown_as_gauges(make_cairn: Callable[..., Cairn]) -> None:
    cairn = make_cairn(drift_interval_s=3600, drift_min_samples=20)
    cairn.principals.add_user("alice")
    alice = cairn.principals.resolve("alice")
    ref = _burst(cairn, _handbook()[:30], seed=1, refusal=0.05)
    cur = _burst(cairn, _handbook()[30:], seed=2, refusal=0.6)
    store = DriftStore(cairn.db)
    report = cairn.drift.report(SYSTEM, ref, cur)
    published = store.publish(SYSTEM, report)
    stored = store.get(SYSTEM, published.id)
    assert stored is not None and stored.to_json() == report.to_json()
    with cairn.db.connection(alice) as conn:  # row-level security: not even a count
        assert conn.execute("SELECT count(*) FROM drift_reports").fetchone() == (0,)

    registry = CollectorRegistry()
    telemetry = Telemetry(registry)
    monitor = DriftMonitor(lambda: cairn.drift, store, telemetry.observe_drift, interval_s=3600)
    assert monitor.tick() is not None and monitor.shown_id == published.id, "fresh: shown, not recomputed"
    assert registry.get_sample_value("cairn_drift_alert", {"signal": "refusal_rate"}) == 1.0
    assert registry.get_sample_value("cairn_drift_threshold", {"signal": "refusal_rate"}) == 0.01

    eager = DriftMonitor(lambda: cairn.drift, store, telemetry.observe_drift, interval_s=0.001)
    computed = eager.tick()
    assert computed is not None and eager.shown_id is not None and eager.shown_id > published.id
    assert computed.current.live, "the periodic report covers the default windows, up to now"


def test_only_the_newest_reports_within_the_retention_are_kept(
    make_cairn: Callable[..., Cairn], monkeypatch: pytest.MonkeyPatch
) -> None:
    cairn = make_cairn()
    report = cairn.drift.report(SYSTEM, *cairn.drift.windows())
    store = DriftStore(cairn.db, retention_days=30)
    monkeypatch.setattr(drift_store, "KEEP_REPORTS", 2)
    ids = [store.publish(SYSTEM, report).id for _ in range(3)]
    old = replace(report, computed_at=report.computed_at - timedelta(days=31))  # quotes questions past retention
    ids.append(store.publish(SYSTEM, old).id)
    with cairn.db.connection(SYSTEM) as conn:
        kept = [r[0] for r in conn.execute("SELECT id FROM drift_reports ORDER BY id").fetchall()]
    # the newest two are ids[2] and the old one, which the retention then removes
    assert kept == [ids[2]]


def test_records_written_by_ask_and_search_are_read(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn = make_cairn(generator="extractive:", min_relevance=0.2)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "expenses.md").write_text(
        "# Expenses\n\nClaims are submitted within 30 days in the expense tool. Hotels cost at most 180 EUR a night.\n",
        encoding="utf-8",
    )
    cairn.ingestor.sync_folder(docs, "default")
    start = cairn.audit.list(SYSTEM, limit=1)
    questions = ["How many days do I have to submit claims?", "What is the hotel limit per night?"]
    answers = [cairn.ask(q, ["default"], principal=SYSTEM) for q in questions]
    cairn.ask("What is the capital of France?", ["default"], principal=SYSTEM)
    cairn.search("hotel night", ["default"], principal=SYSTEM)
    cairn.feedback.add(SYSTEM, answers[0].audit_id, vote=-1)
    cairn.feedback.add(SYSTEM, answers[1].audit_id, vote=1)
    entries = cairn.audit.list(SYSTEM, limit=10)
    first = min(e.at for e in entries if e.kind in ("ask", "search"))
    last = max(e.at for e in entries)
    assert not start or start[0].at < first
    (data,) = load_windows(cairn.db, SYSTEM, Window(first, last + timedelta(seconds=1), "all"))
    assert data.records == 4 and len(data.questions) == 4
    assert data.answers == 3 and data.refused >= 1, "the France question finds nothing relevant"
    assert len(data.top_scores) >= 3 and all(0 <= s <= 1 for s in data.top_scores)
    assert all(c is not None for c in data.top_cosines), "ask and search audit the cosine"
    assert data.answer_words and min(data.answer_words) > 3
    assert (data.votes_up, data.votes_down) == (1, 1)
