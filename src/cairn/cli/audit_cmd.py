"""``cairn audit`` and ``cairn feedback``: the trail for compliance, the judgements for evaluation."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cairn.cli.app import app, print_json, want_json_errors
from cairn.cli.context import caller, open_cairn, print_check
from cairn.ops.feedback import EXPORT_FORMATS
from cairn.types import SYSTEM

if TYPE_CHECKING:
    pass

audit_app = typer.Typer(help="The tamper-evident audit trail (administrators).", no_args_is_help=True)
feedback_app = typer.Typer(help="Votes, flags and corrections on answers.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
app.add_typer(feedback_app, name="feedback")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Write to this file instead of stdout.")]

out = Console()
err = Console(stderr=True)


@contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    with path.open("w", encoding="utf-8") as handle:
        yield handle


def _instant(value: str | None, option: str) -> datetime | None:
    """ISO 8601; a time without an offset is taken as UTC, the trail's own clock."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not an ISO 8601 date or time: {value!r}", param_hint=option) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@audit_app.command("verify")
def audit_verify(json_out: JsonOpt = False) -> None:
    """Check the hash chain; exit 1 when a record was modified, deleted or reordered.

    The head hash it prints is worth keeping elsewhere: a later verify must reach it.
    """
    want_json_errors(json_out)
    audit = open_cairn().audit
    report = audit.verify(SYSTEM)
    print_check(
        report,
        json_out=json_out,
        ok=f"[green]audit trail ok[/]: {report.records} records, head {report.head_id} {report.head_hash}",
        broken=f"[red]audit trail broken[/]: {report.records} records, first bad record {report.first_bad_id}",
    )


@audit_app.command("export")
def audit_export(
    out_file: OutOpt = None,
    since: Annotated[str | None, typer.Option(help="Only records at or after this ISO time.")] = None,
    until: Annotated[str | None, typer.Option(help="Only records before this ISO time.")] = None,
) -> None:
    """Write the records as JSONL (one per line, with their hashes) for compliance archives."""
    want_json_errors(False)
    start, end = _instant(since, "--since"), _instant(until, "--until")
    audit = open_cairn().audit
    with _output(out_file) as handle:
        count = audit.export(SYSTEM, handle, since=start, until=end)
    err.print(f"exported {count} audit records" + (f" to {out_file}" if out_file else ""))


@audit_app.command("list")
def audit_list(
    limit: Annotated[int, typer.Option(min=1, help="How many of the newest records.")] = 20,
    user: Annotated[str | None, typer.Option(help="Only this user's records.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """The newest records: who asked what, and what they were told."""
    want_json_errors(json_out)
    audit = open_cairn().audit
    entries = audit.list(SYSTEM, limit=limit, user=user)
    if json_out:
        print_json({"records": [e.to_json() for e in entries]})
        return
    table = Table("id", "at", "principal", "kind", "question", "refused")
    for e in entries:
        refused = e.record.get("refused")
        table.add_row(
            str(e.id),
            e.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            escape(e.principal),
            e.kind,
            escape(str(e.record.get("question", ""))[:80]),
            "" if refused is None else str(refused).lower(),
        )
    out.print(table)


@audit_app.command("purge")
def audit_purge(
    older_than: Annotated[
        int | None, typer.Option("--older-than", min=0, help="Age in days (default: the retention setting).")
    ] = None,
) -> None:
    """Delete records older than the retention period; the rest of the chain still verifies."""
    want_json_errors(False)
    audit = open_cairn().audit
    purged = audit.purge(SYSTEM, older_than)
    out.print(f"purged {purged} audit records")


@feedback_app.command("add")
def feedback_add(
    audit_id: Annotated[int, typer.Argument(help="The answer's audit id (in `cairn ask --json`).")],
    up: Annotated[bool, typer.Option("--up", help="The answer was good.")] = False,
    down: Annotated[bool, typer.Option("--down", help="The answer was wrong or unhelpful.")] = False,
    flag: Annotated[bool, typer.Option("--flag", help="Mark the answer for review.")] = False,
    comment: Annotated[str, typer.Option(help="Free text.")] = "",
    correction: Annotated[str, typer.Option(help="What the answer should have been.")] = "",
    as_user: Annotated[
        str | None, typer.Option("--as-user", help="Give it as this user, on their own answer (default: operator).")
    ] = None,
) -> None:
    """Judge an answer: --up or --down, optionally a flag, a comment and a correction."""
    want_json_errors(False)
    if up and down:
        raise typer.BadParameter("--up and --down exclude each other")
    cairn = open_cairn()
    feedback = cairn.feedback
    vote = 1 if up else -1 if down else None
    feedback_id = feedback.add(
        caller(cairn, as_user), audit_id, vote=vote, flag=flag, comment=comment, correction=correction
    )
    cairn.telemetry.observe_feedback(vote, flag=flag, correction=bool(correction))
    out.print(f"feedback {feedback_id} recorded on answer {audit_id}")


@feedback_app.command("list")
def feedback_list(
    limit: Annotated[int, typer.Option(min=1, help="How many of the newest.")] = 100,
    json_out: JsonOpt = False,
) -> None:
    """The newest feedback, with the question and answer it judges."""
    want_json_errors(json_out)
    feedback = open_cairn().feedback
    entries = feedback.list(SYSTEM, limit=limit)
    if json_out:
        print_json({"feedback": [e.to_json() for e in entries]})
        return
    table = Table("id", "answer", "by", "vote", "flag", "question", "comment / correction")
    for e in entries:
        vote = {1: "up", -1: "down"}.get(e.vote or 0, "")
        remark = " / ".join(t for t in (e.comment, e.correction) if t)
        table.add_row(
            str(e.id),
            str(e.audit_id),
            escape(e.principal),
            vote,
            "yes" if e.flag else "",
            escape((e.question or "")[:60]),
            escape(remark[:80]),
        )
    out.print(table)


@feedback_app.command("export")
def feedback_export(
    format: Annotated[str, typer.Option("--format", help="eval (regression cases), kto or dpo (TRL).")],
    out_file: OutOpt = None,
) -> None:
    """Turn feedback into `cairn eval qa` cases or KTO/DPO preference data (JSONL)."""
    want_json_errors(False)
    if format not in EXPORT_FORMATS:
        raise typer.BadParameter(f"one of {', '.join(EXPORT_FORMATS)}", param_hint="--format")
    feedback = open_cairn().feedback
    with _output(out_file) as handle:
        count = feedback.export(SYSTEM, format, handle)
    err.print(f"exported {count} {format} lines" + (f" to {out_file}" if out_file else ""))
