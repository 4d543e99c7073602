"""Two ``cairn serve`` processes on one database are one service: a session started on one continues on the other."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from cairn.testing.serve import serve_process

from .conftest import KB, World

LEAVE = "How long is parental leave?"


@pytest.fixture
def replicas(world: World, database_url: str, tmp_path: Path) -> Iterator[list[str]]:
    env = {
        **os.environ,
        "CAIRN_HOME": str(tmp_path / "home"),
        "CAIRN_DATABASE_URL": database_url,
        "CAIRN_EMBEDDER": "fake:hash?dim=64",
        "CAIRN_GENERATOR": "extractive:",
        "CAIRN_MIN_RELEVANCE": "0.2",
    }
    with ExitStack() as stack:
        yield [stack.enter_context(serve_process(env, tmp_path / f"replica-{i}.log")) for i in range(2)]


def test_a_session_started_on_one_replica_continues_on_the_other(replicas: list[str], world: World) -> None:
    one, two = replicas
    alice = world.auth("alice")
    session = httpx.post(f"{one}/api/chats", json={"kbs": [KB]}, headers=alice).json()["id"]
    first = httpx.post(f"{one}/api/chats/{session}/messages", json={"question": LEAVE}, headers=alice, timeout=60)
    assert "sixteen weeks" in first.json()["answer"]

    follow_up_question = {"question": "Whom do I contact about it?"}
    follow_up = httpx.post(f"{two}/api/chats/{session}/messages", json=follow_up_question, headers=alice, timeout=60)
    assert follow_up.status_code == 200, follow_up.text
    assert follow_up.json()["refused"] is False, "the second replica read the first one's history"
    alone = httpx.post(f"{two}/api/ask", json=follow_up_question | {"kbs": [KB]}, headers=alice, timeout=60)
    assert alone.json()["refused"] is True, "without the history the follow-up finds nothing"

    on_two = httpx.get(f"{two}/api/chats/{session}", headers=alice).json()
    assert [m["role"] for m in on_two["messages"]] == ["user", "assistant", "user", "assistant"]
    assert httpx.get(f"{one}/api/chats/{session}", headers=world.auth("bob")).status_code == 404
    assert httpx.delete(f"{two}/api/chats/{session}", headers=alice).status_code == 204
    assert httpx.get(f"{one}/api/chats/{session}", headers=alice).status_code == 404
    schema = httpx.get(f"{one}/openapi.json").json()
    assert schema["info"]["title"] == "cairn"
