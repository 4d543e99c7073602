"""An OpenAI-compatible face, so existing clients (the ``openai`` package, LangChain, Open WebUI,
LibreChat) can use cairn as a backend without knowing it.

Each "model" is a knowledge base the caller can read; ``cairn`` is the profile that searches all
of them (unless a knowledge base has that name). The conversation is taken from ``messages``:
the last one must be the user's question, earlier user/assistant turns are the history used to
rewrite a follow-up, and system prompts are ignored (cairn's grounded prompt is not negotiable).
Sampling parameters are accepted and ignored.

Citations travel twice: as Markdown footnotes in the content (``[^1]`` markers and ``[^1]:
source, page, characters`` definitions at the end), which any chat UI renders, and in full in the
``cairn`` extension field of the completion (of the last chunk when streaming): the answer JSON of
``POST /api/ask``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from cairn.answer.engine import AnswerEvent
from cairn.assistant import Cairn
from cairn.errors import InputError, NotFound
from cairn.server.auth import Caller
from cairn.server.context import get_context
from cairn.server.limits import Deadline, run_blocking
from cairn.server.streaming import answer, answer_events, check_question, event_stream, sse, stream_error
from cairn.types import Answer, ChatMessage, Citation, Principal

router = APIRouter(prefix="/v1", tags=["openai"])

ALL_KBS = "cairn"
DONE = b"data: [DONE]\n\n"
_MARKER = re.compile(r"\[(\d+)\]")
_PARTIAL_MARKER = re.compile(r"\[\d*$")
_FOOTNOTE_LINE = re.compile(r"^\[\^\d+\]:.*$", re.MULTILINE)
_FOOTNOTE_REF = re.compile(r"\[\^(\d+)\]")


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class CompletionIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(description="A knowledge base (or several, comma-separated), or `cairn` for all.")
    messages: list[MessageIn] = Field(min_length=1, max_length=200)
    stream: bool = False
    stream_options: dict[str, Any] | None = None


def model_json(name: str, description: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "cairn", "description": description}


def _models(cairn: Cairn, principal: Principal) -> list[dict[str, Any]]:
    kbs = cairn.store.list_kbs(principal)
    out = [model_json(kb["name"], kb["description"] or f"knowledge base {kb['name']}") for kb in kbs]
    if not any(kb["name"] == ALL_KBS for kb in kbs):
        out.insert(0, model_json(ALL_KBS, "every knowledge base you can read"))
    return out


def resolve_kbs(cairn: Cairn, principal: Principal, model: str) -> list[str]:
    """The knowledge bases a model name stands for; one the caller cannot read does not exist."""
    names = [n.strip() for n in model.split(",") if n.strip()]
    if names == [ALL_KBS]:
        kbs = [kb["name"] for kb in cairn.store.list_kbs(principal)]
        if ALL_KBS in kbs:
            return [ALL_KBS]
        if not kbs:
            raise NotFound("there is no knowledge base you can read", hint="ask an administrator for access")
        return kbs
    if not names:
        raise InputError("model names no knowledge base", hint="GET /v1/models lists them")
    cairn.store.kb_ids(names, principal)
    return names


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(str(p.get("text", "")) for p in content if p.get("type") == "text")


def _unfootnoted(text: str) -> str:
    """An earlier answer as the client sends it back, without the footnotes this server added."""
    return _FOOTNOTE_REF.sub(r"[\1]", _FOOTNOTE_LINE.sub("", text)).strip()


def conversation(messages: Sequence[MessageIn]) -> tuple[str, list[ChatMessage]]:
    last = messages[-1]
    if last.role != "user":
        raise InputError("the last message must be the user's question")
    history = []
    for message in messages[:-1]:
        if message.role in ("user", "assistant"):
            text = _text(message.content)
            text = _unfootnoted(text) if message.role == "assistant" else text
            if text.strip():
                history.append(ChatMessage(message.role, text))
    return _text(last.content), history


class Footnotes:
    """Turns ``[n]`` markers into Markdown footnote references, also across streamed pieces."""

    def __init__(self) -> None:
        self.pending = ""

    def feed(self, text: str) -> str:
        buffer = self.pending + text
        partial = _PARTIAL_MARKER.search(buffer)
        cut = partial.start() if partial else len(buffer)
        self.pending = buffer[cut:]
        return _MARKER.sub(r"[^\1]", buffer[:cut])

    def finish(self, citations: Sequence[Citation]) -> str:
        tail = _MARKER.sub(r"[^\1]", self.pending)
        self.pending = ""
        return tail + definitions(citations)


def definitions(citations: Sequence[Citation]) -> str:
    if not citations:
        return ""
    lines = []
    for c in citations:
        page = f", page {c.page}" if c.page is not None else ""
        lines.append(f"[^{c.id}]: {c.source}{page}, characters {c.start}-{c.end}")
    return "\n\n" + "\n".join(lines)


def footnoted(result: Answer) -> str:
    notes = Footnotes()
    return notes.feed(result.answer) + notes.finish(result.citations)


def usage(messages: Sequence[MessageIn], result: Answer) -> dict[str, int]:
    """Token counts from the generator when it reports them, else about four characters a token."""
    reported = result.tokens
    if reported.get("completion"):
        prompt, completion = int(reported.get("prompt") or 0), int(reported["completion"])
    else:
        prompt = sum(len(_text(m.content)) for m in messages) // 4 + 1
        completion = len(result.answer) // 4 + 1
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@router.get("/models", summary="Knowledge bases as models (OpenAI `GET /v1/models`)")
async def list_models(request: Request, principal: Caller) -> dict[str, Any]:
    context = get_context(request)
    models = await run_blocking(Deadline(context.config.request_timeout_s), lambda: _models(context.cairn, principal))
    return {"object": "list", "data": models}


@router.get("/models/{model}", summary="One model (OpenAI `GET /v1/models/{model}`)")
async def get_model(request: Request, model: str, principal: Caller) -> dict[str, Any]:
    context = get_context(request)
    models = await run_blocking(Deadline(context.config.request_timeout_s), lambda: _models(context.cairn, principal))
    for item in models:
        if item["id"] == model:
            return item
    raise NotFound(f"model {model!r} does not exist", hint="GET /v1/models lists them")


@router.post(
    "/chat/completions",
    summary="Answer the last user message (OpenAI `POST /v1/chat/completions`, streaming or not)",
    responses={200: {"content": {"application/json": {}, "text/event-stream": {}}}},
)
async def chat_completions(request: Request, body: CompletionIn, principal: Caller) -> Any:
    context = get_context(request)
    cairn = context.cairn
    question, history = conversation(body.messages)
    check_question(context, question)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())

    def events() -> Iterator[AnswerEvent]:
        kbs = resolve_kbs(cairn, principal, body.model)
        yield from cairn.stream(question, kbs, principal=principal, history=history, client="api")

    if not body.stream:

        def run() -> Answer:
            for event in events():
                if event.answer is not None:
                    return event.answer
            raise AssertionError("the answer stream ended without an answer")

        result = await answer(context, run)
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": footnoted(result)},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": usage(body.messages, result),
            "cairn": result.to_json(),
        }

    first, rest = await answer_events(context, events)
    include_usage = bool((body.stream_options or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": body.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        return sse(payload | extra)

    async def body_stream() -> AsyncIterator[bytes]:
        notes = Footnotes()
        try:
            yield chunk({"role": "assistant", "content": ""})
            event: AnswerEvent | None = first
            while event is not None:
                if event.answer is not None:
                    tail = notes.finish(event.answer.citations)
                    if tail:
                        yield chunk({"content": tail})
                    yield chunk({}, "stop", cairn=event.answer.to_json())
                    if include_usage:
                        final = {
                            "id": completion_id,
                            "object": "chat.completion.chunk",
                            "created": created,
                            "model": body.model,
                            "choices": [],
                            "usage": usage(body.messages, event.answer),
                        }
                        yield sse(final)
                    break
                text = notes.feed(event.text)
                if text:
                    yield chunk({"content": text})
                event = await anext(rest, None)
            yield DONE
        except Exception as exc:
            yield sse(stream_error(exc))
            yield DONE
        finally:
            await rest.aclose()

    return event_stream(body_stream())
