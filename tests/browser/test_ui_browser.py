"""The web UI in Debian's chromium: sign in, ask, watch the answer stream, open its source, vote,
flag, upload, read the admin charts; by keyboard, on a narrow screen, with labels and contrast checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import KB, LEAVE_QUESTION, Server

pytestmark = pytest.mark.browser
expect = pytest.importorskip("playwright.sync_api", reason="browser tests need `pip install playwright`").expect

#: Records what the answer's live region showed while it was still streaming (aria-busy=true).
WATCH_STREAM = """() => {
  window.__streamed = [];
  new MutationObserver(() => {
    for (const body of document.querySelectorAll('.msg-body[aria-busy="true"]')) {
      if (body.textContent) window.__streamed.push(body.textContent);
    }
  }).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
}"""

#: WCAG checks a script can make: every control has an accessible name, and text has AA contrast
#: against the background it is drawn on (4.5:1, or 3:1 for large text). Disabled controls are exempt.
AUDIT = """() => {
  const parse = (c) => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1};
  };
  const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  const lum = (c) => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0.5) return c;
    }
    return {r: 255, g: 255, b: 255, a: 1};
  };
  const problems = [];
  for (const el of document.querySelectorAll('body *')) {
    if (!el.getClientRects().length || el.closest('svg') || el.closest(':disabled')) continue;
    if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden') continue;
    const fg = parse(style.color);
    if (!fg) continue;
    const [hi, lo] = [lum(fg), lum(background(el))].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (Number(style.fontWeight) >= 700 && size >= 18.66);
    if (ratio < (large ? 3 : 4.5)) {
      const text = el.textContent.trim().slice(0, 40);
      problems.push(`contrast ${ratio.toFixed(2)}: <${el.tagName.toLowerCase()} class="${el.className}"> ${text}`);
    }
  }
  for (const c of document.querySelectorAll('input:not([type=hidden]), select, textarea, button')) {
    const named = (c.labels && c.labels.length) || c.getAttribute('aria-label') || c.getAttribute('aria-labelledby')
      || (c.tagName === 'BUTTON' && c.textContent.trim());
    if (!named) problems.push(`no accessible name: <${c.tagName.toLowerCase()} id="${c.id}">`);
  }
  if (!document.documentElement.lang) problems.push('no lang on <html>');
  if (document.querySelectorAll('h1').length !== 1) problems.push('not exactly one h1');
  return problems;
}"""


def sign_in(page: Any, key: str) -> None:
    page.goto("/ui/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui/")


def assert_accessible(page: Any) -> None:
    assert page.evaluate(AUDIT) == []


def ask(page: Any, question: str) -> Any:
    """Types the question, sends it with Enter, and returns the finished answer's message."""
    page.get_by_label("Your question").fill(question)
    page.get_by_label("Your question").press("Enter")
    answer = page.locator(".msg.assistant").last
    expect(answer.locator('.msg-body[aria-busy="false"]')).to_be_visible()
    return answer


def test_ask_stream_open_the_source_vote_and_flag(make_page: Any, server: Server, shots: Path) -> None:
    page = make_page()
    page.goto("/ui/")
    expect(page).to_have_url(f"{server.url}/ui/login?next=%2Fui%2F")
    assert_accessible(page)
    page.get_by_label("API key").fill(server.keys["alice"])
    page.screenshot(path=str(shots / "ui-login.png"))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui/")
    expect(page.get_by_text("Signed in as alice")).to_be_visible()
    expect(page.get_by_role("checkbox", name=KB)).to_be_checked()
    assert "CANARYBOARD" not in page.content()

    page.evaluate(WATCH_STREAM)
    with page.expect_response(lambda r: r.url.endswith("/messages")) as streamed:
        answer = ask(page, LEAVE_QUESTION)
    assert streamed.value.headers["content-type"].startswith("text/event-stream")
    assert any("sixteen weeks" in text for text in page.evaluate("window.__streamed")), "no token was rendered"
    expect(answer).to_contain_text("sixteen weeks")
    assert answer.locator(".msg-body").get_attribute("aria-live") == "polite"
    expect(page.locator("#ask-status")).to_have_text("Answer complete.")

    cite = answer.locator("button.cite").first
    expect(cite).to_have_attribute("aria-label", "Source 1: policies/leave-policy.pdf, page 2")
    expect(answer.get_by_role("button", name="[1] policies/leave-policy.pdf, page 2")).to_be_visible()
    expect(answer).to_contain_text("Grounding check")

    answer.get_by_role("button", name="Helpful", exact=True).click()
    expect(answer.get_by_role("button", name="Helpful", exact=True)).to_have_attribute("aria-pressed", "true")
    expect(answer.get_by_role("status")).to_have_text("Thanks for your feedback.")
    assert_accessible(page)
    page.screenshot(path=str(shots / "ui-chat.png"))

    cite.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading", name="policies/leave-policy.pdf")).to_be_visible()
    expect(dialog.locator("#passage-meta")).to_contain_text("page 2 · knowledge base handbook")
    expect(dialog.locator("mark")).to_contain_text("sixteen weeks at full pay")
    assert_accessible(page)
    page.screenshot(path=str(shots / "ui-passage.png"))
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert page.evaluate("document.activeElement.classList.contains('cite')")

    answer.get_by_role("button", name="Flag").click()
    answer.get_by_label("What is wrong with this answer?").fill("The leave page moved.")
    answer.get_by_role("button", name="Send flag").click()
    expect(answer.get_by_role("status")).to_have_text("Flag sent. Thank you.")

    feedback = httpx.get(f"{server.url}/api/feedback", headers=server.auth("root")).json()["feedback"]
    mine = [f for f in feedback if f["principal"] == "alice" and f["question"] == LEAVE_QUESTION]
    assert {f["vote"] for f in mine} >= {1} and any(f["flag"] and f["comment"] == "The leave page moved." for f in mine)

    # the conversation is kept: reloading shows it, and it is listed with the others
    assert "?chat=" in page.url
    page.reload()
    expect(page.locator(".msg.assistant")).to_contain_text("sixteen weeks")
    expect(page.locator("#sessions a[aria-current='page']")).to_have_text(LEAVE_QUESTION)
    follow_up = ask(page, "Is it paid?")
    expect(page.locator(".msg.assistant")).to_have_count(2)
    expect(follow_up).to_contain_text("full pay")


def test_everything_works_from_the_keyboard(make_page: Any, server: Server) -> None:
    page = make_page()
    sign_in(page, server.keys["alice"])

    def tab_to(check: str, key: str = "Tab", limit: int = 40) -> None:
        for _ in range(limit):
            page.keyboard.press(key)
            if page.evaluate(f"(() => {{ const e = document.activeElement; return {check}; }})()"):
                outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
                assert outline != "none", f"no visible focus on {check}"
                return
        raise AssertionError(f"Tab never reached {check}")

    tab_to("e.id === 'question'")
    page.keyboard.type(LEAVE_QUESTION)
    page.keyboard.press("Enter")
    expect(page.locator('.msg.assistant .msg-body[aria-busy="false"]')).to_be_visible()
    expect(page.locator("#question")).to_be_focused()

    tab_to("e.classList.contains('cite')", key="Shift+Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog")).to_be_visible()
    assert page.evaluate("document.activeElement.closest('dialog') !== null")
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(page.locator("button.cite").first).to_be_focused()
    tab_to("e.textContent.includes('Not helpful')")
    page.keyboard.press("Space")
    expect(page.get_by_role("button", name="Not helpful")).to_have_attribute("aria-pressed", "true")


def test_upload_shows_progress_and_the_indexing_result(make_page: Any, server: Server, shots: Path) -> None:
    page = make_page()
    sign_in(page, server.keys["root"])
    page.get_by_role("link", name="Upload").click()
    expect(page.get_by_role("heading", name="Upload documents")).to_be_visible()
    assert_accessible(page)
    page.get_by_label("Knowledge base").fill("uploads")
    page.get_by_label("Files").set_input_files(
        [
            {
                "name": "expenses.md",
                "mimeType": "text/markdown",
                "buffer": b"# Expenses\n\nClaim travel within 30 days.",
            },
            {"name": "canteen.txt", "mimeType": "text/plain", "buffer": b"The canteen opens at eight."},
        ]
    )
    page.get_by_label("Groups that may read them").fill("staff")
    page.get_by_role("button", name="Upload").click()
    status = page.locator("#upload-status")
    expect(status).to_contain_text("Indexed into uploads: 2 added, 0 updated, 0 unchanged, 0 failed")
    assert page.locator("#upload-progress").evaluate("p => p.value") == 100
    table = page.get_by_role("region", name="Indexing results")
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table).to_contain_text("expenses.md")
    assert_accessible(page)
    page.screenshot(path=str(shots / "ui-upload.png"))

    page.get_by_role("button", name="Upload").click()
    expect(status).to_contain_text("0 added, 0 updated, 2 unchanged")

    alice = make_page()
    sign_in(alice, server.keys["alice"])
    alice.get_by_role("checkbox", name=KB).uncheck()
    alice.get_by_role("checkbox", name="uploads").check()
    answer = ask(alice, "How long do I have to claim travel expenses?")
    expect(answer).to_contain_text("30 days")


def test_admin_page_shows_ingestion_questions_feedback_and_charts(make_page: Any, server: Server, shots: Path) -> None:
    alice = server.auth("alice")
    answered = httpx.post(
        f"{server.url}/api/ask", json={"question": LEAVE_QUESTION, "kbs": [KB]}, headers=alice, timeout=60
    ).json()
    httpx.post(f"{server.url}/api/feedback", json={"audit_id": answered["audit_id"], "vote": -1}, headers=alice)
    httpx.post(f"{server.url}/api/ask", json={"question": "What colour is the CEO's car?", "kbs": [KB]}, headers=alice)

    page = make_page(height=1000)
    sign_in(page, server.keys["root"])
    page.get_by_role("link", name="Admin").click()
    expect(page.get_by_role("heading", name="Administration")).to_be_visible()
    for chart in ("chart-latency", "chart-refusal", "chart-grounding", "chart-feedback"):
        expect(page.locator(f"#{chart} svg[role='img']")).to_be_visible()
    expect(page.locator("#chart-latency path.line")).to_have_count(2)
    expect(page.locator("#chart-feedback rect").first).to_be_visible()
    expect(page.locator("#stats-totals")).to_contain_text("Refusal rate")
    ingestion = page.locator("section", has=page.get_by_role("heading", name="Ingestion status"))
    expect(ingestion).to_contain_text("policies/leave-policy.pdf")
    expect(ingestion).to_contain_text("board/merger.txt")
    questions = page.locator("section", has=page.get_by_role("heading", name="Recent questions"))
    expect(questions).to_contain_text("What colour is the CEO's car?")
    expect(questions.locator(".badge.refused").first).to_be_visible()
    expect(page.locator("section", has=page.get_by_role("heading", name="Feedback"))).to_contain_text("down")

    page.get_by_label("Per").select_option("day")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#stats-status")).to_contain_text("per day")
    page.get_by_label("Per").select_option("hour")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#stats-status")).to_contain_text("per hour")
    assert_accessible(page)
    page.screenshot(path=str(shots / "ui-admin.png"))


def test_a_normal_user_sees_no_admin_pages_and_nothing_they_cannot_read(make_page: Any, server: Server) -> None:
    page = make_page()
    sign_in(page, server.keys["alice"])
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    expect(page.get_by_role("link", name="Upload")).to_have_count(0)
    answer = ask(page, "When does the merger with Northwind close?")
    expect(answer).to_contain_text("No answer in the documents you can read.")
    assert "CANARYBOARD" not in page.content() and "board/merger.txt" not in page.content()
    response = page.goto("/ui/admin")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    assert "board/merger.txt" not in page.content()


def test_a_narrow_screen_has_no_horizontal_scrolling(make_page: Any, server: Server, shots: Path) -> None:
    page = make_page(width=360, height=780)
    sign_in(page, server.keys["root"])
    ask(page, LEAVE_QUESTION)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert_accessible(page)
    page.screenshot(path=str(shots / "ui-chat-narrow.png"))
    for path in ("/ui/admin", "/ui/upload"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360, path
