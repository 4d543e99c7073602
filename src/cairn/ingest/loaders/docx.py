"""DOCX: body paragraphs and tables in reading order, with Title/Heading N styles as headings.

A .docx is a zip, and zip entries can expand a thousandfold, so before python-docx inflates
anything :func:`cairn.ingest.bombs.check_zip` checks both the sizes the zip directory declares and
what the entries really inflate to, against the ``max_unpacked_mb`` limit of the parse.
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import TYPE_CHECKING

from cairn.errors import CorruptDocument
from cairn.ingest.base import LOADERS
from cairn.ingest.bombs import check_zip
from cairn.ingest.limits import current_limits
from cairn.ingest.loaders._common import title_from
from cairn.ingest.sniff import normalize_text
from cairn.types import Heading, ParsedDocument

if TYPE_CHECKING:
    from docx.styles.style import BaseStyle
    from docx.table import Table

MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_HEADING_STYLE = re.compile(r"heading\s*(\d)$", re.IGNORECASE)
_STYLE_DEPTH = 8


class DocxLoader:
    name = "docx"

    def load(self, data: bytes, *, filename: str) -> ParsedDocument:
        limits = current_limits()
        check_zip(data, filename, max_bytes=limits.max_unpacked_bytes, max_entries=limits.max_zip_entries)
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
