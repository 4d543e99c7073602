"""Experiments in real PostgreSQL: administrators manage them (twice enforced), answers read them, reports count."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import psycopg
import pytest

from cairn.errors import Forbidden, InputError, NotFound
from cairn.index.db import Database
from cairn.ops.audit import AuditEvent, AuditLog
from cairn.ops.experiments import Experiment, ExperimentStore, Variant
from cairn.ops.feedback import FeedbackStore
from cairn.types import SYSTEM, Principal

EventFactory = Callable[..., AuditEvent]
TWO = (Variant("control"), Variant("concise", template="concise"))


def _draft(name: str = "tone", **changes: object) -> Experiment:
    return Experiment(name=name, variants=TWO, **changes)  # type: ignore[arg-type]


def test_an_admin_creates_runs_and_rolls_out_an_experiment(db: Database, people) -> None:  # type: ignore[no-untyped-def]
    store = ExperimentStore(db)
    created = store.create(people.carol, _draft(rollout=10, groups=("pilot",), description="shorter answers"))
    assert created.status == "draft" and created.created_by == "carol" and created.started_at is None
    assert created.variant("concise").template == "concise-v1", "a template name is pinned to its version"
    assert [e.name for e in store.list(SYSTEM)] == ["tone"]

    running = store.transition(people.carol, "tone", "start")
    assert running.status == "running" and running.started_at is not None
    grown = store.set_rollout(SYSTEM, "tone", 50, groups=[])
    assert (grown.rollout, grown.groups) == (50.0, ())
    paused = store.transition(SYSTEM, "tone", "pause")
    resumed = store.transition(SYSTEM, "tone", "start")
    assert resumed.started_at == running.started_at, "resuming keeps the first start"
    stopped = store.transition(SYSTEM, "tone", "stop")
    assert paused.status == "paused" and stopped.status == "stopped" and stopped.stopped_at is not None

    changes = store.get(SYSTEM, "tone").changes
    assert [(c["by"], c["action"]) for c in changes] == [
        ("carol", "create"),
        ("carol", "start"),
        ("system", "rollout"),
        ("system", "pause"),
        ("system", "start"),
        ("system", "stop"),
    ]
    assert changes[2] | {"at": ""} == {
        "at": "",
        "by": "system",
        "action": "rollout",
        "from": 10.0,
        "to": 50.0,
        "groups_from": ["pilot"],
        "groups_to": [],
    }
    with pytest.raises(InputError, match="it is stopped"):
        store.transition(SYSTEM, "tone", "start")
    with pytest.raises(InputError, match="is stopped"):
        store.set_rollout(SYSTEM, "tone", 60)
    with pytest.raises(InputError, match="only drafts"):
        store.delete(SYSTEM, "tone")
    with pytest.raises(InputError, match="already exists"):
        store.create(SYSTEM, _draft())


def test_bad_definitions_are_refused_before_anything_is_stored(db: Database) -> None:
    store = ExperimentStore(db, tiers={"local"})
    with pytest.raises(InputError, match="unknown prompt template"):
        store.create(SYSTEM, Experiment(name="x", variants=(Variant("a"), Variant("b", template="terse"))))
    with pytest.raises(InputError, match="no generator tier 'premium'"):
        store.create(SYSTEM, Experiment(name="x", variants=(Variant("a"), Variant("b", tier="premium"))))
    with pytest.raises(NotFound):
        store.get(SYSTEM, "x")
    store.create(SYSTEM, _draft("empty"))
    with pytest.raises(InputError, match="rollout of 0%"):
        store.transition(SYSTEM, "empty", "start")
    store.delete(SYSTEM, "empty")
    with pytest.raises(NotFound):
        store.delete(SYSTEM, "empty")


def test_one_running_experiment_per_scope_and_the_most_specific_wins(db: Database, people) -> None:  # type: ignore[no-untyped-def]
    store = ExperimentStore(db)
    store.create(SYSTEM, _draft("global", rollout=100))
    store.create(SYSTEM, _draft("global-2", rollout=100))
    store.create(SYSTEM, _draft("handbook", rollout=100, scope="handbook"))
    store.transition(SYSTEM, "global", "start")
    with pytest.raises(InputError, match="already runs on scope '\\*'"):
        store.transition(SYSTEM, "global-2", "start")
    store.transition(SYSTEM, "handbook", "start")

    def governing(kbs: list[str]) -> str | None:
        experiment = store.running_for(people.alice, kbs)
        return None if experiment is None else experiment.name

    assert governing(["handbook"]) == "handbook"
    assert governing(["finance"]) == "global"
    assert governing(["handbook", "finance"]) == "global"
    assert governing(["*"]) == "global"
    store.transition(SYSTEM, "handbook", "pause")
    assert governing(["handbook"]) == "global"


def test_a_paused_experiment_assigns_nobody_and_a_pinned_dimension_stays_out(db: Database, people) -> None:  # type: ignore[no-untyped-def]
    store = ExperimentStore(db)
    store.create(
        SYSTEM, Experiment(name="fast", variants=(Variant("control"), Variant("fast", profile="fast")), rollout=100)
    )
    store.transition(SYSTEM, "fast", "start")
    assignment = store.assign(people.alice, ["handbook"])
    assert assignment is not None and assignment.label in ("fast:control", "fast:fast")
    assert store.assign(people.alice, ["handbook"], pinned={"profile"}) is None
    assert store.assign(people.alice, ["handbook"], pinned={"tier"}) == assignment, "tier is not what it varies"
    assert store.assign(SYSTEM, ["handbook"]) is None, "the local operator is not in experiments"
    assert store.assign(Principal("nobody"), ["handbook"]) is None
    store.transition(SYSTEM, "fast", "pause")
    assert store.assign(people.alice, ["handbook"]) is None


def test_only_administrators_manage_experiments_and_postgres_agrees(db: Database, people) -> None:  # type: ignore[no-untyped-def]
    store = ExperimentStore(db)
    for attempt in (
        lambda: store.create(people.alice, _draft()),
        lambda: store.list(people.bob),
        lambda: store.transition(people.alice, "tone", "start"),
        lambda: store.set_rollout(people.alice, "tone", 100),
        lambda: store.report(people.bob, "tone"),
    ):
        with pytest.raises(Forbidden):
            attempt()
    store.create(people.carol, _draft(rollout=5))

    # Row-level security alone, with the Python check skipped: a user reads but cannot write.
    with db.connection(people.alice) as conn:
        assert conn.execute("SELECT name FROM experiments").fetchall() == [("tone",)]
        assert conn.execute("UPDATE experiments SET rollout = 100").rowcount == 0
        assert conn.execute("DELETE FROM experiment_variants").rowcount == 0
        assert conn.execute("SELECT count(*) FROM experiment_changes").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO experiments (name, salt, created_by, rollout) VALUES ('x', 'x', 'alice', 1)")
    with db.connection(Principal("nobody")) as conn:
        assert conn.execute("SELECT count(*) FROM experiments").fetchone() == (0,), "an unidentified caller sees none"
    assert store.get(SYSTEM, "tone").rollout == 5.0


def test_variants_are_frozen_once_the_experiment_started(db: Database) -> None:
    store = ExperimentStore(db)
    store.create(SYSTEM, _draft(rollout=10))
    store.transition(SYSTEM, "tone", "start")
    with db.connection(SYSTEM) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege, match="cannot change"):
        conn.execute("UPDATE experiment_variants SET weight = 5 WHERE name = 'concise'")


def _answers(
    log: AuditLog, principal: Principal, label: str, n: int, *, refused: int, latency: float, make: EventFactory
) -> list[int]:
    """``n`` answers of variant ``label``: the first ``refused`` refused, the first one partly grounded."""
    ids = []
    for i in range(n):
        event = replace(
            make(question=f"question {i} of {label}"),
            variant=label,
            refused=i < refused,
            timings_ms={"retrieve": 5.0, "total": latency + i},
            grounding={"verdict": "partial" if i == 0 else "grounded", "supported_ratio": 0.5 if i == 0 else 1.0},
        )
        ids.append(log.record(principal, event).id)
    return ids


def test_the_report_counts_the_audit_trail_and_feedback(db: Database, people, ask_event: EventFactory) -> None:  # type: ignore[no-untyped-def]
    store = ExperimentStore(db, min_samples=3)
    store.create(SYSTEM, _draft(rollout=100))
    store.transition(SYSTEM, "tone", "start")
    log = AuditLog(db)
    feedback = FeedbackStore(db, audit=log)
    control = _answers(log, people.alice, "tone:control", 4, refused=1, latency=100.0, make=ask_event)
    concise = _answers(log, people.bob, "tone:concise", 5, refused=3, latency=50.0, make=ask_event)
    _answers(log, people.bob, "other:concise", 3, refused=0, latency=10.0, make=ask_event)  # another experiment
    log.record(people.alice, ask_event())  # not in any experiment
    feedback.add(people.alice, control[0], vote=1)
    feedback.add(people.alice, control[0], vote=-1)  # the latest vote counts
    feedback.add(people.alice, control[1], comment="too long")
    feedback.add(people.bob, concise[0], vote=1)
    feedback.add(people.bob, concise[1], vote=1)

    report = store.report(SYSTEM, "tone")
    assert report["answers"] == 9 and report["min_samples"] == 3
    by_name = {v["variant"]: v for v in report["variants"]}
    c, k = by_name["control"], by_name["concise"]
    assert (c["n"], c["users"], k["n"], k["users"]) == (4, 1, 5, 1)
    assert (c["feedback_rate"]["successes"], c["feedback_rate"]["n"]) == (2, 4)
    assert (c["upvote_rate"]["successes"], c["upvote_rate"]["n"]) == (0, 1)
    assert (k["upvote_rate"]["successes"], k["upvote_rate"]["n"]) == (2, 2)
    assert (c["refusal_rate"]["successes"], k["refusal_rate"]["successes"]) == (1, 3)
    assert (k["grounding_failure_rate"]["successes"], k["grounding_failure_rate"]["n"]) == (1, 5)
    assert c["latency_ms"]["p50"] == 101.5 and k["latency_ms"]["p50"] == 52.0
    assert k["upvote_rate"]["vs_control"]["note"].startswith("not enough data")
    assert "p" in k["refusal_rate"]["vs_control"]
    assert log.verify(SYSTEM).ok
