from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pytest

from cairn.answer import prompts
from cairn.errors import ConfigError, ModelError
from cairn.index.analyzer import Analyzer
from cairn.retrieve.base import REWRITERS, QueryRewriter, Rewrite
from cairn.retrieve.rewrite import (
    MAX_REWRITE_CHARS,
    LLMRewriter,
    RM3Rewriter,
    parse_reformulations,
    rewrite_followup,
    rocchio,
)
from cairn.testing.fakes import ScriptedGenerator
from cairn.types import ChatMessage, Hit

QUESTION = "Does chloroquine cause retinal toxicity?"


def hit(chunk_id: int, text: str, score: float) -> Hit:
    return Hit(chunk_id=chunk_id, document_id=chunk_id, source=f"d{chunk_id}", text=text, start=0, end=0, score=score)


# --- llm: -------------------------------------------------------------------------------------


def test_parse_strips_markers_quotes_and_preambles() -> None:
    reply = (
        "Sure! Here are 3 search queries:\n"
        '1. "chloroquine retinopathy risk"\n'
        "2) hydroxychloroquine maculopathy incidence\n"
        "- **antimalarial drugs eye damage**\n"
        "Query 4: chloroquine ocular side effects\n"
    )
    assert parse_reformulations(reply, QUESTION, 5) == [
        "chloroquine retinopathy risk",
        "hydroxychloroquine maculopathy incidence",
        "antimalarial drugs eye damage",
        "chloroquine ocular side effects",
    ]


def test_parse_keeps_queries_that_start_like_markers() -> None:
    reply = "1.5 mg chloroquine dose\nQ-switched laser retina\n-4 degree storage\nQ2: retinal damage"
    assert parse_reformulations(reply, QUESTION, 5) == [
        "1.5 mg chloroquine dose",
        "Q-switched laser retina",
        "-4 degree storage",
        "retinal damage",
    ]


def test_parse_drops_empties_repeats_and_the_question() -> None:
    analyzer = Analyzer()
    reply = (
        "\n\n"
        "Does chloroquine cause retinal toxicity?\n"  # the original
        "chloroquine does cause retinal toxicities\n"  # the same analysed terms as the original
        "retinal damage from chloroquine\n"
        "  Retinal damage from chloroquine.  \n"  # a repeat
        "...\n"  # no terms
        "antimalarial retinopathy\n"
    )
    assert parse_reformulations(reply, QUESTION, 5, analyzer) == [
        "retinal damage from chloroquine",
        "antimalarial retinopathy",
    ]


def test_parse_caps_count_and_length() -> None:
    long_line = " ".join(["retinopathy"] * 60)
    out = parse_reformulations(f"{long_line}\nfirst\nsecond\nthird\n", QUESTION, 2)
    assert len(out) == 2
    assert len(out[0]) <= MAX_REWRITE_CHARS and out[0].endswith("retinopathy")
    assert out[1] == "first"
    assert parse_reformulations("", QUESTION, 3) == []


def test_llm_rewriter_asks_for_n_queries_and_weights_them() -> None:
    generator = ScriptedGenerator()
    generator.enqueue("chloroquine retinopathy\nantimalarial eye toxicity\nextra line\nand another")
    rewriter = LLMRewriter(generator, n=2, weight=0.4)
    assert isinstance(rewriter, QueryRewriter) and rewriter.needs_feedback is False
    rewrites = rewriter.expand(QUESTION, [])
    assert rewrites == [
        Rewrite("chloroquine retinopathy", weight=0.4, source="llm"),
        Rewrite("antimalarial eye toxicity", weight=0.4, source="llm"),
    ]
    (messages,) = generator.calls
    assert "Write 2 search queries" in messages[0].content
    assert len(messages[2].content.splitlines()) == 2  # the worked example shows n queries
    assert messages[-1].content == f"Question: {QUESTION}"


def test_llm_rewriter_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    generator = ScriptedGenerator()
    generator.enqueue(ModelError("the model server is down"), "Here are the queries:\n\n")
    rewriter = LLMRewriter(generator)
    with caplog.at_level(logging.INFO, logger="cairn.retrieve.rewrite"):
        assert rewriter.expand(QUESTION, []) == []
        assert rewriter.expand(QUESTION, []) == []
    assert "the model server is down" in caplog.text
    assert "no usable reformulation" in caplog.text
    assert rewriter.expand("   ", []) == []


def test_llm_factory_needs_a_generator_and_parses_options() -> None:
    with pytest.raises(ConfigError) as info:
        REWRITERS.create("llm:", generator=None)
    assert info.value.hint is not None and "rm3:" in info.value.hint
    rewriter = REWRITERS.create("llm:?n=5&weight=0.25", generator=ScriptedGenerator(), analyzer=Analyzer())
    assert isinstance(rewriter, LLMRewriter)
    assert (rewriter.n, rewriter.weight) == (5, 0.25)
    for bad in ("llm:?n=0", "llm:?n=2.5", "llm:?k=3", "llm:?n=three", "llm:gpt?n=3"):
        with pytest.raises(ConfigError):
            REWRITERS.create(bad, generator=ScriptedGenerator())


# --- rm3: -------------------------------------------------------------------------------------


def test_relevance_model_matches_the_formula() -> None:
    analyzer = Analyzer(stem=False)
    rm3 = RM3Rewriter(analyzer, fb_docs=2, fb_terms=3)
    feedback = [hit(1, "alpha alpha beta", 3.0), hit(2, "beta gamma", 1.0), hit(3, "delta delta", 100.0)]
    # P(w|R) ~ sum_d P(w|d) * score(d) over the first fb_docs: alpha 2/3*3, beta 1/3*3 + 1/2*1, gamma 1/2*1.
    raw = {"alpha": 2.0, "beta": 1.5, "gamma": 0.5}
    total = sum(raw.values())
    assert rm3.relevance_model(feedback) == pytest.approx({t: v / total for t, v in raw.items()})
    assert RM3Rewriter(analyzer, fb_docs=2, fb_terms=1).relevance_model(feedback) == {"alpha": 1.0}


def test_relevance_model_uniform_without_positive_scores() -> None:
    rm3 = RM3Rewriter(Analyzer(stem=False), fb_docs=5, fb_terms=10)
    feedback = [hit(1, "alpha beta", 0.0), hit(2, "alpha gamma", -1.0)]
    assert rm3.relevance_model(feedback) == pytest.approx({"alpha": 0.5, "beta": 0.25, "gamma": 0.25})


def test_rm3_interpolates_with_the_query() -> None:
    analyzer = Analyzer(stem=False)
    feedback = [hit(1, "beta beta gamma", 1.0)]
    rm3 = RM3Rewriter(analyzer, fb_docs=1, fb_terms=2, orig=0.5, weight=0.7)
    assert isinstance(rm3, QueryRewriter) and rm3.needs_feedback is True
    (rewrite,) = rm3.expand("  alpha   alpha beta ", feedback)
    # len(q) * (orig * P(w|Q) + (1 - orig) * P(w|R)) with len(q) = 3.
    assert rewrite.terms == pytest.approx({"alpha": 1.0, "beta": 0.5 + 1.0, "gamma": 0.5})
    assert (rewrite.text, rewrite.weight, rewrite.source) == ("alpha alpha beta", 0.7, "rm3")
    assert sum((rewrite.terms or {}).values()) == pytest.approx(3.0)


def test_rm3_with_orig_one_is_the_plain_query() -> None:
    analyzer = Analyzer()
    rm3 = RM3Rewriter(analyzer, orig=1.0)
    (rewrite,) = rm3.expand(QUESTION, [hit(1, "Hydroxychloroquine maculopathy in lupus patients", 2.0)])
    assert rewrite.terms is not None
    assert {t: w for t, w in rewrite.terms.items() if w > 0} == pytest.approx(dict(Counter(analyzer.terms(QUESTION))))


def test_rm3_expansion_uses_index_terms_and_is_deterministic() -> None:
    analyzer = Analyzer()
    feedback = [
        hit(1, "Chloroquine retinopathy is rare in patients taking antimalarial prophylaxis.", 0.9),
        hit(2, "Retinopathy screening for hydroxychloroquine users.", 0.5),
    ]
    rm3 = RM3Rewriter(analyzer, fb_docs=2, fb_terms=5, orig=0.6)
    first = rm3.expand(QUESTION, feedback)
    assert first == rm3.expand(QUESTION, feedback)
    terms = first[0].terms
    assert terms is not None and "retinopathi" in terms  # stemmed like the BM25 index
    assert set(analyzer.terms(QUESTION)) <= set(terms)


def test_rm3_without_feedback_adds_nothing() -> None:
    assert RM3Rewriter().expand(QUESTION, []) == []
    assert RM3Rewriter().expand(QUESTION, [hit(1, "a the of", 1.0)]) == []


def test_rm3_factory_options() -> None:
    rm3 = REWRITERS.create("rm3:?fb_docs=3&fb_terms=30&orig=0.8&weight=2", analyzer=Analyzer(), generator=None)
    assert isinstance(rm3, RM3Rewriter)
    assert (rm3.fb_docs, rm3.fb_terms, rm3.orig, rm3.weight) == (3, 30, 0.8, 2.0)
    default = REWRITERS.create("rm3")
    assert isinstance(default, RM3Rewriter) and default.fb_docs >= 1
    for bad in ("rm3:?orig=1.5", "rm3:?fb_docs=0", "rm3:?fb_terms=x", "rm3:?beta=1"):
        with pytest.raises(ConfigError):
            REWRITERS.create(bad)


def test_rocchio_moves_the_query_towards_the_feedback() -> None:
    q = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    feedback = [np.array([0.0, 1.0, 0.0], dtype=np.float32), np.array([0.0, 0.0, 1.0], dtype=np.float32)]
    moved = rocchio(q, feedback, beta=0.5)
    expected = np.array([1.0, 0.25, 0.25]) / np.linalg.norm([1.0, 0.25, 0.25])
    np.testing.assert_allclose(moved, expected, rtol=1e-6)
    assert moved.dtype == np.float32
    np.testing.assert_array_equal(rocchio(q, []), q)


# --- history: ---------------------------------------------------------------------------------

HISTORY = [
    ChatMessage("user", "What is the travel policy for contractors?"),
    ChatMessage("assistant", "Contractors book through the agency [1]."),
]


def test_followup_with_a_generator_uses_the_rewrite_prompt() -> None:
    generator = ScriptedGenerator()
    generator.enqueue('Standalone question: "Does the travel policy for contractors cover trains?"\nextra')
    out = rewrite_followup("Does it cover trains?", HISTORY, generator)
    assert out == "Does the travel policy for contractors cover trains?"
    assert list(generator.calls[0]) == prompts.rewrite_messages("Does it cover trains?", HISTORY)


def test_followup_keeps_the_question_on_a_bad_reply_or_error() -> None:
    generator = ScriptedGenerator()
    generator.enqueue("ok", ModelError("timeout"))
    assert rewrite_followup("Does it cover trains?", HISTORY, generator) == "Does it cover trains?"
    assert rewrite_followup("Does it cover trains?", HISTORY, generator) == "Does it cover trains?"
    assert rewrite_followup("Does it cover trains?", [], generator) == "Does it cover trains?"
    assert len(generator.calls) == 2  # no history: no call


def test_followup_without_a_generator_is_lexical() -> None:
    previous = "What is the travel policy for contractors?"
    assert rewrite_followup("Does it cover trains?", HISTORY) == f"Does it cover trains? ({previous})"
    assert rewrite_followup("And trains?", HISTORY) == f"And trains? ({previous})"
    standalone = "Which laptops get refreshed every three years?"
    assert rewrite_followup(standalone, HISTORY) == standalone
    assert rewrite_followup("Does it cover trains?", [ChatMessage("assistant", "Hello")]) == "Does it cover trains?"
