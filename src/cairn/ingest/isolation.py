"""Parse hostile files in worker processes, so that no file can hang, exhaust or crash the ingester or the server.

A file's bytes are sent to a worker (``python -m cairn.ingest.parse_worker``) that runs the same
:func:`~cairn.ingest.parse.parse_bytes` as in-process parsing, under limits only a process can
enforce: ``RLIMIT_AS`` (memory), ``RLIMIT_CPU`` (CPU time, per file) and, from this side, a
wall-clock deadline. A worker that overruns is killed with SIGKILL and replaced on the next file;
one that crashes (PDFium aborts when an allocation fails) is reported the same way. Either way the
caller gets a :class:`CairnError` naming the file, and the batch goes on.

The result comes back as JSON plus the UTF-8 body, never as a pickle: a worker that a malicious
file managed to subvert must not be able to run code in this process by what it sends back, so
the reply is also validated field by field before it becomes a :class:`ParsedDocument`.

Workers are plain subprocesses (spawned, never forked, so a threaded server is safe), started on
first use, kept warm between files and recycled after ``max_tasks`` files to bound native leaks.
A worker whose parent dies reads end-of-file and exits; one busy on a file is stopped by its CPU
limit. Unix only (``resource`` and ``select`` on pipes).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from typing import Any

from cairn.errors import (
    CairnError,
    ConfigError,
    CorruptDocument,
    InputError,
    LimitExceeded,
    UnsupportedFormat,
)
from cairn.ingest.limits import MB, ParseLimits
from cairn.ingest.parse import storable
from cairn.types import Heading, PageSpan, ParsedDocument

log = logging.getLogger(__name__)

FRAME = struct.Struct(">II")  # header length, body length
_READ_PIECE = 1 << 20
_START_TIMEOUT_S = 60.0
_REAP_TIMEOUT_S = 5.0
MAX_HEADER = 64 * MB
# The errors a worker may report; anything else it claims is itself treated as a corrupt reply.
_ERRORS: dict[str, type[CairnError]] = {
    cls.code: cls for cls in (InputError, UnsupportedFormat, CorruptDocument, LimitExceeded)
}


class WorkerLost(Exception):
    """The worker ended or was killed before answering; ``reason`` says how."""

    def __init__(
        self, reason: str, *, timed_out: bool = False, returncode: int | None = None, unsent: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out
        self.returncode = returncode
        self.unsent = unsent  # the file never reached the worker: it cannot be what killed it


def encode_frame(header: dict[str, Any], body: bytes = b"") -> bytes:
    raw = json.dumps(header).encode("utf-8")
    return FRAME.pack(len(raw), len(body)) + raw + body


def encode_document(document: ParsedDocument) -> bytes:
    header = {
        "ok": True,
        "title": document.title,
        "mime": document.mime,
        "pages": [[p.number, p.start, p.end] for p in document.pages],
        "headings": [[h.level, h.title, h.start] for h in document.headings],
        "warnings": list(document.warnings),
    }
    return encode_frame(header, document.text.encode("utf-8", "surrogatepass"))


def encode_error(error: CairnError, *, retire: bool = False) -> bytes:
    return encode_frame(
        {"ok": False, "code": error.code, "message": error.message, "hint": error.hint, "retire": retire}
    )


def decode_reply(header: dict[str, Any], body: bytes, filename: str) -> ParsedDocument:
    """The document a worker sent, or the error it reported, after checking every field's type."""
    try:
        if header.get("ok") is True:
            text = body.decode("utf-8", "surrogatepass")
            pages = tuple(PageSpan(*_ints(p, 3)) for p in header["pages"])
            headings = tuple(_heading(h) for h in header["headings"])
            document = ParsedDocument(
                text=text,
                title=_str(header["title"]),
                mime=_str(header["mime"]),
                pages=pages,
                headings=headings,
                warnings=tuple(_str(w) for w in header["warnings"]),
            )
            if any(not 0 <= p.start <= p.end <= len(text) for p in pages) or any(
                not 0 <= h.start <= len(text) for h in headings
            ):
                raise ValueError("offsets outside the text")
            return storable(document)
        error = _ERRORS[_str(header["code"])]
        hint = header.get("hint")
        message = _str(header["message"])
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise CorruptDocument(f"{filename}: the parser worker sent an invalid result ({exc})") from None
    raise error(message, hint=_str(hint) if hint is not None else None)


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _ints(value: object, count: int) -> list[int]:
    if not isinstance(value, list) or len(value) != count or not all(type(v) is int for v in value):
        raise TypeError(f"expected {count} integers")
    return value


def _heading(value: object) -> Heading:
    if not isinstance(value, list) or len(value) != 3:
        raise TypeError("expected [level, title, start]")
    level, title, start = value
    _ints([level, start], 2)
    return Heading(level, _str(title), start)


class Worker:
    """One parser process and the pipes to it; used by one thread at a time."""

    def __init__(self, limits: ParseLimits) -> None:
        self.limits = limits
        self.tasks = 0
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cairn.ingest.parse_worker", json.dumps(limits.to_json())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._in = self.process.stdin
        self._out = self.process.stdout.fileno()
        try:
            header, _ = self._read(time.monotonic() + _START_TIMEOUT_S, max_body=0)
        except WorkerLost as lost:
            self.kill()
            raise ConfigError(f"the parser worker did not start: {lost.reason}") from None
        if header.get("ready") is not True:
            self.kill()
            raise ConfigError(f"the parser worker did not start: {header.get('message', header)}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def request(self, data: bytes, filename: str, timeout_s: float) -> tuple[dict[str, Any], bytes]:
        """Send one file and wait for the reply; raises :class:`WorkerLost` (and kills the worker) on any failure."""
        deadline = time.monotonic() + timeout_s
        self.tasks += 1
        try:
            self._in.write(encode_frame({"filename": filename}, data))
            self._in.flush()
        except OSError as exc:  # the worker was already gone (BrokenPipeError)
            lost = self._lost(f"the worker was gone before the file was sent ({exc.strerror or exc})")
            lost.unsent = True
            raise lost from None
        return self._read(deadline, max_body=self.limits.memory_mb * MB)

    def _read(self, deadline: float, *, max_body: int) -> tuple[dict[str, Any], bytes]:
        head = self._read_exact(FRAME.size, deadline)
        header_size, body_size = FRAME.unpack(head)
        if header_size > MAX_HEADER or body_size > max_body:
            raise self._lost(f"the worker announced a {header_size + body_size:,}-byte reply")
        raw = self._read_exact(header_size, deadline)
        body = self._read_exact(body_size, deadline)
        try:
            header = json.loads(raw)
        except ValueError:
            raise self._lost("the worker sent a reply that is not JSON") from None
        if not isinstance(header, dict):
            raise self._lost("the worker sent a reply that is not a JSON object")
        return header, body

    def _read_exact(self, size: int, deadline: float) -> bytes:
        parts: list[bytes] = []
        missing = size
        while missing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._lost("deadline passed", timed_out=True)
            ready, _, _ = select.select([self._out], [], [], remaining)
            if not ready:
                continue
            piece = os.read(self._out, min(missing, _READ_PIECE))
            if not piece:
                raise self._lost("the worker exited")
            parts.append(piece)
            missing -= len(piece)
        return b"".join(parts)

    def _lost(self, reason: str, *, timed_out: bool = False) -> WorkerLost:
        # After a timeout the worker is hung: kill it at once. After end-of-file it is exiting on
        # its own (a crash, its CPU limit): let it finish, so its exit status can say why.
        returncode = self.kill(grace_s=0.0 if timed_out else 1.0)
        return WorkerLost(reason, timed_out=timed_out, returncode=returncode)

    def kill(self, grace_s: float = 0.0) -> int | None:
        """Stop the worker (SIGKILL after ``grace_s``) and reap it; returns its exit status (negative: the signal)."""
        if grace_s > 0:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace_s)
        if self.process.poll() is None:
            self.process.kill()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            return self.process.wait(timeout=_REAP_TIMEOUT_S)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            log.error("parser worker %s did not exit after SIGKILL", self.process.pid)
            return None

    def close(self) -> None:
        """Ask an idle worker to finish (end of input) and reap it; kill it if it does not."""
        with contextlib.suppress(OSError):
            self._in.close()
        self.kill(grace_s=_REAP_TIMEOUT_S)


class ProcessParser:
    """A small pool of parser workers; thread-safe, so server requests can share it.

    At most ``workers`` files are parsed at once; more callers wait for a free worker.
    """

    def __init__(self, limits: ParseLimits, *, workers: int = 2, max_tasks: int = 200) -> None:
        if workers < 1 or max_tasks < 1:
            raise ConfigError("a parser pool needs at least one worker and one task per worker")
        self.limits = limits
        self.workers = workers
        self.max_tasks = max_tasks
        self._slots = threading.BoundedSemaphore(workers)
        self._lock = threading.Lock()
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._generation = 0  # bumped by close(): workers of an older generation are not reused
        self.started = 0  # workers started so far (a measure of how often hostile files cost a restart)

    def warm_up(self) -> None:
        """Start one worker now, unless one is already waiting."""
        with self._lock:
            if self._idle or self._busy:
                return
        worker, generation = self._checkout()
        self._checkin(worker, generation, retire=False)

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        with self._slots:
            for attempt in (1, 2):
                worker, generation = self._checkout()
                try:
                    header, body = worker.request(data, filename, self.limits.timeout_s)
                except WorkerLost as lost:
                    self._discard(worker)  # already killed and reaped; forget it
                    if attempt == 1 and lost.unsent:
                        continue  # it died while idle, not on this file: one more try on a fresh worker
                    raise self._failure(filename, lost) from None
                except BaseException:
                    self._discard(worker)
                    raise
                retire = bool(header.get("retire")) or worker.tasks >= self.max_tasks
                self._checkin(worker, generation, retire=retire)
                return decode_reply(header, body, filename)
        raise AssertionError("unreachable")  # pragma: no cover

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers, idle and busy (for monitoring, and for tests that kill one)."""
        with self._lock:
            return sorted(w.pid for w in (*self._idle, *self._busy))

    def _checkout(self) -> tuple[Worker, int]:
        with self._lock:
            generation = self._generation
            if self._idle:
                worker = self._idle.pop()
                self._busy.add(worker)
                return worker, generation
        worker = Worker(self.limits)
        with self._lock:
            self.started += 1
            self._busy.add(worker)
        return worker, generation

    def _checkin(self, worker: Worker, generation: int, *, retire: bool) -> None:
        with self._lock:
            self._busy.discard(worker)
            if not retire and generation == self._generation:
                self._idle.append(worker)
                return
        worker.close()

    def _discard(self, worker: Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
        worker.kill()

    def _failure(self, filename: str, lost: WorkerLost) -> CairnError:
        limits = self.limits
        if lost.timed_out:
            return LimitExceeded(
                f"{filename}: parsing took longer than {limits.timeout_s:g} s; stopped",
                hint="raise parse_timeout_s in the settings if the file is legitimate",
            )
        code = lost.returncode
        if code == -signal.SIGXCPU:
            return LimitExceeded(
                f"{filename}: parsing used more than {limits.timeout_s:g} s of CPU time; stopped",
                hint="raise parse_timeout_s in the settings if the file is legitimate",
            )
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
            return CorruptDocument(
                f"{filename}: the parser crashed on this file ({name}): it is malformed, or needs more than"
                f" the {limits.memory_mb:,} MB memory limit",
                hint="raise parse_memory_mb in the settings if the file is legitimate",
            )
        return CorruptDocument(f"{filename}: the parser worker failed ({lost.reason}, exit status {code})")

    def close(self) -> None:
        """Stop the idle workers; busy ones stop when their file is done. The pool restarts on next use."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._generation += 1
        for worker in idle:
            worker.close()

    def __enter__(self) -> ProcessParser:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


__all__ = ["ProcessParser", "Worker", "WorkerLost", "decode_reply", "encode_document", "encode_error"]
