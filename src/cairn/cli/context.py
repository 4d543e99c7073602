"""Builds the :class:`Cairn` facade for a CLI invocation from options and the environment."""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cairn.assistant import Cairn
from cairn.cli.app import print_json
from cairn.errors import InputError
from cairn.retrieve.hybrid import RetrievalConfig
from cairn.settings import get_settings
from cairn.types import SYSTEM, Principal

_opened: list[Cairn] = []

ProfileOpt = Annotated[
    str | None,
    typer.Option("--profile", help="Retrieval profile: fast, default or quality (docs/retrieval.md)."),
]
# One flag per retrieval stage, shared by the eval commands (a config file sets several at once).
ConfigFileOpt = Annotated[
    Path | None, typer.Option("--config", help="Pipeline config file (JSON or TOML of retrieval fields).")
]
RerankOpt = Annotated[str | None, typer.Option(help="Re-ranker location, e.g. 'maxsim:' or 'tei://host'; 'off'.")]
RerankDepthOpt = Annotated[int | None, typer.Option(help="How many fused candidates the re-ranker re-scores.")]
RewriteOpt = Annotated[str | None, typer.Option(help="Query rewriter, e.g. 'rm3:' or 'llm:?n=3'; 'off'.")]
DecomposeOpt = Annotated[str | None, typer.Option(help="Question decomposer: 'heuristic:' or 'llm:'; 'off'.")]
GraphOpt = Annotated[float | None, typer.Option(help="Weight of the knowledge-graph list (0 = off).")]
ParentsOpt = Annotated[int | None, typer.Option(help="Small-to-big: parent section size in characters (0 = off).")]
CompressOpt = Annotated[str | None, typer.Option(help="Contextual compression: 'embedding:' or 'llm:'; 'off'.")]


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


def pipeline_config(
    cairn: Cairn,
    kbs: list[str],
    *,
    profile: str | None = None,
    config_file: Path | None = None,
    **overrides: Any,
) -> RetrievalConfig:
    """A request's retrieval pipeline: its profile, then a config file's fields, then single flags."""
    config = cairn.config_for(kbs, profile)
    if config_file is not None:
        config = config.with_(**_read_config_file(config_file))
    return config.with_(**overrides)


def _read_config_file(path: Path) -> dict[str, Any]:
    """Retrieval config fields from a JSON or TOML file (e.g. ``{"rerank": "maxsim:", "rerank_depth": 20}``)."""
    import json
    import tomllib

    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the pipeline config {path}: {exc}") from exc
    data = data.get("retrieval", data) if isinstance(data, dict) else data
    known = {f.name for f in fields(RetrievalConfig)} - {"bm25"}
    if not isinstance(data, dict) or set(data) - known:
        unknown = sorted(set(data) - known) if isinstance(data, dict) else []
        raise InputError(
            f"the pipeline config {path} has unknown fields: {', '.join(unknown) or 'not a table'}",
            hint=f"known: {', '.join(sorted(known))}",
        )
    return data
