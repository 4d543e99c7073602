"""Numbered SQL migrations (``mNNN_name.sql``), applied in order, each in its own transaction.

An advisory lock serialises concurrent starters (two CLI processes, several server replicas), so
a migration runs exactly once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg

_NAME = re.compile(r"^m(\d{3})_([a-z0-9_]+)\.sql$")
_LOCK_ID = 0x0CA1_2000


@dataclass(frozen=True, slots=True)
class Migration:
    number: int
    name: str
    sql: str


def available() -> list[Migration]:
    found = []
    for entry in resources.files("cairn.index.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.number)
    numbers = [m.number for m in found]
    if numbers != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {numbers}")
    return found


def applied(conn: psycopg.Connection) -> set[int]:
    row = conn.execute("SELECT to_regclass('cairn_migrations')").fetchone()
    if row is None or row[0] is None:
        return set()
    return {r[0] for r in conn.execute("SELECT number FROM cairn_migrations")}


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply what is missing; returns the names applied. ``conn`` must be in autocommit mode.

    An up-to-date schema is recognised without any DDL, so a login role that may not create
    tables (a member of ``cairn_app``, not the owner) can start cairn once the owner has migrated.
    """
    if {m.number for m in available()} <= applied(conn):
        return []
    done: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS cairn_migrations ("
            " number int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        have = applied(conn)
        for migration in available():
            if migration.number in have:
                continue
            with conn.transaction():
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO cairn_migrations (number, name) VALUES (%s, %s)",
                    (migration.number, migration.name),
                )
            done.append(f"m{migration.number:03d}_{migration.name}")
    return done
