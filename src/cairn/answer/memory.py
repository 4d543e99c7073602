"""Conversation memory, stored in Postgres so any cairn process can continue a session.

A session belongs to the user who started it; row-level security hides everyone else's, and a
session id that is not yours reads exactly like one that does not exist.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from cairn.errors import NotFound
from cairn.index.db import Database
from cairn.types import ChatMessage, Principal


class ChatStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, principal: Principal, kbs: Sequence[str]) -> str:
        session_id = str(uuid.uuid4())
        with self.db.connection(principal) as conn:
            conn.execute(
                "INSERT INTO chat_sessions (id, kb_names, user_id) VALUES (%s, %s, %s)",
                (session_id, list(kbs), principal.user_id),
            )
        return session_id

    def kbs(self, principal: Principal, session_id: str) -> list[str]:
        _check_id(session_id)
        with self.db.connection(principal) as conn:
            row = conn.execute(
                "SELECT kb_names FROM chat_sessions WHERE id = %s AND user_id IS NOT DISTINCT FROM %s",
                (session_id, principal.user_id),
            ).fetchone()
        if row is None:
            raise NotFound(f"chat session {session_id} does not exist")
        return list(row[0])

    def history(self, principal: Principal, session_id: str, limit: int = 50) -> list[ChatMessage]:
        _check_id(session_id)
        with self.db.connection(principal) as conn:
            exists = conn.execute(
                "SELECT 1 FROM chat_sessions WHERE id = %s AND user_id IS NOT DISTINCT FROM %s",
                (session_id, principal.user_id),
            ).fetchone()
            if not exists:
                raise NotFound(f"chat session {session_id} does not exist")
            rows = conn.execute(
                "SELECT role, content FROM (SELECT id, role, content FROM chat_messages WHERE session_id = %s"
                " ORDER BY id DESC LIMIT %s) AS recent ORDER BY id",
                (session_id, limit),
            ).fetchall()
        return [ChatMessage(r[0], r[1]) for r in rows]

    def append(self, principal: Principal, session_id: str, *messages: ChatMessage) -> None:
        self.kbs(principal, session_id)
        with self.db.connection(principal) as conn, conn.transaction():
            for message in messages:
                conn.execute(
                    "INSERT INTO chat_messages (session_id, role, content) VALUES (%s, %s, %s)",
                    (session_id, message.role, message.content),
                )


def _check_id(session_id: str) -> None:
    try:
        uuid.UUID(session_id)
    except ValueError:
        raise NotFound(f"chat session {session_id} does not exist") from None
