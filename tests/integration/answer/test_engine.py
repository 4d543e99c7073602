"""The answer path with a scripted LLM: citations, refusal before generation, chat rewriting."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cairn.assistant import Cairn
from cairn.types import SYSTEM, ChatMessage

DOCS = {
    "hr.txt": "Employees are required to complete AI ethics training by Q3 2026. "
    "The corporate travel policy has been updated to reflect sustainable options.",
    "it.txt": "Report suspicious emails immediately to security@example.com. "
    "Multi-factor authentication is now mandatory for all internal systems.",
}


# The hash embedder's cosines are not calibrated like a real model's, so the gate is set lower;
# the real-model threshold is exercised by tests/integration/test_seed_scenario.py.
GATE = 0.2


@pytest.fixture
def cairn(make_cairn: Callable[..., Cairn], tmp_path: Path) -> Cairn:
    instance = make_cairn(min_relevance=GATE, grounding_policy="annotate")  # grounding: test_trust_path.py
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    instance.ingestor.sync_folder(docs, "handbook")
    return instance


def test_answer_keeps_only_real_citations(cairn: Cairn) -> None:
    generator = cairn.answerer.generator  # type: ignore[attr-defined]
    generator.enqueue("The deadline is Q3 2026 [1]. See also [9].")
    answer = cairn.engine.ask("What is the deadline for AI ethics training?", ["handbook"], principal=SYSTEM)
    assert not answer.refused
    assert answer.answer == "The deadline is Q3 2026 [1]. See also."
    (citation,) = answer.citations
    assert citation.id == 1 and citation.source.endswith("hr.txt")
    assert "Q3 2026" in citation.text
    prompt = generator.calls[-1][-1].content
    assert "[1] (hr.txt)" in prompt and "AI ethics training" in prompt


def test_uncited_answer_is_attributed(cairn: Cairn) -> None:
    cairn.answerer.generator.enqueue("Suspicious emails go to security@example.com.")  # type: ignore[attr-defined]
    answer = cairn.engine.ask("How do I report a suspicious email?", ["handbook"], principal=SYSTEM)
    assert answer.answer == "Suspicious emails go to security@example.com [1]."
    assert answer.citations[0].source.endswith("it.txt")


def test_irrelevant_question_is_refused_without_calling_the_llm(cairn: Cairn) -> None:
    generator = cairn.answerer.generator  # type: ignore[attr-defined]
    answer = cairn.engine.ask("What is the capital of France?", ["handbook"], principal=SYSTEM)
    assert answer.refused and not answer.citations
    assert answer.answer.startswith("I could not find the answer in the documents.")
    assert generator.calls == []


def test_model_saying_not_found_is_a_refusal(cairn: Cairn) -> None:
    cairn.answerer.generator.enqueue("I could not find the answer in the documents.")  # type: ignore[attr-defined]
    events = list(cairn.engine.stream("What does the travel policy say about trains?", ["handbook"], principal=SYSTEM))
    answer = events[-1].answer
    assert answer is not None and answer.refused and not answer.citations
    assert "".join(e.text for e in events if e.kind == "token") == answer.answer


def test_streaming_yields_cited_sentences_then_the_answer(cairn: Cairn) -> None:
    cairn.answerer.generator.enqueue(  # type: ignore[attr-defined]
        "Use security@example.com [1] [4]. Multi-factor authentication is mandatory."
    )
    events = list(cairn.engine.stream("How do I report a suspicious email?", ["handbook"], principal=SYSTEM))
    tokens = [e.text for e in events if e.kind == "token"]
    assert tokens == ["Use security@example.com [1]. ", "Multi-factor authentication is mandatory [1]."]
    final = events[-1].answer
    assert events[-1].kind == "done" and final is not None
    assert final.answer == "".join(tokens), "the streamed text is the final text"


def test_follow_up_is_rewritten_with_history(cairn: Cairn) -> None:
    generator = cairn.answerer.generator  # type: ignore[attr-defined]
    generator.enqueue("Is multi-factor authentication mandatory for internal systems?", "Yes [1].")
    history = [
        ChatMessage("user", "What are the IT security rules?"),
        ChatMessage("assistant", "Multi-factor authentication is mandatory [1]."),
    ]
    answer = cairn.engine.ask("Is it mandatory?", ["handbook"], history=history, principal=SYSTEM)
    rewrite_prompt = generator.calls[0][-1].content
    assert "What are the IT security rules?" in rewrite_prompt and "Is it mandatory?" in rewrite_prompt
    assert answer.query == "Is multi-factor authentication mandatory for internal systems?"
    assert answer.citations and answer.citations[0].source.endswith("it.txt")


def test_extractive_answerer_cites_the_supporting_sentence(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn = make_cairn(generator="extractive:", min_relevance=GATE)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "it.txt").write_text(DOCS["it.txt"], encoding="utf-8")
    cairn.ingestor.sync_folder(docs, "kb")
    answer = cairn.engine.ask("Where do I report suspicious emails?", ["kb"], principal=SYSTEM)
    assert not answer.refused
    assert "security@example.com" in answer.answer and "[1]" in answer.answer
    assert answer.citations[0].source.endswith("it.txt")
