"""The browser session: the API key in an HttpOnly cookie, and the CSRF token derived from it.

Why the cookie holds the key itself rather than a reference to a server-side session: the server
keeps no user state (any replica must serve any request), a server-side session would need a
table and a shared signing secret that cairn does not have, and the key is already the credential
the user pasted. Holding it keeps every property of an API key: rights are resolved from the
database on every request, and revoking the key (or disabling the user) ends the browser session
at once. The cookie is ``HttpOnly`` (page scripts never see it), ``SameSite=Strict`` (no other
site's page can make the browser send it) and ``Secure`` when the page was served over HTTPS.

The CSRF token is ``HMAC-SHA256(key, "cairn-ui-csrf")``: the server recomputes it from the
cookie, so it needs no storage, cannot be forged without the key, and does not reveal the key
when it appears in a page. Form posts carry it in a ``csrf`` field; the page's scripts send it as
``X-CSRF-Token``. Only then does :class:`SessionCredentials` let the cookie stand in for
``Authorization: Bearer`` on ``/api`` routes, so a cookie alone never authorises anything.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

SESSION_COOKIE = "cairn_session"
LOGIN_COOKIE = "cairn_login_csrf"
CSRF_HEADER = "x-csrf-token"
#: How long a browser keeps the session; the key itself stays valid until it is revoked.
SESSION_MAX_AGE_S = 12 * 3600
LOGIN_PATH = "/ui/login"


def csrf_token(key: str) -> str:
    return hmac.new(key.encode("utf-8"), b"cairn-ui-csrf", hashlib.sha256).hexdigest()


def same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


def valid_csrf(key: str | None, token: str | None) -> bool:
    return bool(key) and same(csrf_token(str(key)), token)


def cross_site(connection: HTTPConnection) -> bool:
    """A request a browser marked as coming from another site (older browsers send no marker)."""
    return connection.headers.get("sec-fetch-site", "") == "cross-site"


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session(response: Response, request: Request, key: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        key,
        max_age=SESSION_MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )


def clear_session(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=is_https(request))


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


def set_login_token(response: Response, request: Request, token: str) -> None:
    """A double-submit token for the login form, which is posted before there is a session to bind to."""
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        path=LOGIN_PATH,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )


def clear_login_token(response: Response, request: Request) -> None:
    response.delete_cookie(LOGIN_COOKIE, path=LOGIN_PATH, httponly=True, samesite="strict", secure=is_https(request))


class SessionCredentials:
    """Lets the UI's own scripts call ``/api`` with the session cookie instead of a bearer header.

    The cookie is turned into ``Authorization: Bearer <key>`` only when the request has no
    ``Authorization`` header of its own, carries the matching ``X-CSRF-Token`` and is not marked
    cross-site; everything after that (authentication, rate limits, row-level security) is the
    API's unchanged path, so the UI can never see more than the same key would through the API.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith("/api/"):
            connection = HTTPConnection(scope)
            key = connection.cookies.get(SESSION_COOKIE)
            if (
                key
                and key.isascii()
                and "authorization" not in connection.headers
                and not cross_site(connection)
                and valid_csrf(key, connection.headers.get(CSRF_HEADER))
            ):
                headers = [*scope["headers"], (b"authorization", b"Bearer " + key.encode("ascii"))]
                scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)
