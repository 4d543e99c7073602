"""Citation handling: keep only markers that point at real passages, and attribute uncited sentences.

Small local models often forget or invent markers; what reaches the user must still map every
[n] to a passage that was in the prompt.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

from cairn.index.analyzer import Analyzer
from cairn.types import Citation, Hit

MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


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

    return tidy(MARKER.sub(keep, text)), used


def tidy(text: str) -> str:
    """Remove the gaps that dropped markers leave behind (``"x [9]."`` -> ``"x ."`` -> ``"x."``)."""
    text = text.replace("[]", "")
    text = re.sub(r"[ \t]+([.,;:!?])", r"\1", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def attribute(
    text: str, hits: Sequence[Hit], analyzer: Analyzer, *, min_overlap: float = 0.5, also_supports: float = 0.8
) -> str:
    """Make citations complete: every sentence names the passages that state it.

    A sentence without a marker gets the passage that covers most of its terms (at least
    ``min_overlap``); any sentence also gets every other passage that covers ``also_supports`` of its
    terms, so a claim found in two documents cites both, whatever the model wrote.
    """
    return _attribute(text, [set(analyzer.terms(h.text)) for h in hits], analyzer, min_overlap, also_supports)


def _attribute(
    text: str,
    passage_terms: Sequence[set[str]],
    analyzer: Analyzer,
    min_overlap: float = 0.5,
    also_supports: float = 0.8,
) -> str:
    out: list[str] = []
    for start, end in split_sentences(text):
        sentence = text[start:end]
        terms = set(analyzer.terms(MARKER.sub("", sentence)))
        if not terms:
            out.append(sentence)
            continue
        cited = {int(x) for m in MARKER.finditer(sentence) for x in re.split(r"\s*,\s*", m[1])}
        overlaps = [len(terms & p) / len(terms) for p in passage_terms]
        add = [i + 1 for i, o in enumerate(overlaps) if o >= also_supports and i + 1 not in cited]
        if not cited and not add and overlaps and max(overlaps) >= min_overlap:
            add = [overlaps.index(max(overlaps)) + 1]
        if add:
            sentence = _append_markers(sentence, sorted(add))
        out.append(sentence)
    return " ".join(out)


def _append_markers(sentence: str, ids: Sequence[int]) -> str:
    """Put markers before the sentence's final punctuation and after any markers already there."""
    stripped = sentence.rstrip()
    match = re.search(r"((?:\s*\[\d+(?:\s*,\s*\d+)*\])*)\s*([.!?]?)((?:\s*\[\d+(?:\s*,\s*\d+)*\])*)$", stripped)
    assert match is not None  # the pattern can match the empty string at the end
    body = stripped[: match.start()]
    existing = (match[1] + match[3]).replace(" ", "")
    new = "".join(f"[{i}]" for i in ids)
    return f"{body} {existing}{new}{match[2]}"


def cite_sentences(pieces: Iterable[str], hits: Sequence[Hit], analyzer: Analyzer) -> Iterator[str]:
    """Stream the answer a sentence at a time, each with its complete citations.

    A sentence is released once the next one starts, so what the user sees while it streams is
    exactly the final, cited text (:func:`attribute` applied sentence by sentence).
    """
    passage_terms = [set(analyzer.terms(h.text)) for h in hits]  # once, not once per sentence
    buffer = ""
    for piece in pieces:
        buffer += piece
        while (match := SENTENCE_END.search(buffer)) is not None:
            sentence, buffer = buffer[: match.start()], buffer[match.end() :]
            if sentence.strip():
                yield tidy(_attribute(tidy(sentence), passage_terms, analyzer)) + " "
    if buffer.strip():
        yield tidy(_attribute(tidy(buffer), passage_terms, analyzer))


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
