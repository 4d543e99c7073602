"""Everything a request handler needs, built once per application in its lifespan (never at import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

if TYPE_CHECKING:
    from cairn.assistant import Cairn
    from cairn.server.auth import Authenticator
    from cairn.server.config import ServerSettings
    from cairn.server.limits import Generations, RateLimiter
    from cairn.server.metrics import Metrics


@dataclass(slots=True)
class ServerContext:
    cairn: Cairn
    config: ServerSettings
    authenticator: Authenticator
    limiter: RateLimiter
    generations: Generations
    metrics: Metrics


def get_context(request: Request) -> ServerContext:
    context: ServerContext = request.app.state.context
    return context
