"""Model routing without a database: locality inference, the complexity and sensitivity
assessments, the router's attempt order and the enforcement where text is handed to a model."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import pytest

from cairn.answer.tiers import (
    Complexity,
    SensitivityVerdict,
    Tier,
    TierRouter,
    TierSet,
    assess_complexity,
    assess_sensitivity,
    infer_locality,
    resolve_tiers,
)
from cairn.errors import ConfigError, InputError, ModelError, ModelUnavailable, StoreError
from cairn.index.analyzer import Analyzer
from cairn.ops.telemetry import PipelineMetrics
from cairn.settings import TierSpec, get_settings
from cairn.types import SYSTEM, Hit

ANALYZER = Analyzer()
LOCAL = Tier("local", "local:qwen2.5-1.5b-instruct", "local")
ONPREM = Tier("vllm", "openai://vllm:8000/v1?model=llama", "onprem", min_complexity=0.34)
PREMIUM = Tier(
    "premium",
    "openai://api.openai.com/v1?model=gpt",
    "external",
    min_complexity=0.67,
    prompt_cost_per_1k=2.5,
    completion_cost_per_1k=10.0,
)
OPEN = SensitivityVerdict()
SECRET = SensitivityVerdict(("acl",))


def _hit(chunk_id: int, text: str, *, document_id: int | None = None, cosine: float = 0.8, kb: str = "kb") -> Hit:
    return Hit(
        chunk_id=chunk_id,
        document_id=document_id if document_id is not None else chunk_id,
        source=f"doc{chunk_id}.txt",
        text=text,
        start=0,
        end=len(text),
        score=1.0,
        kb=kb,
        scores={"cosine": cosine},
    )


def _complexity(score: float) -> Complexity:
    return Complexity(score=score, features={})


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("local:qwen2.5-1.5b-instruct", "local"),
        ("extractive:", "local"),
        ("fake:scripted", "local"),
        ("openai://localhost:8000/v1?model=m", "onprem"),
        ("openai://127.0.0.1:8000/v1?model=m", "onprem"),
        ("http://10.2.3.4/v1?model=m", "onprem"),
        ("openai://192.168.1.20:8000/v1?model=m", "onprem"),
        ("openai://vllm:8000/v1?model=m", "onprem"),
        ("openai://llm.corp.internal/v1?model=m", "onprem"),
        ("openai://vllm.ml.svc.cluster.local/v1?model=m", "onprem"),
        ("openais://api.openai.com/v1?model=gpt-4o", "external"),
        ("https://8.8.8.8/v1?model=m", "external"),
        ("https://llm.example.com/v1?model=m", "external"),
        ("someplugin:model", "external"),
    ],
)
def test_locality_is_inferred_and_unknown_fails_closed(location: str, expected: str) -> None:
    assert infer_locality(location) == expected


def test_resolve_tiers_defaults_to_the_generator_and_the_first_tier_may_omit_it() -> None:
    (only,) = resolve_tiers([], "local:qwen2.5-1.5b-instruct")
    assert (only.name, only.locality) == ("default", "local")
    tiers = resolve_tiers(
        [
            TierSpec(name="small"),
            TierSpec(name="big", generator="openais://api.openai.com/v1?model=x", min_complexity=0.5),
            TierSpec(name="lab", generator="https://gpu.example.com/v1?model=y", locality="onprem", min_complexity=0.6),
        ],
        "extractive:",
    )
    assert [(t.name, t.location, t.locality) for t in tiers] == [
        ("small", "extractive:", "local"),
        ("big", "openais://api.openai.com/v1?model=x", "external"),
        ("lab", "https://gpu.example.com/v1?model=y", "onprem"),
    ]
    with pytest.raises(ConfigError, match="no generator"):
        resolve_tiers([TierSpec(name="a"), TierSpec(name="b")], "extractive:")


def test_settings_refuse_incoherent_tiers() -> None:
    with pytest.raises(ConfigError, match="unique"):
        get_settings(tiers=[{"name": "a"}, {"name": "a", "generator": "extractive:"}])
    with pytest.raises(ConfigError, match="min_complexity must be 0"):
        get_settings(tiers=[{"name": "a", "min_complexity": 0.2}])
    with pytest.raises(ConfigError, match="pattern"):
        get_settings(tiers=[{"name": "Has Spaces"}])
    with pytest.raises(ConfigError, match="extra"):
        get_settings(tiers=[{"name": "a", "price": 3}])


def test_complexity_rises_with_each_feature() -> None:
    strong = [_hit(1, "Multi-factor authentication is mandatory for all internal systems.", cosine=0.9)]
    simple = assess_complexity("Is multi-factor authentication mandatory?", strong, ANALYZER)
    assert simple.level == "simple" and simple.score < 0.2
    assert simple.features["reasoning"] == 0 and simple.features["spread"] == 0

    worded = assess_complexity("Why is multi-factor authentication mandatory?", strong, ANALYZER)
    assert worded.features["reasoning"] == 0.6 and worded.score > simple.score

    weak = [_hit(i, f"Unrelated passage number {i} about the cafeteria menu.", cosine=0.1) for i in range(1, 5)]
    hard = assess_complexity(
        "Compare the remote work policy with the travel policy, and explain how each affects contractors "
        "who work from another country for more than three months in a single calendar year",
        weak,
        ANALYZER,
        sub_questions=2,
    )
    assert hard.level == "complex" and hard.score > 0.85
    assert hard.features == {"length": pytest.approx(22 / 32), "reasoning": 1.0, "difficulty": 1.0, "spread": 1.0}


def test_sensitivity_signals() -> None:
    public = _hit(1, "The cafeteria opens at 8.")
    restricted = _hit(2, "Salary bands are reviewed in March.", kb="hr")
    everyone = {1: ("group:everyone",), 2: ("group:hr",)}

    def readers(ids: Sequence[int]) -> Mapping[int, Sequence[str]]:
        return {i: everyone[i] for i in ids if i in everyone}

    def verdict(question: str, hits: Sequence[Hit], **kw: object) -> tuple[str, ...]:
        options: dict[str, object] = {
            "signals": ("acl", "kb", "pii"),
            "readers": readers,
            "classification": {},
            "find_pii": lambda text: ["email"] if "@" in text else [],
        } | kw
        return assess_sensitivity(question, hits, **options).reasons  # type: ignore[arg-type]

    assert verdict("When does the cafeteria open?", [public]) == ()
    assert verdict("Salary bands?", [public, restricted]) == ("acl",)
    assert verdict("x", [_hit(3, "replaced by a re-ingest")]) == ("acl",), "an unknown passage is restricted"
    assert verdict("x", [public], classification={"kb": "confidential"}) == ("kb",)
    assert verdict("x", [public], classification={"kb": "internal"}) == ()
    assert verdict("mail bob@example.com", [public]) == ("pii:email",)
    assert verdict("x", [_hit(1, "write to bob@example.com")]) == ("pii:email",)
    assert verdict("Salary bands? bob@example.com", [restricted], signals=("kb",)) == ()


def test_router_orders_the_chosen_tier_then_up_then_down() -> None:
    router = TierRouter([LOCAL, ONPREM, PREMIUM])
    assert router.route(_complexity(0.1), OPEN).order == ("local", "vllm", "premium")
    assert router.route(_complexity(0.5), OPEN).order == ("vllm", "premium", "local")
    assert router.route(_complexity(0.9), OPEN).order == ("premium", "vllm", "local")


def test_sensitive_context_never_routes_to_an_external_tier() -> None:
    router = TierRouter([LOCAL, ONPREM, PREMIUM])
    route = router.route(_complexity(0.9), SECRET)
    assert route.order == ("vllm", "local") and route.chosen == "vllm"
    forced = router.route(_complexity(0.9), SECRET, force="premium")
    assert forced.order == ("vllm", "local") and forced.forced == "premium"
    assert router.route(_complexity(0.1), OPEN, force="premium").order == ("premium", "vllm", "local")
    assert TierRouter([PREMIUM]).route(_complexity(0.0), SECRET).order == ()
    with pytest.raises(InputError, match="unknown tier"):
        router.route(_complexity(0.1), OPEN, force="nope")


class _Answerer:
    def __init__(self, name: str, script: Sequence[str | BaseException]) -> None:
        self.name = name
        self.script = list(script)
        self.calls = 0
        self.usage = {"prompt": 1000, "completion": 200}

    def stream_answer(self, question: str, hits: Sequence[Hit]) -> Iterator[str]:
        self.calls += 1
        for item in self.script:
            if isinstance(item, BaseException):
                raise item
            yield item


def _tierset(answerers: dict[str, _Answerer], tiers: Sequence[Tier] = (LOCAL, ONPREM, PREMIUM)) -> TierSet:
    return TierSet(tiers, lambda tier: answerers[tier.name], analyzer=ANALYZER)


def test_fallback_before_any_text_and_cost_of_the_tier_that_answered() -> None:
    answerers = {
        "local": _Answerer("small", ["fine [1]."]),
        "vllm": _Answerer("mid", [ModelError("vllm:8000 did not answer within 30 s")]),
        "premium": _Answerer("big", ["Premium answer [1]."]),
    }
    tiers = _tierset(answerers)
    route = tiers.router.route(_complexity(0.5), OPEN)
    assert "".join(tiers.stream_answer(route, "q", [])) == "Premium answer [1]."
    assert route.used == "premium" and [a["tier"] for a in route.attempts] == ["vllm", "premium"]
    assert "did not answer" in route.attempts[0]["error"] and "error" not in route.attempts[1]
    assert route.cost == pytest.approx(1000 / 1000 * 2.5 + 200 / 1000 * 10.0)
    assert route.record()["tier"] == "premium" and route.record()["tokens"] == {"prompt": 1000, "completion": 200}


def test_failures_after_text_or_outside_the_model_are_not_retried_elsewhere() -> None:
    answerers = {
        "local": _Answerer("small", ["ok"]),
        "vllm": _Answerer("mid", ["Half an answer", ModelError("stream broke")]),
        "premium": _Answerer("big", [StoreError("database gone")]),
    }
    tiers = _tierset(answerers)
    with pytest.raises(ModelError, match="stream broke"):
        list(tiers.stream_answer(tiers.router.route(_complexity(0.5), OPEN), "q", []))
    assert answerers["premium"].calls == 0
    with pytest.raises(StoreError):
        list(tiers.stream_answer(tiers.router.route(_complexity(0.9), OPEN), "q", []))
    assert answerers["local"].calls == 0


def test_every_tier_failing_is_model_unavailable_with_each_reason() -> None:
    answerers = {name: _Answerer(name, [ModelError(f"{name} down")]) for name in ("local", "vllm", "premium")}
    tiers = _tierset(answerers)
    with pytest.raises(ModelUnavailable, match="local: local down; vllm: vllm down; premium: premium down"):
        list(tiers.stream_answer(tiers.router.route(_complexity(0.0), OPEN), "q", []))


def test_a_route_built_by_hand_cannot_carry_sensitive_context_out() -> None:
    answerers = {"local": _Answerer("small", ["x"]), "premium": _Answerer("big", ["leaked"])}
    tiers = _tierset(answerers, (LOCAL, PREMIUM))
    route = tiers.router.route(_complexity(0.9), SECRET)
    route.order = ("premium", "local")
    with pytest.raises(ModelUnavailable, match="sensitive context may not reach it"):
        list(tiers.stream_answer(route, "q", []))
    assert answerers["premium"].calls == 0


def test_tierset_assesses_with_the_callers_principal() -> None:
    seen: list[object] = []

    def readers(principal: object, ids: Sequence[int]) -> Mapping[int, Sequence[str]]:
        seen.append((principal, tuple(ids)))
        return dict.fromkeys(ids, ("group:hr",))

    tiers = TierSet([LOCAL, PREMIUM], lambda t: None, analyzer=ANALYZER, signals=("acl",), readers=readers)
    route = tiers.route("What are the salary bands?", [_hit(7, "Salary bands.")], SYSTEM)
    assert seen == [(SYSTEM, (7,))] and route.sensitivity.reasons == ("acl",) and route.order == ("local",)
    on_premises = TierSet([LOCAL, ONPREM], lambda t: None, analyzer=ANALYZER, signals=("acl",), readers=readers)
    skipped = on_premises.route("What are the salary bands?", [_hit(7, "Salary bands.")], SYSTEM)
    assert len(seen) == 1 and skipped.record()["sensitive"] is None, "nothing to protect: not assessed"
    with pytest.raises(ConfigError, match="acl"):
        TierSet([LOCAL], lambda t: None, analyzer=ANALYZER, signals=("acl",))


def test_route_metrics() -> None:
    metrics = PipelineMetrics()
    answerers = {"local": _Answerer("small", ["x"]), "premium": _Answerer("big", [ModelError("down")])}
    tiers = _tierset(answerers, (LOCAL, PREMIUM))
    route = tiers.router.route(_complexity(0.9), SensitivityVerdict(("pii:email", "pii:phone", "kb")))
    route.order = ("local",)
    list(tiers.stream_answer(route, "q", []))
    metrics.observe_route(route.record())
    metrics.observe_route({"tier": "premium", "tokens": {"prompt": 10}, "cost": 0.5, "attempts": []})
    metrics.observe_route({"tier": None, "attempts": [{"tier": "premium", "error": "down"}], "sensitivity": []})

    def value(name: str, **labels: str) -> float:
        got = metrics.registry.get_sample_value(name, labels)
        return 0.0 if got is None else got

    assert (
        value("cairn_tier_answers_total", tier="local") == 1 and value("cairn_tier_answers_total", tier="premium") == 1
    )
    assert value("cairn_tier_tokens_total", tier="local", direction="completion") == 200
    assert value("cairn_tier_cost_total", tier="premium") == 0.5
    assert value("cairn_tier_failures_total", tier="premium") == 1
    assert value("cairn_route_sensitive_total", reason="pii") == 1 and value("cairn_route_sensitive_total", reason="kb")
    assert value("cairn_route_complexity_count") == 1
