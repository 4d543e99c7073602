"""PDF: text per page through PDFium, with pages as spans and the outline as headings.

PDFium is a C library holding native memory per document, page and text page, so every object is
closed in ``finally`` blocks rather than left to the garbage collector. It also inflates compressed
streams whole and aborts the process when memory runs out, so the streams are measured first
(:func:`cairn.ingest.bombs.check_pdf_streams`) and the page count is checked before any page loads.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from cairn.errors import CorruptDocument, LimitExceeded
from cairn.ingest.base import LOADERS
from cairn.ingest.bombs import check_pdf_streams
from cairn.ingest.limits import current_limits
from cairn.ingest.loaders._common import title_from
from cairn.ingest.sniff import normalize_text
from cairn.types import Heading, PageSpan, ParsedDocument

if TYPE_CHECKING:
    import pypdfium2

PAGE_SEPARATOR = "\n\n"
NO_TEXT = "no extractable text (scanned? OCR not available)"
# PDFium reports the soft hyphen where a word was broken across lines as U+FFFE; dropping it rejoins
# the word. C0 controls (form feeds and the like) are layout noise that only confuses tokenizers.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_MAX_OUTLINE_DEPTH = 6


class PdfLoader:
    name = "pdf"

    def load(self, data: bytes, *, filename: str) -> ParsedDocument:
        import pypdfium2

        limits = current_limits()
        check_pdf_streams(data, filename, max_bytes=limits.max_unpacked_bytes)
        try:
            pdf = pypdfium2.PdfDocument(data)
        except pypdfium2.PdfiumError as exc:
            reason = "encrypted (password required)" if "password" in str(exc).lower() else "unreadable PDF"
            raise CorruptDocument(f"{filename}: {reason}") from exc
        try:
            if len(pdf) > limits.max_pages:
                raise LimitExceeded(
                    f"{filename}: {len(pdf):,} pages exceed the {limits.max_pages:,}-page limit",
                    hint="raise parse_max_pages in the settings to index it",
                )
            page_texts = [_page_text(pdf, index) for index in range(len(pdf))]
            metadata_title = pdf.get_metadata_value("Title")
            outline = _outline(pdf)
        except pypdfium2.PdfiumError as exc:
            raise CorruptDocument(f"{filename}: damaged PDF ({exc})") from exc
        finally:
            pdf.close()
        text, pages = _join_pages(page_texts)
        warnings = () if text.strip() else (f"{filename}: {NO_TEXT}",)
        return ParsedDocument(
            text=text,
            title=title_from(metadata_title, text=text, filename=filename),
            mime="application/pdf",
            pages=pages,
            headings=_place_headings(outline, text, pages),
            warnings=warnings,
        )


def _page_text(pdf: pypdfium2.PdfDocument, index: int) -> str:
    page = pdf[index]
    try:
        textpage = page.get_textpage()
        try:
            raw = textpage.get_text_range()
        finally:
            textpage.close()
    finally:
        page.close()
    return _CONTROL.sub("", normalize_text(raw)).strip()


def _join_pages(page_texts: list[str]) -> tuple[str, tuple[PageSpan, ...]]:
    pages: list[PageSpan] = []
    offset = 0
    for number, page_text in enumerate(page_texts, start=1):
        if number > 1:
            offset += len(PAGE_SEPARATOR)
        pages.append(PageSpan(number, offset, offset + len(page_text)))
        offset += len(page_text)
    return PAGE_SEPARATOR.join(page_texts), tuple(pages)


def _outline(pdf: pypdfium2.PdfDocument) -> list[tuple[int, str, int]]:
    """Bookmarks as (level, title, page index); depth-capped because outlines can be cyclic."""
    items = []
    for bookmark in pdf.get_toc(max_depth=_MAX_OUTLINE_DEPTH):
        title = " ".join(bookmark.get_title().split())
        dest = bookmark.get_dest()
        page_index = dest.get_index() if dest is not None else None
        if title and page_index is not None:
            items.append((bookmark.level + 1, title, page_index))
    return items


def _place_headings(outline: list[tuple[int, str, int]], text: str, pages: tuple[PageSpan, ...]) -> tuple[Heading, ...]:
    """Anchor each bookmark at its title on its page, or at the page's start when the title is not there."""
    headings = []
    for level, title, page_index in outline:
        if not 0 <= page_index < len(pages):
            continue
        page = pages[page_index]
        pattern = r"\s+".join(re.escape(word) for word in title.split())
        found = re.search(pattern, text[page.start : page.end], re.IGNORECASE)
        start = page.start + found.start() if found else page.start
        headings.append(Heading(level, title, start))
    headings.sort(key=lambda heading: heading.start)
    return tuple(headings)


@LOADERS.register("pdf")
def _create(location: str) -> PdfLoader:
    return PdfLoader()
