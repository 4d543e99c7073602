"""Contracts of the ingest stage: a Loader turns bytes into a ParsedDocument, a Chunker cuts it."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from cairn.registry import Registry
from cairn.types import ChunkDraft, ParsedDocument


@runtime_checkable
class Loader(Protocol):
    """Parses one format. ``name`` is the format key the sniffer returns (``pdf``, ``docx``…)."""

    name: str

    def load(self, data: bytes, *, filename: str) -> ParsedDocument: ...


@runtime_checkable
class Chunker(Protocol):
    def chunk(self, document: ParsedDocument) -> list[ChunkDraft]: ...


LOADERS: Registry[Loader] = Registry("loader")
