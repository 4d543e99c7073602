"""ingest, ask, search, chat and kb commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cairn.cli.app import app, kb_app, print_json, want_json_errors
from cairn.cli.context import ProfileOpt, caller, open_cairn, pipeline_config, progress_bar
from cairn.index.access import readers, split_names
from cairn.index.search import Filters
from cairn.ingest.sync import FileReport, iter_files
from cairn.types import Answer, ChatMessage, Hit

KbOpt = Annotated[list[str], typer.Option("--kb", help="Knowledge base (repeat to search several).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
SourceOpt = Annotated[
    list[str] | None, typer.Option("--source", help="Only documents whose path matches this glob (repeatable).")
]
MimeOpt = Annotated[list[str] | None, typer.Option("--mime", help="Only documents of this MIME type (repeatable).")]
GeneratorOpt = Annotated[str | None, typer.Option("--generator", help="Override CAIRN_GENERATOR, e.g. 'extractive:'.")]
AsUserOpt = Annotated[
    str | None,
    typer.Option("--as-user", help="Act as this user: see only the documents they may read (default: operator)."),
]
TierOpt = Annotated[
    str | None,
    typer.Option("--tier", help="Force a model tier (`cairn tiers list`); sensitive context still stays local."),
]
ListOpt = Annotated[list[str] | None, typer.Option(help="Comma-separated names (repeatable).")]

out = Console()
err = Console(stderr=True)


def display_source(source: str) -> str:
    try:
        return os.path.relpath(source)
    except ValueError:
        return source


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="Folder (or file) to ingest.")],
    kb: Annotated[str, typer.Option("--kb", help="Knowledge base to ingest into.")] = "default",
    full: Annotated[bool, typer.Option("--full", help="Re-index every file, changed or not.")] = False,
    groups: Annotated[
        list[str] | None, typer.Option("--groups", help="Groups that may read files without a .cairn-acl (a,b).")
    ] = None,
    users: Annotated[
        list[str] | None, typer.Option("--users", help="Users that may read files without a .cairn-acl (x,y).")
    ] = None,
    queue: Annotated[
        bool, typer.Option("--queue", help="Queue the work for `cairn worker` processes instead of doing it here.")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="With --queue: wait until the workers are done.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Index a folder incrementally: new and changed files are (re)indexed, removed files deleted.

    Readers come from .cairn-acl sidecar files, else --groups/--users; with neither, only admins
    (and the operator) can read a document. With --queue the workers do it (docs/deployment.md).
    """
    want_json_errors(json_out)
    acl = readers(split_names(groups), split_names(users))
    cairn = open_cairn()
    if queue or wait:
        from cairn.cli.jobs_cmd import enqueue_sync

        if not queue:
            raise typer.BadParameter("--wait goes with --queue")
        enqueue_sync(cairn, path, kb, readers=acl, full=full, wait=wait, json_out=json_out)
        return
    total = 1 if path.is_file() else sum(1 for _ in iter_files(path)) if path.is_dir() else 0
    with progress_bar(quiet=json_out, label="[bold]ingest[/]") as progress:
        task = progress.add_task("", total=total)

        def on_file(item: FileReport) -> None:
            if item.status != "deleted":
                progress.update(task, advance=1, description=Path(item.source).name)
            if item.status in ("error", "skipped") and not json_out:
                progress.console.print(f"[yellow]{item.status}[/] {display_source(item.source)}: {item.message}")
            for warning in item.warnings:
                if not json_out:
                    progress.console.print(f"[yellow]warning[/] {warning}")

        report = cairn.ingestor.sync_folder(path, kb, full=full, readers=acl, progress=on_file)
    cairn.telemetry.observe_ingest(report)
    summary = report.to_json()
    if json_out:
        print_json(summary)
    else:
        out.print(
            f"[bold]{kb}[/]: {summary['files']} files ({summary['added']} added, {summary['updated']} updated,"
            f" {summary['unchanged']} unchanged, {summary['deleted']} deleted, {summary['skipped']} skipped,"
            f" {summary['error']} errors), {summary['pages']} pages, {summary['chunks']} chunks in"
            f" {summary['seconds']:.1f} s ({summary['pages_per_s'] or 0:.1f} pages/s)"
        )
        if report.admin_only:
            err.print(
                f"[yellow]note[/] {report.admin_only} documents have no readers (no .cairn-acl, no --groups/--users):"
                " only admins can read them"
            )
    cairn.close()
    if not report.ok:
        raise typer.Exit(3)


def _print_sources(answer: Answer) -> None:
    if not answer.citations:
        return
    out.print("\n[bold]Sources[/]")
    for c in answer.citations:
        page = f", page {c.page}" if c.page is not None else ""
        out.print(f"  [{c.id}] {display_source(c.source)}{page}, chars {c.start}-{c.end}")


@app.command()
def ask(
    question: Annotated[str | None, typer.Argument(help="The question.")] = None,
    kb: KbOpt = ["default"],  # noqa: B006
    questions: Annotated[
        Path | None, typer.Option("--questions", help="Answer every line of this file in turn.")
    ] = None,
    json_out: JsonOpt = False,
    stream: Annotated[bool, typer.Option(help="Print the answer as it is generated.")] = True,
    generator: GeneratorOpt = None,
    source: SourceOpt = None,
    mime: MimeOpt = None,
    as_user: AsUserOpt = None,
    profile: ProfileOpt = None,
    tier: TierOpt = None,
) -> None:
    """Answer a question from the documents, with citations (or refuse)."""
    want_json_errors(json_out)
    batch = [question] if question else []
    if questions is not None:
        batch += [q.strip() for q in questions.read_text(encoding="utf-8").splitlines() if q.strip()]
    if not batch:
        raise typer.BadParameter("give a question or --questions FILE")
    cairn = open_cairn(generator=generator)
    principal = caller(cairn, as_user)
    filters = _filters(source, mime)
    config = pipeline_config(cairn, kb, profile=profile)
    answers = []
    for i, text in enumerate(batch):
        if json_out:
            answer = cairn.ask(text, kb, principal=principal, filters=filters, config=config, tier=tier)
            answers.append(answer.to_json())
            continue
        if len(batch) > 1:
            out.print(f"{'' if i == 0 else chr(10)}[bold cyan]Q: {text}[/]")
        events = cairn.stream(text, kb, principal=principal, filters=filters, config=config, tier=tier)
        answer = _stream_answer(events, stream)
        _print_sources(answer)
    if json_out:
        print_json(answers[0] if question and questions is None else answers)
    cairn.close()


def _filters(source: list[str] | None, mime: list[str] | None) -> Filters | None:
    filters = Filters(sources=tuple(source or ()), mimes=tuple(mime or ()))
    return filters or None


def _stream_answer(events: object, stream: bool) -> Answer:
    from cairn.answer.engine import AnswerEvent

    final: Answer | None = None
    for event in events:  # type: ignore[attr-defined]
        assert isinstance(event, AnswerEvent)
        if event.answer is not None:
            final = event.answer
        elif stream:
            sys.stdout.write(event.text)
            sys.stdout.flush()
    assert final is not None
    if not stream:
        sys.stdout.write(final.answer)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return final


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    kb: KbOpt = ["default"],  # noqa: B006
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=100, help="How many passages.")] = 10,
    mode: Annotated[str | None, typer.Option(help="hybrid, bm25 or dense (default: the profile's).")] = None,
    mmr: Annotated[bool | None, typer.Option("--mmr/--no-mmr", help="Diversify with MMR.")] = None,
    source: SourceOpt = None,
    mime: MimeOpt = None,
    as_user: AsUserOpt = None,
    profile: ProfileOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show the ranked passages retrieval finds, with scores."""
    want_json_errors(json_out)
    if mode not in (None, "hybrid", "bm25", "dense"):
        raise typer.BadParameter("mode must be hybrid, bm25 or dense")
    cairn = open_cairn()
    principal = caller(cairn, as_user)
    config = pipeline_config(cairn, kb, profile=profile, top_k=k, mode=mode, mmr=mmr)
    retrieval = cairn.search(query, kb, principal=principal, config=config, filters=_filters(source, mime))
    if json_out:
        print_json({"hits": [h.to_json() for h in retrieval.hits], "audit_id": retrieval.audit_id})
    else:
        _print_hits(retrieval.hits)
    cairn.close()


def _print_hits(hits: list[Hit]) -> None:
    table = Table(show_lines=True)
    for name in ("#", "score", "source", "page", "passage"):
        table.add_column(name, overflow="fold")
    for i, h in enumerate(hits, start=1):
        snippet = " ".join(h.text.split())
        table.add_row(
            str(i),
            f"{h.score:.3f}",
            display_source(h.source),
            "" if h.page is None else str(h.page),
            snippet[:300] + ("…" if len(snippet) > 300 else ""),
        )
    out.print(table)


@app.command()
def chat(
    kb: Annotated[
        list[str] | None,
        typer.Option("--kb", help="Knowledge base (repeatable; default: the session's, else 'default')."),
    ] = None,
    session: Annotated[str | None, typer.Option(help="Continue this chat session id.")] = None,
    generator: GeneratorOpt = None,
    as_user: AsUserOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Conversational Q&A: follow-up questions are rewritten with the history before retrieval."""
    cairn = open_cairn(generator=generator)
    principal = caller(cairn, as_user)
    if session is not None:
        kb = kb or cairn.chats.kbs(principal, session)
    kb = kb or ["default"]
    session_id = session or cairn.chats.create(principal, kb)
    config = pipeline_config(cairn, kb, profile=profile)
    interactive = sys.stdin.isatty()
    err.print(f"chat session {session_id} on {', '.join(kb)}. Empty line, 'exit' or Ctrl-D to leave.")
    while True:
        if interactive:
            sys.stdout.write("\nyou> ")
            sys.stdout.flush()
        line = sys.stdin.readline()
        question = line.strip()
        if not line or question.lower() in ("", "exit", "quit"):
            break
        history = cairn.chats.history(principal, session_id, limit=2 * cairn.settings.history_turns)
        sys.stdout.write("cairn> ")
        answer = _stream_answer(
            cairn.stream(question, kb, principal=principal, history=history, session_id=session_id, config=config),
            True,
        )
        _print_sources(answer)
        cairn.chats.append(
            principal, session_id, ChatMessage("user", question), ChatMessage("assistant", answer.answer)
        )
    cairn.close()


@kb_app.command("list")
def kb_list(json_out: JsonOpt = False, as_user: AsUserOpt = None) -> None:
    """Knowledge bases with their document and chunk counts (those the caller can read)."""
    cairn = open_cairn()
    kbs = cairn.store.list_kbs(caller(cairn, as_user))
    if json_out:
        print_json({"knowledge_bases": kbs})
    else:
        table = Table("name", "documents", "chunks")
        for item in kbs:
            table.add_row(item["name"], str(item["documents"]), str(item["chunks"]))
        out.print(table)
    cairn.close()


@kb_app.command("docs")
def kb_docs(
    kb: Annotated[str, typer.Argument(help="Knowledge base.")] = "default",
    json_out: JsonOpt = False,
    as_user: AsUserOpt = None,
) -> None:
    """Documents of a knowledge base with version, chunk counts and readers."""
    cairn = open_cairn()
    docs = cairn.store.list_documents(caller(cairn, as_user), kb)
    if json_out:
        print_json({"documents": [_doc_json(d) for d in docs]})
    else:
        table = Table("source", "title", "version", "chunks", "pages", "readers")
        for d in docs:
            table.add_row(
                display_source(d.source),
                d.title[:60],
                str(d.version),
                str(d.chunks),
                str(d.pages or ""),
                ", ".join(d.readers) or "admins only",
            )
        out.print(table)
    cairn.close()


def _doc_json(d: object) -> dict[str, object]:
    fields = ("id", "kb", "source", "title", "mime", "version", "chunks", "pages", "content_hash")
    return {f: getattr(d, f) for f in fields} | {"readers": list(getattr(d, "readers", ()))}


@kb_app.command("describe")
def kb_describe(
    kb: Annotated[str, typer.Argument(help="Knowledge base.")],
    description: Annotated[str, typer.Argument(help="What it holds, in a sentence (the router reads it).")],
) -> None:
    """Set a knowledge base's description, shown in listings and used to route questions (--kb '*')."""
    cairn = open_cairn()
    cairn.store.describe_kb(kb, description)
    out.print(f"{kb}: {description.strip()}")
    cairn.close()


@kb_app.command("delete")
def kb_delete(
    kb: Annotated[str, typer.Argument(help="Knowledge base to delete with all its documents.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a knowledge base and everything indexed in it."""
    if not yes:
        typer.confirm(f"Delete knowledge base {kb!r} and all its documents?", abort=True)
    cairn = open_cairn()
    cairn.store.drop_kb(kb)
    out.print(f"deleted {kb}")
    cairn.close()


@app.command()
def passage(
    chunk_id: Annotated[int, typer.Argument(help="The passage id (a citation's chunk_id).")],
    context: Annotated[int, typer.Option(min=0, max=5000, help="Characters of the document shown around it.")] = 300,
    as_user: AsUserOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show a cited passage inside its document (only if the caller may read it)."""
    want_json_errors(json_out)
    cairn = open_cairn()
    hit, body = cairn.store.passage(caller(cairn, as_user), chunk_id)
    before = body[max(0, hit.start - context) : hit.start]
    after = body[hit.end : hit.end + context]
    if json_out:
        print_json(hit.to_json() | {"chunk_id": hit.chunk_id, "before": before, "after": after, "title": hit.title})
    else:
        page = f", page {hit.page}" if hit.page is not None else ""
        out.print(f"[bold]{display_source(hit.source)}[/]{page}, chars {hit.start}-{hit.end}")
        out.print(f"[dim]{escape(before)}[/][reverse]{escape(hit.text)}[/][dim]{escape(after)}[/]")
    cairn.close()
