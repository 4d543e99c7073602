"""How much a single file may cost to parse, so that no file can hang or exhaust the process reading it.

Files come from anyone who can write to an ingested folder or upload to the server; PDF, DOCX and
HTML parsers are large C libraries that can be driven to inflate gigabytes, loop for minutes or
crash. Every parse runs under one :class:`ParseLimits`: the cheap limits (decompressed size, page
count, nesting depth) are checked by the loaders themselves, wherever they run; time and memory
can only be enforced on a separate process (:mod:`cairn.ingest.isolation`).

Loaders read the limits of the parse in progress with :func:`current_limits` rather than taking
them as an argument, so the :class:`~cairn.ingest.base.Loader` contract (and every third-party
loader written against it) stays ``load(data, filename=...)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cairn.settings import Settings

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Per-file parsing budget; the defaults are those of the ``parse_*`` settings."""

    timeout_s: float = 120.0  # wall-clock time of one parse (isolated parsing only)
    memory_mb: int = 2048  # address space of a parser process (isolated parsing only)
    max_unpacked_mb: float = 200.0  # what a DOCX's zip entries, or one of a PDF's compressed streams, inflate to
    max_pages: int = 10_000  # pages of a PDF
    max_depth: int = 512  # HTML element nesting kept; deeper tags are dropped, their text kept
    max_zip_entries: int = 10_000  # entries of a DOCX archive

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value <= 0:
                raise ValueError(f"parse limit {name} must be positive, not {value!r}")

    @property
    def max_unpacked_bytes(self) -> int:
        return int(self.max_unpacked_mb * MB)

    @classmethod
    def from_settings(cls, settings: Settings) -> ParseLimits:
        return cls(
            timeout_s=settings.parse_timeout_s,
            memory_mb=settings.parse_memory_mb,
            max_unpacked_mb=settings.parse_max_unpacked_mb,
            max_pages=settings.parse_max_pages,
            max_depth=settings.parse_max_depth,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_LIMITS = ParseLimits()
_current: ContextVar[ParseLimits] = ContextVar("cairn_parse_limits", default=DEFAULT_LIMITS)


def current_limits() -> ParseLimits:
    """The limits of the parse running in this context (the defaults outside one)."""
    return _current.get()


@contextmanager
def using_limits(limits: ParseLimits) -> Iterator[ParseLimits]:
    token = _current.set(limits)
    try:
        yield limits
    finally:
        _current.reset(token)


__all__ = ["DEFAULT_LIMITS", "MB", "ParseLimits", "current_limits", "using_limits"]
