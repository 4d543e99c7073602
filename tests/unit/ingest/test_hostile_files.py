"""Known hostile files, parsed in-process: each is refused with a clear error, or read, and never slowly.

The same cases run through a whole ingest (isolated parsing, real database) in
tests/integration/ingest/test_hostile_ingest.py; here they pin down the cheap checks themselves.
"""

from __future__ import annotations

import re
import time
import zipfile

import pytest

from cairn.errors import CairnError, CorruptDocument, LimitExceeded
from cairn.ingest.bombs import MAX_FLATE_CHAIN, check_pdf_streams, check_zip
from cairn.ingest.limits import DEFAULT_LIMITS, MB, ParseLimits, current_limits, using_limits
from cairn.ingest.parse import parse_bytes, storable
from cairn.testing import hostile
from cairn.types import Heading, ParsedDocument

# Small limits keep the bombs small: what is tested is the check, not the size of the default.
SMALL = ParseLimits(max_unpacked_mb=8, max_pages=50, max_zip_entries=200)
BAD = hostile.known_bad_files(SMALL)


def _outcome(data: bytes, name: str, limits: ParseLimits) -> tuple[str, str]:
    try:
        document = parse_bytes(data, name, limits=limits)
    except CairnError as exc:
        return ("skipped" if exc.status == 415 else "error"), exc.message
    note = "" if document.text.strip() else "no extractable text"
    return "added", " ".join((note, *document.warnings))


@pytest.mark.parametrize("bad", BAD, ids=[b.name for b in BAD])
def test_known_bad_file_gets_its_outcome_quickly(bad: hostile.BadFile) -> None:
    started = time.perf_counter()
    status, message = _outcome(bad.data, bad.name, SMALL)
    elapsed = time.perf_counter() - started
    assert (status, bool(re.search(bad.message, message))) == (bad.status, True), message
    if status != "added":
        assert message.startswith(f"{bad.name}: ")
    assert elapsed < 2.0, f"{bad.name} took {elapsed:.1f} s"


def test_nested_flate_bomb_at_the_default_limit_stops_at_the_limit() -> None:
    """A 1 KB PDF that would inflate to 300 MB: the check stops after the default 200 MB, in under a second."""
    bomb = hostile.pdf_file(
        [hostile.deflated_spaces(300 * MB, times=2, prefix=hostile.text_content(["x"]))],
        filters=b" /Filter [/FlateDecode /FlateDecode]",
    )
    assert len(bomb) < 2048
    started = time.perf_counter()
    with pytest.raises(LimitExceeded, match="nested compressed PDF stream inflates past 200 MB"):
        parse_bytes(bomb, "bomb.pdf")
    assert time.perf_counter() - started < 5


def test_pdf_stream_lengths_are_not_trusted() -> None:
    stream = hostile.deflated_spaces(16 * MB, prefix=hostile.text_content(["x"]))
    lying = hostile.pdf_file([stream], filters=b" /Filter /FlateDecode").replace(
        f"/Length {len(stream)}".encode(), b"/Length 10"
    )
    with pytest.raises(LimitExceeded, match="stream inflates past 8 MB"):
        check_pdf_streams(lying, "lying.pdf", max_bytes=8 * MB)
    check_pdf_streams(lying, "lying.pdf", max_bytes=32 * MB)  # the same file under a larger budget passes


def test_many_streams_under_the_limit_have_a_total_budget() -> None:
    """Each page's stream is under the per-stream limit; together they pass ten times it."""
    page = hostile.deflated_spaces(MB - 4096, prefix=hostile.text_content(["x"]))
    pages = hostile.pdf_file([page] * 11, filters=b" /Filter /FlateDecode")
    check_pdf_streams(pages, "ten.pdf", max_bytes=2 * MB)
    with pytest.raises(LimitExceeded, match="inflate past 10 MB in all"):
        check_pdf_streams(pages, "eleven.pdf", max_bytes=MB)


def test_long_flate_chains_are_refused() -> None:
    chain = b" /Filter [" + b"/FlateDecode " * (MAX_FLATE_CHAIN + 1) + b"]"
    data = hostile.pdf_file([hostile.text_content(["x"])], filters=chain)
    with pytest.raises(LimitExceeded, match="chains 9 Flate filters"):
        check_pdf_streams(data, "chain.pdf", max_bytes=MB)


def test_zip_check_reads_real_sizes_not_declared_ones() -> None:
    honest = hostile.docx_parts(hostile.document_xml(hostile.paragraph_xml("fine")))
    check_zip(honest, "ok.docx", max_bytes=MB, max_entries=10)
    lying = hostile.zip_bomb_docx(2 * MB, lie=True)
    with zipfile.ZipFile(__import__("io").BytesIO(lying)) as archive:
        assert sum(i.file_size for i in archive.infolist()) < 4096, "the directory claims a tiny document"
    with pytest.raises(CorruptDocument, match="inflates past the 1,024 bytes its directory declares"):
        check_zip(lying, "lying.docx", max_bytes=64 * MB, max_entries=10)
    with pytest.raises(LimitExceeded, match="more than 2 zip entries"):
        check_zip(honest, "ok.docx", max_bytes=MB, max_entries=2)


def test_limits_of_the_parse_reach_the_loaders() -> None:
    pdf = hostile.shared_pages_pdf(12)
    assert parse_bytes(pdf, "a.pdf").pages[-1].number == 12
    with pytest.raises(LimitExceeded, match="12 pages exceed the 10-page limit") as raised:
        parse_bytes(pdf, "a.pdf", limits=ParseLimits(max_pages=10))
    assert raised.value.hint and "parse_max_pages" in raised.value.hint
    html = b"<html><body>" + b"<div>" * 40 + b"deep" + b"</div>" * 40 + b"</body></html>"
    shallow = parse_bytes(html, "a.html", limits=ParseLimits(max_depth=16))
    assert shallow.text == "deep" and "nested deeper than 16 levels" in shallow.warnings[0]
    assert current_limits() is DEFAULT_LIMITS, "limits apply to one parse only"
    with using_limits(SMALL):
        assert current_limits() is SMALL


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("atx.md", b"# a" + b" " * 100_000 + b"x\n"),  # took minutes: lazy title + optional closing sequence
        ("front.md", b"---\ntitle: a" + b" " * 100_000 + b"x\n---\nbody\n"),
        ("comments.txt", b"<!---->" * 1100 + b"x"),  # exponential: a run of comments before no <html>
        ("attrs.html", b"<html><body>" + b"<a " * 100_000 + b"</body></html>"),
    ],
)
def test_regular_expressions_stay_linear_on_long_lines(name: str, data: bytes) -> None:
    started = time.perf_counter()
    parse_bytes(data, name)
    assert time.perf_counter() - started < 1.0


def test_markdown_headings_keep_their_meaning() -> None:
    text = b"# Title #\n\n## C#\n\n### spaced ###   \n\n####### seven\n\n#\tTabbed\n\n# \n"
    document = parse_bytes(text, "h.md")
    assert [(h.level, h.title) for h in document.headings] == [(1, "Title"), (2, "C#"), (3, "spaced"), (1, "Tabbed")]
    front = parse_bytes(b"---\ntitle:   'Quoted title'  \n---\nbody\n", "f.md")
    assert front.title == "Quoted title"


def test_storable_replaces_what_postgres_cannot_hold_without_moving_offsets() -> None:
    document = ParsedDocument(
        text="a\x00b\ud800c",
        title="t\udcff",
        mime="text/plain",
        headings=(Heading(1, "h\x00", 2),),
        warnings=("w\ud800",),
    )
    clean = storable(document)
    assert clean.text == "a\ufffdb\ufffdc" and len(clean.text) == len(document.text)
    assert (clean.title, clean.headings[0].title, clean.warnings) == ("t\ufffd", "h\ufffd", ("w\ufffd",))
    assert storable(clean) is clean


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        ParseLimits(timeout_s=0)


def test_mutants_are_deterministic_and_cover_every_format_and_mutation() -> None:
    seeds = hostile.seed_files()
    first = hostile.mutants(300, seed=3, seeds=seeds)
    again = hostile.mutants(300, seed=3)
    assert [(m.name, m.data) for m in first] == [(m.name, m.data) for m in again]
    assert [m.data for m in hostile.mutants(20, seed=4)] != [m.data for m in first[:20]]
    assert {m.seed for m in first} == set(seeds)
    used = {part for m in first for part in m.mutation.split("+")}
    every = set(hostile.COMMON) | {name for table in hostile.BY_FORMAT.values() for name in table}
    assert used == every
    assert sum(m.data != seeds[m.seed] for m in first) >= 290


def test_seed_files_are_valid_and_stable() -> None:
    seeds = hostile.seed_files()
    assert seeds == hostile.seed_files(), "seeds must not depend on the clock"
    for name, data in seeds.items():
        document = parse_bytes(data, name)
        assert "portal" in document.text, name
    pdf = parse_bytes(seeds["seed.pdf"], "seed.pdf")
    assert len(pdf.pages) == 2 and [h.title for h in pdf.headings] == ["Travel", "Expenses"]
