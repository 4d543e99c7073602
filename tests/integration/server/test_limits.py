"""Limits: body and upload size (413), rate (429), question length, concurrent generations (503), time (504)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cairn.answer.engine import AnswerEvent
from cairn.server.limits import Deadline, Generations, RateLimiter
from cairn.server.routes.documents import upload_source
from cairn.server.routes.openai import Footnotes
from cairn.types import Answer, Citation

from .conftest import KB, World, serving


def test_bodies_beyond_the_limit_are_413(make_client: Callable[..., TestClient], world: World) -> None:
    client = make_client(max_body_kb=4, max_upload_mb=0.05)
    big = {"question": "x" * 5000, "kbs": [KB]}
    response = client.post("/api/ask", json=big, headers=world.auth("alice"))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:
        yield b'{"question": "'
        for _ in range(10):
            yield b"y" * 1024
        yield b'"}'

    chunked = client.post(
        "/api/ask", content=chunks(), headers=world.auth("alice") | {"Content-Type": "application/json"}
    )
    assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "payload_too_large"

    files = [("files", ("big.txt", b"word " * 20_000, "text/plain"))]
    upload = client.post(f"/api/kbs/{KB}/documents", files=files, headers=world.auth("root"))
    assert upload.status_code == 413 and upload.json()["error"]["code"] == "payload_too_large"
    small = [("files", ("small.txt", b"Lunch is served at noon in the canteen. " * 100, "text/plain"))]
    assert client.post(f"/api/kbs/{KB}/documents", files=small, headers=world.auth("root")).status_code == 200


def test_rate_limit_is_a_token_bucket_per_principal(make_client: Callable[..., TestClient], world: World) -> None:
    client = make_client(rate_per_minute=60, burst=3)
    codes = [client.get("/api/me", headers=world.auth("alice")).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    refused = client.get("/api/me", headers=world.auth("alice"))
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 2
    assert client.get("/api/me", headers=world.auth("bob")).status_code == 200, "another principal has its own bucket"
    metrics = client.get("/metrics", headers=world.auth("bob")).text
    assert "cairn_rate_limited_total 2.0" in metrics


def test_token_bucket_refills_at_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=2, clock=lambda: now[0])
    limiter.take("a")
    limiter.take("a")
    with pytest.raises(Exception, match="too many requests"):
        limiter.take("a")
    now[0] = 1.0
    limiter.take("a")
    with pytest.raises(Exception, match="too many requests"):
        limiter.take("a")
    now[0] = 100.0
    limiter.take("a")
    limiter.take("a")


def test_questions_longer_than_the_limit_are_refused(client: TestClient, world: World) -> None:
    long = "why " * 200
    for path, body in (
        ("/api/ask", {"question": long, "kbs": [KB]}),
        ("/api/search", {"query": long, "kbs": [KB]}),
        ("/v1/chat/completions", {"model": KB, "messages": [{"role": "user", "content": long}]}),
    ):
        response = client.post(path, json=body, headers=world.auth("alice"))
        assert response.status_code == 400, path
        assert "longer than 500 characters" in response.json()["error"]["message"]
    empty = client.post("/api/ask", json={"question": "  ", "kbs": [KB]}, headers=world.auth("alice"))
    assert empty.status_code == 400


def _blocking_stream(gate: threading.Event, started: threading.Event) -> Callable[..., Iterator[AnswerEvent]]:
    def stream(*args: Any, **kwargs: Any) -> Iterator[AnswerEvent]:
        started.set()
        gate.wait(30)
        yield AnswerEvent("token", "done.")
        yield AnswerEvent("done", answer=Answer("done.", refused=False))

    return stream


def test_generations_beyond_slots_and_queue_are_503(make_client: Callable[..., TestClient], world: World) -> None:
    client = make_client(max_concurrent_generations=1, max_queued_generations=0)
    gate, started = threading.Event(), threading.Event()
    world.cairn.stream = _blocking_stream(gate, started)  # type: ignore[method-assign]
    results: list[httpx.Response] = []
    body = {"question": "anything?", "kbs": [KB]}
    first = threading.Thread(
        target=lambda: results.append(client.post("/api/ask", json=body, headers=world.auth("alice")))
    )
    first.start()
    assert started.wait(10)
    busy = client.post("/api/ask", json=body, headers=world.auth("bob"))
    assert busy.status_code == 503 and busy.json()["error"]["code"] == "overloaded"
    assert busy.headers["retry-after"] == "2"
    searched = client.post("/api/search", json={"query": "leave", "kbs": [KB]}, headers=world.auth("bob"))
    assert searched.status_code == 200, "searches do not need a generation slot"
    gate.set()
    first.join(30)
    assert results[0].status_code == 200 and results[0].json()["answer"] == "done."
    assert client.post("/api/ask", json=body, headers=world.auth("bob")).status_code == 200


def test_a_generation_past_its_time_is_504_and_its_slot_waits_for_the_thread(
    make_client: Callable[..., TestClient], world: World
) -> None:
    client = make_client(generation_timeout_s=0.5, max_concurrent_generations=1, max_queued_generations=5)
    gate, started = threading.Event(), threading.Event()
    world.cairn.stream = _blocking_stream(gate, started)  # type: ignore[method-assign]
    body = {"question": "anything?", "kbs": [KB]}
    timed_out = client.post("/api/ask", json=body, headers=world.auth("alice"))
    assert timed_out.status_code == 504 and timed_out.json()["error"]["code"] == "timeout"
    queued_out = client.post("/api/ask", json=body | {"stream": True}, headers=world.auth("alice"))
    assert queued_out.status_code == 504, "the abandoned thread still holds the only slot"
    gate.set()
    deadline = time.monotonic() + 10
    while client.post("/api/ask", json=body, headers=world.auth("alice")).status_code != 200:
        assert time.monotonic() < deadline


def test_generation_slots_are_released_when_streams_stop_early() -> None:
    async def scenario() -> None:
        pool = Generations(slots=1, queue=0)
        stream = pool.stream(Deadline(5), iter(range(10)))
        assert await anext(stream) == 0
        assert pool.running == 1
        await stream.aclose()
        await asyncio.sleep(0.2)
        assert pool.running == 0
        assert await pool.run(Deadline(5), lambda: 42) == 42
        pool.close()

    asyncio.run(scenario())


def test_footnotes_convert_markers_across_stream_pieces() -> None:
    notes = Footnotes()
    pieces = ["Leave is sixteen weeks [", "1", "][2]. Ask HR [", "3]"]
    text = "".join(notes.feed(p) for p in pieces)
    citation = Citation(1, "hr/leave.pdf", 2, 10, 20, "...")
    text += notes.finish([citation])
    assert text == "Leave is sixteen weeks [^1][^2]. Ask HR [^3]\n\n[^1]: hr/leave.pdf, page 2, characters 10-20"


@pytest.mark.parametrize(
    ("name", "source"),
    [("a.txt", "a.txt"), ("../../x/y.md", "x/y.md"), ("/abs/p.pdf", "abs/p.pdf"), ("C:\\d\\e.txt", "C:/d/e.txt")],
)
def test_upload_names_stay_relative(name: str, source: str) -> None:
    assert upload_source(name) == source


def test_a_real_server_answers_413_for_a_declared_large_body(world: World) -> None:
    from cairn.server.app import create_app

    from .conftest import server_settings

    with serving(create_app(world.cairn, server=server_settings(max_body_kb=1))) as url:
        response = httpx.post(f"{url}/api/search", content=b"{" + b" " * 4096 + b"}", headers=world.auth("alice"))
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
