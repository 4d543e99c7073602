"""Builders of real PDF and DOCX bytes, so loaders are tested on files made by real writers."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import pytest

PdfFactory = Callable[..., bytes]
DocxFactory = Callable[..., bytes]


@pytest.fixture
def make_pdf() -> PdfFactory:
    """``make_pdf(["page one", "page two"], title=..., sections=[(page_index, level, title)])``."""
    from fpdf import FPDF

    def build(
        pages: Sequence[str],
        *,
        title: str | None = None,
        sections: Sequence[tuple[int, int, str]] = (),
    ) -> bytes:
        pdf = FPDF()
        if title is not None:
            pdf.set_title(title)
        for index, body in enumerate(pages):
            pdf.add_page()
            pdf.set_font("Helvetica", size=11)
            for page_index, level, name in sections:
                if page_index == index:
                    pdf.start_section(name, level=level)
            if body:
                pdf.multi_cell(0, 6, body, new_x="LMARGIN", new_y="NEXT")
        return bytes(pdf.output())

    return build


@pytest.fixture
def make_docx() -> DocxFactory:
    """``make_docx([("title", "T"), ("h1", "A"), ("p", "text"), ("table", [["a", "b"]])], title=...)``."""
    import docx

    def build(blocks: Sequence[tuple[str, object]], *, title: str | None = None) -> bytes:
        document = docx.Document()
        if title is not None:
            document.core_properties.title = title
        for kind, value in blocks:
            if kind == "title":
                document.add_heading(str(value), level=0)
            elif kind.startswith("h"):
                document.add_heading(str(value), level=int(kind[1:]))
            elif kind == "p":
                document.add_paragraph(str(value))
            else:
                assert isinstance(value, list)
                table = document.add_table(rows=len(value), cols=len(value[0]))
                for row, cells in zip(table.rows, value, strict=True):
                    for cell, text in zip(row.cells, cells, strict=True):
                        cell.text = text
        buffer = io.BytesIO()
        document.save(buffer)
        return buffer.getvalue()

    return build
