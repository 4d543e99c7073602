"""``cairn tiers``: the configured model tiers, and what each cost according to the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cairn.cli.app import app, print_json, want_json_errors
from cairn.cli.context import caller, open_cairn
from cairn.ops.usage import tier_usage

tiers_app = typer.Typer(help="Model routing tiers and their usage.", no_args_is_help=True)
app.add_typer(tiers_app, name="tiers")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
out = Console()


@tiers_app.command("list")
def tiers_list(json_out: JsonOpt = False) -> None:
    """The tiers answers are routed over, cheapest first, with where each runs and what it costs."""
    want_json_errors(json_out)
    cairn = open_cairn()
    tiers = cairn.tier_list
    signals = list(cairn.settings.sensitivity_signals)
    if json_out:
        print_json({"tiers": [t.to_json() for t in tiers], "sensitivity_signals": signals})
        return
    table = Table("tier", "generator", "locality", "min complexity", "prompt / 1k", "completion / 1k")
    for t in tiers:
        table.add_row(
            t.name,
            escape(t.location),
            t.locality,
            f"{t.min_complexity:g}",
            f"{t.prompt_cost_per_1k:g}",
            f"{t.completion_cost_per_1k:g}",
        )
    out.print(table)
    out.print(f"sensitive context ({', '.join(signals) or 'no signal'}) stays on local and on-prem tiers")


@tiers_app.command("usage")
def tiers_usage(
    days: Annotated[float | None, typer.Option("--days", min=0, help="Only the last DAYS days (default: all).")] = None,
    as_user: Annotated[str | None, typer.Option("--as-user", help="Act as this user (an admin).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Answers, tokens, cost, fallbacks and sensitive contexts per tier, from the audit trail (admins)."""
    want_json_errors(json_out)
    cairn = open_cairn()
    since = datetime.now(UTC) - timedelta(days=days) if days is not None else None
    usage = tier_usage(cairn.db, caller(cairn, as_user), since)
    if json_out:
        print_json({"since": since.isoformat() if since else None, "tiers": [u.to_json() for u in usage]})
        return
    table = Table("tier", "answers", "prompt tokens", "completion tokens", "cost", "sensitive", "forced", "failures")
    for u in usage:
        table.add_row(
            u.tier or "(refused: no tier allowed)",
            str(u.answers),
            f"{u.prompt_tokens:,}",
            f"{u.completion_tokens:,}",
            f"{u.cost:.4f}",
            str(u.sensitive),
            str(u.forced),
            str(u.failures),
        )
    out.print(table)
