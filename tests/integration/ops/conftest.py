"""Fixtures for the audit and feedback tests: a migrated database, two users and an administrator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cairn.index.db import Database
from cairn.index.principals import PrincipalStore
from cairn.ops.audit import AuditEvent
from cairn.settings import get_settings
from cairn.types import Answer, Citation, Hit, Principal


@pytest.fixture
def db(tmp_path: Path, database_url: str) -> Iterator[Database]:
    database = Database(get_settings(home=tmp_path / "home", database_url=database_url))
    yield database
    database.close()


@dataclass(frozen=True)
class People:
    alice: Principal
    bob: Principal
    carol: Principal  # an administrator


@pytest.fixture
def people(db: Database) -> People:
    store = PrincipalStore(db)
    store.add_user("alice", ["hr"])
    store.add_user("bob")
    store.add_user("carol", admin=True)
    return People(store.resolve("alice"), store.resolve("bob"), store.resolve("carol"))


def answer_event(question: str = "Can I work remotely on Fridays?", answer: str = "Yes, on Fridays [1].") -> AuditEvent:
    hit = Hit(
        chunk_id=11,
        document_id=3,
        source="policies/remote.md",
        text="Remote work is allowed on Fridays.",
        start=0,
        end=34,
        score=0.8125,
        kb="handbook",
        scores={"version": 2.0, "cosine": 0.71},
    )
    result = Answer(
        answer=answer,
        refused=False,
        citations=(Citation(1, hit.source, None, 0, 34, hit.text, chunk_id=11),),
        timings_ms={"retrieve": 12.5, "generate": 80.0, "total": 95.25},
        searched=(hit,),
        query=question,
        model="fake:scripted",
    )
    return AuditEvent.from_answer(
        result,
        question=question,
        kbs=["handbook"],
        prompt_template="grounded-v1",
        params={"temperature": 0.0, "max_tokens": 300},
        guards=[{"name": "injection", "verdict": "pass"}],
        tokens={"prompt": 420, "completion": 17},
    )


@pytest.fixture
def ask_event() -> Callable[..., AuditEvent]:
    """Builds the event of an answered question, lineage included (tests import no conftest)."""
    return answer_event
