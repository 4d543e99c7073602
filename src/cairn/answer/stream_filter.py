"""Streaming-safe citation filtering: a token stream never shows a marker that points nowhere."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

_VALID = re.compile(r"^\[(\d+(?:\s*,\s*\d+)*)\]$")
# Longer bracketed digit runs are no marker the prompt could have produced: dropped like invalid ones,
# as clean_markers does on the final text.
_MAX_MARKER = 16


def filter_markers(pieces: Iterable[str], n_passages: int) -> Iterator[str]:
    """Hold text back from a '[' until its ']' (or until it clearly is not a marker), then pass or drop it."""
    buffer = ""
    for piece in pieces:
        for ch in piece:
            if buffer:
                if ch == "[":
                    yield buffer  # the earlier '[' opened no marker; this one may
                    buffer = ch
                    continue
                buffer += ch
                if ch == "]":
                    yield "" if len(buffer) > _MAX_MARKER else _resolve(buffer, n_passages)
                    buffer = ""
                elif not re.fullmatch(r"\[[\d\s,]*", buffer):
                    yield buffer
                    buffer = ""
            elif ch == "[":
                buffer = ch
            else:
                yield ch
    if buffer:
        yield buffer


def _resolve(marker: str, n_passages: int) -> str:
    match = _VALID.match(marker)
    if not match:
        return marker
    ids = [int(x) for x in re.split(r"\s*,\s*", match[1])]
    valid = [i for i in dict.fromkeys(ids) if 1 <= i <= n_passages]
    return "".join(f"[{i}]" for i in valid)
