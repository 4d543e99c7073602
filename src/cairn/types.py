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
    flags: tuple[str, ...] = ()  # guard findings, e.g. "injection"


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
    flags: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "chunk_id": self.chunk_id,
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
            "chunk_id": self.chunk_id,
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
    grounding: dict[str, Any] | None = None  # the grounding check's verdict, when one ran
    guards: tuple[dict[str, Any], ...] = ()  # guard verdicts that flagged something
    tokens: dict[str, int] = field(default_factory=dict)  # {"prompt": n, "completion": n} when an LLM ran
    audit_id: int | None = None  # the audit record of this interaction (feedback refers to it)
    trace: dict[str, Any] = field(default_factory=dict)  # what retrieval stages did: sub-questions, rewrites, kbs
    route: dict[str, Any] | None = None  # the model route: tier, complexity, sensitivity, attempts, cost
    variant: str | None = None  # "experiment:variant" when the caller is in an A/B experiment

    def to_json(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "refused": self.refused,
            "citations": [c.to_json() for c in self.citations],
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
            "grounding": self.grounding,
            "guards": list(self.guards),
            "audit_id": self.audit_id,
            **({"retrieval": self.trace} if self.trace else {}),
            **({"route": self.route} if self.route else {}),
            **({"variant": self.variant} if self.variant else {}),
        }


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: every read of the index is filtered by what this principal may see.

    ``user_id`` is set for a stored user (its groups and admin flag are resolved from the database
    per request, so a revoked membership applies at once); the system principal is the local
    operator and the ingestion paths. Readers of a document are named by tokens ``user:NAME`` and
    ``group:NAME``; every stored user is in the implicit group ``everyone``.
    """

    name: str
    user_id: int | None = None
    groups: tuple[str, ...] = ()
    is_admin: bool = False
    is_system: bool = False

    @property
    def unrestricted(self) -> bool:
        return self.is_system or self.is_admin

    @property
    def tokens(self) -> tuple[str, ...]:
        if self.user_id is None:
            return ()
        return (f"user:{self.name}", "group:everyone", *(f"group:{g}" for g in self.groups))


SYSTEM = Principal("system", is_system=True, is_admin=True)


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str
    content: str


__all__ = [
    "SYSTEM",
    "Answer",
    "ChatMessage",
    "ChunkDraft",
    "Citation",
    "Heading",
    "Hit",
    "PageSpan",
    "ParsedDocument",
    "Principal",
]
