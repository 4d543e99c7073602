"""The parser worker process, ``python -m cairn.ingest.parse_worker LIMITS_JSON``, started by :mod:`.isolation`.

It imports every loader and its library first, then limits itself (address space, no core files)
and answers one frame per file on its stdin/stdout pipes until end of input. Before each file it
sets its CPU limit to what it has used so far plus the per-file budget, so SIGXCPU stops a runaway
parse even if the parent is gone. File descriptor 1 is redirected to stderr (which the parent
discards) so that whatever a C library prints cannot corrupt the replies.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from typing import BinaryIO

from cairn.errors import CairnError, LimitExceeded
from cairn.ingest.isolation import FRAME, encode_document, encode_error, encode_frame
from cairn.ingest.limits import MB, ParseLimits
from cairn.ingest.parse import parse_bytes

_LIBRARIES = ("pypdfium2", "docx", "selectolax.lexbor", "lxml.etree")
_FORMATS = ("pdf", "docx", "html", "markdown", "text")


def main(argv: list[str]) -> int:
    limits = ParseLimits(**json.loads(argv[1]))
    replies = os.fdopen(os.dup(1), "wb")
    requests = os.fdopen(os.dup(0), "rb")
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    try:
        _preload()
        _limit_memory(limits)
    except Exception as exc:  # pragma: no cover - a broken installation
        _send(replies, encode_frame({"ready": False, "message": f"{type(exc).__name__}: {exc}"}))
        return 1
    _send(replies, encode_frame({"ready": True, "pid": os.getpid()}))
    while True:
        request = _receive(requests)
        if request is None:
            return 0
        filename, data = request
        _limit_cpu(limits)
        retire = False
        try:
            document = parse_bytes(data, filename, limits=limits)
        except CairnError as exc:
            error = exc
            if isinstance(exc, LimitExceeded) and isinstance(exc.__cause__, MemoryError):
                error = LimitExceeded(
                    f"{filename}: parsing needs more than the {limits.memory_mb:,} MB memory limit",
                    hint="raise parse_memory_mb in the settings if the file is legitimate",
                )
                retire = True  # the heap may be fragmented or half-freed: start the next file afresh
            reply = encode_error(error, retire=retire)
        else:
            try:
                reply = encode_document(document)
            except MemoryError:
                reply = encode_error(LimitExceeded(f"{filename}: the parsed text is too large to send"), retire=True)
        _send(replies, reply)
        if retire:
            return 0


def _preload() -> None:
    """Import everything a parse may need while imports can still allocate and write bytecode freely."""
    import importlib

    from cairn.ingest.base import LOADERS

    for module in _LIBRARIES:
        importlib.import_module(module)
    for fmt in _FORMATS:
        LOADERS.create(fmt)


def _limit_memory(limits: ParseLimits) -> None:
    size = limits.memory_mb * MB
    resource.setrlimit(resource.RLIMIT_AS, (size, size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGXCPU and aborts would otherwise dump core


def _limit_cpu(limits: ParseLimits) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime + limits.timeout_s) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _receive(stream: BinaryIO) -> tuple[str, bytes] | None:
    head = stream.read(FRAME.size)
    if len(head) < FRAME.size:
        return None
    header_size, body_size = FRAME.unpack(head)
    header = json.loads(stream.read(header_size))
    data = stream.read(body_size)
    if len(data) < body_size:
        return None
    return str(header["filename"]), data


def _send(stream: BinaryIO, frame: bytes) -> None:
    stream.write(frame)
    stream.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
