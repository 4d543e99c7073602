"""A small multi-tenant world behind the API: an admin, two users, documents with different readers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cairn.assistant import Cairn
from cairn.server.app import create_app
from cairn.server.config import ServerSettings
from cairn.testing.postgres import free_port
from cairn.types import ParsedDocument

KB = "handbook"
# (source, text, readers)
DOCUMENTS = [
    (
        "hr/parental-leave.txt",
        "Parental leave is sixteen weeks at full pay. Ask the people team at people@example.com to plan it.",
        ("group:hr",),
    ),
    (
        "it/phishing.txt",
        "Report suspicious emails immediately to security@example.com. Never open unexpected attachments.",
        ("group:everyone",),
    ),
    (
        "board/merger.txt",
        "CANARYBOARD: the merger with Northwind closes in March. Only the board may read this.",
        (),
    ),
]


@dataclass
class World:
    cairn: Cairn
    keys: dict[str, str] = field(default_factory=dict)

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[user]}"}


def server_settings(**overrides: Any) -> ServerSettings:
    """Explicit values, so a CAIRN_SERVER_* variable in the environment cannot change a test."""
    values: dict[str, Any] = {
        "max_upload_mb": 1.0,
        "max_body_kb": 64,
        "rate_per_minute": 6000.0,
        "burst": 1000,
        "max_question_chars": 500,
        "max_concurrent_generations": 2,
        "max_queued_generations": 4,
        "generation_timeout_s": 60.0,
        "request_timeout_s": 30.0,
        **overrides,
    }
    return ServerSettings(**values)


def build_world(cairn: Cairn) -> World:
    by_readers: dict[tuple[str, ...], list[tuple[str, ParsedDocument]]] = {}
    for source, text, readers in DOCUMENTS:
        parsed = ParsedDocument(text=text, title=source.rsplit("/", 1)[-1], mime="text/plain")
        by_readers.setdefault(readers, []).append((source, parsed))
    for readers, docs in by_readers.items():
        cairn.ingestor.ingest_documents(KB, docs, readers=readers)
    people = cairn.principals
    people.add_user("root", admin=True)
    people.add_user("alice", ["hr"])
    people.add_user("bob")
    world = World(cairn)
    for user in ("root", "alice", "bob"):
        world.keys[user] = people.create_key(user, "tests")
    return world


@pytest.fixture
def world(make_cairn: Callable[..., Cairn]) -> World:
    return build_world(make_cairn(generator="extractive:", min_relevance=0.2))


@pytest.fixture
def make_client(world: World) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def factory(**overrides: Any) -> TestClient:
        client = TestClient(create_app(world.cairn, server=server_settings(**overrides)), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """A real uvicorn server on a free loopback port, in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
