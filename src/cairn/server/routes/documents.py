"""Documents of a knowledge base: list, inspect, upload (admins), delete (admins).

An upload is parsed, chunked, embedded and stored before the response is sent, so the response
is the final indexing status of each file: ``added``, ``updated`` (a new version), ``unchanged``
(same content; its readers are brought up to date), ``skipped`` (no loader for the format) or
``error`` (the file could not be parsed; a previous version stays searchable).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, File, Form, Request, Response, UploadFile

from cairn.errors import CairnError, InputError, NotFound
from cairn.index.access import readers, split_names
from cairn.index.store import DocumentInfo
from cairn.server.auth import Admin, Caller
from cairn.server.context import get_context
from cairn.server.limits import Deadline, run_blocking
from cairn.types import ParsedDocument, Principal

router = APIRouter(prefix="/api/kbs/{kb}/documents", tags=["documents"])

UPLOAD_PATH_SUFFIX = "/documents"
MAX_NAME_BYTES = 1024
_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def document_json(doc: DocumentInfo, principal: Principal) -> dict[str, Any]:
    """A document as the caller may see it: who else may read it is shown to administrators only."""
    out: dict[str, Any] = {
        "id": doc.id,
        "kb": doc.kb,
        "source": doc.source,
        "title": doc.title,
        "mime": doc.mime,
        "version": doc.version,
        "chunks": doc.chunks,
        "pages": doc.pages,
        "content_hash": doc.content_hash,
        "status": "indexed" if doc.chunks else "empty",
    }
    if principal.is_admin:
        out["readers"] = list(doc.readers)
    return out


def upload_source(filename: str | None) -> str:
    """A safe relative name for an uploaded file: its own path parts, never ``..`` or an absolute path.

    Control characters (a NUL cannot even be stored) and names too long for any file system are refused.
    """
    name = filename or ""
    if _CONTROL.search(name):
        raise InputError("an uploaded file name contains control characters", hint="rename the file")
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
    if not parts:
        raise InputError("an uploaded file has no name", hint="send each file with a filename")
    source = "/".join(parts)
    if len(source.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise InputError(f"an uploaded file name is longer than {MAX_NAME_BYTES} bytes", hint="rename the file")
    return source


@router.get("", summary="Documents of the knowledge base the caller can read")
async def list_documents(request: Request, kb: str, principal: Caller) -> dict[str, Any]:
    context = get_context(request)
    docs = await run_blocking(
        Deadline(context.config.request_timeout_s), lambda: context.cairn.store.list_documents(principal, kb)
    )
    return {"documents": [document_json(d, principal) for d in docs]}


async def _find(request: Request, kb: str, doc_id: int, principal: Principal) -> DocumentInfo:
    context = get_context(request)
    docs = await run_blocking(
        Deadline(context.config.request_timeout_s), lambda: context.cairn.store.list_documents(principal, kb)
    )
    for doc in docs:
        if doc.id == doc_id:
            return doc
    raise NotFound(f"document {doc_id} does not exist in knowledge base {kb!r}")


@router.get("/{doc_id}", summary="One document and its indexing status")
async def get_document(request: Request, kb: str, doc_id: int, principal: Caller) -> dict[str, Any]:
    return document_json(await _find(request, kb, doc_id, principal), principal)


@router.delete("/{doc_id}", status_code=204, summary="Delete a document with its chunks (admins)")
async def delete_document(request: Request, kb: str, doc_id: int, principal: Admin) -> Response:
    doc = await _find(request, kb, doc_id, principal)
    context = get_context(request)
    await run_blocking(
        Deadline(context.config.request_timeout_s), lambda: context.cairn.store.delete_documents(kb, [doc.source])
    )
    return Response(status_code=204)


@router.post("", summary="Upload documents; each is indexed before the response (admins)")
async def upload_documents(
    request: Request,
    kb: str,
    principal: Admin,
    files: Annotated[list[UploadFile], File(description="One or more files (PDF, DOCX, HTML, Markdown, text).")],
    groups: Annotated[str, Form(description="Comma-separated groups that may read the files.")] = "",
    users: Annotated[str, Form(description="Comma-separated users that may read the files.")] = "",
) -> dict[str, Any]:
    """Without ``groups`` or ``users`` only administrators can read the uploaded documents."""
    context = get_context(request)
    cairn = context.cairn
    acl = readers(split_names([groups]), split_names([users]))
    max_bytes = int(cairn.settings.max_file_mb * 1024 * 1024)
    uploads: list[tuple[str, bytes]] = []
    for upload in files:
        source = upload_source(upload.filename)
        data = await upload.read(max_bytes + 1)
        uploads.append((source, data))
    if len({s for s, _ in uploads}) != len(uploads):
        raise InputError("two uploaded files have the same name")

    def ingest() -> dict[str, Any]:
        problems: list[dict[str, Any]] = []
        failures: list[CairnError] = []
        parsed: list[tuple[str, ParsedDocument]] = []
        for source, data in uploads:
            try:
                if len(data) > max_bytes:
                    raise InputError(f"{source}: larger than the {max_bytes:,}-byte limit for one file")
                parsed.append((source, cairn.parser.parse(data, source)))
            except CairnError as exc:
                failures.append(exc)
                status = "skipped" if exc.status == 415 else "error"
                problems.append({"source": source, "status": status, "chunks": 0, "message": exc.message})
        if not parsed:
            raise failures[0]
        report = cairn.ingestor.ingest_documents(kb, parsed, readers=acl)
        cairn.telemetry.observe_ingest(report)
        files_out = [
            {"source": f.source, "status": f.status, "chunks": f.chunks, "message": f.message} for f in report.files
        ]
        summary = report.to_json()
        return {
            "kb": kb,
            "documents": files_out + problems,
            "added": summary["added"],
            "updated": summary["updated"],
            "unchanged": summary["unchanged"],
            "failed": len(problems),
            "chunks": summary["chunks"],
            "seconds": summary["seconds"],
            "readers": list(acl),
        }

    # No deadline: a large upload may embed for minutes, and an abandoned ingest would still finish.
    return await anyio.to_thread.run_sync(ingest)
