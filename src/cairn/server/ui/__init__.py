"""The web UI: server-rendered pages, one script and one stylesheet, served by the API's own process.

Nothing is fetched from elsewhere at build or run time (no CDN, no npm, no web fonts), so the UI
works on a machine with no internet. :func:`install` is the one call ``create_app`` makes.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from cairn.server.ui.pages import STATIC_DIR, router
from cairn.server.ui.session import SessionCredentials


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    app.add_middleware(SessionCredentials)


__all__ = ["install"]
