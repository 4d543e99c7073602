"""Builds the :class:`Cairn` facade for a CLI invocation from options and the environment."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cairn.assistant import Cairn
from cairn.cli.app import print_json
from cairn.settings import get_settings
from cairn.types import SYSTEM, Principal

_opened: list[Cairn] = []


def open_cairn(**overrides: Any) -> Cairn:
    settings = get_settings(**overrides)
    _log_to_home(settings.home, settings.log_level)
    cairn = Cairn(settings)
    _opened.append(cairn)
    return cairn


def progress_bar(*, quiet: bool = False, label: str | None = None) -> Progress:
    """The progress bar of long commands, on stderr and only on a terminal (never mixed into --json)."""
    console = Console(stderr=True)
    columns = [TextColumn(label) if label else TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    columns.append(TimeElapsedColumn())
    if label:
        columns.append(TextColumn("{task.description}"))
    return Progress(*columns, console=console, disable=quiet or not console.is_terminal)


class CheckReport(Protocol):
    @property
    def ok(self) -> bool: ...

    @property
    def problems(self) -> list[str]: ...

    def to_json(self) -> dict[str, Any]: ...


def print_check(report: CheckReport, *, json_out: bool, ok: str, broken: str) -> None:
    """A verification's verdict (JSON, or one line plus its problems); exit status 1 when it failed."""
    if json_out:
        print_json(report.to_json())
    else:
        console = Console()
        console.print(ok if report.ok else broken)
        for problem in [] if report.ok else report.problems:
            console.print(f"  - {escape(problem)}")
    if not report.ok:
        raise typer.Exit(1)


def caller(cairn: Cairn, as_user: str | None) -> Principal:
    """Who a command acts for: ``--as-user NAME`` (resolved now, with today's groups) or the local operator.

    Whoever can run the CLI on this machine can reach the database anyway, so without
    ``--as-user`` the command acts as the system principal, which reads everything.
    """
    return SYSTEM if as_user is None else cairn.principals.resolve(as_user)


def _log_to_home(home: Path, level: str) -> None:
    """cairn's log goes to ``CAIRN_HOME/logs/cairn.log`` (warnings also reach stderr)."""
    logger = logging.getLogger("cairn")
    logger.setLevel(level)
    path = home / "logs" / "cairn.log"
    if any(isinstance(h, logging.FileHandler) and h.baseFilename == str(path) for h in logger.handlers):
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        return  # a read-only home still serves queries; stderr keeps the warnings
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)


def close_all() -> None:
    """Close pools before the embedded server's exit hook stops it, also when a command failed."""
    while _opened:
        _opened.pop().close()
