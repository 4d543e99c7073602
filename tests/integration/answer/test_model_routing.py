"""Model routing through ``Cairn`` on a real database: which tier answers, that sensitive context
(restricted ACL, classified KB, personal data) never reaches an external tier, forced tiers,
fallback, the route in the answer, the audit record, the metrics and ``cairn tiers``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cairn.answer import prompts
from cairn.assistant import Cairn
from cairn.errors import Forbidden, ModelError
from cairn.index.access import readers
from cairn.ops.usage import tier_usage
from cairn.testing.fakes import ScriptedGenerator
from cairn.types import SYSTEM, Principal

PUBLIC = "The cafeteria serves breakfast from 8 to 10 and lunch from 12 to 2 on weekdays."
SALARIES = "Salary bands for engineers are reviewed every March by the compensation committee."
TIERS = [
    {"name": "local", "generator": "fake:scripted"},
    {
        "name": "premium",
        "generator": "fake:scripted",
        "locality": "external",
        "min_complexity": 0.3,
        "prompt_cost_per_1k": 3.0,
        "completion_cost_per_1k": 15.0,
    },
]
# Comparative wording and two documents to combine: complex enough for the premium tier.
COMPLEX_CAFETERIA = "Compare the breakfast hours with the lunch hours of the cafeteria and explain the difference"
COMPLEX_SALARY = "Compare how salary bands for engineers are reviewed and explain who reviews them every March"


def _cairn(make_cairn: Callable[..., Cairn], tmp_path: Path, **settings: Any) -> tuple[Cairn, Principal]:
    cairn = make_cairn(min_relevance=0.2, tiers=settings.pop("tiers", TIERS), **settings)
    for folder, text, groups in (("public", PUBLIC, ["everyone"]), ("hr", SALARIES, ["hr"])):
        docs = tmp_path / folder
        docs.mkdir(exist_ok=True)
        (docs / f"{folder}.txt").write_text(text, encoding="utf-8")
        cairn.ingestor.sync_folder(docs, folder, readers=readers(groups))
    cairn.principals.add_user("hana", ["hr"])
    return cairn, cairn.principals.resolve("hana")


def _generator(cairn: Cairn, tier: str) -> ScriptedGenerator:
    generator = cairn.tiers.answerer(tier).generator
    assert isinstance(generator, ScriptedGenerator)
    return generator


def _audit_route(cairn: Cairn, audit_id: int | None) -> dict[str, Any]:
    entry = next(e for e in cairn.audit.list(SYSTEM, limit=50) if e.id == audit_id)
    route = entry.record["route"]
    assert isinstance(route, dict)
    return route


def test_a_complex_question_on_public_documents_goes_to_the_premium_tier(
    make_cairn: Callable[..., Cairn], tmp_path: Path
) -> None:
    cairn, hana = _cairn(make_cairn, tmp_path)
    _generator(cairn, "premium").enqueue("Breakfast is from 8 to 10 and lunch from 12 to 2 [1].")
    answer = cairn.ask(COMPLEX_CAFETERIA, ["public"], principal=hana)
    assert not answer.refused and answer.route is not None
    assert answer.route["tier"] == "premium" and not answer.route["sensitive"]
    assert answer.route["complexity"]["score"] >= 0.3
    assert answer.route["cost"] == pytest.approx(
        (answer.route["tokens"]["prompt"] * 3.0 + answer.route["tokens"]["completion"] * 15.0) / 1000
    )
    assert answer.route["tokens"]["completion"] > 0 and answer.tokens == answer.route["tokens"]
    assert _generator(cairn, "local").calls == []
    assert _audit_route(cairn, answer.audit_id) == answer.route
    assert answer.to_json()["route"]["tier"] == "premium"

    simple = cairn.ask("When is breakfast served?", ["public"], principal=hana)
    assert simple.route is not None and simple.route["tier"] == "local" and simple.route["complexity"]["score"] < 0.3


def test_restricted_passages_stay_local_even_when_complex_or_forced(
    make_cairn: Callable[..., Cairn], tmp_path: Path
) -> None:
    cairn, hana = _cairn(make_cairn, tmp_path)
    premium = _generator(cairn, "premium")
    _generator(cairn, "local").enqueue("Salary bands are reviewed every March [1].", "Reviewed in March [1].")
    answer = cairn.ask(COMPLEX_SALARY, ["hr"], principal=hana)
    assert answer.route is not None and answer.route["tier"] == "local"
    assert answer.route["sensitive"] and answer.route["sensitivity"] == ["acl"] and answer.route["order"] == ["local"]
    forced = cairn.ask("When are salary bands reviewed?", ["hr"], principal=hana, tier="premium")
    assert forced.route is not None and forced.route["tier"] == "local" and forced.route["forced"] == "premium"
    assert premium.calls == [], "the external tier never saw the restricted passage"
    assert _audit_route(cairn, forced.audit_id)["forced"] == "premium"


def test_classified_kb_and_personal_data_are_sensitive_too(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn, hana = _cairn(make_cairn, tmp_path, kb_classification={"public": "confidential"})
    _generator(cairn, "local").enqueue("From 8 to 10 [1].", "From 8 to 10 [1].")
    by_kb = cairn.ask(COMPLEX_CAFETERIA, ["public"], principal=hana)
    assert by_kb.route is not None and by_kb.route["tier"] == "local" and by_kb.route["sensitivity"] == ["kb"]

    cairn2 = make_cairn(min_relevance=0.2, tiers=TIERS)  # same database, no classification
    hana2 = cairn2.principals.resolve("hana")
    _generator(cairn2, "local").enqueue("From 8 to 10 [1].")
    by_pii = cairn2.ask(COMPLEX_CAFETERIA + " for jane.doe@example.com", ["public"], principal=hana2)
    assert by_pii.route is not None and by_pii.route["sensitivity"] == ["pii:email"]
    assert by_pii.route["tier"] == "local" and _generator(cairn2, "premium").calls == []


def test_only_an_external_model_means_sensitive_questions_are_refused(
    make_cairn: Callable[..., Cairn], tmp_path: Path
) -> None:
    external = [{"name": "api", "generator": "fake:scripted", "locality": "external"}]
    cairn, hana = _cairn(make_cairn, tmp_path, tiers=external)
    answer = cairn.ask("When are salary bands reviewed?", ["hr"], principal=hana)
    assert answer.refused and answer.answer == prompts.SENSITIVE_NO_TIER and answer.citations == ()
    assert answer.route is not None and answer.route["tier"] is None and answer.route["order"] == []
    assert _generator(cairn, "api").calls == []
    assert _audit_route(cairn, answer.audit_id)["sensitive"] is True
    refusals = cairn.telemetry.metrics.registry.get_sample_value(
        "cairn_refusals_total", {"kind": "ask", "reason": "sensitive"}
    )
    assert refusals == 1
    _generator(cairn, "api").enqueue("Breakfast is from 8 to 10 [1].")
    public = cairn.ask("When is breakfast served?", ["public"], principal=hana)
    assert not public.refused and public.route is not None and public.route["tier"] == "api"


def test_a_failing_tier_falls_back_and_usage_is_accounted(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn, hana = _cairn(make_cairn, tmp_path)
    _generator(cairn, "premium").enqueue(ModelError("api.example.com did not answer within 30 s"))
    _generator(cairn, "local").enqueue("Breakfast is from 8 to 10 and lunch from 12 to 2 [1].")
    answer = cairn.ask(COMPLEX_CAFETERIA, ["public"], principal=hana)
    assert not answer.refused and answer.route is not None
    assert answer.route["chosen"] == "premium" and answer.route["tier"] == "local"
    assert [a["tier"] for a in answer.route["attempts"]] == ["premium", "local"]
    assert "did not answer" in answer.route["attempts"][0]["error"]
    assert cairn.telemetry.metrics.registry.get_sample_value("cairn_tier_failures_total", {"tier": "premium"}) == 1

    _generator(cairn, "premium").enqueue("Breakfast 8 to 10, lunch 12 to 2 [1].")
    cairn.ask(COMPLEX_CAFETERIA + " please", ["public"], principal=hana)
    usage = {u.tier: u for u in tier_usage(cairn.db, SYSTEM)}
    assert usage["local"].answers == 1 and usage["premium"].answers == 1 and usage["premium"].failures == 1
    assert usage["premium"].cost > 0 and usage["local"].cost == 0
    with pytest.raises(Forbidden):
        tier_usage(cairn.db, hana)


def test_without_tiers_the_generator_is_the_one_tier(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn, hana = _cairn(make_cairn, tmp_path, tiers=[])
    cairn.answerer.generator.enqueue("Reviewed every March [1].")  # type: ignore[attr-defined]
    answer = cairn.ask("When are salary bands reviewed?", ["hr"], principal=hana)
    assert answer.route is not None and answer.route["tier"] == "default"
    assert answer.route["sensitive"] is None, "a local model alone: nothing to protect, nothing assessed"
    assert [t.name for t in cairn.tier_list] == ["default"] and cairn.tier_list[0].locality == "local"


def test_tiers_cli(run: Callable[..., tuple[int, str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CAIRN_TIERS", json.dumps([{"name": "small"}, TIERS[1]]))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "public.txt").write_text(PUBLIC, encoding="utf-8")
    assert run("ingest", str(docs), "--kb", "public", "--groups", "everyone")[0] == 0
    code, listed = run("tiers", "list", "--json")
    assert code == 0
    body = json.loads(listed)
    assert [(t["name"], t["locality"]) for t in body["tiers"]] == [("small", "local"), ("premium", "external")]
    assert body["sensitivity_signals"] == ["acl", "kb", "pii"]
    code, asked = run("ask", "When is breakfast served?", "--kb", "public", "--tier", "premium", "--json")
    assert code == 0 and json.loads(asked)["route"]["forced"] == "premium"
    code, used = run("tiers", "usage", "--json", "--days", "1")
    assert code == 0
    tiers = {t["tier"]: t for t in json.loads(used)["tiers"]}
    assert tiers["premium"]["answers"] == 1 and tiers["premium"]["forced"] == 1
