"""``cairn index check`` proves the index is consistent (for operators and scripts after a crash);
``cairn index graph`` builds the knowledge graph of chunks indexed before extraction was turned on."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from cairn.cli.app import app, print_json, want_json_errors
from cairn.cli.context import open_cairn, print_check, progress_bar
from cairn.index.check import check_index
from cairn.index.graph import build_graph
from cairn.ingest.entities import create_entity_extractor

index_app = typer.Typer(help="Check the index; build its knowledge graph.", no_args_is_help=True)
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


@index_app.command("graph")
def graph(
    kb: Annotated[str, typer.Option("--kb", help="Knowledge base whose chunks get entities and relations.")],
    extractor: Annotated[
        str | None, typer.Option(help="Extractor location (default CAIRN_GRAPH_EXTRACTOR, else 'heuristic:').")
    ] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Re-extract chunks already processed.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Build the knowledge graph of an already indexed knowledge base (resumable; safe next to ingestion)."""
    want_json_errors(json_out)
    cairn = open_cairn()
    location = extractor or (
        cairn.settings.graph_extractor if cairn.settings.graph_extractor != "off" else "heuristic:"
    )
    chosen = create_entity_extractor(location, generator=cairn.generator, settings=cairn.settings)
    if chosen is None:
        raise typer.BadParameter("the extractor is 'off': give --extractor heuristic: (or spacy:, llm:)")
    progress = progress_bar(quiet=json_out)
    try:
        with progress:
            task = progress.add_task(f"graph of {kb}", total=None)
            report = build_graph(
                cairn.db,
                kb,
                chosen,
                rebuild=rebuild,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
    finally:
        cairn.close()
    if json_out:
        print_json(report.to_json())
    else:
        out.print(
            f"[bold]{kb}[/]: {report.chunks} chunks extracted ({report.failed} failed), {report.entities} mentions,"
            f" {report.relations} relations in {report.seconds:.1f} s with {report.extractor}"
        )
