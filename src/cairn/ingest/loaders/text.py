"""Plain text: the body is the decoded file, untouched apart from newline normalisation."""

from __future__ import annotations

from cairn.ingest.base import LOADERS
from cairn.ingest.loaders._common import title_from
from cairn.ingest.sniff import decode_text
from cairn.types import ParsedDocument


class TextLoader:
    name = "text"

    def load(self, data: bytes, *, filename: str) -> ParsedDocument:
        text, warnings = decode_text(data)
        return ParsedDocument(
            text=text,
            title=title_from(text=text, filename=filename),
            mime="text/plain",
            warnings=tuple(f"{filename}: {w}" for w in warnings),
        )


@LOADERS.register("text")
def _create(location: str) -> TextLoader:
    return TextLoader()
