"""The chunker's invariants, checked on hand-made cases and on seeded random documents."""

from __future__ import annotations

import random
import time
from itertools import pairwise

import pytest

from cairn.errors import ConfigError
from cairn.ingest.base import Chunker
from cairn.ingest.chunking import RecursiveChunker
from cairn.types import ChunkDraft, Heading, PageSpan, ParsedDocument

pytestmark = pytest.mark.unit

WORDS = [
    *("policy", "laptop", "VPN", "employee", "travel", "expense", "approval", "incident", "pager"),
    *("severity", "budget", "the", "a", "of", "and", "to", "café", "naïve", "東京", "Überprüfung"),
    *("e-mail", "security@example.com", "2026", "42", "x"),
]
SPACES = [" ", " ", " ", "  ", "\t", " \n", "\u00a0", "\n"]


def _doc(text: str, pages: tuple[PageSpan, ...] = (), headings: tuple[Heading, ...] = ()) -> ParsedDocument:
    return ParsedDocument(text=text, title="t", mime="text/plain", pages=pages, headings=headings)


def _random_document(rng: random.Random) -> ParsedDocument:
    """Prose with odd whitespace, over-long words and sentences, headings at line starts, pages."""
    parts: list[str] = []
    heading_starts: list[tuple[int, int, str]] = []
    offset = 0
    for _ in range(rng.randint(0, 40)):
        if rng.random() < 0.2:
            level = rng.randint(1, 4)
            title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
            block = "#" * level + " " + title
            heading_starts.append((offset, level, title))
        else:
            words = []
            for _ in range(rng.randint(1, 120)):
                word = rng.choice(WORDS)
                if rng.random() < 0.01:
                    word = "z" * rng.randint(50, 900)
                words.append(word + ("." if rng.random() < 0.1 else "") + rng.choice(SPACES))
            block = "".join(words)
        separator = rng.choice(["\n\n", "\n", "\n \n\n", "  \n\n\t"])
        parts.append(block + separator)
        offset += len(block) + len(separator)
    text = rng.choice(["", "  \n"]) + "".join(parts)
    lead = len(text) - offset
    headings = tuple(Heading(level, title, start + lead) for start, level, title in heading_starts)
    pages: list[PageSpan] = []
    if text and rng.random() < 0.6:
        cuts = sorted(rng.sample(range(len(text)), min(len(text) - 1, rng.randint(0, 6))))
        bounds = [0, *cuts, len(text)]
        pages = [PageSpan(i + 1, a, b) for i, (a, b) in enumerate(pairwise(bounds))]
    return _doc(text, tuple(pages), headings)


def _expected_path(document: ParsedDocument, offset: int) -> tuple[str, ...]:
    stack: list[Heading] = []
    for heading in document.headings:
        if heading.start > offset:
            break
        while stack and stack[-1].level >= heading.level:
            stack.pop()
        stack.append(heading)
    return tuple(h.title for h in stack)


def _check_invariants(document: ParsedDocument, chunks: list[ChunkDraft], size: int, overlap: int) -> None:
    text = document.text
    boundaries = {p.start for p in document.pages} | {p.end for p in document.pages} | {0, len(text)}
    heading_starts = {h.start for h in document.headings}
    for ordinal, chunk in enumerate(chunks):
        assert chunk.ordinal == ordinal
        assert 0 <= chunk.start < chunk.end <= len(text)
        assert chunk.text == text[chunk.start : chunk.end]
        assert not chunk.text[0].isspace() and not chunk.text[-1].isspace()
        assert len(chunk.text) <= size
        assert chunk.page == document.page_at(chunk.start)
        assert chunk.heading_path == _expected_path(document, chunk.start)
        assert not any(chunk.start < b < chunk.end for b in boundaries), "chunk crosses a page"
        for start in sorted(h for h in heading_starts if chunk.start < h < chunk.end):
            previous_cut = max(c for c in boundaries | heading_starts if c < start)
            assert "\n" not in text[previous_cut:start].strip(), "chunk crosses a section with a body"
    reached = 0
    for chunk in chunks:
        assert not text[reached : chunk.start].strip(), f"text before {chunk.start} is in no chunk"
        reached = max(reached, chunk.end)
    assert not text[reached:].strip(), "the end of the text is in no chunk"
    for previous, current in pairwise(chunks):
        assert previous.start < current.start
        shared = previous.end - current.start
        if shared > 0:
            assert shared <= overlap
            assert text[current.start - 1].isspace(), "overlap must start at a word"


@pytest.mark.parametrize("seed", range(120))
def test_invariants_on_random_documents(seed: int) -> None:
    """Headings come in text order here, so the reference path needs no sorting."""
    rng = random.Random(seed)
    document = _random_document(rng)
    size = rng.choice([20, 50, 120, 400, 1200])
    overlap = rng.choice([0, size // 10, size // 3, size // 2])
    chunker = RecursiveChunker(chunk_size=size, overlap=overlap)
    chunks = chunker.chunk(document)
    _check_invariants(document, chunks, size, overlap)
    assert chunker.chunk(document) == chunks


def test_satisfies_the_chunker_protocol() -> None:
    assert isinstance(RecursiveChunker(), Chunker)


@pytest.mark.parametrize(
    ("size", "overlap"), [(0, 0), (-5, 0), (100, 100), (100, 150), (100, -1), (True, 0), (100, 1.5)]
)
def test_invalid_parameters_raise_config_error(size: object, overlap: object) -> None:
    with pytest.raises(ConfigError):
        RecursiveChunker(chunk_size=size, overlap=overlap)  # type: ignore[arg-type]


def test_short_document_is_one_trimmed_chunk() -> None:
    chunks = RecursiveChunker().chunk(_doc("\n  Hello world.  \n"))
    assert [(c.text, c.start, c.end, c.page, c.heading_path) for c in chunks] == [("Hello world.", 3, 15, None, ())]
    assert RecursiveChunker().chunk(_doc(" \n\t ")) == []


def test_paragraph_boundaries_are_preferred() -> None:
    paragraph = " ".join(["word"] * 59) + "."
    document = _doc("\n\n".join([paragraph] * 6))
    chunks = RecursiveChunker(chunk_size=2 * len(paragraph) + 100, overlap=0).chunk(document)
    assert [c.text for c in chunks] == [paragraph + "\n\n" + paragraph] * 3
    assert all(document.text[c.end : c.end + 2] in ("\n\n", "") for c in chunks)


def test_long_paragraph_is_cut_at_sentence_ends() -> None:
    sentences = [f"Sentence number {i} says something useful." for i in range(40)]
    chunks = RecursiveChunker(chunk_size=200, overlap=0).chunk(_doc(" ".join(sentences)))
    assert len(chunks) > 5
    assert all(c.text.endswith(".") and c.text.startswith("Sentence") for c in chunks)


def test_word_longer_than_a_chunk_is_hard_cut() -> None:
    chunks = RecursiveChunker(chunk_size=1000, overlap=0).chunk(_doc("x" * 2500))
    assert [(c.start, c.end) for c in chunks] == [(0, 1000), (1000, 2000), (2000, 2500)]


def test_overlap_repeats_the_tail_of_the_previous_chunk_from_a_word_start() -> None:
    text = " ".join(f"w{i:03d}" for i in range(400))
    chunks = RecursiveChunker(chunk_size=200, overlap=50).chunk(_doc(text))
    assert len(chunks) > 5
    for previous, current in pairwise(chunks):
        shared = previous.end - current.start
        assert 30 <= shared <= 50
        assert text[current.start - 1] == " "
        assert previous.text.endswith(text[current.start : previous.end])


def test_overlap_prefers_a_sentence_start() -> None:
    text = " ".join("Alpha beta gamma delta epsilon zeta eta theta." for _ in range(30))
    chunks = RecursiveChunker(chunk_size=300, overlap=100).chunk(_doc(text))
    assert all(c.text.startswith("Alpha") for c in chunks)
    assert all(p.end > c.start for p, c in pairwise(chunks))


def test_chunks_never_cross_pages_and_carry_the_page_number() -> None:
    page_one, page_two = "First page text. " * 10, "Second page text. " * 10
    text = page_one.strip() + "\n\n" + page_two.strip()
    split = len(page_one.strip())
    pages = (PageSpan(1, 0, split), PageSpan(2, split + 2, len(text)))
    chunks = RecursiveChunker(chunk_size=1200, overlap=150).chunk(_doc(text, pages))
    assert [(c.page, c.text) for c in chunks] == [(1, page_one.strip()), (2, page_two.strip())]


def test_heading_paths_follow_levels() -> None:
    text = "# Handbook\n\nIntro text.\n\n## Rotation\n\n### Schedule\n\nWeekly shifts.\n\n## Paging\n\nUse the app."
    headings = tuple(
        Heading(level, title, text.index(marker))
        for level, title, marker in [
            (1, "Handbook", "# Handbook"),
            (2, "Rotation", "## Rotation"),
            (3, "Schedule", "### Schedule"),
            (2, "Paging", "## Paging"),
        ]
    )
    chunks = RecursiveChunker(chunk_size=1200, overlap=150).chunk(_doc(text, headings=headings))
    assert [(c.text, c.heading_path) for c in chunks] == [
        ("# Handbook\n\nIntro text.", ("Handbook",)),
        ("## Rotation\n\n### Schedule\n\nWeekly shifts.", ("Handbook", "Rotation")),
        ("## Paging\n\nUse the app.", ("Handbook", "Paging")),
    ]


def test_sections_are_not_merged_even_when_small() -> None:
    text = "## A\nalpha\n## B\nbeta"
    headings = (Heading(2, "A", 0), Heading(2, "B", text.index("## B")))
    chunks = RecursiveChunker(chunk_size=1200, overlap=0).chunk(_doc(text, headings=headings))
    assert [c.text for c in chunks] == ["## A\nalpha", "## B\nbeta"]


def test_ten_megabytes_in_a_few_seconds() -> None:
    rng = random.Random(3)
    paragraphs = [
        " ".join(rng.choice(WORDS) + ("." if rng.random() < 0.1 else "") for _ in range(rng.randint(5, 200)))
        for _ in range(2000)
    ]
    block = "\n\n".join(paragraphs) + "\n\n"
    text = block * (10_000_000 // len(block) + 1)
    document = _doc(text)
    started = time.perf_counter()
    chunks = RecursiveChunker().chunk(document)
    elapsed = time.perf_counter() - started
    assert elapsed < 5, f"{elapsed:.1f}s"
    assert all(len(c.text) <= 1200 for c in chunks)
    assert chunks[-1].end == len(text.rstrip())


@pytest.mark.parametrize(
    "text",
    [
        "y" * 1_000_000,
        ". " * 200_000,
        "a\n\n" * 200_000,
        "\n" * 1_000_000 + "end",
        "a" + " " * 100_000 + "b",
        "a" + "\n " * 100_000 + "b",
        "a." + " " * 100_000 + "b",
    ],
    ids=["one-word", "dots", "tiny-paragraphs", "blank-lines", "space-run", "blank-line-run", "sentence-run"],
)
def test_degenerate_inputs_stay_linear(text: str) -> None:
    """Each of these took quadratic time in some earlier regex; 100,000 whitespace is minutes then."""
    started = time.perf_counter()
    chunks = RecursiveChunker(chunk_size=500, overlap=100).chunk(_doc(text))
    assert time.perf_counter() - started < 1.5
    assert chunks and all(len(c.text) <= 500 for c in chunks)
