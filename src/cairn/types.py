"""Core records that flow between the stages: ingest -> index -> retrieve -> answer.

They are plain frozen dataclasses (no ORM): each stage can be tested with hand-built values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class PageSpan:
    """A page of the document body: ``body[start:end]`` is page ``number`` (1-based)."""

    number: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Heading:
    """A heading found by a loader: level 1 is the top; ``start`` is its offset in the body."""

    level: int
    title: str
    start: int


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """What a loader returns: the plain-text body plus the structure it could recover.

    Offsets everywhere in cairn (chunks, citations) index into ``text``, which is stored as is,
    so a citation can always be shown and highlighted exactly.
    """

    text: str
    title: str
    mime: str
    pages: tuple[PageSpan, ...] = ()
    headings: tuple[Heading, ...] = ()
    warnings: tuple[str, ...] = ()

    def page_at(self, offset: int) -> int | None:
        for page in self.pages:
            if page.start <= offset < page.end or (offset == page.end == len(self.text)):
                return page.number
        return None


@dataclass(frozen=True, slots=True)
class ChunkDraft:
    """A chunk before it has an id: ``text == body[start:end]`` always holds."""

    ordinal: int
    text: str
    start: int
    end: int
    page: int | None = None
    heading_path: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Hit:
    """A retrieved passage with its provenance and the score of the stage that produced it."""

    chunk_id: int
    document_id: int
    source: str
    text: str
    start: int
    end: int
    score: float
    page: int | None = None
    title: str = ""
    kb: str = "default"
    heading_path: tuple[str, ...] = ()
    scores: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "page": self.page,
            "start": self.start,
            "end": self.end,
            "score": round(float(self.score), 6),
            "text": self.text,
        }


@dataclass(frozen=True, slots=True)
class Citation:
    """A numbered reference shown in an answer; ``id`` is the [n] marker used in the text."""

    id: int
    source: str
    page: int | None
    start: int
    end: int
    text: str
    chunk_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "page": self.page,
            "start": self.start,
            "end": self.end,
            "text": self.text,
        }


@dataclass(frozen=True, slots=True)
class Answer:
    answer: str
    refused: bool
    citations: tuple[Citation, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)
    searched: tuple[Hit, ...] = ()
    query: str = ""
    model: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "refused": self.refused,
            "citations": [c.to_json() for c in self.citations],
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
        }


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str
    content: str


__all__ = ["Answer", "ChatMessage", "ChunkDraft", "Citation", "Heading", "Hit", "PageSpan", "ParsedDocument"]
