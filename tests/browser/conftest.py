"""A real ``cairn serve`` process and Debian's chromium driven by Playwright.

The server runs on a fresh database of the embedded PostgreSQL with the deterministic models
(``fake:hash?dim=64`` embeddings, the ``extractive:`` answerer), a seeded ``handbook`` knowledge
base with a two-page PDF, an administrator and a normal user with API keys. Chromium is the
distribution's (``apt-get install chromium``); Playwright never downloads a browser here.

Screenshots go to ``$CAIRN_UI_SCREENSHOTS`` when it is set (``docs/img`` to refresh the docs),
else to the test's temporary folder.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cairn.assistant import Cairn
from cairn.settings import get_settings
from cairn.testing.postgres import with_database
from cairn.testing.serve import serve_process
from cairn.types import ParsedDocument

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
KB = "handbook"
LEAVE_QUESTION = "How long is parental leave?"
SERVER_ENV = {
    "CAIRN_EMBEDDER": "fake:hash?dim=64",
    "CAIRN_GENERATOR": "extractive:",
    "CAIRN_MIN_RELEVANCE": "0.2",
    "CAIRN_SERVER_RATE_PER_MINUTE": "100000",
    "CAIRN_SERVER_BURST": "1000",
}
TEXTS = [
    (
        "it/phishing.txt",
        "Report suspicious emails immediately to security@example.com. Never open unexpected attachments.",
        ("group:everyone",),
    ),
    (
        "it/laptops.md",
        "# Laptops\n\nLaptops are replaced every three years. Encrypt the disk and lock the screen when you leave.",
        ("group:everyone",),
    ),
    (
        "board/merger.txt",
        "CANARYBOARD: the merger with Northwind closes in March. Only the board may read this.",
        (),
    ),
]


@dataclass
class Server:
    url: str
    keys: dict[str, str]

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[user]}"}


def leave_policy_pdf() -> bytes:
    """Two pages, the answer on the second, so a citation has a page to show."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, "Leave policy. This policy covers holidays, sick leave and family leave for all staff.")
    pdf.add_page()
    pdf.multi_cell(
        0,
        8,
        "Parental leave is sixteen weeks at full pay. Ask the people team at people@example.com to plan it. "
        "Holidays are twenty-five days a year.",
    )
    return bytes(pdf.output())


def seed(cairn: Cairn) -> dict[str, str]:
    from cairn.ingest.parse import parse_bytes

    cairn.ingestor.ingest_documents(
        KB,
        [("policies/leave-policy.pdf", parse_bytes(leave_policy_pdf(), "leave-policy.pdf"))],
        readers=("group:everyone",),
    )
    for source, text, readers in TEXTS:
        parsed = ParsedDocument(text=text, title=source.rsplit("/", 1)[-1], mime="text/plain")
        cairn.ingestor.ingest_documents(KB, [(source, parsed)], readers=readers)
    cairn.principals.add_user("root", admin=True)
    cairn.principals.add_user("alice", ["staff"])
    return {user: cairn.principals.create_key(user, "browser tests") for user in ("root", "alice")}


@pytest.fixture(scope="session")
def server(pg_servers: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    admin_url = pg_servers["embedded"]
    name = f"t_ui_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    database_url = with_database(admin_url, name)
    home = tmp_path_factory.mktemp("ui-home")
    cairn = Cairn(
        get_settings(home=home, database_url=database_url, embedder="fake:hash?dim=64", generator="extractive:")
    )
    try:
        keys = seed(cairn)
    finally:
        cairn.close()
    env = {**os.environ, "CAIRN_HOME": str(home), "CAIRN_DATABASE_URL": database_url, **SERVER_ENV}
    try:
        with serve_process(env, home / "serve.log") as url:
            yield Server(url, keys)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM}: `apt-get install -y chromium`")
    sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need `pip install playwright`")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def make_page(browser: Any, server: Server) -> Iterator[Any]:
    """New pages, each in its own context (own cookies), closed after the test."""
    contexts: list[Any] = []

    def factory(width: int = 1280, height: int = 860) -> Any:
        context = browser.new_context(base_url=server.url, viewport={"width": width, "height": height})
        context.set_default_timeout(20_000)
        contexts.append(context)
        return context.new_page()

    yield factory
    for context in contexts:
        context.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CAIRN_UI_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
