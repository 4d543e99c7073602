"""The web UI without a browser: sessions, CSRF, roles, and that pages only show what the user may read."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cairn.ops.audit import AuditEntry
from cairn.ops.feedback import FeedbackEntry
from cairn.server.routes.ui_stats import activity, percentile
from cairn.server.ui.session import CSRF_HEADER, LOGIN_COOKIE, SESSION_COOKIE, csrf_token

from .conftest import KB, World

LEAVE = "How long is parental leave?"
SECRETS = ("CANARYBOARD", "board/merger.txt", "Northwind")
PAGES = ("/ui/", "/ui/upload", "/ui/admin")


def login(client: TestClient, key: str, next_url: str = "/ui/") -> str:
    """Signs in through the form, as a browser would; returns the session's CSRF token."""
    form = client.get("/ui/login")
    assert form.status_code == 200
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    response = client.post(
        "/ui/login", data={"key": key, "csrf": token.group(1), "next": next_url}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    return csrf_token(key)


@pytest.fixture
def session_for(world: World, make_client: Callable[..., TestClient]) -> Callable[[str], tuple[TestClient, str]]:
    def factory(user: str) -> tuple[TestClient, str]:
        client = make_client()
        return client, login(client, world.keys[user])

    return factory


def test_pages_need_a_session_but_the_login_page_and_assets_do_not(client: TestClient) -> None:
    for path in PAGES:
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/ui/login?next=")
    assert client.get("/", follow_redirects=False).headers["location"] == "/ui/"
    login_page = client.get("/ui/login")
    assert login_page.status_code == 200 and 'name="key"' in login_page.text
    assert "script-src 'self'" in login_page.headers["content-security-policy"]
    assert login_page.headers["x-frame-options"] == "DENY"
    for asset in ("cairn.js", "cairn.css"):
        assert client.get(f"/ui/static/{asset}").status_code == 200
    # nothing is loaded from anywhere else: the only URL in the script is the SVG namespace
    assert re.findall(r"https?://[^\s\"'`]+", client.get("/ui/static/cairn.js").text) == ["http://www.w3.org/2000/svg"]
    css = client.get("/ui/static/cairn.css").text
    assert "url(" not in css and "@import" not in css


def test_login_sets_a_strict_http_only_cookie_and_refuses_bad_keys_and_forged_forms(
    client: TestClient, world: World
) -> None:
    form = client.get("/ui/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    login_cookie = form.headers["set-cookie"]
    assert LOGIN_COOKIE in login_cookie and "HttpOnly" in login_cookie and "SameSite=strict" in login_cookie

    forged = client.post("/ui/login", data={"key": world.keys["alice"], "csrf": "guess"}, follow_redirects=False)
    assert forged.status_code == 403 and SESSION_COOKIE not in forged.headers.get("set-cookie", "")

    token = re.search(r'name="csrf" value="([^"]+)"', forged.text).group(1)  # type: ignore[union-attr]
    wrong = client.post("/ui/login", data={"key": "cairn_0123456789ab_wrong", "csrf": token}, follow_redirects=False)
    assert wrong.status_code == 401 and "not accepted" in wrong.text
    assert "cairn_0123456789ab_wrong" not in wrong.text

    token = re.search(r'name="csrf" value="([^"]+)"', wrong.text).group(1)  # type: ignore[union-attr]
    ok = client.post(
        "/ui/login", data={"key": world.keys["alice"], "csrf": token, "next": "//evil.example/"}, follow_redirects=False
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/ui/"
    cookies = ok.headers.get_list("set-cookie")
    (session,) = [c for c in cookies if c.startswith(f"{SESSION_COOKIE}=")]
    assert "HttpOnly" in session and "SameSite=strict" in session and "Path=/" in session
    assert "Secure" not in session  # plain http here; https responses add it
    page = client.get("/ui/")
    assert page.status_code == 200 and "alice" in page.text


def test_the_cookie_reaches_the_api_only_with_the_csrf_header(
    session_for: Callable[[str], tuple[TestClient, str]],
) -> None:
    client, csrf = session_for("alice")
    assert client.get("/api/me").status_code == 401
    assert client.get("/api/me", headers={CSRF_HEADER: "0" * 64}).status_code == 401
    assert client.get("/api/me", headers={CSRF_HEADER: csrf, "Sec-Fetch-Site": "cross-site"}).status_code == 401
    me = client.get("/api/me", headers={CSRF_HEADER: csrf, "Sec-Fetch-Site": "same-origin"})
    assert me.status_code == 200 and me.json()["name"] == "alice"
    # a state-changing call without the header is refused before it does anything
    assert client.post("/api/chats", json={"kbs": [KB]}).status_code == 401
    assert client.post("/api/chats", json={"kbs": [KB]}, headers={CSRF_HEADER: csrf}).status_code == 201


def test_an_explicit_bearer_header_wins_over_the_cookie(
    session_for: Callable[[str], tuple[TestClient, str]], world: World
) -> None:
    client, csrf = session_for("alice")
    me = client.get("/api/me", headers={CSRF_HEADER: csrf, **world.auth("bob")})
    assert me.json()["name"] == "bob"


def test_logout_needs_the_csrf_token_and_forgets_the_cookie(
    session_for: Callable[[str], tuple[TestClient, str]],
) -> None:
    client, csrf = session_for("alice")
    assert client.post("/ui/logout", data={"csrf": "nope"}, follow_redirects=False).status_code == 403
    assert client.get("/ui/", follow_redirects=False).status_code == 200
    out = client.post("/ui/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    assert client.get("/ui/", follow_redirects=False).status_code == 303
    assert client.get("/api/me", headers={CSRF_HEADER: csrf}).status_code == 401


def test_a_revoked_key_ends_the_session(session_for: Callable[[str], tuple[TestClient, str]], world: World) -> None:
    client, _ = session_for("bob")
    (key,) = world.cairn.principals.list_keys("bob")
    world.cairn.principals.revoke_key(key.prefix)
    response = client.get("/ui/", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/ui/login")


def test_only_admins_reach_the_admin_and_upload_pages(
    session_for: Callable[[str], tuple[TestClient, str]],
) -> None:
    user, csrf = session_for("alice")
    for path in ("/ui/admin", "/ui/upload"):
        denied = user.get(path)
        assert denied.status_code == 403 and "administrators" in denied.text
        assert "parental-leave" not in denied.text
    chat = user.get("/ui/").text
    assert 'href="/ui/admin"' not in chat and 'href="/ui/upload"' not in chat
    assert user.get("/api/stats", headers={CSRF_HEADER: csrf}).status_code == 403

    admin, _ = session_for("root")
    page = admin.get("/ui/admin")
    assert page.status_code == 200
    assert "board/merger.txt" in page.text and "administrators only" in page.text
    assert 'href="/ui/admin"' in admin.get("/ui/").text
    assert admin.get("/ui/upload").status_code == 200


def test_pages_never_show_what_the_user_cannot_read(
    session_for: Callable[[str], tuple[TestClient, str]],
) -> None:
    bob, bob_csrf = session_for("bob")
    alice, alice_csrf = session_for("alice")
    chats = {}
    for client, csrf, who in ((bob, bob_csrf, "bob"), (alice, alice_csrf, "alice")):
        chat = client.post("/api/chats", json={"kbs": [KB]}, headers={CSRF_HEADER: csrf}).json()["id"]
        for question in (LEAVE, "When does the merger with Northwind close?"):
            answer = client.post(
                f"/api/chats/{chat}/messages", json={"question": question}, headers={CSRF_HEADER: csrf}
            )
            assert answer.status_code == 200, answer.text
        chats[who] = chat

    for path in ("/ui/", f"/ui/?chat={chats['bob']}"):
        html = bob.get(path).text
        assert "sixteen weeks" not in html and "parental-leave" not in html
        assert not [s for s in SECRETS if s in html.replace("When does the merger with Northwind close?", "")]
    alice_html = alice.get(f"/ui/?chat={chats['alice']}").text
    assert "sixteen weeks" in alice_html
    assert "CANARYBOARD" not in alice_html and "board/merger.txt" not in alice_html

    # another user's conversation is "not found", and shows nothing of it
    foreign = bob.get(f"/ui/?chat={chats['alice']}")
    assert foreign.status_code == 404 and "sixteen weeks" not in foreign.text
    assert bob.get("/ui/?chat=not-a-uuid").status_code == 404


def test_stats_count_answers_refusals_grounding_and_feedback(
    session_for: Callable[[str], tuple[TestClient, str]],
) -> None:
    alice, csrf = session_for("alice")
    headers = {CSRF_HEADER: csrf}
    answered = alice.post("/api/ask", json={"question": LEAVE, "kbs": [KB]}, headers=headers).json()
    refused = alice.post("/api/ask", json={"question": "What is the moon made of?", "kbs": [KB]}, headers=headers)
    assert answered["refused"] is False and refused.json()["refused"] is True
    alice.post("/api/search", json={"query": "phishing", "kbs": [KB]}, headers=headers)
    vote = {"audit_id": answered["audit_id"], "vote": 1}
    assert alice.post("/api/feedback", json=vote, headers=headers).status_code == 201
    flag = {"audit_id": refused.json()["audit_id"], "vote": -1, "flag": True, "comment": "should know"}
    assert alice.post("/api/feedback", json=flag, headers=headers).status_code == 201

    admin, admin_csrf = session_for("root")
    stats = admin.get("/api/stats?bucket=day", headers={CSRF_HEADER: admin_csrf}).json()
    totals = stats["totals"]
    assert (totals["answers"], totals["refused"], totals["searches"]) == (2, 1, 1)
    assert totals["refusal_rate"] == 0.5
    assert (totals["votes_up"], totals["votes_down"], totals["flags"]) == (1, 1, 1)
    assert totals["latency_p50_ms"] is not None and totals["latency_p95_ms"] >= totals["latency_p50_ms"]
    assert stats["bucket"] == "day" and len(stats["buckets"]) == 1
    assert stats["buckets"][0]["answers"] == 2
    if answered.get("grounding"):
        assert totals["grounding_checked"] >= 1 and 0 <= totals["supported_ratio"] <= 1

    recent = admin.get("/ui/admin").text
    assert LEAVE in recent and "should know" in recent and "refused" in recent


def _entry(at: datetime, kind: str, **record: object) -> AuditEntry:
    return AuditEntry(1, at, 1, "alice", kind, dict(record), b"", b"")


def test_activity_fills_empty_buckets_and_uses_numpy_percentiles() -> None:
    start = datetime(2026, 11, 3, 9, 15, tzinfo=UTC)
    latencies = [120.0, 80.0, 300.0, 95.0, 1000.0]
    records = [_entry(start, "ask", refused=False, timings_ms={"total": t}) for t in latencies]
    records.append(
        _entry(
            start + timedelta(hours=3),
            "chat",
            refused=True,
            timings_ms={"total": 10.0},
            grounding={"verdict": "partial", "supported_ratio": 0.5},
        )
    )
    feedback = [FeedbackEntry(1, 1, start + timedelta(hours=1), "alice", 1, False, "", "")]
    stats = activity(records, feedback, bucket="hour")
    assert [b["start"] for b in stats["buckets"]] == [
        "2026-11-03T09:00:00Z",
        "2026-11-03T10:00:00Z",
        "2026-11-03T11:00:00Z",
        "2026-11-03T12:00:00Z",
    ]
    first, second, empty, last = stats["buckets"]
    assert first["latency_p50_ms"] == pytest.approx(np.percentile(latencies, 50))
    assert first["latency_p95_ms"] == pytest.approx(round(float(np.percentile(latencies, 95)), 1))
    assert second["votes_up"] == 1 and empty["answers"] == 0 and empty["latency_p50_ms"] is None
    assert last["refusal_rate"] == 1.0 and last["partial"] == 1 and last["supported_ratio"] == 0.5
    since = activity(records, feedback, bucket="day", since=start + timedelta(hours=2))
    assert since["records"] == 1 and since["feedback"] == 0
    assert percentile([], 50) is None and percentile([7.0], 95) == 7.0


def test_the_ui_manual_shows_screenshots_that_exist_and_stay_small() -> None:
    docs = Path(__file__).resolve().parents[3] / "docs"
    images = re.findall(r"!\[[^\]]+\]\((img/ui-[a-z-]+\.png)\)", (docs / "ui.md").read_text(encoding="utf-8"))
    assert len(images) >= 5
    for image in images:
        assert (docs / image).stat().st_size < 150_000, image
