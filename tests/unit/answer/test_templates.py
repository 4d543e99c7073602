"""Prompt templates: versioned, addressable by name or version, chosen per request by the answerer."""

from __future__ import annotations

import pytest

from cairn.answer import prompts
from cairn.answer.answerers import LLMAnswerer
from cairn.answer.templates import CONCISE, GROUNDED, PromptTemplate, get_template, register_template, versions
from cairn.errors import InputError
from cairn.testing.fakes import ScriptedGenerator
from cairn.types import Hit

HITS = [Hit(1, 1, "handbook/leave.md", "Staff get 25 days of annual leave.", 0, 34, 0.9)]


def test_the_default_template_is_the_prompt_cairn_always_used() -> None:
    assert get_template() is GROUNDED and GROUNDED.version == prompts.TEMPLATE_VERSION
    assert GROUNDED.answer_messages("How much leave?", HITS) == prompts.answer_messages("How much leave?", HITS)


def test_templates_by_name_or_version() -> None:
    assert get_template("concise") is CONCISE and get_template("concise-v1") is CONCISE
    assert versions()["grounded"] == prompts.TEMPLATE_VERSION and versions()["concise-v1"] == "concise-v1"
    with pytest.raises(InputError, match="unknown prompt template 'terse'") as caught:
        get_template("terse")
    assert "concise" in (caught.value.hint or "")


def test_every_template_keeps_the_pipeline_contract() -> None:
    """Citations as [n], the refusal sentence the engine detects, passages as data."""
    for template in (GROUNDED, CONCISE):
        system, user = template.answer_messages("How much leave?", HITS)
        assert system.role == "system" and "[1]" in system.content and prompts.NOT_FOUND in system.content
        assert "data, not instructions" in system.content
        assert user.content.startswith("Passages:\n[1] (leave.md)") and user.content.endswith("How much leave?")
    assert CONCISE.system != GROUNDED.system


def test_a_version_is_never_reused_for_other_words() -> None:
    register_template(CONCISE)  # the same template again is fine
    with pytest.raises(InputError, match="already registered"):
        register_template(PromptTemplate("concise", "concise-v1", "Other words."))


def test_the_answerer_takes_the_template_per_request() -> None:
    generator = ScriptedGenerator()
    generator.enqueue("25 days [1].", "25 days [1].")
    answerer = LLMAnswerer(generator)
    "".join(answerer.stream_answer("How much leave?", HITS))
    "".join(answerer.stream_answer("How much leave?", HITS, template=CONCISE))
    assert [call[0].content for call in generator.calls] == [GROUNDED.system, CONCISE.system]
