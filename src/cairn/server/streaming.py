"""Answer generation for the routes: one slot, one deadline, errors before the first byte when possible.

A stream's first event is produced before the response starts, so an unknown knowledge base, a
blocked question or a full queue is an ordinary JSON error with its status; only failures after
the first token are reported inside the stream (an ``error`` event carrying the same JSON).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any

from starlette.responses import StreamingResponse

from cairn.answer.engine import AnswerEvent
from cairn.errors import CairnError, InputError
from cairn.server.context import ServerContext
from cairn.server.errors import internal_error, public
from cairn.server.limits import Deadline
from cairn.types import Answer

log = logging.getLogger("cairn.server")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def check_question(context: ServerContext, text: str, what: str = "question") -> str:
    if not text.strip():
        raise InputError(f"the {what} is empty")
    limit = context.config.max_question_chars
    if len(text) > limit:
        raise InputError(f"the {what} is longer than {limit} characters", hint="shorten it")
    return text


async def answer(context: ServerContext, produce: Callable[[], Answer]) -> Answer:
    """Run a blocking ``produce`` under a generation slot and the generation deadline."""
    deadline = Deadline(context.config.generation_timeout_s)
    return await context.generations.run(deadline, produce)


async def answer_events(
    context: ServerContext, events: Callable[[], Iterator[AnswerEvent]]
) -> tuple[AnswerEvent, AsyncGenerator[AnswerEvent, None]]:
    """The first event (errors raise here, before any response) and the rest of the stream."""
    deadline = Deadline(context.config.generation_timeout_s)
    stream = context.generations.stream(deadline, _lazy(events))
    try:
        first = await anext(stream)
    except BaseException:
        await stream.aclose()
        raise
    return first, stream


def _lazy(events: Callable[[], Iterator[AnswerEvent]]) -> Iterator[AnswerEvent]:
    """Builds the library's generator on the generation thread (building it may already touch the database)."""
    yield from events()


def sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def stream_error(exc: BaseException) -> dict[str, Any]:
    """The JSON of an error that happened after the response started (and the log line for it)."""
    if isinstance(exc, CairnError):
        return public(exc).to_dict()
    log.error("error while streaming", exc_info=exc)
    return internal_error().to_dict()


def event_stream(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)
