"""Small helpers every loader needs, kept in one place so titles look alike across formats."""

from __future__ import annotations

import re
from pathlib import PurePath

MAX_TITLE = 120
_FIRST_LINE = re.compile(r"\S[^\n]*")


def first_line(text: str) -> str:
    """The first non-blank line, whitespace collapsed, cut to :data:`MAX_TITLE` characters."""
    found = _FIRST_LINE.search(text)
    return " ".join(found.group().split())[:MAX_TITLE] if found else ""


def title_from(*candidates: str | None, text: str = "", filename: str = "") -> str:
    """The first usable candidate, else the body's first line, else the file's stem.

    A document always gets some title, because answers show it next to every citation.
    """
    for candidate in candidates:
        if candidate:
            cleaned = " ".join(candidate.split())
            if cleaned:
                return cleaned[:MAX_TITLE]
    return first_line(text) or PurePath(filename).stem
