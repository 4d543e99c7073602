"""The server's one exception boundary: every failure leaves as ``CairnError.to_dict()`` JSON.

The HTTP-only conditions extend cairn's tree (so they carry their status like every other error)::

    InputError (400)
    ├── InvalidRequest (422)     the body or parameters do not match the schema
    └── PayloadTooLarge (413)    a body beyond the configured limit
    CairnError
    ├── RateLimited (429)        the caller's token bucket is empty (``Retry-After``)
    ├── Overloaded (503)         every generation slot and queue place is taken (``Retry-After``)
    └── TimedOut (504)           the work did not finish within its time limit

Anything that is not a :class:`CairnError` is logged with its traceback and answered with a bare
500 ``internal_error``: the body never carries a stack trace, a SQL statement or a value that
could belong to another tenant.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cairn.errors import AuthError, CairnError, Forbidden, InputError, NotFound

log = logging.getLogger("cairn.server")


class InvalidRequest(InputError):
    status = 422
    code = "invalid_request"


class PayloadTooLarge(InputError):
    status = 413
    code = "payload_too_large"


class RateLimited(CairnError):
    status = 429
    code = "rate_limited"
    retry_after: float | None = None


class Overloaded(CairnError):
    status = 503
    code = "overloaded"
    retry_after: float | None = None


class TimedOut(CairnError):
    status = 504
    code = "timeout"


class MethodNotAllowed(InputError):
    status = 405
    code = "method_not_allowed"


def error_headers(exc: CairnError) -> dict[str, str]:
    """Headers a client needs to act on the error: when to retry, or how to authenticate."""
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited | Overloaded) and exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    if isinstance(exc, AuthError):
        headers["WWW-Authenticate"] = "Bearer"
    return headers


#: Server-side failures are described to the caller by their code alone: the library's message
#: may name a host, a file or a SQL detail, which stays in the log.
_PUBLIC_5XX = {
    "store_unavailable": "the database is unavailable; try again later",
    "model_error": "the language model backend failed",
    "model_unavailable": "the language model is not available",
    "config_error": "the server is misconfigured",
    "identity_provider_unavailable": "the identity provider's signing keys cannot be fetched; retry shortly",
}


def public(exc: CairnError) -> CairnError:
    """``exc`` as the caller may see it (its status and code kept)."""
    if exc.status < 500 or isinstance(exc, Overloaded | TimedOut):
        return exc
    shown = CairnError(_PUBLIC_5XX.get(exc.code, "internal error"), hint="the server log has the details")
    shown.status, shown.code = exc.status, exc.code
    return shown


def error_response(exc: CairnError) -> JSONResponse:
    shown = public(exc)
    return JSONResponse(shown.to_dict(), status_code=shown.status, headers=error_headers(exc))


def internal_error() -> CairnError:
    return CairnError("internal error", hint="the server log has the details")


def _validation_message(errors: Any) -> str:
    parts = []
    for error in list(errors)[:5]:
        if not isinstance(error, Mapping):
            continue
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


_STATUS_ERRORS: dict[int, type[CairnError]] = {
    400: InputError,
    401: AuthError,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
}


def install(app: FastAPI) -> None:
    async def on_cairn_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CairnError)
        if exc.status >= 500:
            log.warning("%s %s -> %s %s: %s", request.method, request.url.path, exc.status, exc.code, exc.message)
        return error_response(exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(InvalidRequest(_validation_message(exc.errors())))

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        kind = _STATUS_ERRORS.get(exc.status_code)
        if kind is None:
            log.warning("unmapped HTTP error %s on %s", exc.status_code, request.url.path)
            return error_response(internal_error())
        message = {404: "no such endpoint", 405: f"method {request.method} not allowed here"}.get(
            exc.status_code, str(exc.detail)
        )
        return error_response(kind(message))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(internal_error())

    app.add_exception_handler(CairnError, on_cairn_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
