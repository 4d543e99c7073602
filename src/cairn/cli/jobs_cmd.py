"""``cairn worker`` and ``cairn jobs``: queued ingestion that scales out through the database.

``cairn ingest DIR --queue`` (in commands.py) enqueues; any number of ``cairn worker`` processes, on
any hosts that see DIR at the same path, do the work (docs/deployment.md).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.table import Table

from cairn.assistant import Cairn
from cairn.cli.app import app, print_json, want_json_errors
from cairn.cli.commands import JsonOpt, display_source, err, out
from cairn.cli.context import open_cairn, progress_bar
from cairn.errors import InputError
from cairn.ingest.queue import STATES, JobQueue, Outcome, SyncProgress
from cairn.types import SYSTEM

jobs_app = typer.Typer(help="The ingestion queue: list, retry, cancel and purge jobs.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")

KbFilterOpt = Annotated[str | None, typer.Option("--kb", help="Only jobs of this knowledge base.")]


def job_queue(cairn: Cairn) -> JobQueue:
    return JobQueue(cairn.db, cairn.store, max_attempts=cairn.settings.worker_max_attempts)


def enqueue_sync(
    cairn: Cairn, path: Path, kb: str, *, readers: tuple[str, ...], full: bool, wait: bool, json_out: bool
) -> None:
    """``cairn ingest --queue``: queue the sync; with ``wait``, follow it to the end like an inline ingest."""
    queue = job_queue(cairn)
    job = queue.enqueue(path, kb, principal=SYSTEM, readers=readers, full=full)
    if not wait:
        if json_out:
            print_json({"job": job.id, "kind": job.kind, "kb": kb, "path": job.path, "state": job.state})
        else:
            out.print(f"queued job {job.id}: {job.kind} {display_source(job.path)} into [bold]{kb}[/]")
            err.print(f"run `cairn worker` to process the queue; follow it with `cairn jobs show {job.id}`")
        return
    progress = _follow(queue, job.id, quiet=json_out)
    summary = progress.to_json()
    if json_out:
        print_json(summary)
    else:
        out.print(
            f"[bold]{kb}[/]: job {job.id} {job.state}; {summary['added']} added, {summary['updated']} updated,"
            f" {summary['unchanged']} unchanged, {summary['deleted']} deleted, {summary['skipped']} skipped,"
            f" {summary['jobs']['failed']} failed"
        )
        for problem in progress.failures:
            err.print(f"[yellow]failed[/] {display_source(problem['source'])}: {problem['message']}")
    if not progress.ok:
        raise typer.Exit(3)


def _follow(queue: JobQueue, job_id: int, *, quiet: bool) -> SyncProgress:
    with progress_bar(quiet=quiet, label="[bold]queued ingest[/]") as bar:
        task = bar.add_task("waiting for a worker", total=None)
        while True:
            state = queue.progress(job_id, principal=SYSTEM)
            total = sum(state.states.values())
            finished = sum(state.states.get(s, 0) for s in ("done", "failed", "cancelled"))
            bar.update(task, total=total or None, completed=finished, description=state.job.state)
            if state.finished:
                return state
            time.sleep(0.5)


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(min=1, max=64, help="Jobs run at once (default CAIRN_WORKER_CONCURRENCY).")
    ] = None,
    batch: Annotated[
        int | None, typer.Option(min=1, max=256, help="Files of one sync claimed together (CAIRN_WORKER_BATCH).")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Exit when nothing is queued or running.")] = False,
    metrics_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Serve Prometheus metrics on this port.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No line per job.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run queued ingestion jobs until stopped; start one per core or host to scale out.

    SIGTERM or Ctrl-C: the document being written is finished, the rest of the claim goes back to the
    queue, and the worker exits; a second signal exits at once (the leases then run out and other
    workers take the jobs over).
    """
    want_json_errors(json_out)
    from cairn.ingest.worker import Worker

    cairn = open_cairn()
    s = cairn.settings

    def on_outcome(o: Outcome) -> None:
        if quiet or json_out:
            return
        what = o.outcome or o.action
        detail = f": {o.error}" if o.error and o.action != "done" else ""
        out.print(f"job {o.job.id} {o.action} ({what}) {display_source(o.job.path)}{detail}", highlight=False)

    runner = Worker(
        job_queue(cairn),
        cairn.ingestor,
        cairn.store,
        concurrency=concurrency or s.worker_concurrency,
        batch=batch or s.worker_batch,
        lease_s=s.worker_lease_s,
        poll_s=s.worker_poll_s,
        on_outcome=on_outcome,
        on_report=cairn.telemetry.observe_ingest,
    )
    cairn.db.warm_up()  # fail now, clearly, if the database is unreachable
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, registry=cairn.telemetry.registry)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if runner.stopping:
            raise KeyboardInterrupt
        err.print(f"{signal.Signals(signum).name}: finishing the current document, then exiting")
        runner.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if not json_out:
        err.print(f"cairn worker {runner.name}: {runner.concurrency} slots, batches of {runner.batch}")
    stats = runner.run(once=once)
    cairn.close()
    if json_out:
        print_json(stats.to_json() | {"worker": runner.name})
    else:
        summary = stats.to_json()
        err.print(
            f"{summary['done']} jobs done, {summary['failed']} failed, {summary['retried']} to retry,"
            f" {summary['released']} handed back in {summary['seconds']:.1f} s"
        )


@jobs_app.command("list")
def jobs_list(
    state: Annotated[
        list[str] | None, typer.Option("--state", help=f"Only jobs in this state: {', '.join(STATES)}.")
    ] = None,
    kb: KbFilterOpt = None,
    sync: Annotated[int | None, typer.Option("--sync", help="Only the file jobs of this folder job.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="How many jobs, newest first.")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """Jobs, newest first, with the count per state."""
    want_json_errors(json_out)
    queue = job_queue(open_cairn())
    jobs = queue.list_jobs(principal=SYSTEM, states=state or (), kb=kb, parent=sync, limit=limit)
    counts = queue.counts(principal=SYSTEM, kb=kb, parent=sync)
    if json_out:
        print_json({"counts": counts, "jobs": [j.to_json() for j in jobs]})
        return
    out.print(", ".join(f"{n} {s}" for s, n in counts.items()))
    table = Table("id", "kind", "kb", "state", "outcome", "tries", "path", "error")
    for j in jobs:
        table.add_row(
            str(j.id),
            j.kind,
            j.kb,
            j.state,
            j.outcome or "",
            f"{j.attempts}/{j.max_attempts}",
            display_source(j.path),
            (j.error or "")[:80],
        )
    out.print(table)


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[int, typer.Argument(help="Job id (`cairn ingest --queue` prints it).")],
    json_out: JsonOpt = False,
) -> None:
    """One job; for a folder job, the progress of its whole sync."""
    want_json_errors(json_out)
    queue = job_queue(open_cairn())
    job = queue.get(job_id, principal=SYSTEM)
    progress = queue.progress(job_id, principal=SYSTEM)
    if json_out:
        print_json(job.to_json() | {"sync": progress.to_json()})
        return
    out.print(
        f"job {job.id}: {job.kind} {display_source(job.path)} into [bold]{job.kb}[/], {job.state}", highlight=False
    )
    out.print(f"  attempts {job.attempts}/{job.max_attempts}, outcome {job.outcome or '-'}, worker {job.worker or '-'}")
    if job.error:
        out.print(f"  error: {job.error}", highlight=False)
    if job.kind == "folder":
        summary = progress.to_json()
        out.print("  files: " + ", ".join(f"{n} {s}" for s, n in summary["jobs"].items()))
        for problem in progress.failures:
            out.print(f"  [yellow]failed[/] {display_source(problem['source'])}: {problem['message']}", highlight=False)


@jobs_app.command("retry")
def jobs_retry(
    job_ids: Annotated[
        list[int] | None, typer.Argument(help="Failed or cancelled jobs (default: every failed one).")
    ] = None,
    kb: KbFilterOpt = None,
) -> None:
    """Queue failed (or cancelled) jobs again, with their attempts reset."""
    count = job_queue(open_cairn()).retry(job_ids or (), principal=SYSTEM, kb=kb)
    out.print(f"{count} jobs queued again")


@jobs_app.command("cancel")
def jobs_cancel(
    job_ids: Annotated[
        list[int] | None, typer.Argument(help="Queued jobs; a folder job takes its files along.")
    ] = None,
    kb: KbFilterOpt = None,
    all_queued: Annotated[bool, typer.Option("--all", help="Cancel every queued job (of --kb).")] = False,
) -> None:
    """Cancel queued jobs; a running job finishes the file it is on."""
    if not job_ids and not all_queued:
        raise InputError("name the jobs to cancel, or give --all", hint="see `cairn jobs list --state queued`")
    count = job_queue(open_cairn()).cancel(job_ids or (), principal=SYSTEM, kb=kb)
    out.print(f"{count} jobs cancelled")


@jobs_app.command("purge")
def jobs_purge(
    older_than: Annotated[float, typer.Option("--older-than", min=0, help="Days since the job finished.")],
) -> None:
    """Delete finished jobs (done, failed, cancelled) older than this; the documents stay."""
    count = job_queue(open_cairn()).purge(principal=SYSTEM, older_than_days=older_than)
    out.print(f"{count} finished jobs deleted")
