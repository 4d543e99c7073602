"""Liveness, readiness and metrics: what an orchestrator and a Prometheus server poll."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from cairn.errors import StoreError
from cairn.server.auth import Caller
from cairn.server.context import get_context
from cairn.server.errors import TimedOut
from cairn.server.limits import Deadline, run_blocking

router = APIRouter(tags=["operations"])

#: Paths that answer without credentials (an orchestrator's probes carry none).
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})


@router.get("/healthz", summary="Liveness: the process is serving")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the database answers")
async def readyz(request: Request) -> dict[str, Any]:
    """503 (``store_unavailable``) while the database cannot be reached, so a balancer skips this replica."""
    context = get_context(request)
    try:
        bound = await run_blocking(Deadline(5.0), context.cairn.store.bound_embedder)
    except TimedOut:
        raise StoreError("the database did not answer within 5 s") from None
    return {"status": "ready", "embedder": bound[0] if bound else None}


@router.get("/metrics", summary="Prometheus metrics of this process", response_class=Response)
async def metrics(request: Request, principal: Caller) -> Response:
    return Response(get_context(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)
