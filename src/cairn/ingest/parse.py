"""Bytes in, ParsedDocument out: sniff the format, run its loader, keep every warning.

This is the one place that meets third-party parsers, so it is also where their exceptions stop:
whatever a library raises becomes a :class:`CorruptDocument` naming the file, and callers only
ever see cairn's exception tree. It is also where the result is made safe to store: PostgreSQL
text holds neither NUL nor lone surrogates, and one such character in one document would fail the
whole batch it is written with.

:func:`parse_bytes` parses in the calling process, under the cheap limits only (see
:mod:`cairn.ingest.limits`); :func:`create_parser` returns what ingestion uses, which by default
parses in worker processes that also enforce time and memory (:mod:`cairn.ingest.isolation`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cairn.errors import CairnError, ConfigError, CorruptDocument, InputError, LimitExceeded
from cairn.ingest.base import LOADERS
from cairn.ingest.limits import DEFAULT_LIMITS, ParseLimits, using_limits
from cairn.ingest.sniff import sniff
from cairn.types import Heading, ParsedDocument

if TYPE_CHECKING:
    from cairn.settings import Settings

log = logging.getLogger(__name__)
_MAX_REASON = 200
# Characters PostgreSQL text cannot hold; each is replaced by one character so no offset moves.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class Parser(Protocol):
    """Turns a file's bytes into a document; raises only :class:`CairnError` (a bad file is never a crash)."""

    limits: ParseLimits

    def warm_up(self) -> None:
        """Be ready to parse (start a worker), so the first file does not pay for it."""
        ...

    def parse(self, data: bytes, filename: str) -> ParsedDocument: ...

    def close(self) -> None: ...


class InProcessParser:
    """Parses in the calling thread: the cheap limits hold, time and memory do not (see ``parse_isolation``)."""

    def __init__(self, limits: ParseLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits

    def warm_up(self) -> None:
        return None

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        return parse_bytes(data, filename, limits=self.limits)

    def close(self) -> None:
        return None


def create_parser(settings: Settings) -> Parser:
    """The parser the settings ask for: isolated worker processes (the default) or in-process."""
    limits = ParseLimits.from_settings(settings)
    if settings.parse_isolation == "off":
        return InProcessParser(limits)
    if settings.parse_isolation == "process":
        from cairn.ingest.isolation import ProcessParser

        return ProcessParser(limits, workers=settings.parse_workers)
    raise ConfigError(f"unknown parse_isolation {settings.parse_isolation!r}", hint="process or off")


def parse_file(path: Path, *, max_bytes: int, limits: ParseLimits = DEFAULT_LIMITS) -> ParsedDocument:
    """Parse a file, refusing it before reading when it is larger than ``max_bytes``."""
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"{path.name}: cannot read ({exc.strerror or exc})") from exc
    if len(data) > max_bytes:
        raise InputError(
            f"{path.name}: larger than the {max_bytes:,}-byte limit",
            hint="raise max_file_mb in the settings to index it",
        )
    return parse_bytes(data, path.name, limits=limits)


def parse_bytes(data: bytes, filename: str, *, limits: ParseLimits = DEFAULT_LIMITS) -> ParsedDocument:
    """Parse in-memory content; ``filename`` only names the file in messages and breaks ties."""
    try:
        with using_limits(limits):
            fmt, warnings = sniff(data, filename)
            document = LOADERS.create(fmt).load(data, filename=filename)
    except CairnError:
        raise
    except MemoryError as exc:
        raise LimitExceeded(f"{filename}: parsing ran out of memory") from exc
    except RecursionError as exc:
        raise CorruptDocument(f"{filename}: structure nested too deeply to parse") from exc
    except Exception as exc:
        log.debug("parser failed on %s", filename, exc_info=True)
        reason = f"{type(exc).__name__}: {exc}"[:_MAX_REASON]
        raise CorruptDocument(f"{filename}: {reason}") from exc
    if warnings:
        document = replace(document, warnings=(*warnings, *document.warnings))
    return storable(document)


def storable(document: ParsedDocument) -> ParsedDocument:
    """The document with NULs and lone surrogates replaced (offsets unchanged), ready for PostgreSQL."""
    fields = (document.text, document.title, *document.warnings, *(h.title for h in document.headings))
    if not any(_UNSTORABLE.search(value) for value in fields):
        return document
    return replace(
        document,
        text=_clean(document.text),
        title=_clean(document.title),
        warnings=tuple(_clean(w) for w in document.warnings),
        headings=tuple(Heading(h.level, _clean(h.title), h.start) for h in document.headings),
    )


def _clean(value: str) -> str:
    return _UNSTORABLE.sub("\ufffd", value)


__all__ = ["InProcessParser", "Parser", "create_parser", "parse_bytes", "parse_file", "storable"]
