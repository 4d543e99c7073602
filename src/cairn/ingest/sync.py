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
import stat
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
from cairn.ingest.parse import InProcessParser, Parser
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


def iter_files(
    root: Path, unreadable: list[str] | None = None, refused: list[tuple[Path, str]] | None = None
) -> Iterator[Path]:
    """Regular files under ``root`` in a stable order; hidden entries are skipped, links never lead out.

    Folders that cannot be listed are appended to ``unreadable``: they must not look empty to the
    caller, or a sync would delete everything indexed from them. Symbolic links (to files or
    folders) that resolve outside the root, or not at all (a loop), are appended to ``refused`` with
    the reason, and not followed: a link must not let a folder's writer index files it cannot see.
    Links to folders are never walked (their target, when inside the root, is walked anyway).
    """
    root = root.resolve()

    def failed(exc: OSError) -> None:
        log.warning("cannot list %s: %s", exc.filename, exc.strerror)
        if unreadable is not None:
            unreadable.append(str(exc.filename))

    def refuse(path: Path, reason: str) -> None:
        log.warning("not following %s: %s", path, reason)
        if refused is not None:
            refused.append((path, reason))

    for dirpath, dirnames, filenames in os.walk(root, onerror=failed, followlinks=False):
        kept = []
        for name in sorted(dirnames):
            path = Path(dirpath) / name
            if name.startswith("."):
                continue
            if path.is_symlink():
                reason = _link_escapes(path, root)
                if reason:
                    refuse(path, reason)
                continue
            kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or is_sidecar(path):
                continue
            if path.is_symlink():
                reason = _link_escapes(path, root)
                if reason:
                    refuse(path, reason)
                    continue
            if path.is_file():
                yield path


def _link_escapes(link: Path, root: Path) -> str:
    """Why following ``link`` is refused ("" when its target is inside ``root``, or there is none)."""
    try:
        target = link.resolve(strict=True)
    except FileNotFoundError:
        return ""  # a dangling link: nothing to read
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop, on Python < 3.13
        return "symbolic link loop; not followed"
    if not target.is_relative_to(root):
        return "symbolic link to outside the ingest root; not followed"
    return ""


def read_file(path: Path, max_bytes: int, inside: Path | None = None) -> bytes:
    """The bytes of a regular file, at most ``max_bytes``, never through a link leading out of ``inside``.

    The file is checked again as it is opened, since it may have been swapped for a link, a FIFO
    or a device since the folder was listed; the size is checked on the open file and the read is
    bounded, so a file growing meanwhile cannot be read past the limit either.
    """
    try:
        real = path.resolve(strict=True)
    except RuntimeError as exc:  # a symlink loop, on Python < 3.13
        raise InputError(f"{path.name}: symbolic link loop; not followed") from exc
    if inside is not None and not real.is_relative_to(inside.resolve()):
        raise InputError(f"{path.name}: leads outside the ingest root; not followed")
    fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{path.name}: not a regular file")
        if info.st_size > max_bytes:
            raise InputError(f"{path.name}: {info.st_size / 1e6:.1f} MB exceeds the {max_bytes / 1e6:.0f} MB limit")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputError(f"{path.name}: grew past the {max_bytes / 1e6:.0f} MB limit while it was read")
    return data


def printable(source: str) -> str:
    """A path as text that can be printed and stored: bytes of a name that are not UTF-8 become ``\\xNN``."""
    return os.fsencode(source).decode("utf-8", "backslashreplace")


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
        parser: Parser | None = None,
        chunk_flags: Callable[[str], tuple[str, ...]] | None = None,
        entities: EntityExtractor | None = None,
    ) -> None:
        self.store = store
        self.parser: Parser = parser or InProcessParser()  # Cairn passes the configured (isolated) one
        self.embedder = embedder
        self.chunker = chunker
        self.max_bytes = max_bytes
        self.batch_chunks = batch_chunks
        self.chunk_flags = chunk_flags  # the guards' findings stored with each chunk (e.g. "injection")
        self.entities = entities  # knowledge-graph extraction per chunk (cairn.ingest.entities); None: off
        self._embedder_bound = False

    def _bind(self, kb: str) -> None:
        self.store.ensure_kb(kb)
        self.embedder.warm_up()
        # Once per ingestor: the record of the embedder is never removed, and checking it takes a lock
        # on the chunks table (CREATE INDEX IF NOT EXISTS) that a queue worker would take per claim.
        if not self._embedder_bound:
            self.store.bind_embedder(self.embedder.name, self.embedder.dim)
            self._embedder_bound = True

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
        refused: list[tuple[Path, str]] = []
        paths = [root.resolve()] if root.is_file() else list(iter_files(root, unreadable, refused))
        for folder in unreadable:
            emit(FileReport(printable(folder), "error", message="folder cannot be read; its documents are kept"))
        for link, reason in refused:
            emit(FileReport(printable(str(link)), "skipped", message=reason))
        inside = root if root.is_dir() else None  # a file named on its own is read wherever its link leads
        seen = self._sync_paths(paths, kb, known, acls, full, emit, report, inside=inside)
        if prune and root.is_dir() and not unreadable:
            prefix = str(root.resolve()) + os.sep
            gone = sorted(s for s in known if s.startswith(prefix) and s not in seen)
            self.store.delete_documents(kb, gone)
            for source in gone:
                emit(FileReport(source, "deleted"))
        report.seconds = time.perf_counter() - started
        log.info("sync %s into %s: %s", root, kb, report.to_json())
        return report

    def sync_files(
        self,
        paths: Sequence[Path],
        kb: str,
        *,
        acl_root: Path,
        full: bool = False,
        readers: tuple[str, ...] = (),
        progress: Callable[[FileReport], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> SyncReport:
        """Index exactly these files, each as :meth:`sync_folder` would: the unit of work of a queue worker.

        Nothing is listed and nothing deleted. ``acl_root`` is the folder of the sync the files belong
        to, so the ``.cairn-acl`` sidecars between it and each file apply as they would to the whole
        folder; only the given sources' stored state is read, so the cost does not grow with the
        knowledge base. Once ``stop()`` is true no further file is read; those already read are
        still written, and the files left out get no report.
        """
        started = time.perf_counter()
        self._bind(kb)
        report = SyncReport(kb=kb)
        files = [Path(p).expanduser() for p in paths]
        known = self.store.stored_state(kb, [str(p.resolve()) for p in files])
        acls = AclResolver(Path(acl_root).expanduser(), readers)
        self._sync_paths(files, kb, known, acls, full, _emitter(report, progress), report, stop, inside=acls.root)
        report.seconds = time.perf_counter() - started
        return report

    def _sync_paths(
        self,
        paths: Sequence[Path],
        kb: str,
        known: dict[str, StoredState],
        acls: AclResolver,
        full: bool,
        emit: Callable[[FileReport], None],
        report: SyncReport,
        stop: Callable[[], bool] | None = None,
        *,
        inside: Path | None = None,
    ) -> set[str]:
        """Hash, compare, parse and store ``paths``; returns their sources (what a prune must keep).

        A path that resolves outside ``inside`` when it is read is refused (see :func:`read_file`).
        """
        seen: set[str] = set()
        pending: list[_Pending] = []
        for path in paths:
            if stop is not None and stop():
                break
            try:
                source = str(path.resolve())
            except RuntimeError:  # swapped for a symlink loop since it was listed (Python < 3.13)
                source = str(path.absolute())
            seen.add(source)
            try:
                if printable(source) != source:
                    raise InputError(f"{printable(path.name)}: file name is not valid UTF-8; rename the file")
                data = read_file(path, self.max_bytes, inside)
            except (OSError, InputError) as exc:
                emit(FileReport(printable(source), "error", message=_reason(exc)))
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
                parsed = self.parser.parse(data, path.name)
            except CairnError as exc:
                status: Status = "skipped" if exc.status == 415 else "error"
                emit(FileReport(source, status, message=exc.message))
                continue
            pending.append(_Pending(source, parsed, digest, len(data), {"filename": path.name}, file_readers))
            if sum(max(1, len(p.parsed.text) // 1000) for p in pending) >= self.batch_chunks:
                self._flush(kb, pending, full, emit, report)
                pending = []
        self._flush(kb, pending, full, emit, report)
        return seen

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
