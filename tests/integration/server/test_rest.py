"""The REST API end to end on both PostgreSQL backends: contracts, roles, tenant isolation, errors."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cairn.errors import StoreError

from .conftest import KB, World

LEAVE = "How long is parental leave?"


def sse_events(response: httpx.Response) -> list[tuple[str, Any]]:
    events = []
    for block in response.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append((lines.get("event", "message"), json.loads(lines["data"])))
    return events


def test_ask_has_the_cli_json_contract_and_respects_readers(client: TestClient, world: World) -> None:
    response = client.post("/api/ask", json={"question": LEAVE, "kbs": [KB]}, headers=world.auth("alice"))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert {"answer", "refused", "citations", "timings_ms", "audit_id"} <= set(answer)
    assert answer["refused"] is False and "sixteen weeks" in answer["answer"]
    (citation,) = answer["citations"]
    assert set(citation) == {"id", "chunk_id", "source", "page", "start", "end", "text"}
    assert citation["source"] == "hr/parental-leave.txt"

    denied = client.post("/api/ask", json={"question": LEAVE, "kbs": [KB]}, headers=world.auth("bob")).json()
    assert denied["refused"] is True and denied["citations"] == []
    assert "sixteen" not in json.dumps(denied) and "parental-leave" not in json.dumps(denied)


def test_ask_streams_tokens_then_the_answer(client: TestClient, world: World) -> None:
    body = {"question": LEAVE, "kbs": [KB], "stream": True}
    with client.stream("POST", "/api/ask", json=body, headers=world.auth("alice")) as response:
        response.read()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"token"}
    done = events[-1][1]
    assert "".join(data["text"] for kind, data in events[:-1]).strip() == done["answer"].strip()
    assert done["citations"][0]["source"] == "hr/parental-leave.txt"

    missing = client.post("/api/ask", json=body | {"kbs": ["missing"]}, headers=world.auth("alice"))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_search_returns_only_readable_passages(client: TestClient, world: World) -> None:
    body = {"query": "parental leave weeks", "kbs": [KB], "k": 5}
    found = client.post("/api/search", json=body, headers=world.auth("alice")).json()
    assert set(found) == {"hits", "timings_ms", "audit_id"} and isinstance(found["audit_id"], int)
    hits = found["hits"]
    assert hits[0]["source"] == "hr/parental-leave.txt"
    assert set(hits[0]) == {"chunk_id", "source", "page", "start", "end", "score", "text"}
    bob = client.post("/api/search", json=body, headers=world.auth("bob")).json()["hits"]
    assert all(h["source"] == "it/phishing.txt" for h in bob)
    admin = client.post("/api/search", json=body | {"query": "merger Northwind"}, headers=world.auth("root"))
    assert admin.json()["hits"][0]["source"] == "board/merger.txt"


def test_knowledge_bases_list_counts_what_the_caller_reads_and_admins_manage_them(
    client: TestClient, world: World
) -> None:
    def kbs(user: str) -> dict[str, Any]:
        response = client.get("/api/kbs", headers=world.auth(user))
        return {kb["name"]: kb for kb in response.json()["knowledge_bases"]}

    assert kbs("root")[KB]["documents"] == 3
    assert kbs("alice")[KB]["documents"] == 2
    assert kbs("bob")[KB]["documents"] == 1

    forbidden = client.post("/api/kbs", json={"name": "wiki"}, headers=world.auth("alice"))
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"
    created = client.post("/api/kbs", json={"name": "wiki", "description": "team wiki"}, headers=world.auth("root"))
    assert created.status_code == 201 and created.json()["name"] == "wiki"
    assert "wiki" in kbs("root") and "wiki" not in kbs("bob"), "an empty knowledge base is visible to admins only"
    bad = client.post("/api/kbs", json={"name": "no spaces"}, headers=world.auth("root"))
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_input"

    assert client.delete("/api/kbs/wiki", headers=world.auth("alice")).status_code == 403
    assert client.delete("/api/kbs/wiki", headers=world.auth("root")).status_code == 204
    again = client.delete("/api/kbs/wiki", headers=world.auth("root"))
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"


def _documents(client: TestClient, world: World, user: str, kb: str = KB) -> dict[str, dict[str, Any]]:
    response = client.get(f"/api/kbs/{kb}/documents", headers=world.auth(user))
    assert response.status_code == 200, response.text
    return {d["source"]: d for d in response.json()["documents"]}


def test_documents_are_listed_per_reader_and_hidden_ones_are_plain_404s(client: TestClient, world: World) -> None:
    admin_view = _documents(client, world, "root")
    assert admin_view["board/merger.txt"]["readers"] == []
    assert admin_view["hr/parental-leave.txt"]["status"] == "indexed"
    bob_view = _documents(client, world, "bob")
    assert list(bob_view) == ["it/phishing.txt"] and "readers" not in bob_view["it/phishing.txt"]

    hidden = admin_view["board/merger.txt"]["id"]
    missing = max(d["id"] for d in admin_view.values()) + 1000
    as_bob = client.get(f"/api/kbs/{KB}/documents/{hidden}", headers=world.auth("bob"))
    nowhere = client.get(f"/api/kbs/{KB}/documents/{missing}", headers=world.auth("bob"))
    assert as_bob.status_code == nowhere.status_code == 404
    assert as_bob.json() == json.loads(nowhere.text.replace(str(missing), str(hidden)))
    assert "merger" not in as_bob.text.lower()

    alice_kb = client.get("/api/kbs/missing/documents", headers=world.auth("alice"))
    assert alice_kb.status_code == 404


def test_passages_the_caller_may_not_read_look_missing(client: TestClient, world: World) -> None:
    hits = client.post(
        "/api/search", json={"query": "parental leave", "kbs": [KB]}, headers=world.auth("alice")
    ).json()["hits"]
    chunk_id = hits[0]["chunk_id"]
    shown = client.get(f"/api/passages/{chunk_id}", params={"context": 10}, headers=world.auth("alice")).json()
    assert shown["source"] == "hr/parental-leave.txt" and shown["before"] == ""
    as_bob = client.get(f"/api/passages/{chunk_id}", headers=world.auth("bob"))
    nowhere = client.get(f"/api/passages/{chunk_id + 10_000}", headers=world.auth("bob"))
    assert as_bob.status_code == nowhere.status_code == 404
    assert as_bob.json() == json.loads(nowhere.text.replace(str(chunk_id + 10_000), str(chunk_id)))


def test_upload_reindex_status_and_delete(client: TestClient, world: World) -> None:
    text = b"# Travel\n\nTravel must be booked through the travel portal at least two weeks ahead.\n"
    files = [("files", ("policies/travel.md", text, "text/markdown"))]
    denied = client.post(f"/api/kbs/{KB}/documents", files=files, headers=world.auth("alice"))
    assert denied.status_code == 403

    added = client.post(
        f"/api/kbs/{KB}/documents", files=files, data={"groups": "everyone"}, headers=world.auth("root")
    )
    assert added.status_code == 200, added.text
    report = added.json()
    assert report["added"] == 1 and report["documents"][0]["source"] == "policies/travel.md"
    assert report["readers"] == ["group:everyone"]
    doc = _documents(client, world, "bob")["policies/travel.md"]
    assert (doc["version"], doc["status"]) == (1, "indexed")

    same = client.post(
        f"/api/kbs/{KB}/documents", files=files, data={"groups": "everyone"}, headers=world.auth("root")
    ).json()
    assert same["unchanged"] == 1
    changed = [("files", ("policies/travel.md", text + b"Economy class only.\n", "text/markdown"))]
    updated = client.post(
        f"/api/kbs/{KB}/documents", files=changed, data={"groups": "everyone"}, headers=world.auth("root")
    ).json()
    assert updated["updated"] == 1
    doc = client.get(f"/api/kbs/{KB}/documents/{doc['id']}", headers=world.auth("bob")).json()
    assert doc["version"] == 2

    sneaky = [("files", ("../../etc/passwd", b"root:x:0:0", "text/plain"))]
    named = client.post(f"/api/kbs/{KB}/documents", files=sneaky, headers=world.auth("root")).json()
    assert named["documents"][0]["source"] == "etc/passwd"

    binary = [("files", ("blob.bin", bytes(range(256)) * 8, "application/octet-stream"))]
    refused = client.post(f"/api/kbs/{KB}/documents", files=binary, headers=world.auth("root"))
    assert refused.status_code == 415 and refused.json()["error"]["code"] == "unsupported_format"

    assert client.delete(f"/api/kbs/{KB}/documents/{doc['id']}", headers=world.auth("bob")).status_code == 403
    assert client.delete(f"/api/kbs/{KB}/documents/{doc['id']}", headers=world.auth("root")).status_code == 204
    assert client.get(f"/api/kbs/{KB}/documents/{doc['id']}", headers=world.auth("root")).status_code == 404


def test_chat_sessions_belong_to_their_owner(client: TestClient, world: World) -> None:
    alice, bob = world.auth("alice"), world.auth("bob")
    created = client.post("/api/chats", json={"kbs": [KB]}, headers=alice)
    assert created.status_code == 201
    session = created.json()["id"]
    first = client.post(f"/api/chats/{session}/messages", json={"question": LEAVE}, headers=alice).json()
    assert first["session_id"] == session and "sixteen weeks" in first["answer"]
    body = {"question": "Who do I contact to plan it?", "stream": True}
    with client.stream("POST", f"/api/chats/{session}/messages", json=body, headers=alice) as response:
        response.read()
    assert sse_events(response)[-1][0] == "done"

    shown = client.get(f"/api/chats/{session}", headers=alice).json()
    assert [m["role"] for m in shown["messages"]] == ["user", "assistant", "user", "assistant"]
    listed = client.get("/api/chats", headers=alice).json()["sessions"]
    assert [(s["id"], s["messages"], s["title"]) for s in listed] == [(session, 4, LEAVE)]

    assert client.get("/api/chats", headers=bob).json()["sessions"] == []
    for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/messages")):
        response = client.request(method, f"/api/chats/{session}{path}", json={"question": "hi"}, headers=bob)
        assert response.status_code == 404, (method, path)
    assert client.get("/api/chats/not-a-uuid", headers=alice).status_code == 404
    assert client.post("/api/chats", json={"kbs": ["missing"]}, headers=alice).status_code == 404

    assert client.delete(f"/api/chats/{session}", headers=alice).status_code == 204
    assert client.get(f"/api/chats/{session}", headers=alice).status_code == 404


def test_feedback_on_own_answers_and_audit_for_admins(client: TestClient, world: World) -> None:
    answer = client.post("/api/ask", json={"question": LEAVE, "kbs": [KB]}, headers=world.auth("alice")).json()
    audit_id = answer["audit_id"]
    assert isinstance(audit_id, int)

    given = client.post("/api/feedback", json={"audit_id": audit_id, "vote": 1}, headers=world.auth("alice"))
    assert given.status_code == 201, given.text
    stolen = client.post("/api/feedback", json={"audit_id": audit_id, "vote": -1}, headers=world.auth("bob"))
    assert stolen.status_code == 404
    bad_vote = client.post("/api/feedback", json={"audit_id": audit_id, "vote": 5}, headers=world.auth("alice"))
    assert bad_vote.status_code == 422 and bad_vote.json()["error"]["code"] == "invalid_request"
    mine = client.get("/api/feedback", headers=world.auth("alice")).json()["feedback"]
    assert [f["audit_id"] for f in mine] == [audit_id]
    assert client.get("/api/feedback", headers=world.auth("bob")).json()["feedback"] == []

    assert client.get("/api/audit", headers=world.auth("alice")).status_code == 403
    records = client.get("/api/audit", params={"limit": 50}, headers=world.auth("root")).json()["records"]
    assert audit_id in [r["id"] for r in records]
    verified = client.get("/api/audit/verify", headers=world.auth("root")).json()
    assert verified["ok"] is True
    export = client.get("/api/audit/export", headers=world.auth("root"))
    assert export.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert audit_id in [line["id"] for line in lines] and all("hash" in line for line in lines)


def test_identity_health_metrics_and_schema(client: TestClient, world: World) -> None:
    assert client.get("/api/me", headers=world.auth("alice")).json() == {
        "name": "alice",
        "groups": ["hr"],
        "admin": False,
    }
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    metrics = client.get("/metrics", headers=world.auth("bob"))
    assert metrics.status_code == 200
    assert 'cairn_http_requests_total{method="GET",route="/api/me",status="200"} 1.0' in metrics.text
    schema = client.get("/openapi.json").json()
    assert "/v1/chat/completions" in schema["paths"] and "/api/ask" in schema["paths"]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_pipeline_metrics_are_served(client: TestClient, world: World) -> None:
    answered = client.post(
        "/api/ask", json={"question": LEAVE, "kbs": [KB], "profile": "fast"}, headers=world.auth("alice")
    )
    assert answered.status_code == 200
    metrics = client.get("/metrics", headers=world.auth("bob")).text
    assert 'cairn_answers_total{kind="ask",outcome="answered"} 1.0' in metrics
    assert 'cairn_stage_duration_seconds_count{kind="ask",stage="bm25"} 1.0' in metrics


def test_errors_are_json_and_never_leak_internals(client: TestClient, world: World) -> None:
    nowhere = client.get("/api/nowhere", headers=world.auth("alice"))
    assert nowhere.status_code == 404 and nowhere.json()["error"]["code"] == "not_found"
    wrong_method = client.put("/api/kbs", headers=world.auth("alice"))
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
    invalid = client.post("/api/search", json={"query": 3, "k": 0}, headers=world.auth("alice"))
    assert invalid.status_code == 422 and set(invalid.json()) == {"error"}
    not_json = client.post("/api/search", content=b"{", headers=world.auth("alice"))
    assert not_json.status_code == 422

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("SELECT secret FROM tenant_b WHERE password = 'hunter2'")

    world.cairn.store.list_kbs = broken  # type: ignore[method-assign]
    crashed = client.get("/api/kbs", headers=world.auth("alice"))
    assert crashed.status_code == 500
    assert crashed.json()["error"]["code"] == "internal_error"
    assert "hunter2" not in crashed.text and "Traceback" not in crashed.text

    def down(*args: object, **kwargs: object) -> None:
        raise StoreError("database error: connection to db.internal:5432 refused for user cairn")

    world.cairn.store.list_kbs = down  # type: ignore[method-assign]
    unavailable = client.get("/api/kbs", headers=world.auth("alice"))
    assert unavailable.status_code == 503
    assert unavailable.json()["error"]["code"] == "store_unavailable" and "db.internal" not in unavailable.text


@pytest.mark.parametrize("path", ["/api/kbs", "/v1/models"])
def test_responses_never_carry_admin_only_names_to_users(client: TestClient, world: World, path: str) -> None:
    client.post("/api/kbs", json={"name": "secret-board"}, headers=world.auth("root"))
    assert "secret-board" in client.get(path, headers=world.auth("root")).text
    assert "secret-board" not in client.get(path, headers=world.auth("bob")).text
