"""Question decomposition: the heuristic splits what it should and nothing else; the LLM path parses and falls back."""

from __future__ import annotations

import pytest

from cairn.errors import ConfigError, ModelError
from cairn.retrieve.base import DECOMPOSERS, Decomposer
from cairn.retrieve.decompose import (
    HeuristicDecomposer,
    LLMDecomposer,
    decompose_messages,
    parse_subquestions,
    split_question,
)
from cairn.testing.fakes import ScriptedGenerator

SPLITS = [
    # comparisons: one part per entity, the aspect and the shared words kept
    ("Compare SEV1 and SEV2 incidents", ["SEV1 incidents", "SEV2 incidents"]),
    ("Compare the remote work policy and the travel policy", ["The remote work policy", "The travel policy"]),
    (
        "Compare the hotel limits for domestic and international travel",
        ["The hotel limits for domestic travel", "The hotel limits for international travel"],
    ),
    ("Compare parental leave with the policy on sick leave", ["Parental leave", "The policy on sick leave"]),
    (
        "Compare the remote work policy and the travel policy in terms of approvals",
        ["The remote work policy in terms of approvals", "The travel policy in terms of approvals"],
    ),
    (
        "Compare domestic and international hotels on price",
        ["Domestic hotels on price", "International hotels on price"],
    ),
    ("Can you compare Python and Rust memory safety?", ["Python memory safety", "Rust memory safety"]),
    ("What is the difference between SEV1 and SEV2?", ["SEV1", "SEV2"]),
    (
        "What is the difference between the SEV1 and SEV2 response times?",
        ["The SEV1 response times", "SEV2 response times"],
    ),
    ("What are the differences between remote and hybrid work?", ["Remote work", "Hybrid work"]),
    ("What is the difference in cost between trains and flights?", ["Cost of trains", "Cost of flights"]),
    ("What's the difference between a purchase order and an expense claim?", ["A purchase order", "An expense claim"]),
    (
        "How do SEV1 and SEV2 differ in acknowledgement time?",
        ["SEV1 in acknowledgement time", "SEV2 in acknowledgement time"],
    ),
    (
        "How does the Example Book 14 differ from the Example Book Pro 16?",
        ["The Example Book 14", "The Example Book Pro 16"],
    ),
    ("How is a SEV2 different from a SEV3?", ["A SEV2", "A SEV3"]),
    (
        "What is the hotel limit for domestic vs international travel?",
        ["What is the hotel limit for domestic travel?", "What is the hotel limit for international travel?"],
    ),
    (
        "Is remote work vs. office work better for productivity?",
        ["Is remote work better for productivity?", "Is office work better for productivity?"],
    ),
    ("Trains versus flights", ["Trains", "Flights"]),
    (
        "Which has a higher hotel limit, domestic or international travel?",
        ["Domestic travel has a higher hotel limit", "International travel has a higher hotel limit"],
    ),
    # several questions in one; a pronoun pointing back takes the first question's topic
    (
        "What is the VPN address and how do I connect to it?",
        ["What is the VPN address?", "How do I connect to the VPN address?"],
    ),
    (
        "What is the travel policy and who approves it?",
        ["What is the travel policy?", "Who approves the travel policy?"],
    ),
    ("What is MFA and why is it mandatory?", ["What is MFA?", "Why is MFA mandatory?"]),
    (
        "What happens if I lose my badge and who replaces it?",
        ["What happens if I lose my badge?", "Who replaces my badge?"],
    ),
    (
        "How do I request a laptop and when will it arrive?",
        ["How do I request a laptop?", "When will a laptop arrive?"],
    ),
    ("Is the VPN required and is MFA mandatory?", ["Is the VPN required?", "Is MFA mandatory?"]),
    (
        "What is the hotel limit? When is the dashboard launching?",
        ["What is the hotel limit?", "When is the dashboard launching?"],
    ),
    (
        "What is the hotel limit abroad, and how quickly must a SEV1 page be acknowledged?",
        ["What is the hotel limit abroad?", "How quickly must a SEV1 page be acknowledged?"],
    ),
    # lists of three or more
    (
        "What are the travel, expense and procurement policies?",
        ["What are the travel policies?", "What are the expense policies?", "What are the procurement policies?"],
    ),
    (
        "How do I reset my password, unlock my account, and enrol MFA?",
        ["How do I reset my password?", "How do I unlock my account?", "How do I enrol MFA?"],
    ),
    (
        "Where do I return my laptop, charger and privacy filter?",
        ["Where do I return my laptop?", "Where do I return my charger?", "Where do I return my privacy filter?"],
    ),
    # two noun phrases with their own determiners
    ("How do I reach the VPN and the HR portal?", ["How do I reach the VPN?", "How do I reach the HR portal?"]),
    (
        "Who is the owner of the handbook and the on-call policy?",
        ["Who is the owner of the handbook?", "Who is the owner of the on-call policy?"],
    ),
    # a comparison inside one of two questions is split too
    (
        "What is the difference between the travel policy and the expense policy and how do I choose?",
        ["The travel policy", "The expense policy", "How do I choose?"],
    ),
]

KEPT = [
    # fixed pairs and bare coordination
    "What are the terms and conditions?",
    "What is the research and development budget?",
    "What are the pros and cons of remote work?",
    "Is health and safety training mandatory?",
    "Who approves travel and expense claims?",
    "What are the hotel limits and meal allowances?",
    "Can I expense meals and drinks?",
    "Do I need approval for hotels and flights?",
    "What are the rules for gifts and hospitality?",
    "Which laptop do engineers and analysts receive?",
    "How do I sign in and out of the VPN?",
    "What is the capital of France and Germany?",
    "How do I connect to the VPN and access the HR portal?",
    "Are trains or flights required for short trips?",
    "What should I do if my company laptop is lost or stolen?",
    # relations are one question
    "What is the relationship between sleep and memory?",
    "Is there a link between the diet and the disease?",
    "What is the ratio of the price and the cost?",
    # numbers, single questions, too short, too vague
    "How much is the learning budget of 1,500 EUR per year?",
    "What is the nightly hotel limit for international business travel?",
    "Who do I contact if my badge does not work during my first week?",
    "Tell me about the corporate travel policy.",
    "How quickly must the on-call engineer acknowledge a SEV1 page?",
    "What is the difference?",
    "Compare everything",
    "SEV1 vs",
    "hello",
    "",
    # a follow-up that cannot stand alone, a pronoun without an antecedent
    "What is the hotel limit? And what about meals?",
    "What did the study find and what does it mean for patients?",
    # claims (SciFact style) are never split
    "0-dimensional biomaterials show inductive properties.",
    "IL-6, IL-8 and TNF-alpha levels are elevated in sepsis.",
    "Smoking and obesity increase the risk of heart disease.",
    "Vitamin D supplementation versus placebo in elderly women with low bone density reduces fracture risk.",
]


@pytest.mark.parametrize(("question", "parts"), SPLITS)
def test_heuristic_splits_complex_questions(question: str, parts: list[str]) -> None:
    assert split_question(question) == parts


@pytest.mark.parametrize("question", KEPT)
def test_heuristic_keeps_simple_questions_whole(question: str) -> None:
    assert split_question(question) == [question]


def test_heuristic_respects_the_limit() -> None:
    question = "What are the HR, IT, finance and product policies?"
    assert len(split_question(question, n=4)) == 4
    assert split_question(question, n=3) == [question]
    decomposer = HeuristicDecomposer(n=3)
    assert isinstance(decomposer, Decomposer)
    assert decomposer.decompose(question) == [question]


def test_heuristic_registry_and_options() -> None:
    decomposer = DECOMPOSERS.create("heuristic:?n=2")
    assert isinstance(decomposer, HeuristicDecomposer) and decomposer.n == 2
    assert decomposer.decompose("Compare A1 and B2 limits") == ["A1 limits", "B2 limits"]
    assert isinstance(DECOMPOSERS.create("heuristic"), HeuristicDecomposer)
    with pytest.raises(ConfigError):
        DECOMPOSERS.create("heuristic:?n=1")
    with pytest.raises(ConfigError):
        DECOMPOSERS.create("heuristic:?depth=2")
    with pytest.raises(ConfigError):
        DECOMPOSERS.create("heuristic:?n=two")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("1. What is the hotel limit?\n2. When is the dashboard launching?", ["a", "b"]),
        ("Here are the sub-questions:\n- What is the hotel limit?\n- When is the dashboard launching?", ["a", "b"]),
        ('["What is the hotel limit?", "When is the dashboard launching?"]', ["a", "b"]),
        ('**Q1:** "What is the hotel limit?"\n**Q2:** "When is the dashboard launching?"', ["a", "b"]),
        ("What is the hotel limit?\nWhat is the hotel limit?\nWhen is the dashboard launching?", ["a", "b"]),
        ("What is the hotel limit?", ["q"]),  # one question: not complex, the original is kept
        ("", ["q"]),
        ("Sure!\n\n", ["q"]),
    ],
)
def test_parse_subquestions(reply: str, expected: list[str]) -> None:
    question = "What is the hotel limit and when is the dashboard launching?"
    names = {"a": "What is the hotel limit?", "b": "When is the dashboard launching?", "q": question}
    assert parse_subquestions(reply, question, 3) == [names[e] for e in expected]


def test_parse_subquestions_caps_at_n() -> None:
    reply = "\n".join(f"What is item number {i}?" for i in range(6))
    assert parse_subquestions(reply, "q q q", 3) == [f"What is item number {i}?" for i in range(3)]


def test_llm_decomposer_asks_the_generator() -> None:
    generator = ScriptedGenerator()
    generator.enqueue("1. What is the hotel limit abroad?\n2. How fast is a SEV1 acknowledged?")
    decomposer = DECOMPOSERS.create("llm:?n=2", generator=generator)
    assert isinstance(decomposer, LLMDecomposer)
    question = "What is the hotel limit abroad and how fast is a SEV1 acknowledged?"
    assert decomposer.decompose(question) == ["What is the hotel limit abroad?", "How fast is a SEV1 acknowledged?"]
    (messages,) = generator.calls
    assert messages == tuple(decompose_messages(question, 2))
    assert "at most 2" in messages[0].content


def test_llm_decomposer_falls_back_to_the_question() -> None:
    generator = ScriptedGenerator()
    generator.enqueue(ModelError("the model server is down"), "I cannot help with that.")
    decomposer = LLMDecomposer(generator, n=3)
    question = "Compare the travel policy and the expense policy"
    assert decomposer.decompose(question) == [question]  # the call failed
    assert decomposer.decompose(question) == [question]  # nothing usable in the reply
    assert decomposer.decompose("hi there") == ["hi there"]  # too short to ask about
    assert len(generator.calls) == 2


def test_llm_decomposer_needs_a_generator() -> None:
    with pytest.raises(ConfigError) as info:
        DECOMPOSERS.create("llm:", generator=None)
    assert info.value.hint and "heuristic" in info.value.hint
    with pytest.raises(ConfigError):
        DECOMPOSERS.create("llm:?n=11", generator=ScriptedGenerator())
