"""The audit trail over HTTP, for administrators (the database enforces the same rule again)."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import IO, Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from cairn.server.auth import Admin
from cairn.server.context import get_context
from cairn.server.limits import Deadline, run_blocking
from cairn.server.ops import audit_log

router = APIRouter(prefix="/api/audit", tags=["audit"])


def _utc(value: datetime | None) -> datetime | None:
    """A time without an offset is taken as UTC, the trail's own clock."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@router.get("", summary="The newest audit records (admins)")
async def list_records(
    request: Request,
    principal: Admin,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    user: Annotated[str | None, Query(description="Only this user's records.")] = None,
) -> dict[str, Any]:
    context = get_context(request)
    log = audit_log(context.cairn)
    entries = await run_blocking(
        Deadline(context.config.request_timeout_s), lambda: log.list(principal, limit=limit, user=user)
    )
    return {"records": [e.to_json() for e in entries]}


@router.get("/verify", summary="Verify the hash chain (admins)")
async def verify(request: Request, principal: Admin) -> dict[str, Any]:
    context = get_context(request)
    log = audit_log(context.cairn)
    report = await anyio.to_thread.run_sync(lambda: log.verify(principal))
    return report.to_json()


@router.get(
    "/export",
    summary="The trail as JSON lines, each re-verifiable (admins)",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
async def export(
    request: Request,
    principal: Admin,
    since: Annotated[datetime | None, Query(description="ISO 8601; records at or after it.")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601; records before it.")] = None,
) -> StreamingResponse:
    """Spooled to a temporary file first: the trail may be larger than memory, and an export is one snapshot."""
    context = get_context(request)
    log = audit_log(context.cairn)
    spool = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - closed by the response's iterator
    try:
        await anyio.to_thread.run_sync(lambda: log.export(principal, spool, since=_utc(since), until=_utc(until)))
    except BaseException:
        spool.close()
        raise
    return StreamingResponse(_drain(spool), media_type="application/x-ndjson")


async def _drain(spool: IO[str]) -> AsyncIterator[bytes]:
    try:
        await anyio.to_thread.run_sync(spool.seek, 0)
        while chunk := await anyio.to_thread.run_sync(spool.read, 1 << 16):
            yield chunk.encode("utf-8")
    finally:
        spool.close()
