"""``cairn index check``: prove the index is consistent, for operators and for scripts after a crash."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from cairn.cli.app import app, want_json_errors
from cairn.cli.context import open_cairn, print_check
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
    counts = f"{report.documents} documents, {report.chunks} chunks"
    print_check(report, json_out=json_out, ok=f"[green]index ok[/]: {counts}", broken=f"[red]index broken[/]: {counts}")
