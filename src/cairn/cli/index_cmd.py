"""``cairn index check``: prove the index is consistent, for operators and for scripts after a crash."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from cairn.cli.app import app, print_json, want_json_errors
from cairn.cli.context import open_cairn
from cairn.index.check import check_index

index_app = typer.Typer(help="Inspect the index itself.", no_args_is_help=True)
app.add_typer(index_app, name="index")

out = Console()


@index_app.command("check")
def check(json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Verify the index invariants (postings, offsets, statistics, versions); exit 1 when one is broken."""
    want_json_errors(json_out)
    cairn = open_cairn()
    try:
        report = check_index(cairn.db)
    finally:
        cairn.close()
    if json_out:
        print_json(report.to_json())
    elif report.ok:
        out.print(f"[green]index ok[/]: {report.documents} documents, {report.chunks} chunks")
    else:
        out.print(f"[red]index broken[/]: {report.documents} documents, {report.chunks} chunks")
        for problem in report.problems:
            out.print(f"  - {problem}")
    if not report.ok:
        raise typer.Exit(1)
