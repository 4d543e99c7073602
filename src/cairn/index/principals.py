"""Users, groups and API keys, stored in Postgres next to the documents they may read.

A :class:`Principal` is resolved from these tables on every request (never cached), so disabling
a user or removing a membership takes effect on the next question.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from cairn.errors import AuthError, InputError, NotFound
from cairn.index.db import Database
from cairn.types import SYSTEM, Principal

KEY_PREFIX = "cairn_"


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    groups: tuple[str, ...]
    is_admin: bool
    disabled: bool
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "groups": list(self.groups),
            "admin": self.is_admin,
            "disabled": self.disabled,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class KeyInfo:
    prefix: str
    user: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "user": self.user,
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "revoked": self.revoked,
        }


class PrincipalStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- resolution ------------------------------------------------------------------------------
    def resolve(self, name: str) -> Principal:
        """The current rights of user ``name``; a disabled or unknown user is refused the same way."""
        with self.db.connection(SYSTEM) as conn:
            row = conn.execute(
                "SELECT u.id, u.is_admin, u.disabled, coalesce(array_agg(g.name ORDER BY g.name)"
                " FILTER (WHERE g.name IS NOT NULL), '{}')"
                " FROM users u LEFT JOIN group_members m ON m.user_id = u.id LEFT JOIN groups g ON g.id = m.group_id"
                " WHERE u.name = %s GROUP BY u.id",
                (name,),
            ).fetchone()
        if row is None or row[2]:
            raise AuthError(f"unknown or disabled user {name!r}", hint="see `cairn users list`")
        return Principal(name=name, user_id=int(row[0]), groups=tuple(row[3]), is_admin=bool(row[1]))

    # -- users -------------------------------------------------------------------------------
    def add_user(self, name: str, groups: Iterable[str] = (), *, admin: bool = False) -> UserInfo:
        with self.db.connection(SYSTEM) as conn, conn.transaction():
            try:
                row = conn.execute(
                    "INSERT INTO users (name, is_admin) VALUES (%s, %s) RETURNING id", (name, admin)
                ).fetchone()
            except psycopg.errors.UniqueViolation:
                raise InputError(f"user {name!r} already exists") from None
            except psycopg.errors.CheckViolation:
                raise InputError(f"invalid user name {name!r}", hint="letters, digits, '_.@-'") from None
            assert row is not None
            self._set_groups(conn, int(row[0]), groups)
        return self.user(name)

    def user(self, name: str) -> UserInfo:
        users = self.list_users([name])
        if not users:
            raise NotFound(f"user {name!r} does not exist")
        return users[0]

    def list_users(self, names: Sequence[str] | None = None) -> list[UserInfo]:
        where, params = ("WHERE u.name = ANY(%s)", (list(names),)) if names is not None else ("", ())
        with self.db.connection(SYSTEM) as conn:
            rows = conn.execute(
                "SELECT u.name, coalesce(array_agg(g.name ORDER BY g.name) FILTER (WHERE g.name IS NOT NULL), '{}'),"
                " u.is_admin, u.disabled, u.created_at FROM users u LEFT JOIN group_members m ON m.user_id = u.id"
                f" LEFT JOIN groups g ON g.id = m.group_id {where} GROUP BY u.id ORDER BY u.name",
                params,
            ).fetchall()
        return [UserInfo(r[0], tuple(r[1]), r[2], r[3], r[4]) for r in rows]

    def update_user(
        self,
        name: str,
        *,
        groups: Iterable[str] | None = None,
        admin: bool | None = None,
        disabled: bool | None = None,
    ) -> UserInfo:
        with self.db.connection(SYSTEM) as conn, conn.transaction():
            user_id = _user_id(conn, name)
            if admin is not None:
                conn.execute("UPDATE users SET is_admin = %s WHERE id = %s", (admin, user_id))
            if disabled is not None:
                conn.execute("UPDATE users SET disabled = %s WHERE id = %s", (disabled, user_id))
            if groups is not None:
                conn.execute("DELETE FROM group_members WHERE user_id = %s", (user_id,))
                self._set_groups(conn, user_id, groups)
        return self.user(name)

    def remove_user(self, name: str) -> None:
        with self.db.connection(SYSTEM) as conn:
            if conn.execute("DELETE FROM users WHERE name = %s", (name,)).rowcount == 0:
                raise NotFound(f"user {name!r} does not exist")

    def _set_groups(self, conn: psycopg.Connection, user_id: int, groups: Iterable[str]) -> None:
        for group in sorted({g.strip() for g in groups if g.strip()}):
            group_id = _ensure_group(conn, group)
            conn.execute(
                "INSERT INTO group_members (group_id, user_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (group_id, user_id),
            )

    # -- groups --------------------------------------------------------------------------------
    def add_group(self, name: str, description: str = "") -> None:
        with self.db.connection(SYSTEM) as conn, conn.transaction():
            _ensure_group(conn, name, description)

    def list_groups(self) -> list[dict[str, Any]]:
        with self.db.connection(SYSTEM) as conn:
            rows = conn.execute(
                "SELECT g.name, g.description, coalesce(array_agg(u.name ORDER BY u.name)"
                " FILTER (WHERE u.name IS NOT NULL), '{}') FROM groups g"
                " LEFT JOIN group_members m ON m.group_id = g.id LEFT JOIN users u ON u.id = m.user_id"
                " GROUP BY g.id ORDER BY g.name"
            ).fetchall()
        return [{"name": r[0], "description": r[1], "members": list(r[2])} for r in rows]

    def add_member(self, group: str, user: str) -> None:
        with self.db.connection(SYSTEM) as conn, conn.transaction():
            user_id = _user_id(conn, user)
            group_id = _ensure_group(conn, group)
            conn.execute(
                "INSERT INTO group_members (group_id, user_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (group_id, user_id),
            )

    def remove_member(self, group: str, user: str) -> None:
        with self.db.connection(SYSTEM) as conn:
            cur = conn.execute(
                "DELETE FROM group_members m USING groups g, users u"
                " WHERE m.group_id = g.id AND m.user_id = u.id AND g.name = %s AND u.name = %s",
                (group, user),
            )
            if cur.rowcount == 0:
                raise NotFound(f"user {user!r} is not a member of group {group!r}")

    def delete_group(self, name: str) -> None:
        """Remove the group and its memberships; documents readable only through it become admin-only."""
        with self.db.connection(SYSTEM) as conn:
            if conn.execute("DELETE FROM groups WHERE name = %s", (name,)).rowcount == 0:
                raise NotFound(f"group {name!r} does not exist")

    # -- API keys ------------------------------------------------------------------------------
    def create_key(self, user: str, name: str = "") -> str:
        """A new key for ``user``; only its digest is stored, so this is the one time it is seen."""
        prefix = secrets.token_hex(6)
        key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        with self.db.connection(SYSTEM) as conn, conn.transaction():
            conn.execute(
                "INSERT INTO api_keys (user_id, name, prefix, digest) VALUES (%s, %s, %s, %s)",
                (_user_id(conn, user), name, prefix, _digest(key)),
            )
        return key

    def list_keys(self, user: str | None = None) -> list[KeyInfo]:
        where, params = ("WHERE u.name = %s", (user,)) if user else ("", ())
        with self.db.connection(SYSTEM) as conn:
            rows = conn.execute(
                "SELECT k.prefix, u.name, k.name, k.created_at, k.last_used_at, k.revoked_at IS NOT NULL"
                f" FROM api_keys k JOIN users u ON u.id = k.user_id {where} ORDER BY k.created_at",
                params,
            ).fetchall()
        return [KeyInfo(*r) for r in rows]

    def revoke_key(self, prefix: str) -> None:
        with self.db.connection(SYSTEM) as conn:
            cur = conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE prefix = %s AND revoked_at IS NULL", (prefix,)
            )
            if cur.rowcount == 0:
                raise NotFound(f"no active key with prefix {prefix!r}")

    def authenticate(self, key: str) -> Principal:
        """The principal a key acts for; every failure reads the same, whatever went wrong."""
        refused = AuthError("invalid API key")
        parts = key.removeprefix(KEY_PREFIX).split("_", 1) if key.startswith(KEY_PREFIX) else []
        if len(parts) != 2:
            raise refused
        with self.db.connection(SYSTEM) as conn:
            row = conn.execute(
                "SELECT k.id, k.digest, u.name FROM api_keys k JOIN users u ON u.id = k.user_id"
                " WHERE k.prefix = %s AND k.revoked_at IS NULL AND NOT u.disabled",
                (parts[0],),
            ).fetchone()
            if row is None or not hmac.compare_digest(bytes(row[1]), _digest(key)):
                raise refused
            conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = %s", (row[0],))
        return self.resolve(str(row[2]))


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _user_id(conn: psycopg.Connection, name: str) -> int:
    row = conn.execute("SELECT id FROM users WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise NotFound(f"user {name!r} does not exist")
    return int(row[0])


def _ensure_group(conn: psycopg.Connection, name: str, description: str = "") -> int:
    if name == "everyone":
        raise InputError("'everyone' is implicit: every user is in it", hint="use --groups everyone on documents")
    try:
        row = conn.execute(
            "INSERT INTO groups (name, description) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
            (name, description),
        ).fetchone()
    except psycopg.errors.CheckViolation:
        raise InputError(f"invalid group name {name!r}", hint="letters, digits, '_.-'; up to 64 characters") from None
    assert row is not None
    return int(row[0])
