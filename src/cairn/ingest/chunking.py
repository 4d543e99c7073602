"""Cut a parsed document into passages that retrieval can rank and answers can cite.

A chunk never spans two pages (a citation names one page) nor two sections (its heading path
must describe all of it); a section that is only its heading line is joined to the section after
it instead of becoming a chunk of its own. Inside a section, text is cut at the coarsest boundary
that yields pieces of at most ``chunk_size`` characters: paragraphs, then lines, then sentence
ends, then words, and a hard cut only for a run of characters longer than a chunk. Pieces are then
packed greedily back up to the size. Every step scans its span once with a compiled pattern, so
the cost is linear in the text (times the five levels), whatever the input looks like.

Consecutive chunks of one section share up to ``overlap`` characters, starting at a sentence or
word, so a fact cut in two is still whole in one of them. To leave room for that, a section longer
than one chunk is packed into pieces of at most ``chunk_size - overlap`` characters; a section that
fits whole stays a single chunk.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterator
from itertools import pairwise

from cairn.errors import ConfigError
from cairn.types import ChunkDraft, Heading, ParsedDocument

Span = tuple[int, int]

# Each separator starts on a definite character (newline, punctuation, space) and swallows the
# whitespace after it, never before it: a leading ``\s*`` would rescan long blank runs from every
# position and turn linear scans quadratic.
_LEVELS = (
    re.compile(r"(\n[^\S\n]*\n\s*)"),
    re.compile(r"(\n\s*)"),
    re.compile(r"[.!?…][\"'”’)\]]*(\s+)"),
    re.compile(r"(\s+)"),
)
_NON_SPACE = re.compile(r"\S")
_SENTENCE_GAP = re.compile(r"[.!?…][\"'”’)\]]*\s+|\n\s*")
_WORD_GAP = re.compile(r"\s+")
# A gap ending inside the overlap window may begin a little before it (its punctuation, quotes).
_GAP_LOOKBEHIND = 4


class RecursiveChunker:
    """The default :class:`~cairn.ingest.base.Chunker`: structure first, size second."""

    def __init__(self, chunk_size: int = 1200, overlap: int = 150) -> None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ConfigError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < chunk_size:
            raise ConfigError(
                f"chunk overlap must be an integer in [0, chunk_size), got {overlap!r} for size {chunk_size}",
                hint="set chunk_overlap below chunk_size",
            )
        self.chunk_size = chunk_size
        self.overlap = overlap

    def chunk(self, document: ParsedDocument) -> list[ChunkDraft]:
        text = document.text
        splitter = _Splitter(text, self.chunk_size, self.chunk_size - self.overlap)
        spans: list[Span] = []
        for start, end in _sections(document):
            spans.extend(self._overlapped(text, splitter.split(start, end)))
        pages = _page_lookup(document)
        paths = _heading_paths(document.headings, [start for start, _ in spans])
        return [
            ChunkDraft(ordinal, text[start:end], start, end, pages(start), path)
            for ordinal, ((start, end), path) in enumerate(zip(spans, paths, strict=True))
        ]

    def _overlapped(self, text: str, spans: list[Span]) -> Iterator[Span]:
        previous = -1
        for index, (start, end) in enumerate(spans):
            room = min(self.overlap, self.chunk_size - (end - start))
            if index and room > 0:
                start = _overlap_start(text, max(start - room, previous + 1), start)
            previous = start
            yield start, end


class _Splitter:
    """Recursive splitting of one section; ``budget`` is the size left after the overlap."""

    def __init__(self, text: str, size: int, budget: int) -> None:
        self.text = text
        self.size = size
        self.budget = budget

    def split(self, start: int, end: int) -> list[Span]:
        found = _NON_SPACE.search(self.text, start, end)
        if found is None:
            return []
        start, end = found.start(), self._rstrip(found.start(), end)
        if end - start <= self.size:
            return [(start, end)]
        return self._split(start, end, 0)

    def _split(self, start: int, end: int, level: int) -> list[Span]:
        """Pack the pieces between this level's separators; ``start:end`` is trimmed and too long."""
        if level == len(_LEVELS):
            return [(cut, min(cut + self.budget, end)) for cut in range(start, end, self.budget)]
        packed: list[Span] = []
        current: Span | None = None
        cursor = start
        gaps = [(gap.start(1), gap.end(1)) for gap in _LEVELS[level].finditer(self.text, start, end)]
        for piece_end, next_start in [*gaps, (end, end)]:
            piece_end = self._rstrip(cursor, piece_end)
            if piece_end - cursor <= self.budget:
                parts = [(cursor, piece_end)] if cursor < piece_end else []
            else:
                parts = self._split(cursor, piece_end, level + 1)
                # A piece that had to be cut further starts a new chunk unless the open one is thin.
                if current is not None and 2 * (current[1] - current[0]) >= self.budget:
                    packed.append(current)
                    current = None
            for part in parts:
                if current is not None and part[1] - current[0] <= self.budget:
                    current = (current[0], part[1])
                else:
                    if current is not None:
                        packed.append(current)
                    current = part
            cursor = next_start
        if current is not None:
            packed.append(current)
        return packed

    def _rstrip(self, start: int, end: int) -> int:
        text = self.text
        while end > start and text[end - 1].isspace():
            end -= 1
        return end


def _overlap_start(text: str, low: int, start: int) -> int:
    """Where the overlap before ``start`` begins: as far back as ``low`` allows, where a reader would start.

    That is the earliest sentence start in the first half of ``[low, start)``, else the earliest
    word start, else ``start`` itself (no overlap).
    """
    half = low + (start - low) // 2
    for pattern, latest in ((_SENTENCE_GAP, half), (_WORD_GAP, start - 1)):
        for gap in pattern.finditer(text, max(low - _GAP_LOOKBEHIND, 0), start):
            if gap.end() > latest:
                break
            if gap.end() >= low:
                return gap.end()
    return start


def _sections(document: ParsedDocument) -> Iterator[Span]:
    """Spans between page boundaries and heading starts, heading-only sections joined to the next."""
    text = document.text
    size = len(text)
    hard = {0, size}
    for page in document.pages:
        hard.update((min(max(page.start, 0), size), min(max(page.end, 0), size)))
    headings = {min(max(heading.start, 0), size) for heading in document.headings}
    cuts = sorted(hard | headings)
    pending: int | None = None
    for start, end in pairwise(cuts):
        if pending is not None and start in hard:
            yield pending, start
            pending = None
        body = text[start:end].strip()
        if not body:
            continue
        first = start if pending is None else pending
        if start in headings and end not in hard and "\n" not in body:
            pending = first
            continue
        pending = None
        yield first, end
    if pending is not None:
        yield pending, size


def _page_lookup(document: ParsedDocument) -> Callable[[int], int | None]:
    pages = document.pages
    ordered = all(page.start <= page.end for page in pages) and all(
        left.end <= right.start for left, right in pairwise(pages)
    )
    if not ordered:
        return document.page_at
    starts = [page.start for page in pages]
    size = len(document.text)

    def page_of(offset: int) -> int | None:
        index = bisect_right(starts, offset) - 1
        if index < 0:
            return None
        page = pages[index]
        if page.start <= offset < page.end or offset == page.end == size:
            return page.number
        return None

    return page_of


def _heading_paths(headings: tuple[Heading, ...], starts: list[int]) -> list[tuple[str, ...]]:
    """Enclosing headings at each (ascending) start, by one sweep over the headings in text order."""
    ordered = sorted(headings, key=lambda heading: heading.start)
    stack: list[Heading] = []
    paths: list[tuple[str, ...]] = []
    index = 0
    for start in starts:
        while index < len(ordered) and ordered[index].start <= start:
            heading = ordered[index]
            while stack and stack[-1].level >= heading.level:
                stack.pop()
            stack.append(heading)
            index += 1
        paths.append(tuple(heading.title for heading in stack))
    return paths


__all__ = ["RecursiveChunker"]
