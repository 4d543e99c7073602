"""The REST API for people and programs: knowledge bases, passages, search, ask, feedback.

Every route takes its principal from :mod:`cairn.server.auth` and hands it to the library, which
filters every read by it; a resource the caller may not read is a 404, exactly like a missing one.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from cairn.answer.engine import AnswerEvent
from cairn.index.search import Filters
from cairn.server.auth import Admin, Caller
from cairn.server.context import ServerContext, get_context
from cairn.server.limits import Deadline, run_blocking
from cairn.server.ops import feedback_store
from cairn.server.streaming import (
    answer,
    answer_events,
    check_question,
    event_stream,
    sse,
    stream_error,
)
from cairn.types import Answer

router = APIRouter(prefix="/api", tags=["knowledge"])

KbList = Annotated[list[str], Field(min_length=1, max_length=20)]
Profile = Literal["fast", "default", "quality"]


class FiltersIn(BaseModel):
    sources: list[str] = Field(default_factory=list, max_length=20, description="Shell globs on document paths.")
    mimes: list[str] = Field(default_factory=list, max_length=20, description="Exact MIME types.")

    def build(self) -> Filters | None:
        filters = Filters(sources=tuple(self.sources), mimes=tuple(self.mimes))
        return filters or None


class AskIn(BaseModel):
    question: str
    kbs: KbList = Field(default_factory=lambda: ["default"])
    filters: FiltersIn | None = None
    stream: bool = Field(False, description="Server-sent events: `token` events, then `done` with the answer.")
    profile: Profile | None = Field(None, description="Retrieval profile; default: the knowledge base's or server's.")
    tier: str | None = Field(
        None, max_length=32, description="Force a model tier; sensitive context still never leaves local/on-prem tiers."
    )


class SearchIn(BaseModel):
    query: str
    kbs: KbList = Field(default_factory=lambda: ["default"])
    k: int = Field(10, ge=1, le=100)
    mode: Literal["hybrid", "bm25", "dense"] | None = None
    mmr: bool | None = None
    filters: FiltersIn | None = None
    profile: Profile | None = Field(None, description="Retrieval profile; default: the knowledge base's or server's.")


class KbIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    description: str = Field("", max_length=2000)


class FeedbackIn(BaseModel):
    audit_id: int = Field(description="The `audit_id` of the answer judged.")
    vote: Literal[-1, 1] | None = None
    flag: bool = False
    comment: str = ""
    correction: str = ""


def reads(context: ServerContext) -> Deadline:
    return Deadline(context.config.request_timeout_s)


@router.get("/me", summary="Who the credentials act for")
async def me(principal: Caller) -> dict[str, Any]:
    return {"name": principal.name, "groups": list(principal.groups), "admin": principal.is_admin}


@router.get("/kbs", summary="Knowledge bases the caller can read, with counts of what they can read")
async def list_kbs(request: Request, principal: Caller) -> dict[str, Any]:
    context = get_context(request)
    kbs = await run_blocking(reads(context), lambda: context.cairn.store.list_kbs(principal))
    return {"knowledge_bases": kbs}


@router.post("/kbs", status_code=201, summary="Create a knowledge base (admins; idempotent)")
async def create_kb(request: Request, body: KbIn, principal: Admin) -> dict[str, Any]:
    context = get_context(request)
    await run_blocking(reads(context), lambda: context.cairn.store.ensure_kb(body.name, body.description))
    return {"name": body.name, "description": body.description}


@router.delete("/kbs/{kb}", status_code=204, summary="Delete a knowledge base and all its documents (admins)")
async def delete_kb(request: Request, kb: str, principal: Admin) -> Response:
    context = get_context(request)
    await run_blocking(reads(context), lambda: context.cairn.store.drop_kb(kb))
    return Response(status_code=204)


@router.get("/passages/{chunk_id}", summary="A cited passage inside its document")
async def passage(
    request: Request,
    chunk_id: int,
    principal: Caller,
    context_chars: Annotated[int, Query(alias="context", ge=0, le=5000)] = 300,
) -> dict[str, Any]:
    context = get_context(request)
    hit, body = await run_blocking(reads(context), lambda: context.cairn.store.passage(principal, chunk_id))
    before = body[max(0, hit.start - context_chars) : hit.start]
    after = body[hit.end : hit.end + context_chars]
    return hit.to_json() | {"title": hit.title, "kb": hit.kb, "before": before, "after": after}


@router.post("/search", summary="Ranked passages (like `cairn search --json`), with the audit id of the search")
async def search(request: Request, body: SearchIn, principal: Caller) -> dict[str, Any]:
    context = get_context(request)
    query = check_question(context, body.query, "query")
    cairn = context.cairn
    config = cairn.config_for(body.kbs, body.profile).with_(top_k=body.k, mode=body.mode, mmr=body.mmr)
    filters = body.filters.build() if body.filters else None
    retrieval = await run_blocking(
        reads(context),
        lambda: cairn.search(query, body.kbs, principal=principal, config=config, filters=filters, client="api"),
    )
    timings = {k: round(v, 1) for k, v in retrieval.timings_ms.items()}
    return {"hits": [h.to_json() for h in retrieval.hits], "timings_ms": timings, "audit_id": retrieval.audit_id}


@router.post(
    "/ask",
    summary="Answer a question with citations (like `cairn ask --json`)",
    responses={200: {"content": {"application/json": {}, "text/event-stream": {}}}},
)
async def ask(request: Request, body: AskIn, principal: Caller) -> Any:
    context = get_context(request)
    question = check_question(context, body.question)
    cairn = context.cairn
    filters = body.filters.build() if body.filters else None
    config = cairn.config_for(body.kbs, body.profile)
    if not body.stream:
        result = await answer(
            context,
            lambda: cairn.ask(
                question, body.kbs, principal=principal, filters=filters, config=config, client="api", tier=body.tier
            ),
        )
        return result.to_json()

    def events() -> Iterator[AnswerEvent]:
        return cairn.stream(
            question, body.kbs, principal=principal, filters=filters, config=config, client="api", tier=body.tier
        )

    first, rest = await answer_events(context, events)
    return event_stream(answer_sse(first, rest))


async def answer_sse(
    first: AnswerEvent, rest: AsyncGenerator[AnswerEvent, None], extra: dict[str, Any] | None = None
) -> AsyncIterator[bytes]:
    """``token`` events with ``{"text"}``, then ``done`` with the answer JSON (plus ``extra``), or ``error``."""
    try:
        event: AnswerEvent | None = first
        while event is not None:
            if event.answer is not None:
                yield sse(done_json(event.answer, extra), "done")
                return
            if event.text:
                yield sse({"text": event.text}, "token")
            event = await anext(rest, None)
    except Exception as exc:
        yield sse(stream_error(exc), "error")
    finally:
        await rest.aclose()


def done_json(result: Answer, extra: dict[str, Any] | None) -> dict[str, Any]:
    return result.to_json() | (extra or {})


@router.post("/feedback", status_code=201, summary="Judge one of your answers by its audit id", tags=["feedback"])
async def add_feedback(request: Request, body: FeedbackIn, principal: Caller) -> dict[str, int]:
    context = get_context(request)
    store = feedback_store(context.cairn)
    feedback_id = await run_blocking(
        reads(context),
        lambda: store.add(
            principal,
            body.audit_id,
            vote=body.vote,
            flag=body.flag,
            comment=body.comment,
            correction=body.correction,
        ),
    )
    context.cairn.telemetry.observe_feedback(body.vote, flag=body.flag, correction=bool(body.correction))
    return {"id": feedback_id}


@router.get("/feedback", summary="Feedback given: your own, or everyone's for admins", tags=["feedback"])
async def list_feedback(
    request: Request,
    principal: Caller,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    context = get_context(request)
    store = feedback_store(context.cairn)
    entries = await run_blocking(reads(context), lambda: store.list(principal, limit=limit))
    return {"feedback": [e.to_json() for e in entries]}
