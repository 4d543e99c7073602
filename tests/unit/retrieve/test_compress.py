"""Contextual compression: kept pieces are exact slices with exact offsets; the right sentences stay."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest

from cairn.errors import ConfigError, ModelError
from cairn.index.analyzer import Analyzer
from cairn.models.base import Vectors
from cairn.retrieve.base import COMPRESSORS, RERANKERS, Compressor, Reranker
from cairn.retrieve.compress import (
    EmbeddingCompressor,
    LlmCompressor,
    Selection,
    map_reply,
    normalise,
    sentence_spans,
)
from cairn.testing.fakes import HashEmbedder, ScriptedGenerator
from cairn.types import Hit

PREFIX = "Preamble text that is not part of the chunk.\n\n"
CHUNK = (
    "The cafeteria opens at eight in the morning. "
    "Remote work is allowed on Fridays for every employee. "
    "Parking permits are renewed each January. "
    "Travel expenses need a receipt and a manager approval."
)
BODY = PREFIX + CHUNK + "\n\nTrailing text."


def _hit(text: str = CHUNK, body: str = BODY, **changes: object) -> Hit:
    start = body.index(text)
    hit = Hit(
        chunk_id=7,
        document_id=3,
        source="handbook.txt",
        text=text,
        start=start,
        end=start + len(text),
        score=0.8,
        page=2,
        title="Handbook",
        kb="kb",
        heading_path=("Policies",),
        scores={"cosine": 0.5},
        flags=("x",),
    )
    return replace(hit, **changes)  # type: ignore[arg-type]


def _texts(text: str) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text)]


def _compressor(**selection: float) -> EmbeddingCompressor:
    return EmbeddingCompressor(HashEmbedder(64), Analyzer(), selection=Selection(**selection))  # type: ignore[arg-type]


def _check_slices(out: Sequence[Hit], body: str = BODY) -> None:
    for piece in out:
        assert piece.text == body[piece.start : piece.end]
        assert piece.text == piece.text.strip() and piece.text


# --- sentence splitting ----------------------------------------------------------------------


def test_sentences_keep_abbreviations_decimals_and_initials_together() -> None:
    text = (
        "Smith et al. (2019) measured a 3.5-fold rise, i.e. a large one. "
        "See Fig. 3 and e.g. Table 2 for details. J. Smith agreed with Dr. Jones. "
        "Levels of vitamin D. The dose was 0.5 mg. Is it safe? Yes!"
    )
    assert _texts(text) == [
        "Smith et al. (2019) measured a 3.5-fold rise, i.e. a large one.",
        "See Fig. 3 and e.g. Table 2 for details.",
        "J. Smith agreed with Dr. Jones.",
        "Levels of vitamin D.",
        "The dose was 0.5 mg.",
        "Is it safe?",
        "Yes!",
    ]


def test_sentences_follow_lines_bullets_tables_and_wrapped_text() -> None:
    text = (
        "# Travel policy\n"
        "Flights must be booked through the portal and\n"
        "approved by a manager. Hotels are capped.\n\n"
        "- Economy class for short trips\n"
        "- Business class above six hours\n"
        "1. Book early. 2. Keep receipts.\n"
        "| City | Limit |\n"
        "| Paris | 200 |"
    )
    assert _texts(text) == [
        "# Travel policy",
        "Flights must be booked through the portal and\napproved by a manager.",
        "Hotels are capped.",
        "- Economy class for short trips",
        "- Business class above six hours",
        "1. Book early.",
        "2. Keep receipts.",
        "| City | Limit |",
        "| Paris | 200 |",
    ]


def test_sentence_spans_are_trimmed_ordered_and_disjoint() -> None:
    text = "  First one.   Second one!\n\n\n  Third?  "
    spans = sentence_spans(text)
    assert _texts(text) == ["First one.", "Second one!", "Third?"]
    assert all(a < b <= c for (a, b), (c, _) in pairwise(spans))
    assert sentence_spans("") == [] and sentence_spans(" \n ") == []


# --- embedding compression -------------------------------------------------------------------


def test_offsets_are_exact_slices_of_the_document() -> None:
    hit = _hit()
    out = _compressor(keep=0.5).compress("remote work on Fridays; travel expenses receipt", [hit])
    assert [p.text for p in out] == [
        "Remote work is allowed on Fridays for every employee.",
        "Travel expenses need a receipt and a manager approval.",
    ]
    _check_slices(out)
    for piece in out:
        assert (piece.chunk_id, piece.document_id, piece.source, piece.page, piece.kb) == (
            7,
            3,
            "handbook.txt",
            2,
            "kb",
        )
        assert (piece.score, piece.heading_path, piece.flags) == (0.8, ("Policies",), ("x",))
        assert piece.scores["cosine"] == 0.5
        kept = sum(len(p.text) for p in out) / len(CHUNK)
        assert piece.scores["compression"] == pytest.approx(kept, abs=1e-5)
        assert piece.scores["compression"] < 1


def test_relevance_decides_which_sentences_stay() -> None:
    hit = _hit()
    query = "parking permits renewed january"
    one = _compressor(keep=0.25).compress(query, [hit])
    assert [p.text for p in one] == ["Parking permits are renewed each January."]
    two = _compressor(keep=0.5).compress(query + " cafeteria opens eight morning", [hit])
    assert [p.text for p in two] == [
        "The cafeteria opens at eight in the morning.",
        "Parking permits are renewed each January.",
    ]
    _check_slices(one + two)
    scores = _compressor().score(query, _texts(CHUNK))
    assert int(np.argmax(scores)) == 2


def test_best_sentence_is_always_kept() -> None:
    hit = _hit()
    out = _compressor(keep=0.1, min_score=5.0).compress("parking permits", [hit])
    assert [p.text for p in out] == ["Parking permits are renewed each January."]
    unrelated = _compressor(keep=0.1, min_score=5.0).compress("zzz qqq", [hit])
    assert len(unrelated) == 1 and unrelated[0].text in _texts(CHUNK)
    _check_slices(unrelated)


def test_neighbours_make_one_contiguous_piece() -> None:
    hit = _hit()
    out = _compressor(keep=0.25, neighbours=1).compress("remote work Fridays", [hit])
    assert len(out) == 1
    assert out[0].text == (
        "The cafeteria opens at eight in the morning. "
        "Remote work is allowed on Fridays for every employee. "
        "Parking permits are renewed each January."
    )
    _check_slices(out)


def test_headings_are_kept_only_as_the_context_of_the_next_sentence() -> None:
    text = (
        "# Staff Guide\n\n## Travel\n\nTravel is booked through the travel portal by travel staff.\n\n"
        "## Parking\n\nParking permits are renewed each January.\n\nVisitors park in lot B only.\n\n"
        "Expense claims are due monthly."
    )
    hit = _hit(text, text, heading_path=("Staff Guide", "Travel"))
    out = _compressor(keep=0.25).compress("parking permits renewed", [hit])
    assert [p.text for p in out] == ["## Parking\n\nParking permits are renewed each January."]
    travel = _compressor(keep=0.25).compress("travel travel portal", [hit])
    assert [p.text for p in travel] == [text[: text.index("staff.") + len("staff.")]]  # both headings above it
    _check_slices(out + travel, text)
    # A title from the heading path counts as a heading even without markdown (HTML, DOCX, a cut chunk).
    cut = "Travel\nBooking is done in the portal. Taxis need receipts."
    plain = _hit(cut, cut, heading_path=("Travel",))
    pieces = _compressor(keep=0.5).compress("travel portal booking", [plain])
    assert [p.text for p in pieces] == ["Travel\nBooking is done in the portal."]


def test_short_passages_pass_whole_and_order_is_kept() -> None:
    body = "Alpha. " + CHUNK + " One single sentence here"
    first = _hit(CHUNK, body, chunk_id=1, score=0.9)
    single = _hit("One single sentence here", body, chunk_id=2, score=0.4)
    out = _compressor(keep=0.25).compress("parking permits", [first, single])
    assert [p.chunk_id for p in out] == [1, 2]
    assert out[1].text == single.text and out[1].scores["compression"] == 1.0
    _check_slices(out, body)


def test_distinct_sentences_are_embedded_in_one_batch() -> None:
    calls: list[int] = []

    class Counting(HashEmbedder):
        def embed_documents(self, texts: Sequence[str]) -> Vectors:
            calls.append(len(texts))
            return super().embed_documents(texts)

    compressor = EmbeddingCompressor(Counting(32), Analyzer())
    body = CHUNK + "\n\n" + CHUNK.upper() + "\n\nJust one sentence here."
    hits = [
        _hit(CHUNK, body, chunk_id=1),
        _hit(CHUNK.upper(), body, chunk_id=2),
        _hit(CHUNK, body, chunk_id=3),  # the same sentences again (overlapping chunks)
        _hit("Just one sentence here.", body, chunk_id=4),  # nothing to choose: not scored
    ]
    out = compressor.compress("remote work", hits)
    assert calls == [8]
    ids = [p.chunk_id for p in out]
    assert ids == sorted(ids) and set(ids) == {1, 2, 3, 4}  # passages keep their order
    _check_slices(out, body)


# --- LLM extraction --------------------------------------------------------------------------


def test_llm_reply_is_mapped_to_exact_offsets_and_invented_text_is_dropped() -> None:
    generator = ScriptedGenerator()
    generator.enqueue(
        "[1] remote work is allowed on  Fridays for every employee\n"
        "[1] Employees may also work from the beach on Mondays.\n"
        "[2] The moon is made of cheese."
    )
    other_body = BODY + " Another passage. It has two sentences."
    second = _hit("Another passage. It has two sentences.", other_body, chunk_id=9)
    out = LlmCompressor(generator).compress("When can I work remotely?", [_hit(), second])
    assert [p.text for p in out] == ["Remote work is allowed on Fridays for every employee."]
    _check_slices(out)
    (messages,) = generator.calls
    assert "[1] The cafeteria opens" in messages[-1].content and "[2] Another passage." in messages[-1].content


def test_llm_reply_copying_several_or_part_of_sentences() -> None:
    generator = ScriptedGenerator()
    generator.enqueue(
        "Here are the sentences:\n"
        "- [1] “Parking permits are renewed each January. Travel expenses need a receipt and a manager approval.”\n"
        "[1] The cafeteria opens at eight"
    )
    out = LlmCompressor(generator).compress("q", [_hit()])
    assert [p.text for p in out] == [
        "The cafeteria opens at eight in the morning.",
        "Parking permits are renewed each January. Travel expenses need a receipt and a manager approval.",
    ]
    _check_slices(out)


def test_llm_without_usable_reply_keeps_the_passages() -> None:
    generator = ScriptedGenerator()
    generator.enqueue("NONE", ModelError("server down"))
    compressor = LlmCompressor(generator)
    for _ in range(2):
        out = compressor.compress("q", [_hit()])
        assert [p.text for p in out] == [CHUNK] and out[0].scores["compression"] == 1.0


def test_map_reply_fuzzy_match_is_sentence_level() -> None:
    texts = ["The grant covers travel costs. Meals are not covered."]
    split = [sentence_spans(texts[0])]
    assert map_reply("The grant covers travel cost.", texts, split) == [{0}]  # one letter off
    assert map_reply("The grant covers all costs.", texts, split) == [set()]  # a different claim
    assert map_reply("[5] Meals are not covered.", texts, split) == [{1}]  # a bad tag searches everywhere
    # A shortened copy maps to the sentence holding all its words; a changed number does not.
    long = ["Employees are required to complete AI ethics training by Q3 2026. Badges are blue."]
    long_split = [sentence_spans(long[0])]
    assert map_reply("[1] AI ethics training, by Q3 2026.", long, long_split) == [{0}]
    assert map_reply("[1] AI ethics training, by Q4 2026.", long, long_split) == [set()]
    assert map_reply("[1] AI ethics training, by Q3 2026.", long, long_split, subset=False) == [set()]
    assert normalise(" “Quoted”  text — it’s here. ") == "quoted text - it's here"


def test_llm_compressor_needs_a_generator() -> None:
    with pytest.raises(ConfigError) as info:
        COMPRESSORS.create("llm:", embedder=HashEmbedder(8), generator=None, analyzer=Analyzer())
    assert info.value.hint
    built = COMPRESSORS.create("llm:?max_tokens=64&match=0.95", generator=ScriptedGenerator())
    assert isinstance(built, LlmCompressor) and built.max_tokens == 64 and built.match == 0.95 and built.subset
    strict = COMPRESSORS.create("llm:?subset=0", generator=ScriptedGenerator())
    assert isinstance(strict, LlmCompressor) and not strict.subset


# --- registry --------------------------------------------------------------------------------


def test_registry_options_and_errors() -> None:
    built = COMPRESSORS.create(
        "embedding:?keep=0.3&min_score=0.1&neighbours=2&lexical=0", embedder=HashEmbedder(8), analyzer=Analyzer()
    )
    assert isinstance(built, Compressor) and isinstance(built, EmbeddingCompressor)
    assert built.selection == Selection(keep=0.3, min_score=0.1, neighbours=2) and built.lexical == 0
    for bad in ("embedding:?keep=0", "embedding:?keep=abc", "embedding:?nope=1", "embedding:?neighbours=1.5"):
        with pytest.raises(ConfigError):
            COMPRESSORS.create(bad, embedder=HashEmbedder(8))
    with pytest.raises(ConfigError):
        COMPRESSORS.create("rerank:", embedder=HashEmbedder(8))


def test_rerank_compressor_scores_sentences_with_a_reranker() -> None:
    class LengthReranker:
        """Prefers the longest sentence: a stand-in for a cross-encoder."""

        name = "length"

        def warm_up(self) -> None: ...

        def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
            scored = [replace(h, score=len(h.text), scores={"rerank": float(len(h.text))}) for h in hits]
            return sorted(scored, key=lambda h: -h.score)

    built: list[str] = []

    @RERANKERS.register("test-length")
    def _length(location: str, **_: object) -> Reranker:
        built.append(location)
        return LengthReranker()

    compressor = COMPRESSORS.create("rerank:?with=test-length:?opt=1%26other=2&keep=0.25", embedder=HashEmbedder(8))
    assert built == []  # built on first use
    out = compressor.compress("anything", [_hit()])
    assert built == ["test-length:?opt=1&other=2"]
    assert [p.text for p in out] == ["Travel expenses need a receipt and a manager approval."]
    _check_slices(out)
