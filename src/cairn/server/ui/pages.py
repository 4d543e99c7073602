"""The server-rendered pages: login, chat, upload and admin.

Each page resolves its user from the session cookie through the API's own
:class:`~cairn.server.auth.Authenticator` and rate limiter, and reads through the same library
calls as the API with that principal, so a page can only ever show what the user's key could
fetch from ``/api``. Everything interactive afterwards (streaming answers, passages, feedback,
uploads, charts) is the page's script calling the JSON API with the session (see
:mod:`cairn.server.ui.session`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from cairn import __version__
from cairn.errors import AuthError, CairnError, Forbidden, NotFound
from cairn.server.context import get_context
from cairn.server.errors import public
from cairn.server.limits import Deadline, run_blocking
from cairn.server.ops import audit_log, feedback_store
from cairn.server.routes.chats import sessions
from cairn.server.routes.documents import document_json
from cairn.server.ui import session as ui_session
from cairn.types import Principal

T = TypeVar("T")

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
HOME = "/ui/"

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(HERE / "templates"))

#: No inline script or style, nothing from another origin, never framed.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
        " object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@cache
def _fingerprint(name: str) -> str:
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]


def static_url(name: str) -> str:
    """A URL that changes with the file, so a browser never runs a stale script against a new server."""
    return f"/ui/static/{name}?v={_fingerprint(name)}"


def when(value: datetime | str | None) -> str:
    if value is None:
        return ""
    at = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    return at.strftime("%Y-%m-%d %H:%M UTC") if at.tzinfo else at.strftime("%Y-%m-%d %H:%M")


templates.env.globals.update(static=static_url, version=__version__)
templates.env.filters["when"] = when


def safe_next(value: str | None) -> str:
    """Only a path of this UI: a login link must not become an open redirect."""
    if value and value.startswith(HOME) and not value.startswith("//") and "\\" not in value:
        return value
    return HOME


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(PAGE_HEADERS)
    return response


class Session:
    def __init__(self, principal: Principal, key: str) -> None:
        self.principal = principal
        self.key = key
        self.csrf = ui_session.csrf_token(key)


async def reads(request: Request, fn: Callable[[], T]) -> T:
    return await run_blocking(Deadline(get_context(request).config.request_timeout_s), fn)


async def current_session(request: Request) -> Session | None:
    """The session's user, or None when there is none or its key no longer works (revoked, disabled)."""
    key = request.cookies.get(ui_session.SESSION_COOKIE)
    if not key:
        return None
    context = get_context(request)
    try:
        principal = await reads(request, lambda: context.authenticator.authenticate(key))
    except AuthError:
        return None
    try:
        context.limiter.take(f"user:{principal.name}")
    except CairnError:
        context.metrics.rate_limited.inc()
        raise
    return Session(principal, key)


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(f"{ui_session.LOGIN_PATH}?{urlencode({'next': target})}", status_code=303)
    if request.cookies.get(ui_session.SESSION_COOKIE):
        ui_session.clear_session(response, request)
    return response


def error_page(request: Request, exc: CairnError, session: Session | None) -> HTMLResponse:
    shown = public(exc)
    return render(
        request,
        "error.html",
        status=shown.status,
        page="error",
        user=session.principal if session else None,
        csrf=session.csrf if session else "",
        error=shown,
    )


async def page(request: Request, build: Callable[[Session], Awaitable[Response]], *, admin: bool = False) -> Response:
    """A page that needs a session (and the admin flag when ``admin``); failures become HTML pages."""
    session: Session | None = None
    try:
        session = await current_session(request)
        if session is None:
            return to_login(request)
        if admin and not session.principal.is_admin:
            raise Forbidden("this page is for administrators")
        return await build(session)
    except CairnError as exc:
        return error_page(request, exc, session)


def base(session: Session, name: str) -> dict[str, Any]:
    return {"page": name, "user": session.principal, "csrf": session.csrf}


# -- login and logout ---------------------------------------------------------------------------
@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse(HOME, status_code=303)


def login_page(request: Request, next_url: str, error: str = "", status: int = 200) -> HTMLResponse:
    token = ui_session.new_login_token()
    response = render(
        request, "login.html", status=status, page="login", user=None, csrf="", token=token, next=next_url, error=error
    )
    ui_session.set_login_token(response, request, token)
    return response


@router.get("/ui/login")
async def login_form(request: Request, next_url: Annotated[str, Query(alias="next")] = HOME) -> Response:
    try:
        if await current_session(request) is not None:
            return RedirectResponse(safe_next(next_url), status_code=303)
    except CairnError as exc:
        return error_page(request, exc, None)
    return login_page(request, safe_next(next_url))


@router.post("/ui/login")
async def login(
    request: Request,
    key: Annotated[str, Form(max_length=8192)] = "",
    csrf: Annotated[str, Form(max_length=256)] = "",
    next_url: Annotated[str, Form(alias="next", max_length=2048)] = HOME,
) -> Response:
    target = safe_next(next_url)
    if ui_session.cross_site(request) or not ui_session.same(request.cookies.get(ui_session.LOGIN_COOKIE), csrf):
        return login_page(request, target, "The form had expired. Please paste your key again.", status=403)
    key = key.strip()
    context = get_context(request)
    try:
        await reads(request, lambda: context.authenticator.authenticate(key))
    except AuthError:
        return login_page(request, target, "That key was not accepted. Check it and try again.", status=401)
    except CairnError as exc:
        return error_page(request, exc, None)
    response = RedirectResponse(target, status_code=303)
    ui_session.set_session(response, request, key)
    ui_session.clear_login_token(response, request)
    return response


@router.post("/ui/logout")
async def logout(request: Request, csrf: Annotated[str, Form(max_length=256)] = "") -> Response:
    """Forgets the cookie; the key itself stays valid until ``cairn keys revoke``."""
    key = request.cookies.get(ui_session.SESSION_COOKIE)
    if key and (ui_session.cross_site(request) or not ui_session.valid_csrf(key, csrf)):
        return error_page(request, Forbidden("the logout form had expired; reload the page and try again"), None)
    response = RedirectResponse(ui_session.LOGIN_PATH, status_code=303)
    ui_session.clear_session(response, request)
    return response


# -- chat ---------------------------------------------------------------------------------------
@router.get("/ui/")
async def chat_page(request: Request, chat: str | None = None) -> Response:
    async def build(session: Session) -> Response:
        cairn = get_context(request).cairn
        principal = session.principal
        directory = sessions(cairn)
        kbs = await reads(request, lambda: cairn.store.list_kbs(principal))
        history = await reads(request, lambda: directory.list(principal, 30))
        messages: list[dict[str, str]] = []
        chat_kbs: list[str] = []
        missing = False
        if chat:
            try:
                uuid.UUID(chat)
                chat_kbs = await reads(request, lambda: directory.kbs(principal, chat))
                stored = await reads(request, lambda: directory.history(principal, chat, limit=1000))
                messages = [{"role": m.role, "content": m.content} for m in stored]
            except (ValueError, NotFound):
                missing = True
        names = [kb["name"] for kb in kbs]
        selected = chat_kbs or (["default"] if "default" in names else names[:1])
        return render(
            request,
            "chat.html",
            status=404 if missing else 200,
            **base(session, "chat"),
            kbs=kbs,
            history=history,
            chat_id=None if missing else chat,
            chat_kbs=chat_kbs,
            missing=missing,
            messages=messages,
            selected=selected,
            max_chars=get_context(request).config.max_question_chars,
        )

    return await page(request, build)


# -- upload (admins) -----------------------------------------------------------------------------
@router.get("/ui/upload")
async def upload_page(request: Request) -> Response:
    async def build(session: Session) -> Response:
        context = get_context(request)
        kbs = await reads(request, lambda: context.cairn.store.list_kbs(session.principal))
        return render(
            request,
            "upload.html",
            **base(session, "upload"),
            kbs=kbs,
            max_upload_mb=context.config.max_upload_mb,
            max_file_mb=context.cairn.settings.max_file_mb,
        )

    return await page(request, build, admin=True)


# -- admin --------------------------------------------------------------------------------------
ANSWER_KINDS = ("ask", "chat", "search")


@router.get("/ui/admin")
async def admin_page(request: Request) -> Response:
    async def build(session: Session) -> Response:
        cairn = get_context(request).cairn
        principal = session.principal

        def gather() -> dict[str, Any]:
            kbs = cairn.store.list_kbs(principal)
            documents = [document_json(d, principal) for d in cairn.store.list_documents(principal)]
            by_kb: dict[str, list[dict[str, Any]]] = {kb["name"]: [] for kb in kbs}
            for doc in documents:
                by_kb.setdefault(doc["kb"], []).append(doc)
            records = audit_log(cairn).list(principal, limit=200)
            questions = [_question_row(e.to_json()) for e in records if e.kind in ANSWER_KINDS][:50]
            feedback = [f.to_json() for f in feedback_store(cairn).list(principal, limit=50)]
            return {"kbs": kbs, "documents": by_kb, "questions": questions, "feedback": feedback}

        return render(request, "admin.html", **base(session, "admin"), **await reads(request, gather))

    return await page(request, build, admin=True)


def _question_row(entry: dict[str, Any]) -> dict[str, Any]:
    record = entry["record"]
    grounding = record.get("grounding") or {}
    total = (record.get("timings_ms") or {}).get("total") or (record.get("timings_ms") or {}).get("retrieve_total")
    return {
        "id": entry["id"],
        "at": entry["at"],
        "user": entry["principal"],
        "kind": entry["kind"],
        "question": record.get("question", ""),
        "kbs": record.get("kbs", []),
        "refused": bool(record.get("refused")),
        "verdict": grounding.get("verdict") if isinstance(grounding, dict) else None,
        "latency_ms": round(float(total)) if isinstance(total, int | float) else None,
        "citations": len(record.get("citations") or []),
    }
