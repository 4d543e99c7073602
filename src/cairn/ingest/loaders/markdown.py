"""Markdown: the body is the source as written; only the heading structure is recovered.

Keeping the syntax means a citation highlights exactly what the author wrote, and the chunker can
still cut at sections because every heading's offset points at its ``#`` (or setext text).
"""

from __future__ import annotations

import re

from cairn.ingest.base import LOADERS
from cairn.ingest.loaders._common import title_from
from cairn.ingest.sniff import decode_text
from cairn.types import Heading, ParsedDocument

# Only the opening is a regex; the title and its closing ``#``s are cut in code, because a lazy
# ``(.*?)`` followed by optional trailing groups backtracks quadratically on a long line of spaces.
_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]|$)")
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)$")
_NOT_PARAGRAPH = re.compile(r" {0,3}(?:[-*+][ \t]|\d{1,9}[.)][ \t]|>|\|)")
_FRONT_MATTER_END = re.compile(r"^(?:---|\.\.\.)[ \t]*$", re.M)
_FRONT_TITLE = re.compile(r"^title:(.*)$", re.M)


class MarkdownLoader:
    name = "markdown"

    def load(self, data: bytes, *, filename: str) -> ParsedDocument:
        text, warnings = decode_text(data)
        body_start, meta_title = _front_matter(text)
        headings = find_headings(text, body_start)
        first_h1 = next((h.title for h in headings if h.level == 1), None)
        first_any = headings[0].title if headings else None
        return ParsedDocument(
            text=text,
            title=title_from(meta_title, first_h1, first_any, text=text[body_start:], filename=filename),
            mime="text/markdown",
            headings=tuple(headings),
            warnings=tuple(f"{filename}: {w}" for w in warnings),
        )


def find_headings(text: str, start: int = 0) -> list[Heading]:
    """ATX and setext headings outside fenced code, in document order.

    One pass over the lines with a little state (open fence, current paragraph), so hostile input
    costs linear time.
    """
    headings: list[Heading] = []
    fence: str | None = None
    para_start: int | None = None
    para_lines: list[str] = []
    offset = start
    for line in text[start:].split("\n"):
        line_start, offset = offset, offset + len(line) + 1
        if fence is not None:
            if _closes(line, fence):
                fence = None
            continue
        opening = _FENCE.match(line)
        if opening and not (opening.group(1)[0] == "`" and "`" in opening.group(2)):
            fence, para_start, para_lines = opening.group(1), None, []
            continue
        atx = _ATX.match(line)
        if atx:
            title = _atx_title(line[atx.end(1) :])
            if title:
                headings.append(Heading(len(atx.group(1)), title, line_start + line.index("#")))
            para_start, para_lines = None, []
            continue
        underline = _SETEXT.match(line)
        if underline and para_start is not None and not _NOT_PARAGRAPH.match(para_lines[0]):
            level = 1 if underline.group(1)[0] == "=" else 2
            headings.append(Heading(level, " ".join(" ".join(para_lines).split()), para_start))
            para_start, para_lines = None, []
            continue
        if not line.strip():
            para_start, para_lines = None, []
        elif para_start is None:
            para_start, para_lines = line_start + len(line) - len(line.lstrip()), [line]
        else:
            para_lines.append(line)
    return headings


def _atx_title(rest: str) -> str:
    """The text of an ATX heading after its opening ``#``s, without the optional closing sequence."""
    rest = rest.strip(" \t")
    body = rest.rstrip("#")
    if not body:
        return ""
    if body != rest and body[-1] not in " \t":
        return rest.strip()  # ``# C#``: a ``#`` glued to a word is part of the title
    return body.strip()


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return (
        len(line) - len(line.lstrip(" ")) <= 3 and len(stripped) >= len(fence) and stripped == fence[0] * len(stripped)
    )


def _front_matter(text: str) -> tuple[int, str | None]:
    """Skip a leading YAML block, whose closing ``---`` would otherwise read as a setext underline."""
    if not text.startswith("---\n"):
        return 0, None
    end = _FRONT_MATTER_END.search(text, 4)
    if end is None:
        return 0, None
    title = _FRONT_TITLE.search(text, 4, end.start())
    value = title.group(1).strip().strip("'\"") if title else None
    return min(end.end() + 1, len(text)), value


@LOADERS.register("markdown")
def _create(location: str) -> MarkdownLoader:
    return MarkdownLoader()
