"""The answer cache's keys and its JSON form of an answer (no database)."""

from __future__ import annotations

import json
import math

import pytest

from cairn.answer.cache import (
    AnswerCache,
    answer_from_payload,
    answer_to_payload,
    config_key,
    exact_key,
    normalise_question,
    scope_key,
    specifics,
)
from cairn.errors import ConfigError
from cairn.types import Answer, Citation, Hit


@pytest.mark.parametrize(
    ("variant", "same"),
    [
        ("What is the VPN gateway?", True),
        ("  what   is the\tvpn GATEWAY ??  ", True),
        ("What is the VPN gateway.", True),
        ("What is the VPN gateway ?!", True),
        ("What is the VPN gateway？", True),  # full-width question mark (NFKC)
        ("Ｗhat is the ＶＰＮ gateway", True),  # full-width letters (NFKC)
        ("What is the VPN-gateway?", False),
        ("What is a VPN gateway?", False),
        ("Is the VPN gateway what?", False),
    ],
)
def test_normalisation(variant: str, same: bool) -> None:
    assert (normalise_question(variant) == normalise_question("What is the VPN gateway?")) is same


def test_normalisation_keeps_inner_punctuation_and_casefolds() -> None:
    assert normalise_question("Straße: U.S. rules, 2026?") == "strasse: u.s. rules, 2026"
    assert normalise_question(" ?!. ") == ""


def test_config_key_is_order_free_for_mappings_and_sensitive_to_values() -> None:
    a = config_key({"top_k": 5, "rerank": None}, "grounded-v3", "local:qwen")
    assert a == config_key({"rerank": None, "top_k": 5}, "grounded-v3", "local:qwen")
    assert a != config_key({"top_k": 6, "rerank": None}, "grounded-v3", "local:qwen")
    assert a != config_key({"top_k": 5, "rerank": None}, "grounded-v4", "local:qwen")
    assert a != config_key({"top_k": 5, "rerank": None}, "grounded-v3", "openai://x/v1")
    assert len(a) == 64 and config_key(object) == config_key(object)  # str() for anything else


def test_scope_and_key() -> None:
    base = scope_key(["hr", "it"], "cfg", "minilm")
    assert base == scope_key(["it", "hr", "hr"], "cfg", "minilm")
    assert base != scope_key(["hr"], "cfg", "minilm")
    assert base != scope_key(["hr", "it"], "cfg2", "minilm")
    assert base != scope_key(["hr", "it"], "cfg", "bge")
    # a knowledge base name cannot spill into the config (JSON, not concatenation)
    assert scope_key(["a,b"], "c", "e") != scope_key(["a", "b"], "c", "e")
    key = exact_key(base, "what is the vpn gateway")
    assert len(key) == 32 and key != exact_key(base, "what is the vpn")
    assert key != exact_key(scope_key(["hr"], "cfg", "minilm"), "what is the vpn gateway")


def _answer() -> Answer:
    hit = Hit(
        chunk_id=7,
        document_id=3,
        source="/docs/hr/leave.txt",
        text="Annual leave is 30 days.",
        start=0,
        end=24,
        score=0.8125,
        page=2,
        title="Leave",
        kb="hr",
        heading_path=("Policy", "Leave"),
        scores={"bm25": 3.25, "cosine": 0.5},
        flags=("injection",),
    )
    return Answer(
        answer="Annual leave is 30 days [1].",
        refused=False,
        citations=(Citation(1, hit.source, 2, 0, 24, hit.text, chunk_id=7),),
        timings_ms={"retrieve": 12.5, "total": 812.25},
        searched=(hit, Hit(8, 4, "b.txt", "Other.", 0, 6, 0.1)),
        query="How long is annual leave?",
        model="qwen",
        grounding={"verdict": "supported", "sentences": [{"supported": True}]},
        guards=({"guard": "injection", "chunk_id": 7},),
        tokens={"prompt": 120, "completion": 9},
        audit_id=42,
        trace={"rewrites": [{"text": "annual leave length"}]},
    )


def test_payload_round_trip_is_faithful_except_the_audit_id() -> None:
    answer = _answer()
    payload = json.loads(json.dumps(answer_to_payload(answer), allow_nan=False))  # what jsonb gives back
    again = answer_from_payload(payload)
    assert again.audit_id is None
    for name in Answer.__dataclass_fields__:
        if name != "audit_id":
            assert getattr(again, name) == getattr(answer, name), name


def test_payload_has_no_non_finite_numbers() -> None:
    answer = _answer()
    odd = Answer("x", False, searched=(Hit(1, 1, "a", "t", 0, 1, math.nan, scores={"x": math.inf}),))
    payload = answer_to_payload(odd)
    json.dumps(payload, allow_nan=False)
    again = answer_from_payload(payload)
    assert math.isnan(again.searched[0].score) and again.searched[0].scores == {}
    assert answer_from_payload(answer_to_payload(answer)).citations == answer.citations
    with pytest.raises(ValueError):
        answer_from_payload({**answer_to_payload(answer), "v": 99})


@pytest.mark.parametrize(
    "options",
    [{"ttl_s": 0}, {"semantic_threshold": 0.0}, {"semantic_threshold": 1.5}, {"max_entries": 0}],
)
def test_bad_options_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        AnswerCache(None, None, **{"semantic_threshold": None, **options})  # type: ignore[arg-type]


def test_semantic_needs_an_embedder_and_construction_is_cheap() -> None:
    with pytest.raises(ConfigError):
        AnswerCache(None, None, semantic_threshold=0.9)  # type: ignore[arg-type]
    cache = AnswerCache(None, None, semantic_threshold=None)  # type: ignore[arg-type]  # touches nothing
    assert cache.ttl_s == 86_400.0 and cache.cache_refusals


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("how quickly must a sev1 page be acknowledged", "how fast must a sev1 page be acknowledged", True),
        ("how quickly must a sev1 page be acknowledged", "how quickly must a sev2 page be acknowledged", False),
        ("what changed in q3 2026", "what changed in 2026 q3", True),
        ("what changed in q3 2026", "what changed in q3", False),
        ("who do i call if my badge doesn't work", "my badge does not work, who do i call", True),
        ("who do i call if my badge doesn't work", "who do i call if my badge works", False),
    ],
)
def test_specifics_a_semantic_match_must_share(a: str, b: str, same: bool) -> None:
    assert (specifics(normalise_question(a)) == specifics(normalise_question(b))) is same
