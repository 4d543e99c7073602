"""Feedback against real PostgreSQL: only on one's own answers, chained, exported for eval and alignment."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from cairn.errors import Forbidden, InputError, NotFound, StoreError
from cairn.eval.qa import load_qa
from cairn.index.db import Database
from cairn.ops.audit import AuditEvent, AuditLog
from cairn.ops.feedback import FeedbackStore
from cairn.types import SYSTEM

EventFactory = Callable[..., AuditEvent]


def _export(store: FeedbackStore, fmt: str) -> list[dict[str, object]]:
    buffer = io.StringIO()
    count = store.export(SYSTEM, fmt, buffer)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert count == len(lines)
    return lines


def test_feedback_on_ones_own_answer_is_chained(db: Database, people, ask_event: EventFactory) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(db)
    store = FeedbackStore(db, audit=log)
    ref = log.record(people.alice, ask_event())
    feedback_id = store.add(people.alice, ref.id, vote=-1, comment=" outdated ", correction="Only on Fridays.")

    (mine,) = store.list(people.alice)
    assert (mine.id, mine.audit_id, mine.vote, mine.comment, mine.correction) == (
        feedback_id,
        ref.id,
        -1,
        "outdated",
        "Only on Fridays.",
    )
    assert mine.question is None, "a user does not read the audit trail, not even through a join"
    (seen,) = store.list(SYSTEM)
    assert seen.question == "Can I work remotely on Fridays?" and seen.answer == "Yes, on Fridays [1]."

    chained = log.list(SYSTEM, limit=1)[0]
    assert chained.kind == "feedback" and chained.principal == "alice"
    assert chained.record["audit_hash"] == ref.hash and chained.record["feedback_id"] == feedback_id
    assert log.verify(SYSTEM).ok


def test_someone_elses_answer_reads_like_a_missing_one(db: Database, people, ask_event: EventFactory) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(db)
    store = FeedbackStore(db, audit=log)
    alices = log.record(people.alice, ask_event())
    search = log.record(people.bob, AuditEvent(kind="search", question="remote"))

    refusals = []
    for audit_id in (alices.id, 999_999, search.id, 0, 2**80):
        with pytest.raises(NotFound) as caught:
            store.add(people.bob, audit_id, vote=1)
        refusals.append((caught.value.status, caught.value.code, caught.value.message.replace(str(audit_id), "N")))
    assert len(set(refusals)) == 1, refusals
    with pytest.raises(NotFound):
        store.add(people.carol, alices.id, vote=1)  # an administrator judges only their own answers too

    store.add(SYSTEM, alices.id, flag=True)  # the local operator may judge any answer
    assert [f.flag for f in store.list(SYSTEM)] == [True]


def test_postgres_refuses_feedback_on_others_answers(db: Database, people, ask_event: EventFactory) -> None:  # type: ignore[no-untyped-def]
    """Row-level security holds even when the Python check is skipped."""
    log = AuditLog(db)
    store = FeedbackStore(db, audit=log)
    alices = log.record(people.alice, ask_event())
    store.add(people.alice, alices.id, vote=1)
    insert = "INSERT INTO feedback (audit_id, user_id, principal, vote) VALUES (%s, %s, 'x', 1)"
    with pytest.raises(StoreError, match="row-level security"), db.connection(people.bob) as conn:
        conn.execute(insert, (alices.id, people.bob.user_id))
    with pytest.raises(StoreError, match="row-level security"), db.connection(people.bob) as conn:
        conn.execute(insert, (alices.id, people.alice.user_id))
    with db.connection(people.bob) as conn:
        assert conn.execute("SELECT count(*) FROM feedback").fetchone() == (0,)
        assert conn.execute("SELECT cairn_feedback_target(%s)", (alices.id,)).fetchone() == (None,)
    with pytest.raises(StoreError, match="permission denied"), db.connection(SYSTEM) as conn:
        conn.execute("UPDATE feedback SET vote = -1")


def test_invalid_feedback_is_refused(db: Database, people, ask_event: EventFactory) -> None:  # type: ignore[no-untyped-def]
    store = FeedbackStore(db)
    ref = AuditLog(db).record(people.alice, ask_event())
    with pytest.raises(InputError, match="vote"):
        store.add(people.alice, ref.id, vote=2)
    with pytest.raises(InputError, match="needs a vote"):
        store.add(people.alice, ref.id, comment="   ")
    with pytest.raises(InputError, match="longer than"):
        store.add(people.alice, ref.id, vote=1, correction="x" * 20_001)
    with pytest.raises(Forbidden):
        store.export(people.alice, "eval", io.StringIO())
    with pytest.raises(InputError, match="unknown export format"):
        store.export(SYSTEM, "csv", io.StringIO())


def test_exports_for_eval_kto_and_dpo(db: Database, people, ask_event: EventFactory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(db)
    store = FeedbackStore(db, audit=log)
    corrected = log.record(people.alice, ask_event("When does the office open?", "At nine [1]."))
    liked = log.record(people.alice, ask_event("Is there parking?", "Yes, level -1 [1]."))
    disliked = log.record(people.bob, ask_event("Who approves travel?", "The CEO [1]."))
    flagged = log.record(people.bob, ask_event("What is the wifi password?", "It is secret [1]."))
    store.add(people.alice, corrected.id, vote=-1, comment="wrong hour", correction="At eight.")
    store.add(people.alice, liked.id, vote=1)
    store.add(people.bob, disliked.id, vote=-1)
    store.add(people.bob, flagged.id, flag=True)

    assert _export(store, "eval") == [
        {
            "id": f"audit-{corrected.id}",
            "question": "When does the office open?",
            "kb": "handbook",
            "answers": ["At eight."],
            "unanswerable": False,
        },
        {
            "id": f"audit-{disliked.id}",
            "question": "Who approves travel?",
            "kb": "handbook",
            "answers": [],
            "unanswerable": False,
        },
    ]
    path = tmp_path / "regressions.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        store.export(SYSTEM, "eval", handle)
    cases = load_qa(path)
    assert [(c.id, c.question, c.answers, c.kb) for c in cases] == [
        (f"audit-{corrected.id}", "When does the office open?", ("At eight.",), "handbook"),
        (f"audit-{disliked.id}", "Who approves travel?", (), "handbook"),
    ]

    def convo(question: str, key: str, answer: str) -> dict[str, object]:
        return {"prompt": [{"role": "user", "content": question}], key: [{"role": "assistant", "content": answer}]}

    assert _export(store, "kto") == [
        convo("When does the office open?", "completion", "At nine [1].") | {"label": False},
        convo("When does the office open?", "completion", "At eight.") | {"label": True},
        convo("Is there parking?", "completion", "Yes, level -1 [1].") | {"label": True},
        convo("Who approves travel?", "completion", "The CEO [1].") | {"label": False},
    ]
    assert _export(store, "dpo") == [
        convo("When does the office open?", "chosen", "At eight.")
        | {"rejected": [{"role": "assistant", "content": "At nine [1]."}]}
    ]


def test_purging_an_answer_takes_its_feedback(db: Database, database_url: str, people, ask_event: EventFactory) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(db)
    store = FeedbackStore(db, audit=log)
    ref = log.record(people.alice, ask_event())
    store.add(people.alice, ref.id, vote=-1, correction="No.")
    assert log.purge(SYSTEM, 0) == 2
    assert store.list(SYSTEM) == []
    assert _export(store, "dpo") == []
    assert log.verify(SYSTEM).ok
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM feedback").fetchone() == (0,)
