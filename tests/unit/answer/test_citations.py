from __future__ import annotations

from cairn.answer.citations import attribute, build_citations, clean_markers, split_sentences
from cairn.answer.stream_filter import filter_markers
from cairn.index.analyzer import Analyzer
from cairn.types import Hit


def _hit(i: int, text: str) -> Hit:
    return Hit(
        chunk_id=i,
        document_id=i,
        source=f"doc{i}.txt",
        text=text,
        start=10 * i,
        end=10 * i + len(text),
        score=1,
    )


def test_clean_markers_drops_invalid_and_orders_by_first_use() -> None:
    text, used = clean_markers("Training is due by Q3 [2]. Also [7] and [1, 2, 9].", 2)
    assert text == "Training is due by Q3 [2]. Also and [1][2]."
    assert used == [2, 1]


def test_stream_filter_never_emits_invalid_markers() -> None:
    pieces = ["The answer", " is [", "3", "] and [", "1]", " plus [a link](x) [12345678901234567890]"]
    out = "".join(filter_markers(pieces, 2))
    assert "[3]" not in out and "[1]" in out
    assert "[a link](x)" in out
    assert "[12345678901234567890]" not in out  # digits in brackets but no passage: dropped, as in the final text
    assert "".join(filter_markers(["see [[9]] x"], 2)) == "see [] x"  # tidy() removes the empty brackets


def test_split_sentences_keeps_offsets() -> None:
    text = "First one. Second one! Third?"
    spans = split_sentences(text)
    assert [text[s:e] for s, e in spans] == ["First one.", "Second one!", "Third?"]


def test_attribute_adds_marker_to_supported_sentence_only() -> None:
    hits = [
        _hit(1, "Employees must complete AI ethics training by Q3 2026."),
        _hit(2, "The cafeteria opens at 8."),
    ]
    text = attribute("Ethics training must be completed by Q3 2026. Bananas are yellow.", hits, Analyzer())
    assert text == "Ethics training must be completed by Q3 2026 [1]. Bananas are yellow."


def test_build_citations_maps_to_hits() -> None:
    hits = [_hit(1, "a passage"), _hit(2, "another passage")]
    (c,) = build_citations([2], hits)
    assert (c.id, c.source, c.start, c.end, c.text) == (2, "doc2.txt", 20, 35, "another passage")


def test_attribute_cites_every_passage_stating_the_claim() -> None:
    hits = [
        _hit(1, "The corporate travel policy was updated in 2026 to favour sustainable options."),
        _hit(2, "The corporate travel policy has been updated to reflect sustainable options."),
        _hit(3, "Trains are required for journeys under five hours."),
    ]
    text = attribute(
        "The corporate travel policy was updated for sustainable options [1]. Trains win.", hits, Analyzer()
    )
    assert text == "The corporate travel policy was updated for sustainable options [1][2]. Trains win [3]."
