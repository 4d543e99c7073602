"""Incremental ingestion of a folder into a knowledge base.

Files are hashed first, so unchanged ones cost one read; changed ones are parsed, chunked and
embedded outside any transaction, then written in small batches, each batch one transaction.
A crash therefore loses at most the batch in flight, and the index stays consistent.
A file that fails to parse is reported and skipped; its last good version stays searchable.
Readers come from ``.cairn-acl`` sidecars or the caller (:mod:`cairn.ingest.acl`); a file whose
content is unchanged but whose readers changed gets its new access list without re-embedding.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cairn.errors import CairnError, InputError, NotFound
from cairn.index.graph import GraphWrite
from cairn.index.store import DocumentWrite, IndexStore, StoredState
from cairn.ingest.acl import AclResolver, is_sidecar
from cairn.ingest.base import Chunker
from cairn.ingest.entities import EntityExtractor
from cairn.models.base import Embedder
from cairn.types import ChunkDraft, ParsedDocument

log = logging.getLogger(__name__)

Status = Literal["added", "updated", "unchanged", "deleted", "skipped", "error"]


@dataclass(frozen=True, slots=True)
class FileReport:
    source: str
    status: Status
    chunks: int = 0
    pages: int = 0
    message: str = ""
    warnings: tuple[str, ...] = ()


@dataclass(slots=True)
class SyncReport:
    kb: str
    files: list[FileReport] = field(default_factory=list)
    seconds: float = 0.0
    admin_only: int = 0  # documents written with no readers: nobody but admins can see them

    def count(self, status: Status) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def pages(self) -> int:
        return sum(f.pages for f in self.files if f.status in ("added", "updated"))

    @property
    def chunks(self) -> int:
        return sum(f.chunks for f in self.files if f.status in ("added", "updated"))

    @property
    def ok(self) -> bool:
        return self.count("error") == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "kb": self.kb,
            "files": len([f for f in self.files if f.status != "deleted"]),
            **{s: self.count(s) for s in ("added", "updated", "unchanged", "deleted", "skipped", "error")},
            "pages": self.pages,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "pages_per_s": round(self.pages / self.seconds, 2) if self.seconds > 0 else None,
            "admin_only": self.admin_only,
            "problems": [
                {"source": f.source, "status": f.status, "message": f.message}
                for f in self.files
                if f.status in ("error", "skipped") or f.warnings
            ],
        }


@dataclass(slots=True)
class _Pending:
    source: str
    parsed: ParsedDocument
    content_hash: str
    size: int
    metadata: dict[str, Any]
    readers: tuple[str, ...]


def iter_files(root: Path, unreadable: list[str] | None = None) -> Iterator[Path]:
    """Regular files under ``root`` in a stable order; hidden entries and links leaving the root are skipped.

    Folders that cannot be listed are appended to ``unreadable``: they must not look empty to the
    caller, or a sync would delete everything indexed from them.
    """
    root = root.resolve()

    def failed(exc: OSError) -> None:
        log.warning("cannot list %s: %s", exc.filename, exc.strerror)
        if unreadable is not None:
            unreadable.append(str(exc.filename))

    for dirpath, dirnames, filenames in os.walk(root, onerror=failed, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or is_sidecar(path):
                continue
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(root) or not target.is_file():
                    log.warning("skipping %s: symlink leaves the ingest root", path)
                    continue
            if path.is_file():
                yield path


class Ingestor:
    """Parses, chunks, embeds and stores documents; shared by the CLI, the server and the evaluator."""

    def __init__(
        self,
        store: IndexStore,
        embedder: Embedder,
        chunker: Chunker,
        *,
        max_bytes: int = 100 * 1024 * 1024,
        batch_chunks: int = 256,
        chunk_flags: Callable[[str], tuple[str, ...]] | None = None,
        entities: EntityExtractor | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.chunker = chunker
        self.max_bytes = max_bytes
        self.batch_chunks = batch_chunks
        self.chunk_flags = chunk_flags  # the guards' findings stored with each chunk (e.g. "injection")
        self.entities = entities  # knowledge-graph extraction per chunk (cairn.ingest.entities); None: off

    def _bind(self, kb: str) -> None:
        self.store.ensure_kb(kb)
        self.embedder.warm_up()
        self.store.bind_embedder(self.embedder.name, self.embedder.dim)

    def sync_folder(
        self,
        root: Path,
        kb: str,
        *,
        full: bool = False,
        prune: bool = True,
        readers: tuple[str, ...] = (),
        progress: Callable[[FileReport], None] | None = None,
    ) -> SyncReport:
        """Make ``kb`` reflect the files under ``root``: add new, replace changed, delete removed.

        ``readers`` (ACL tokens, see :func:`cairn.index.access.readers`) apply to files that no
        ``.cairn-acl`` sidecar governs.
        """
        from cairn.ingest.parse import parse_bytes

        root = Path(root).expanduser()
        if not root.exists():
            raise NotFound(f"{root} does not exist")
        started = time.perf_counter()
        self._bind(kb)
        report = SyncReport(kb=kb)
        known = self.store.stored_state(kb)
        emit = _emitter(report, progress)
        acls = AclResolver(root if root.is_dir() else root.parent, readers)
        unreadable: list[str] = []
        paths = [root.resolve()] if root.is_file() else list(iter_files(root, unreadable))
        for folder in unreadable:
            emit(FileReport(folder, "error", message="folder cannot be read; its documents are kept"))
        seen: set[str] = set()
        pending: list[_Pending] = []
        for path in paths:
            source = str(path.resolve())
            seen.add(source)
            try:
                size = path.stat().st_size
                if size > self.max_bytes:
                    raise InputError(
                        f"{path.name}: {size / 1e6:.1f} MB exceeds the {self.max_bytes / 1e6:.0f} MB limit"
                    )
                data = path.read_bytes()
            except (OSError, InputError) as exc:
                emit(FileReport(source, "error", message=_reason(exc)))
                continue
            try:
                file_readers = acls.readers_for(path)
            except InputError as exc:
                emit(FileReport(source, "error", message=exc.message))
                continue
            digest = hashlib.sha256(data).hexdigest()
            if not full and self._unchanged(kb, source, known.get(source), digest, file_readers, emit):
                continue
            try:
                parsed = parse_bytes(data, path.name)
            except CairnError as exc:
                status: Status = "skipped" if exc.status == 415 else "error"
                emit(FileReport(source, status, message=exc.message))
                continue
            pending.append(_Pending(source, parsed, digest, len(data), {"filename": path.name}, file_readers))
            if sum(max(1, len(p.parsed.text) // 1000) for p in pending) >= self.batch_chunks:
                self._flush(kb, pending, full, emit, report)
                pending = []
        self._flush(kb, pending, full, emit, report)
        if prune and root.is_dir() and not unreadable:
            prefix = str(root.resolve()) + os.sep
            gone = sorted(s for s in known if s.startswith(prefix) and s not in seen)
            self.store.delete_documents(kb, gone)
            for source in gone:
                emit(FileReport(source, "deleted"))
        report.seconds = time.perf_counter() - started
        log.info("sync %s into %s: %s", root, kb, report.to_json())
        return report

    def ingest_documents(
        self,
        kb: str,
        documents: Iterable[tuple[str, ParsedDocument]],
        *,
        full: bool = False,
        readers: tuple[str, ...] = (),
        progress: Callable[[FileReport], None] | None = None,
    ) -> SyncReport:
        """Index already-parsed documents keyed by ``source`` (evaluation corpora, API uploads)."""
        started = time.perf_counter()
        self._bind(kb)
        report = SyncReport(kb=kb)
        emit = _emitter(report, progress)
        known = {} if full else self.store.stored_state(kb)
        pending: list[_Pending] = []
        for source, parsed in documents:
            digest = hashlib.sha256(parsed.text.encode("utf-8")).hexdigest()
            if self._unchanged(kb, source, known.get(source), digest, readers, emit):
                continue
            pending.append(_Pending(source, parsed, digest, len(parsed.text.encode("utf-8")), {}, readers))
            if len(pending) >= self.batch_chunks:
                self._flush(kb, pending, full, emit, report)
                pending = []
        self._flush(kb, pending, full, emit, report)
        report.seconds = time.perf_counter() - started
        return report

    def _unchanged(
        self,
        kb: str,
        source: str,
        state: StoredState | None,
        digest: str,
        readers: tuple[str, ...],
        emit: Callable[[FileReport], None],
    ) -> bool:
        """True when the stored version has this content (its readers are brought up to date)."""
        if state is None or state.content_hash != digest:
            return False
        if state.readers == readers:
            emit(FileReport(source, "unchanged"))
        else:
            self.store.set_readers(kb, source, readers)
            shown = ", ".join(readers) or "admins only"
            emit(FileReport(source, "updated", message=f"readers changed to {shown}"))
        return True

    def _flush(
        self, kb: str, pending: Sequence[_Pending], full: bool, emit: Callable[[FileReport], None], report: SyncReport
    ) -> None:
        if not pending:
            return
        drafts = [self.chunker.chunk(p.parsed) for p in pending]
        if self.chunk_flags is not None:
            flag = self.chunk_flags
            drafts = [[replace(c, flags=flag(c.text)) for c in chunks] for chunks in drafts]
        graphs = self._graphs(drafts)
        flat = [embedding_text(p.parsed, c) for p, chunks in zip(pending, drafts, strict=True) for c in chunks]
        vectors = self.embedder.embed_documents(flat) if flat else np.zeros((0, self.embedder.dim), np.float32)
        writes, offset = [], 0
        for item, chunks, graph in zip(pending, drafts, graphs, strict=True):
            writes.append(
                DocumentWrite(
                    source=item.source,
                    parsed=item.parsed,
                    chunks=chunks,
                    embeddings=vectors[offset : offset + len(chunks)],
                    content_hash=item.content_hash,
                    size_bytes=item.size,
                    metadata=item.metadata,
                    readers=item.readers,
                    graph=graph,
                )
            )
            offset += len(chunks)
        results = self.store.write_documents(kb, writes, force=full)
        report.admin_only += sum(1 for item in pending if not item.readers)
        for item, result in zip(pending, results, strict=True):
            status: Status = "updated" if result.status == "access" else result.status  # type: ignore[assignment]
            message = "" if result.chunks else "no extractable text"
            emit(
                FileReport(
                    item.source,
                    status,
                    chunks=result.chunks,
                    pages=max(1, len(item.parsed.pages)),
                    message=message,
                    warnings=item.parsed.warnings,
                )
            )

    def _graphs(self, drafts: Sequence[Sequence[ChunkDraft]]) -> list[GraphWrite | None]:
        """Entities and relations of every chunk, per document; a failure costs the graph, never the document.

        A chunk whose extraction failed is stored without a graph (``cairn graph build`` retries it).
        """
        extractor = self.entities
        if extractor is None or extractor.name == "off":
            return [None] * len(drafts)
        try:
            found = extractor.extract_many([c.text for chunks in drafts for c in chunks])
        except Exception:
            log.exception("entity extraction (%s) failed; these documents are stored without a graph", extractor.name)
            return [None] * len(drafts)
        if len(found) != sum(len(chunks) for chunks in drafts):
            log.error("entity extractor %s returned a result per chunk for only some chunks", extractor.name)
            return [None] * len(drafts)
        out: list[GraphWrite | None] = []
        offset = 0
        for chunks in drafts:
            out.append(GraphWrite(extractor.name, tuple(found[offset : offset + len(chunks)])))
            offset += len(chunks)
        return out


def embedding_text(parsed: ParsedDocument, chunk: ChunkDraft) -> str:
    """The chunk as the embedder sees it: prefixed with its document title and section path.

    A chunk cut from the middle of a document often never names its subject; the header puts it
    back (a "contextual chunk header"), so the vector matches questions about that subject.
    """
    header = [h for h in (parsed.title, *chunk.heading_path) if h and h not in chunk.text[: len(h) + 200]]
    return " > ".join(dict.fromkeys(header)) + "\n" + chunk.text if header else chunk.text


def _emitter(report: SyncReport, progress: Callable[[FileReport], None] | None) -> Callable[[FileReport], None]:
    def emit(item: FileReport) -> None:
        report.files.append(item)
        if item.status == "error":
            log.warning("%s: %s", item.source, item.message)
        if progress is not None:
            progress(item)

    return emit


def _reason(exc: BaseException) -> str:
    if isinstance(exc, CairnError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"
