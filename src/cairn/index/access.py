"""The application side of document-level access control (row-level security is the database side).

Readers of a document are an ACL set: sorted tokens ``user:NAME`` / ``group:NAME`` stored once in
``acl_sets``. A query computes, in its own snapshot, the ACL ids its principal may read and adds
``acl_id = ANY(...)`` to every statement; the policies in m002_access.sql resolve the same rule
independently from the database's users and groups, so a query that forgot the clause still
returns nothing it should not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from cairn.errors import InputError
from cairn.types import Principal

NOBODY_ACL = 1  # the empty reader list: admins only
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.@-")


@dataclass(frozen=True, slots=True)
class Access:
    """The ACL ids a query may read; ``None`` means unrestricted (admins, the system)."""

    acl_ids: tuple[int, ...] | None

    def clause(self, column: str, param: str = "acl_ids") -> tuple[str, dict[str, Any]]:
        """`` AND column = ANY(...)`` and its parameters (empty for an unrestricted caller)."""
        if self.acl_ids is None:
            return "", {}
        return f" AND {column} = ANY(%({param})s)", {param: list(self.acl_ids)}

    def allows(self, acl_id: int) -> bool:
        return self.acl_ids is None or acl_id in self.acl_ids


def access_for(conn: psycopg.Connection, principal: Principal) -> Access:
    """What ``principal`` may read, computed on ``conn`` (inside the caller's snapshot)."""
    if principal.unrestricted:
        return Access(None)
    if principal.user_id is None:
        return Access(())
    rows = conn.execute(
        "SELECT id FROM acl_sets WHERE principals && %s::text[] ORDER BY id", (list(principal.tokens),)
    ).fetchall()
    return Access(tuple(int(r[0]) for r in rows))


def split_names(values: Iterable[str] | None) -> list[str]:
    """Names from comma-separated lists ("hr, it" and repeated options alike), blanks dropped."""
    return [name.strip() for value in values or () for name in value.split(",") if name.strip()]


def readers(groups: Iterable[str] = (), users: Iterable[str] = ()) -> tuple[str, ...]:
    """The normalised reader tokens of an ACL (sorted, unique); empty means admins only."""
    tokens = set()
    for kind, names in (("group", groups), ("user", users)):
        for raw in names:
            name = raw.strip()
            if not name:
                continue
            if not set(name) <= _NAME_CHARS or len(name) > 128:
                raise InputError(f"invalid {kind} name {name!r} in an access list")
            tokens.add(f"{kind}:{name}")
    return tuple(sorted(tokens))


def acl_id(conn: psycopg.Connection, tokens: tuple[str, ...]) -> int:
    """The id of the ACL set with exactly these reader tokens, created if new (system scope)."""
    if not tokens:
        return NOBODY_ACL
    row = conn.execute(
        "INSERT INTO acl_sets (principals) VALUES (%s) ON CONFLICT (principals) DO NOTHING RETURNING id",
        (list(tokens),),
    ).fetchone()
    if row is None:
        row = conn.execute("SELECT id FROM acl_sets WHERE principals = %s", (list(tokens),)).fetchone()
    assert row is not None
    return int(row[0])


def passage_readers(
    conn: psycopg.Connection, principal: Principal, chunk_ids: Iterable[int]
) -> dict[int, tuple[str, ...]]:
    """The reader tokens of each passage's document, for the passages ``principal`` may read.

    Model routing asks this to decide whether a context may leave the premises; a passage missing
    from the result (unreadable, or replaced by a re-ingest meanwhile) is for the caller to treat
    as restricted.
    """
    acl, params = access_for(conn, principal).clause("c.acl_id")
    rows = conn.execute(
        f"SELECT c.id, a.principals FROM chunks c JOIN acl_sets a ON a.id = c.acl_id WHERE c.id = ANY(%(ids)s){acl}",
        params | {"ids": list(chunk_ids)},
    ).fetchall()
    return {int(r[0]): tuple(r[1]) for r in rows}
