"""``cairn serve``: the REST and OpenAI-compatible API (docs/server.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from cairn.cli.app import app


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default 127.0.0.1, or CAIRN_SERVER_HOST).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 8000, or CAIRN_SERVER_PORT).")] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (default 1, or CAIRN_SERVER_WORKERS).")
    ] = None,
) -> None:
    """Serve the HTTP API: REST under /api, OpenAI-compatible under /v1, OpenAPI at /docs.

    Settings come from the environment like every command (CAIRN_* for the library,
    CAIRN_SERVER_* for the server); with several workers each process builds its own application.
    """
    import uvicorn

    from cairn.server.app import create_app
    from cairn.server.config import get_server_settings
    from cairn.settings import get_settings

    server = get_server_settings(host=host, port=port, workers=workers)
    settings = get_settings()
    typer.echo(f"cairn API on http://{server.host}:{server.port} (OpenAPI: /docs; data: {settings.home})", err=True)
    if server.workers == 1:
        uvicorn.run(create_app(settings, server=server), host=server.host, port=server.port, log_level="info")
    else:
        uvicorn.run(
            "cairn.server.app:create_app",
            factory=True,
            host=server.host,
            port=server.port,
            workers=server.workers,
            log_level="info",
        )
