"""Feedback exports: grouping per answer and the exact eval / TRL KTO / TRL DPO line shapes."""

from __future__ import annotations

import io
import json

from cairn.ops.feedback import FeedbackCase, cases_from, dpo_lines, eval_lines, kto_lines, write_lines

RECORD = {"question": "Who signs expenses?", "kbs": ["finance", "hr"], "answer": "Your manager [1]."}


def _case(**changes: object) -> FeedbackCase:
    fields: dict[str, object] = {
        "audit_id": 9,
        "question": "Who signs expenses?",
        "kbs": ("finance",),
        "answer": "Your manager [1].",
        "vote": None,
        "corrections": (),
        "comments": (),
        "flagged": False,
    }
    return FeedbackCase(**(fields | changes))  # type: ignore[arg-type]


def test_cases_group_feedback_per_answer() -> None:
    rows = [
        (9, RECORD, 1, False, "", ""),
        (9, RECORD, -1, False, "changed my mind", "The budget owner."),
        (9, RECORD, None, True, "", "The budget owner."),
        (12, {"question": "q", "answer": "a"}, None, False, "", "b"),
    ]
    first, second = cases_from(rows)
    assert first == FeedbackCase(
        audit_id=9,
        question="Who signs expenses?",
        kbs=("finance", "hr"),
        answer="Your manager [1].",
        vote=-1,
        corrections=("The budget owner.",),
        comments=("changed my mind",),
        flagged=True,
    )
    assert (second.audit_id, second.vote, second.kbs, second.corrections) == (12, None, (), ("b",))


def test_eval_lines_only_for_downvoted_or_corrected_answers() -> None:
    assert eval_lines(_case(vote=1)) == []
    assert eval_lines(_case(flagged=True)) == []
    assert eval_lines(_case(vote=-1, comments=("old", "stale"))) == [
        {"id": "audit-9", "question": "Who signs expenses?", "kb": "finance", "answers": [], "unanswerable": False}
    ]
    assert eval_lines(_case(corrections=("A", "B")))[0]["answers"] == ["A", "B"]
    assert eval_lines(_case(kbs=(), vote=-1))[0]["kb"] == "default"
    assert eval_lines(_case(question=" ", vote=-1)) == [], "cairn eval qa needs a question"


def test_kto_lines_are_trl_unpaired_preference_conversations() -> None:
    prompt = [{"role": "user", "content": "Who signs expenses?"}]
    assert kto_lines(_case(vote=1)) == [
        {"prompt": prompt, "completion": [{"role": "assistant", "content": "Your manager [1]."}], "label": True}
    ]
    assert kto_lines(_case(vote=-1, corrections=("The budget owner.",))) == [
        {"prompt": prompt, "completion": [{"role": "assistant", "content": "Your manager [1]."}], "label": False},
        {"prompt": prompt, "completion": [{"role": "assistant", "content": "The budget owner."}], "label": True},
    ]
    assert kto_lines(_case(flagged=True)) == []
    assert len(kto_lines(_case(vote=1, corrections=("Your manager [1].",)))) == 1, "no duplicate positive"


def test_dpo_lines_are_trl_preference_conversations() -> None:
    assert dpo_lines(_case(vote=-1)) == []
    assert dpo_lines(_case(corrections=("The budget owner.", "Your manager [1]."))) == [
        {
            "prompt": [{"role": "user", "content": "Who signs expenses?"}],
            "chosen": [{"role": "assistant", "content": "The budget owner."}],
            "rejected": [{"role": "assistant", "content": "Your manager [1]."}],
        }
    ]


def test_lines_are_one_json_object_each() -> None:
    out = io.StringIO()
    assert write_lines(out, [{"a": "é"}, {"b": 2}]) == 2
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [{"a": "é"}, {"b": 2}]
    assert "é" in out.getvalue()
