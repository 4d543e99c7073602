"""The FastAPI application: ``create_app()`` builds one; there is no module-level instance.

The process keeps no user state: sessions, keys, users and the audit trail are in PostgreSQL, so
any number of ``cairn serve`` processes on one database behave as one service. What each process
does keep is operational only: its rate buckets, its generation slots and its metrics.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from pydantic import BaseModel
from starlette.types import Scope

from cairn import __version__
from cairn.assistant import Cairn
from cairn.errors import CairnError
from cairn.ops.drift.monitor import DriftMonitor
from cairn.ops.telemetry import configure_tracing
from cairn.server import errors
from cairn.server.auth import Authenticator
from cairn.server.config import ServerSettings, get_server_settings
from cairn.server.context import ServerContext
from cairn.server.limits import BodyLimit, Generations, RateLimiter
from cairn.server.metrics import Metrics, MetricsMiddleware
from cairn.server.routes import admin, chats, documents, health, openai, rest, ui_stats
from cairn.server.ui import install as install_ui
from cairn.settings import Settings, get_settings

log = logging.getLogger("cairn.server")


class ErrorDetail(BaseModel):
    code: str
    message: str
    hint: str | None = None


class ErrorResponse(BaseModel):
    """Every error: ``CairnError.to_dict()``; ``code`` is stable, ``message`` is for people."""

    error: ErrorDetail


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (401, "No or invalid credentials"),
        (403, "The caller's role does not allow this"),
        (404, "Not found, or not readable by the caller (the two look the same)"),
        (413, "Body larger than the configured limit"),
        (422, "The body or parameters do not match the schema"),
        (429, "Rate limit reached; see Retry-After"),
        (503, "Busy or a dependency is unavailable; see Retry-After when busy"),
        (504, "Timed out"),
    )
}

DESCRIPTION = """\
Grounded, cited answers from your organisation's documents.

Authenticate with `Authorization: Bearer <key>`: an API key from `cairn keys create --user NAME`,
or an OIDC access token when the server is configured for one. Errors are always
`{"error": {"code", "message", "hint"?}}`. See docs/server.md.
"""


def _is_upload(scope: Scope) -> bool:
    return scope.get("method") == "POST" and str(scope.get("path", "")).rstrip("/").endswith(
        documents.UPLOAD_PATH_SUFFIX
    )


def _warm_up(cairn: Cairn) -> None:
    """Connect and load the models before the first request, but start anyway: readiness will tell."""
    try:
        cairn.db.warm_up()
        cairn.store.bound_embedder()
        cairn.engine.warm_up()
    except CairnError as exc:
        log.warning("warm-up failed, serving anyway (/readyz reports it): %s", exc.message)


def create_app(source: Cairn | Settings | None = None, *, server: ServerSettings | None = None) -> FastAPI:
    """An application over ``source``: a :class:`Cairn` the caller owns, or settings (default: the
    environment) from which the app builds and later closes its own."""
    config = server or get_server_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = not isinstance(source, Cairn)
        cairn = source if isinstance(source, Cairn) else Cairn(source or get_settings())
        generations = Generations(config.max_concurrent_generations, config.max_queued_generations)
        metrics.watch_generations(lambda: generations.running, lambda: generations.waiting)
        metrics.include(cairn.telemetry.registry)
        configure_tracing()
        app.state.context = ServerContext(
            cairn=cairn,
            config=config,
            authenticator=Authenticator(cairn.principals, config),
            limiter=RateLimiter(config.rate_per_minute, config.burst),
            generations=generations,
            metrics=metrics,
        )
        await anyio.to_thread.run_sync(_warm_up, cairn)
        drift = DriftMonitor.for_cairn(cairn)  # keeps the cairn_drift_* gauges current (docs/drift.md)
        drift.start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(drift.stop)
            generations.close()
            if owned:
                await anyio.to_thread.run_sync(cairn.close)

    app = FastAPI(
        title="cairn",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        redoc_url=None,
    )
    errors.install(app)
    app.include_router(health.router)
    for module in (rest, documents, chats, admin, openai, ui_stats):
        app.include_router(module.router, responses=_ERRORS)
    install_ui(app)
    app.add_middleware(
        BodyLimit,
        limit=config.max_body_bytes,
        upload_limit=config.max_upload_bytes,
        is_upload=_is_upload,
    )
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
