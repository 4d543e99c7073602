"""Bytes in, ParsedDocument out: sniff the format, run its loader, keep every warning.

This is the one place that meets third-party parsers, so it is also where their exceptions stop:
whatever a library raises becomes a :class:`CorruptDocument` naming the file, and callers only
ever see cairn's exception tree.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from cairn.errors import CairnError, CorruptDocument, InputError
from cairn.ingest.base import LOADERS
from cairn.ingest.sniff import sniff
from cairn.types import ParsedDocument

log = logging.getLogger(__name__)
_MAX_REASON = 200


def parse_file(path: Path, *, max_bytes: int) -> ParsedDocument:
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
    return parse_bytes(data, path.name)


def parse_bytes(data: bytes, filename: str) -> ParsedDocument:
    """Parse in-memory content; ``filename`` only names the file in messages and breaks ties."""
    try:
        fmt, warnings = sniff(data, filename)
        document = LOADERS.create(fmt).load(data, filename=filename)
    except CairnError:
        raise
    except Exception as exc:
        log.debug("parser failed on %s", filename, exc_info=True)
        reason = f"{type(exc).__name__}: {exc}"[:_MAX_REASON]
        raise CorruptDocument(f"{filename}: {reason}") from exc
    if warnings:
        document = replace(document, warnings=(*warnings, *document.warnings))
    return document


__all__ = ["parse_bytes", "parse_file"]
