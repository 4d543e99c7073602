"""Chat sessions: kept in PostgreSQL, so any replica can continue any session of its owner."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from cairn.answer.engine import AnswerEvent
from cairn.assistant import Cairn
from cairn.server.auth import Caller
from cairn.server.context import get_context
from cairn.server.limits import Deadline, run_blocking
from cairn.server.routes.rest import KbList, answer_sse
from cairn.server.sessions import SessionDirectory
from cairn.server.streaming import answer, answer_events, check_question, event_stream
from cairn.types import Answer, ChatMessage, Principal

router = APIRouter(prefix="/api/chats", tags=["chat"])


class SessionIn(BaseModel):
    kbs: KbList = Field(default_factory=lambda: ["default"])


class MessageIn(BaseModel):
    question: str
    stream: bool = Field(False, description="Server-sent events, as for /api/ask.")


def sessions(cairn: Cairn) -> SessionDirectory:
    return SessionDirectory(cairn.db)


def _turn(cairn: Cairn, principal: Principal, session_id: str, question: str) -> Iterator[AnswerEvent]:
    """One exchange: the history is read and the exchange stored in the database, never in this process."""
    store = sessions(cairn)
    kbs = store.kbs(principal, session_id)
    history = store.history(principal, session_id, limit=2 * cairn.settings.history_turns)
    for event in cairn.stream(question, kbs, principal=principal, history=history, session_id=session_id, client="api"):
        if event.answer is not None:
            store.append(
                principal, session_id, ChatMessage("user", question), ChatMessage("assistant", event.answer.answer)
            )
        yield event


def _final(events: Iterator[AnswerEvent]) -> Answer:
    for event in events:
        if event.answer is not None:
            return event.answer
    raise AssertionError("the answer stream ended without an answer")


@router.post("", status_code=201, summary="Start a chat session over some knowledge bases")
async def create_session(request: Request, body: SessionIn, principal: Caller) -> dict[str, Any]:
    context = get_context(request)
    cairn = context.cairn

    def create() -> str:
        cairn.store.kb_ids(body.kbs, principal)  # a knowledge base the caller cannot read does not exist
        return sessions(cairn).create(principal, body.kbs)

    session_id = await run_blocking(Deadline(context.config.request_timeout_s), create)
    return {"id": session_id, "kbs": body.kbs}


@router.get("", summary="The caller's chat sessions, most recent first")
async def list_sessions(
    request: Request, principal: Caller, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> dict[str, Any]:
    context = get_context(request)
    found = await run_blocking(
        Deadline(context.config.request_timeout_s), lambda: sessions(context.cairn).list(principal, limit)
    )
    return {"sessions": found}


@router.get("/{session_id}", summary="A session with its messages")
async def get_session(request: Request, session_id: str, principal: Caller) -> dict[str, Any]:
    context = get_context(request)

    def read() -> dict[str, Any]:
        store = sessions(context.cairn)
        kbs = store.kbs(principal, session_id)
        messages = store.history(principal, session_id, limit=1000)
        return {"id": session_id, "kbs": kbs, "messages": [{"role": m.role, "content": m.content} for m in messages]}

    return await run_blocking(Deadline(context.config.request_timeout_s), read)


@router.delete("/{session_id}", status_code=204, summary="Delete a session and its messages")
async def delete_session(request: Request, session_id: str, principal: Caller) -> Response:
    context = get_context(request)
    await run_blocking(
        Deadline(context.config.request_timeout_s), lambda: sessions(context.cairn).delete(principal, session_id)
    )
    return Response(status_code=204)


@router.post(
    "/{session_id}/messages",
    summary="Ask a follow-up in the session; the answer JSON is that of /api/ask plus `session_id`",
    responses={200: {"content": {"application/json": {}, "text/event-stream": {}}}},
)
async def continue_session(request: Request, session_id: str, body: MessageIn, principal: Caller) -> Any:
    context = get_context(request)
    question = check_question(context, body.question)
    cairn = context.cairn
    extra = {"session_id": session_id}
    if not body.stream:
        result = await answer(context, lambda: _final(_turn(cairn, principal, session_id, question)))
        return result.to_json() | extra
    first, rest = await answer_events(context, lambda: _turn(cairn, principal, session_id, question))
    return event_stream(answer_sse(first, rest, extra))
