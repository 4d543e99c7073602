"""Listing and deleting chat sessions, which the API needs and the CLI does not (yet).

It extends :class:`ChatStore` rather than reaching around it: the same connections acting for the
caller, so row-level security hides other users' sessions here as it does there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cairn.answer.memory import ChatStore
from cairn.errors import NotFound
from cairn.types import Principal


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class SessionDirectory(ChatStore):
    def list(self, principal: Principal, limit: int = 50) -> list[dict[str, Any]]:
        """The caller's sessions, most recently used first."""
        with self.db.connection(principal) as conn:
            rows = conn.execute(
                "SELECT s.id, s.kb_names, s.created_at, count(m.id), max(m.created_at),"
                " (SELECT content FROM chat_messages f WHERE f.session_id = s.id AND f.role = 'user'"
                "  ORDER BY f.id LIMIT 1)"
                " FROM chat_sessions s LEFT JOIN chat_messages m ON m.session_id = s.id"
                " WHERE s.user_id IS NOT DISTINCT FROM %s GROUP BY s.id"
                " ORDER BY coalesce(max(m.created_at), s.created_at) DESC, s.id LIMIT %s",
                (principal.user_id, limit),
            ).fetchall()
        return [
            {
                "id": str(r[0]),
                "kbs": list(r[1]),
                "created_at": _iso(r[2]),
                "messages": int(r[3]),
                "last_message_at": _iso(r[4]),
                "title": (r[5] or "")[:120],
            }
            for r in rows
        ]

    def delete(self, principal: Principal, session_id: str) -> None:
        self.kbs(principal, session_id)
        with self.db.connection(principal) as conn:
            cur = conn.execute(
                "DELETE FROM chat_sessions WHERE id = %s AND user_id IS NOT DISTINCT FROM %s",
                (session_id, principal.user_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"chat session {session_id} does not exist")
