"""Citation handling: keep only markers that point at real passages, and attribute uncited sentences.

Small local models often forget or invent markers; what reaches the user must still map every
[n] to a passage that was in the prompt.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cairn.index.analyzer import Analyzer
from cairn.types import Citation, Hit

MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Spans of sentences in ``text`` (simple punctuation rule; keeps offsets exact)."""
    spans, start = [], 0
    for match in SENTENCE_END.finditer(text):
        if text[start : match.start()].strip():
            spans.append((start, match.start()))
        start = match.end()
    if text[start:].strip():
        spans.append((start, len(text.rstrip())))
    return spans


def clean_markers(text: str, n_passages: int) -> tuple[str, list[int]]:
    """Drop markers outside 1..n; returns the text and the valid ids in order of first use."""
    used: list[int] = []

    def keep(match: re.Match[str]) -> str:
        ids = [int(x) for x in re.split(r"\s*,\s*", match[1])]
        valid = [i for i in ids if 1 <= i <= n_passages]
        for i in valid:
            if i not in used:
                used.append(i)
        return "".join(f"[{i}]" for i in dict.fromkeys(valid))

    cleaned = MARKER.sub(keep, text)
    cleaned = re.sub(r"[ \t]+([.,;:])", r"\1", cleaned)
    return re.sub(r"[ \t]{2,}", " ", cleaned).strip(), used


def attribute(text: str, hits: Sequence[Hit], analyzer: Analyzer, *, min_overlap: float = 0.5) -> str:
    """Append a marker to sentences that have none but whose terms mostly occur in one passage."""
    passage_terms = [set(analyzer.terms(h.text)) for h in hits]
    out: list[str] = []
    for start, end in split_sentences(text):
        sentence = text[start:end]
        terms = set(analyzer.terms(sentence))
        if MARKER.search(sentence) or not terms:
            out.append(sentence)
            continue
        best, best_overlap = -1, 0.0
        for i, pterms in enumerate(passage_terms):
            overlap = len(terms & pterms) / len(terms)
            if overlap > best_overlap:
                best, best_overlap = i, overlap
        if best >= 0 and best_overlap >= min_overlap:
            stripped = sentence.rstrip()
            tail = stripped[-1] if stripped[-1:] in ".!?" else ""
            body = stripped[:-1] if tail else stripped
            sentence = f"{body} [{best + 1}]{tail}"
        out.append(sentence)
    return " ".join(out)


def build_citations(ids: Sequence[int], hits: Sequence[Hit]) -> tuple[Citation, ...]:
    return tuple(
        Citation(
            id=i,
            source=hits[i - 1].source,
            page=hits[i - 1].page,
            start=hits[i - 1].start,
            end=hits[i - 1].end,
            text=hits[i - 1].text,
            chunk_id=hits[i - 1].chunk_id,
        )
        for i in ids
    )
