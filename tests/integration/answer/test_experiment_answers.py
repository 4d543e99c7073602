"""Experiments in the answer path (``Cairn.stream``) on a real database with scripted models: who gets
which variant, what the variant changes (template, profile, tier), what is recorded, and the cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cairn.answer.templates import CONCISE, GROUNDED
from cairn.assistant import Cairn
from cairn.index.access import readers
from cairn.ops.experiments import Experiment, Variant, assign
from cairn.testing.fakes import ScriptedGenerator
from cairn.types import SYSTEM, Principal

LEAVE = "Staff get 25 days of annual leave. Unused leave expires at the end of March."
QUESTION = "How many days of annual leave do staff get?"
TONE = Experiment(
    name="tone",
    variants=(Variant("control"), Variant("concise", template="concise")),
    scope="handbook",
    groups=("pilot",),
    rollout=100,
)


def _cairn(make_cairn: Callable[..., Cairn], tmp_path: Path, **settings: Any) -> tuple[Cairn, list[Principal]]:
    cairn = make_cairn(min_relevance=0.2, **settings)
    for kb in ("handbook", "archive"):  # the same text in two knowledge bases
        docs = tmp_path / kb
        docs.mkdir(exist_ok=True)
        (docs / "leave.txt").write_text(LEAVE, encoding="utf-8")
        cairn.ingestor.sync_folder(docs, kb, readers=readers(["staff"]))
    users = []
    for i in range(24):
        cairn.principals.add_user(f"user{i:02d}", ["staff", "pilot"] if i < 20 else ["staff"])
        users.append(cairn.principals.resolve(f"user{i:02d}"))
    return cairn, users


def _records(cairn: Cairn) -> dict[int, dict[str, Any]]:
    return {e.id: e.record for e in cairn.audit.list(SYSTEM, limit=500) if e.kind == "ask"}


def _start(cairn: Cairn, experiment: Experiment) -> Experiment:
    cairn.experiments.create(SYSTEM, experiment)
    return cairn.experiments.transition(SYSTEM, experiment.name, "start")


def test_a_running_experiment_splits_users_and_records_the_variant(
    make_cairn: Callable[..., Cairn], tmp_path: Path
) -> None:
    cairn, users = _cairn(make_cairn, tmp_path)
    running = _start(cairn, TONE)
    generator = cairn.answerer.generator  # type: ignore[attr-defined]
    assert isinstance(generator, ScriptedGenerator)

    got: dict[str, str | None] = {}
    for user in users:
        generator.enqueue("Staff get 25 days of annual leave [1].")
        answer = cairn.ask(QUESTION, ["handbook"], principal=user)
        expected = assign(running, user)
        assert answer.variant == (expected.label if expected else None)
        got[user.name] = answer.variant
        record = _records(cairn)[answer.audit_id]  # type: ignore[index]
        assert record["variant"] == answer.variant
        concise = answer.variant == "tone:concise"
        assert record["prompt_template"] == ("concise-v1" if concise else GROUNDED.version)
        assert generator.calls[-1][0].content == (CONCISE.system if concise else GROUNDED.system)
        assert (answer.to_json().get("variant")) == answer.variant

    pilots = [got[u.name] for u in users[:20]]
    assert set(pilots) == {"tone:control", "tone:concise"}, "twenty pilots land in both variants"
    assert all(got[u.name] is None for u in users[20:]), "outside the pilot group: default, not counted"
    again = cairn.ask(QUESTION, ["handbook"], principal=users[0])
    assert again.variant == got[users[0].name], "the same user keeps the same variant"

    operator = cairn.ask(QUESTION, ["handbook"], principal=SYSTEM)
    assert operator.variant is None and _records(cairn)[operator.audit_id]["variant"] is None  # type: ignore[index]
    other_kb = cairn.ask(QUESTION, ["archive"], principal=users[0])
    assert other_kb.variant is None, "an experiment scoped to handbook does not govern other knowledge bases"

    report = cairn.experiments.report(SYSTEM, "tone")
    counts = {v["variant"]: v["n"] for v in report["variants"]}
    expected_counts = {name: pilots.count(f"tone:{name}") for name in ("control", "concise")}
    expected_counts[got[users[0].name].split(":")[1]] += 1  # type: ignore[union-attr]
    assert counts == expected_counts

    cairn.experiments.transition(SYSTEM, "tone", "pause")
    paused = [cairn.ask(QUESTION, ["handbook"], principal=u) for u in users[:6]]
    assert all(a.variant is None for a in paused), "a paused experiment gives everyone the default"
    assert all(_records(cairn)[a.audit_id]["prompt_template"] == GROUNDED.version for a in paused)  # type: ignore[index]
    assert cairn.experiments.report(SYSTEM, "tone")["answers"] == sum(expected_counts.values())


def test_a_profile_variant_changes_the_pipeline_unless_the_request_pins_one(
    make_cairn: Callable[..., Cairn], tmp_path: Path
) -> None:
    cairn, users = _cairn(make_cairn, tmp_path, generator="extractive:")
    _start(
        cairn,
        Experiment(name="pipes", variants=(Variant("control"), Variant("quick", profile="fast")), rollout=100),
    )
    seen = set()
    for user in users[:20]:
        answer = cairn.ask(QUESTION, ["handbook"], principal=user)
        profile = _records(cairn)[answer.audit_id]["params"]["retrieval"]["profile"]  # type: ignore[index]
        assert profile == ("fast" if answer.variant == "pipes:quick" else "default")
        seen.add(answer.variant)
    assert seen == {"pipes:control", "pipes:quick"}
    pinned = cairn.ask(QUESTION, ["handbook"], principal=users[0], config=cairn.config_for(["handbook"], "quality"))
    assert pinned.variant is None, "a request that chose its own profile stays out of a profile experiment"
    assert _records(cairn)[pinned.audit_id]["params"]["retrieval"]["profile"] == "quality"  # type: ignore[index]
    same = cairn.ask(QUESTION, ["handbook"], principal=users[0], config=cairn.config_for(["handbook"]))
    assert same.variant is not None, "the request's default config is not a choice of its own"


def test_a_tier_variant_routes_to_its_tier_with_its_template(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    tiers = [
        {"name": "local", "generator": "fake:scripted"},
        {"name": "big", "generator": "fake:scripted", "locality": "onprem", "min_complexity": 0.9},
    ]
    cairn, users = _cairn(make_cairn, tmp_path, tiers=tiers)
    big = Variant("big", tier="big", template="concise")
    _start(cairn, Experiment(name="model", variants=(Variant("control"), big), rollout=100))
    seen = set()
    for user in users[:20]:
        answer = cairn.ask(QUESTION, ["handbook"], principal=user)
        assert answer.route is not None
        assert answer.route["tier"] == ("big" if answer.variant == "model:big" else "local")
        generator = cairn.tiers.answerer(answer.route["tier"]).generator
        assert generator.calls[-1][0].content == (CONCISE.system if answer.variant == "model:big" else GROUNDED.system)
        assert _records(cairn)[answer.audit_id]["route"]["tier"] == answer.route["tier"]  # type: ignore[index]
        seen.add(answer.variant)
    assert seen == {"model:control", "model:big"}
    forced = cairn.ask(QUESTION, ["handbook"], principal=users[0], tier="local")
    assert forced.variant is None, "a forced tier stays out of a tier experiment"


def test_variants_never_share_cached_answers(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn, users = _cairn(make_cairn, tmp_path, answer_cache="exact")
    running = _start(cairn, TONE)
    by_variant: dict[str, list[Principal]] = {}
    for user in users[:20]:
        assignment = assign(running, user)
        assert assignment is not None
        by_variant.setdefault(assignment.variant.name, []).append(user)
    control, concise = by_variant["control"], by_variant["concise"]
    first = cairn.ask(QUESTION, ["handbook"], principal=control[0])
    other = cairn.ask(QUESTION, ["handbook"], principal=concise[0])
    same = cairn.ask(QUESTION, ["handbook"], principal=control[1])
    assert "cache" not in first.trace and "cache" not in other.trace, "another template: another cache entry"
    assert same.trace.get("cache", {}).get("kind") == "exact", "same variant, same rights: served from the cache"
    assert (other.variant, same.variant) == ("tone:concise", "tone:control")


def test_the_kill_switch_turns_assignment_off(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn, users = _cairn(make_cairn, tmp_path, experiments=False)
    _start(cairn, TONE)
    assert all(cairn.ask(QUESTION, ["handbook"], principal=u).variant is None for u in users[:5])


def test_a_variant_this_deployment_cannot_apply_serves_the_default(
    make_cairn: Callable[..., Cairn], tmp_path: Path
) -> None:
    """A tier removed from the configuration under a running experiment must not break anyone's answers."""
    tiers = [{"name": "local", "generator": "fake:scripted"}, {"name": "big", "generator": "fake:scripted"}]
    configured, users = _cairn(make_cairn, tmp_path, tiers=tiers)
    _start(
        configured,
        Experiment(name="model", variants=(Variant("a", tier="local"), Variant("b", tier="big")), rollout=100),
    )
    without_big = make_cairn(min_relevance=0.2, tiers=tiers[:1])
    answers = [without_big.ask(QUESTION, ["handbook"], principal=u) for u in users[:12]]
    assert {a.variant for a in answers} == {"model:a", None}, "variant a still applies, variant b falls back"
    assert all(a.route is None or a.route["tier"] == "local" for a in answers)
