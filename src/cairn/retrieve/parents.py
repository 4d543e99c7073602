"""Small-to-big: rank small chunks, hand the generator their parent section.

The parent of a hit is the run of chunks of its document around it that share its heading path
(one section: chunking never lets a chunk cross a heading), grown one chunk at a time, before and
after in turn, while the span stays within ``max_chars``. The first chunk of a section that follows
bare headings ("# Guide\n\n## Travel\n\nFlights...") starts at those headings and so carries the
outer path; it counts as part of the section whose heading it shows on a line of its own. It is returned as one
:class:`~cairn.types.Hit` whose text is exactly ``documents.body[start:end]``::

    section "Travel"      chunk 4 | chunk 5 (hit) | chunk 6 | chunk 7
    max_chars ~ 3 chunks          <------ parent: body[c4.start:c6.end] ------>

Parents are de-duplicated: a hit whose chunk is already inside a better-ranked hit's parent adds
nothing but its score (the parent keeps the better score, at the better rank), and a parent never
grows into another's chunks; where consecutive chunks overlap (chunking repeats up to
``chunk_overlap`` characters), the worse-ranked parent is cut where the better one ends (or
begins), so no text is sent twice. A parent keeps its hit's chunk id, page and scores (plus ``scores["parent_chunks"]``
and ``scores["children"]``) and carries the guard flags of every chunk it holds.

Access: both statements run on the caller's connection (row-level security applies) and carry
the caller's ACL clause on every table read; a hit whose chunk or document the caller cannot read,
or whose document changed version since (or between the two statements), yields no parent at all.
Run it in the snapshot the hits came from (as the retriever does) and that never happens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg

from cairn.errors import ConfigError
from cairn.index.access import Access
from cairn.types import Hit

DEFAULT_MAX_CHARS = 2400

# The chunks around each hit that could fit in a parent with it (ends within max_chars of it), of
# its document, whose heading path equals the hit's or one is a prefix of the other; the hit's own
# row is among them. Sections are worked out from these rows (see _section_run).
_SECTION_SQL = """
SELECT h.id, c.id, c.ordinal, c.start_char, c.end_char, c.flags, c.heading_path, c.text, d.version
  FROM chunks h
  JOIN chunks c ON c.document_id = h.document_id
       AND (c.heading_path = h.heading_path
            OR c.heading_path = h.heading_path[1:cardinality(c.heading_path)]
            OR h.heading_path = c.heading_path[1:cardinality(h.heading_path)])
  JOIN documents d ON d.id = h.document_id
 WHERE h.id = ANY(%(ids)s)
   AND c.end_char > h.start_char - %(max_chars)s
   AND c.start_char < h.end_char + %(max_chars)s{acl}
 ORDER BY h.id, c.ordinal
"""

_BODY_SQL = """
SELECT s.i, substr(d.body, s.lo + 1, s.hi - s.lo)
  FROM unnest(%(docs)s::bigint[], %(versions)s::int[], %(los)s::int[], %(his)s::int[])
       WITH ORDINALITY AS s(doc, version, lo, hi, i)
  JOIN documents d ON d.id = s.doc AND d.version = s.version
 WHERE TRUE{acl}
"""


@dataclass(frozen=True, slots=True)
class _Chunk:
    id: int
    ordinal: int
    start: int
    end: int
    flags: tuple[str, ...]


@dataclass(slots=True)
class _Parent:
    hit: Hit
    version: int
    chunks: list[_Chunk]  # consecutive ordinals, one section
    start: int
    end: int
    score: float
    children: int = 1
    flags: set[str] = field(default_factory=set)

    @property
    def ordinals(self) -> range:
        return range(self.chunks[0].ordinal, self.chunks[-1].ordinal + 1)


def parent_hits(
    conn: psycopg.Connection,
    hits: Sequence[Hit],
    *,
    access: Access,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> list[Hit]:
    """The parent section of each hit, de-duplicated, in the order of each parent's best hit.

    ``conn`` is the caller's connection (``db.connection(principal)``) and ``access`` its
    :func:`~cairn.index.access.access_for`. A chunk longer than ``max_chars`` is its own parent.
    """
    if max_chars < 1:
        raise ConfigError(f"max_chars must be positive, got {max_chars}")
    if not hits:
        return []
    sections = _sections(conn, [h.chunk_id for h in hits], access, max_chars)
    parents: list[_Parent] = []
    by_document: dict[int, list[_Parent]] = {}
    for hit in hits:
        found = sections.get(hit.chunk_id)
        if found is None:
            continue  # not readable by the caller, or no longer indexed
        version, run, seed = found
        siblings = by_document.setdefault(hit.document_id, [])
        holder = next((p for p in siblings if run[seed].ordinal in p.ordinals), None)
        if holder is not None:
            holder.children += 1
            holder.score = max(holder.score, hit.score)
            continue
        taken = {o for p in siblings for o in p.ordinals}
        chosen = _grow(run, seed, taken, max_chars)
        start, end = chosen[0].start, chosen[-1].end
        for other in siblings:  # consecutive chunks overlap: never send the shared text twice
            if other.chunks[-1].ordinal < chosen[0].ordinal:
                start = max(start, other.end)
            elif other.chunks[0].ordinal > chosen[-1].ordinal:
                end = min(end, other.start)
        flags = {f for c in chosen for f in c.flags} | set(hit.flags)
        parent = _Parent(hit, version, chosen, start, end, hit.score, flags=flags)
        parents.append(parent)
        siblings.append(parent)
    texts = _bodies(conn, parents, access)
    out = []
    for i, parent in enumerate(parents):
        text = texts.get(i)
        if text is None:
            continue
        lead = len(text) - len(text.lstrip())
        text = text.strip()
        if not text:
            continue
        start = parent.start + lead
        out.append(
            replace(
                parent.hit,
                text=text,
                start=start,
                end=start + len(text),
                score=parent.score,
                scores={
                    **parent.hit.scores,
                    "parent_chunks": float(len(parent.chunks)),
                    "children": float(parent.children),
                },
                flags=tuple(sorted(parent.flags)),
            )
        )
    return out


def _sections(
    conn: psycopg.Connection, chunk_ids: list[int], access: Access, max_chars: int
) -> dict[int, tuple[int, list[_Chunk], int]]:
    """For each readable hit chunk: its document version, its section's nearby chunks, its index there."""
    acl_h, params = access.clause("h.acl_id")
    acl_c, _ = access.clause("c.acl_id")
    acl_d, _ = access.clause("d.acl_id")
    rows = conn.execute(
        _SECTION_SQL.replace("{acl}", acl_h + acl_c + acl_d),
        params | {"ids": sorted(set(chunk_ids)), "max_chars": max_chars},
    ).fetchall()
    grouped: dict[int, tuple[int, list[tuple[_Chunk, tuple[str, ...], str]]]] = {}
    for hit_id, cid, ordinal, start, end, flags, path, text, version in rows:
        entry = grouped.setdefault(int(hit_id), (int(version), []))
        chunk = _Chunk(int(cid), int(ordinal), int(start), int(end), tuple(flags or ()))
        entry[1].append((chunk, tuple(path or ()), str(text)))
    out: dict[int, tuple[int, list[_Chunk], int]] = {}
    for hit_id, (version, items) in grouped.items():
        found = _section_run(items, hit_id)
        if found is not None:
            out[hit_id] = (version, *found)
    return out


def _section_run(items: list[tuple[_Chunk, tuple[str, ...], str]], hit_id: int) -> tuple[list[_Chunk], int] | None:
    """The consecutive chunks of the hit's section (by ordinal) and the hit's index among them.

    A chunk's section is its heading path, except that the first chunk of a section which follows
    bare headings starts at those headings and so carries an outer path ("# Guide" for a chunk that
    opens with "# Guide\n## Travel"): a chunk whose next chunk's path extends its own, and which
    shows that next path's last heading on a line of its own, belongs to the next chunk's section.
    """
    by_ordinal = {chunk.ordinal: (chunk, path, text) for chunk, path, text in items}

    def section(ordinal: int) -> tuple[str, ...]:
        _, path, text = by_ordinal[ordinal]
        following = by_ordinal.get(ordinal + 1)
        if following is not None:
            deeper = following[1]
            if len(deeper) > len(path) and deeper[: len(path)] == path and _has_heading_line(text, deeper[-1]):
                return deeper
        return path

    seed = next((chunk.ordinal for chunk, _, _ in items if chunk.id == hit_id), None)
    if seed is None:
        return None
    own = section(seed)
    lo = hi = seed
    while lo - 1 in by_ordinal and section(lo - 1) == own:
        lo -= 1
    while hi + 1 in by_ordinal and section(hi + 1) == own:
        hi += 1
    return [by_ordinal[o][0] for o in range(lo, hi + 1)], seed - lo


def _has_heading_line(text: str, title: str) -> bool:
    """Whether ``title`` stands on a line of its own in ``text`` (markup such as ``##`` or ``**`` aside)."""
    marks = r"[ \t#>*_=\-]*"
    return re.search(rf"(?m)^{marks}{re.escape(title.strip())}{marks}:?[ \t]*$", text) is not None


def _grow(run: list[_Chunk], seed: int, taken: set[int], max_chars: int) -> list[_Chunk]:
    """Chunks around ``run[seed]``, added before and after in turn while the span fits ``max_chars``."""
    lo = hi = seed
    before_first = True
    while True:
        sides = (-1, 1) if before_first else (1, -1)
        for side in sides:
            nxt = lo - 1 if side < 0 else hi + 1
            if not 0 <= nxt < len(run) or run[nxt].ordinal in taken:
                continue
            new_lo, new_hi = min(lo, nxt), max(hi, nxt)
            if run[new_hi].end - run[new_lo].start <= max_chars:
                lo, hi = new_lo, new_hi
                before_first = side > 0
                break
        else:
            return run[lo : hi + 1]


def _bodies(conn: psycopg.Connection, parents: list[_Parent], access: Access) -> dict[int, str]:
    if not parents:
        return {}
    acl, params = access.clause("d.acl_id")
    values: dict[str, Any] = {
        "docs": [p.hit.document_id for p in parents],
        "versions": [p.version for p in parents],
        "los": [p.start for p in parents],
        "his": [p.end for p in parents],
    }
    rows = conn.execute(_BODY_SQL.replace("{acl}", acl), params | values).fetchall()
    return {int(i) - 1: str(text) for i, text in rows}


__all__ = ["DEFAULT_MAX_CHARS", "parent_hits"]
