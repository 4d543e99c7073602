"""The server answers through ``Cairn.stream``: its callers get their experiment variant like the CLI's."""

from __future__ import annotations

from fastapi.testclient import TestClient

from cairn.ops.experiments import Experiment, Variant, assign
from cairn.types import SYSTEM

from .conftest import KB, World
from .test_rest import LEAVE, sse_events

QUICK = Experiment(name="quick", variants=(Variant("control"), Variant("fast", profile="fast")), rollout=100)


def test_api_answers_carry_the_callers_variant(client: TestClient, world: World) -> None:
    cairn = world.cairn
    cairn.experiments.create(SYSTEM, QUICK)
    running = cairn.experiments.transition(SYSTEM, "quick", "start")
    alice = cairn.principals.resolve("alice")
    expected = assign(running, alice)
    assert expected is not None

    answer = client.post("/api/ask", json={"question": LEAVE, "kbs": [KB]}, headers=world.auth("alice")).json()
    assert answer["variant"] == expected.label
    streamed = client.post(
        "/api/ask", json={"question": LEAVE, "kbs": [KB], "stream": True}, headers=world.auth("alice")
    )
    done = [data for event, data in sse_events(streamed) if event == "done"]
    assert done[0]["variant"] == expected.label

    pinned = {"question": LEAVE, "kbs": [KB], "profile": "quality"}
    assert "variant" not in client.post("/api/ask", json=pinned, headers=world.auth("alice")).json()

    completion = client.post(
        "/v1/chat/completions",
        json={"model": KB, "messages": [{"role": "user", "content": LEAVE}]},
        headers=world.auth("alice"),
    )
    assert completion.status_code == 200, completion.text
    newest = cairn.audit.list(SYSTEM, limit=1)[0]
    assert newest.kind == "ask" and newest.record["variant"] == expected.label

    report = cairn.experiments.report(SYSTEM, "quick")
    assert report["answers"] == 3 and sum(v["n"] for v in report["variants"]) == 3
