"""Feedback on answers (votes, flags, comments, corrections) and the datasets made from it.

Feedback is kept with the audit record of the answer it judges (a foreign key, so a retention
purge takes it along) and is itself appended to the audit chain, linked to that answer's hash.
Only the person who got an answer may judge it; for anyone else an answer id that exists and one
that does not are refused with the same :class:`~cairn.errors.NotFound`.

Exports, one JSON object per line:

``eval``
    A regression case for ``cairn eval qa`` per downvoted or corrected answer, in the fields its
    loader accepts (it refuses unknown ones): ``{"id": "audit-<audit id>", "question", "kb",
    "answers": [corrections], "unanswerable": false}``. The rejected answer and the comments stay in
    the trail, found by the audit id.
``kto``
    TRL's *unpaired preference* type in its *conversational* format, what ``KTOTrainer`` takes:
    ``{"prompt": [{"role": "user", ...}], "completion": [{"role": "assistant", ...}], "label": bool}``.
    An upvote labels the answer true, a downvote false, and each correction adds a true example.
``dpo``
    TRL's *preference* type, conversational format with an explicit prompt, what ``DPOTrainer``
    takes: ``{"prompt": [...], "chosen": [assistant message], "rejected": [assistant message]}``,
    one per correction (chosen) of an answer (rejected).

The TRL shapes follow https://huggingface.co/docs/trl/dataset_formats ("Overview of the dataset
formats and types": preference and unpaired preference, conversational column) and
https://huggingface.co/docs/trl/kto_trainer ("Expected dataset format": prompt, completion,
label). The prompt is the question alone: the retrieved passages are not repeated, because the
record's chunk ids and document versions identify them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

import psycopg

from cairn.errors import InputError, NotFound
from cairn.ops.audit import AuditLog, append_record, require_admin, require_identified, timestamp
from cairn.types import Principal

if TYPE_CHECKING:
    from cairn.index.db import Database

EXPORT_FORMATS = ("eval", "kto", "dpo")
MAX_TEXT = 20_000
_MAX_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class FeedbackEntry:
    """A stored judgement; ``question``/``answer`` are filled in for administrators only."""

    id: int
    audit_id: int
    at: datetime
    principal: str
    vote: int | None
    flag: bool
    comment: str
    correction: str
    question: str | None = None
    answer: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "audit_id": self.audit_id,
            "at": timestamp(self.at),
            "principal": self.principal,
            "vote": self.vote,
            "flag": self.flag,
            "comment": self.comment,
            "correction": self.correction,
            "question": self.question,
            "answer": self.answer,
        }


@dataclass(frozen=True, slots=True)
class FeedbackCase:
    """Everything said about one answer: the latest vote counts, every correction is kept."""

    audit_id: int
    question: str
    kbs: tuple[str, ...]
    answer: str
    vote: int | None
    corrections: tuple[str, ...]
    comments: tuple[str, ...]
    flagged: bool


def cases_from(rows: Iterable[tuple[int, Mapping[str, Any], int | None, bool, str, str]]) -> list[FeedbackCase]:
    """Group ``(audit_id, record, vote, flag, comment, correction)`` rows, given oldest first."""
    grouped: dict[int, dict[str, Any]] = {}
    for audit_id, record, vote, flag, comment, correction in rows:
        case = grouped.setdefault(
            audit_id,
            {"record": record, "vote": None, "corrections": [], "comments": [], "flagged": False},
        )
        if vote is not None:
            case["vote"] = vote
        if correction.strip() and correction not in case["corrections"]:
            case["corrections"].append(correction)
        if comment.strip():
            case["comments"].append(comment)
        case["flagged"] = case["flagged"] or flag
    return [
        FeedbackCase(
            audit_id=audit_id,
            question=str(case["record"].get("question", "")),
            kbs=tuple(case["record"].get("kbs") or ()),
            answer=str(case["record"].get("answer", "")),
            vote=case["vote"],
            corrections=tuple(case["corrections"]),
            comments=tuple(case["comments"]),
            flagged=case["flagged"],
        )
        for audit_id, case in grouped.items()
    ]


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def eval_lines(case: FeedbackCase) -> list[dict[str, Any]]:
    if (case.vote != -1 and not case.corrections) or not case.question.strip():
        return []
    return [
        {
            "id": f"audit-{case.audit_id}",
            "question": case.question,
            "kb": case.kbs[0] if case.kbs else "default",
            "answers": list(case.corrections),
            "unanswerable": False,
        }
    ]


def kto_lines(case: FeedbackCase) -> list[dict[str, Any]]:
    lines = []
    if case.vote is not None:
        lines.append({"prompt": _user(case.question), "completion": _assistant(case.answer), "label": case.vote == 1})
    for correction in case.corrections:
        if correction != case.answer or case.vote != 1:
            lines.append({"prompt": _user(case.question), "completion": _assistant(correction), "label": True})
    return lines


def dpo_lines(case: FeedbackCase) -> list[dict[str, Any]]:
    return [
        {"prompt": _user(case.question), "chosen": _assistant(correction), "rejected": _assistant(case.answer)}
        for correction in case.corrections
        if correction != case.answer
    ]


FORMATTERS: dict[str, Callable[[FeedbackCase], list[dict[str, Any]]]] = {
    "eval": eval_lines,
    "kto": kto_lines,
    "dpo": dpo_lines,
}


def _text(name: str, value: str) -> str:
    if len(value) > MAX_TEXT:
        raise InputError(f"the {name} is longer than {MAX_TEXT} characters")
    return value


class FeedbackStore:
    """Votes, flags and corrections, written through the same chain as the answers they judge."""

    def __init__(self, db: Database, *, audit: AuditLog | None = None) -> None:
        self.db = db
        self.audit = audit if audit is not None else AuditLog(db)

    def add(
        self,
        principal: Principal,
        audit_id: int,
        *,
        vote: int | None = None,
        flag: bool = False,
        comment: str = "",
        correction: str = "",
    ) -> int:
        """Store a judgement of answer ``audit_id`` by whoever received it; returns the feedback id.

        The comment and the correction go through the audit log's redactor, like the answer did.
        """
        if vote not in (None, -1, 1):
            raise InputError(f"vote must be 1 (up) or -1 (down), not {vote}")
        comment = self.audit.redacted(_text("comment", comment.strip()))
        correction = self.audit.redacted(_text("correction", correction.strip()))
        if vote is None and not flag and not comment and not correction:
            raise InputError("feedback needs a vote, a flag, a comment or a correction")
        require_identified(principal)
        missing = NotFound(
            f"no answer {audit_id} to give feedback on",
            hint="feedback is given on your own answers, by the audit id `cairn ask --json` reports",
        )
        if not 1 <= audit_id <= _MAX_ID:
            raise missing
        with self.db.connection(principal) as conn, conn.transaction():
            target = conn.execute("SELECT cairn_feedback_target(%s)", (audit_id,)).fetchone()
            if target is None or target[0] is None:
                raise missing
            try:
                row = conn.execute(
                    "INSERT INTO feedback (audit_id, user_id, principal, vote, flag, comment, correction)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                    (audit_id, principal.user_id, principal.name, vote, flag, comment, correction),
                ).fetchone()
            except (psycopg.errors.ForeignKeyViolation, psycopg.errors.InsufficientPrivilege):
                raise missing from None
            assert row is not None
            feedback_id = int(row[0])
            append_record(
                conn,
                principal,
                "feedback",
                {
                    "audit_id": audit_id,
                    "audit_hash": bytes(target[0]).hex(),
                    "feedback_id": feedback_id,
                    "vote": vote,
                    "flag": flag,
                    "comment": comment,
                    "correction": correction,
                },
            )
        return feedback_id

    def list(self, principal: Principal, *, limit: int = 100, audit_id: int | None = None) -> list[FeedbackEntry]:
        """The newest first: everyone's for an administrator, one's own for a user."""
        require_identified(principal)
        if limit < 1:
            raise InputError(f"limit must be at least 1, not {limit}")
        where, params = ("WHERE f.audit_id = %s", (audit_id,)) if audit_id is not None else ("", ())
        with self.db.connection(principal) as conn:
            rows = conn.execute(
                "SELECT f.id, f.audit_id, f.at, f.principal, f.vote, f.flag, f.comment, f.correction,"
                " a.record ->> 'question', a.record ->> 'answer'"
                f" FROM feedback f LEFT JOIN audit_log a ON a.id = f.audit_id {where}"
                " ORDER BY f.id DESC LIMIT %s",
                (*params, limit),
            ).fetchall()
        return [FeedbackEntry(*r) for r in rows]

    def export(self, principal: Principal, format: str, out: TextIO) -> int:
        """Write the ``format`` dataset (see the module docstring) as JSONL; returns the lines written."""
        formatter = FORMATTERS.get(format)
        if formatter is None:
            raise InputError(f"unknown export format {format!r}", hint=f"one of {', '.join(EXPORT_FORMATS)}")
        require_admin(principal, "exporting feedback")
        with self.db.connection(principal) as conn:
            rows = conn.execute(
                "SELECT a.id, a.record, f.vote, f.flag, f.comment, f.correction"
                " FROM feedback f JOIN audit_log a ON a.id = f.audit_id"
                " WHERE a.kind IN ('ask', 'chat') ORDER BY a.id, f.id"
            ).fetchall()
        return write_lines(out, (line for case in cases_from(rows) for line in formatter(case)))


def write_lines(out: TextIO, lines: Iterable[Mapping[str, Any]]) -> int:
    count = 0
    for line in lines:
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
        count += 1
    return count
