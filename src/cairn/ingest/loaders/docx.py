"""DOCX: body paragraphs and tables in reading order, with Title/Heading N styles as headings.

A .docx is a zip, and zip entries can expand a thousandfold, so the declared sizes in the central
directory are checked before python-docx inflates anything. Python's zipfile never yields more
bytes than an entry declares, which makes that check a real bound.
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import TYPE_CHECKING

from cairn.errors import CorruptDocument
from cairn.ingest.base import LOADERS
from cairn.ingest.loaders._common import title_from
from cairn.ingest.sniff import normalize_text
from cairn.types import Heading, ParsedDocument

if TYPE_CHECKING:
    from docx.styles.style import BaseStyle
    from docx.table import Table

MAX_UNCOMPRESSED = 200 * 1024 * 1024
MAX_ENTRIES = 10_000
MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_HEADING_STYLE = re.compile(r"heading\s*(\d)$", re.IGNORECASE)
_STYLE_DEPTH = 8


class DocxLoader:
    name = "docx"

    def load(self, data: bytes, *, filename: str) -> ParsedDocument:
        check_zip(data, filename)
        import docx
        from docx.table import Table

        try:
            document = docx.Document(io.BytesIO(data))
        except (zipfile.BadZipFile, KeyError, ValueError) as exc:
            raise CorruptDocument(f"{filename}: not a readable Word document ({exc})") from exc
        blocks: list[str] = []
        headings: list[Heading] = []
        offset = 0
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                block = _table_text(item)
                level = None
            else:
                block = normalize_text(item.text).strip()
                level = _heading_level(item.style)
            if not block:
                continue
            if blocks:
                offset += 2
            if level is not None:
                headings.append(Heading(level, " ".join(block.split()), offset))
            blocks.append(block)
            offset += len(block)
        text = "\n\n".join(blocks)
        first_heading = headings[0].title if headings else None
        return ParsedDocument(
            text=text,
            title=title_from(document.core_properties.title, first_heading, text=text, filename=filename),
            mime=MIME,
            headings=tuple(headings),
        )


def check_zip(data: bytes, filename: str) -> None:
    """Refuse archives that are broken or would inflate past :data:`MAX_UNCOMPRESSED`."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CorruptDocument(f"{filename}: damaged Word document (bad zip: {exc})") from exc
    if len(entries) > MAX_ENTRIES:
        raise CorruptDocument(f"{filename}: Word document with {len(entries)} zip entries refused")
    total = sum(entry.file_size for entry in entries)
    if total > MAX_UNCOMPRESSED:
        raise CorruptDocument(
            f"{filename}: Word document would expand to {total // (1024 * 1024)} MB "
            f"(limit {MAX_UNCOMPRESSED // (1024 * 1024)} MB); refused as a possible zip bomb"
        )


def _heading_level(style: BaseStyle | None) -> int | None:
    """Level from the style or the style it is based on, so custom heading styles still count."""
    for _ in range(_STYLE_DEPTH):
        if style is None:
            return None
        name = (style.name or "").strip()
        if name.lower() == "title":
            return 1
        found = _HEADING_STYLE.match(name)
        if found and found.group(1) != "0":
            return int(found.group(1))
        style = getattr(style, "base_style", None)
    return None


def _table_text(table: Table) -> str:
    """One line per row, cells joined by `` | ``; a merged cell is written once, not per grid column."""
    lines = []
    for row in table.rows:
        cells = []
        previous = None
        for cell in row.cells:
            if previous is not None and cell._tc is previous:
                continue
            previous = cell._tc
            cells.append(" ".join(normalize_text(cell.text).split()))
        if any(cells):
            lines.append(" | ".join(cells))
    return "\n".join(lines)


@LOADERS.register("docx")
def _create(location: str) -> DocxLoader:
    return DocxLoader()
