"""Small-to-big against real PostgreSQL: a parent is an exact slice of its section, within its size,
de-duplicated, and never holds text the caller may not read."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from cairn.assistant import Cairn
from cairn.index.access import Access, access_for
from cairn.index.search import fetch_hits
from cairn.retrieve.parents import parent_hits
from cairn.types import SYSTEM, Hit, Principal

TRAVEL = [
    "Flights are booked through the travel portal at least two weeks before departure, in economy class.",
    "Trains are preferred for trips under four hours; the portal shows the rail option first for them.",
    "Hotels are capped at 180 EUR per night in Europe and 250 USD per night in North America.",
    "Meals are reimbursed up to 60 EUR per day with receipts, alcohol excluded, tips up to ten percent.",
    "Taxis are allowed after 22:00 or with luggage; otherwise use public transport or the shuttle.",
]
SECURITY = [
    "Laptops lock after five minutes; never leave one unattended in a car, a hotel lobby or a train.",
    "Report a lost badge to the front desk at once; a temporary badge is valid for one day only.",
]
GUIDE = "# Staff Guide\n\n## Travel\n\n" + "\n\n".join(TRAVEL) + "\n\n## Security\n\n" + "\n\n".join(SECURITY) + "\n"
OPEN = "# Notes\n\nThe cafeteria opens at eight in the morning and closes at three in the afternoon.\n"


@pytest.fixture
def cairn(make_cairn: Callable[..., Cairn], tmp_path: Path) -> Cairn:
    """The guide is for group hr only; the notes are for everyone. Small chunks: one paragraph each."""
    instance = make_cairn(chunk_size=200, chunk_overlap=40)
    docs = tmp_path / "docs"
    (docs / "hr").mkdir(parents=True)
    (docs / "open").mkdir()
    (docs / "hr" / ".cairn-acl").write_text("groups: hr\n", encoding="utf-8")
    (docs / "hr" / "guide.md").write_text(GUIDE, encoding="utf-8")
    (docs / "open" / ".cairn-acl").write_text("groups: everyone\n", encoding="utf-8")
    (docs / "open" / "notes.md").write_text(OPEN, encoding="utf-8")
    report = instance.ingestor.sync_folder(docs, "kb")
    assert report.ok and report.count("added") == 2
    instance.principals.add_user("alice", ["hr"])
    instance.principals.add_user("bob", ["it"])
    return instance


def _chunks(cairn: Cairn, name: str) -> list[tuple[int, tuple[str, ...], str]]:
    """(chunk id, heading path, text) of a document's chunks in order."""
    with cairn.db.connection(SYSTEM) as conn:
        rows = conn.execute(
            "SELECT c.id, c.heading_path, c.text FROM chunks c JOIN documents d ON d.id = c.document_id"
            " WHERE d.source LIKE %s ORDER BY c.ordinal",
            (f"%/{name}",),
        ).fetchall()
    return [(int(r[0]), tuple(r[1]), r[2]) for r in rows]


def _body(cairn: Cairn, document_id: int) -> str:
    with cairn.db.connection(SYSTEM) as conn:
        row = conn.execute("SELECT body FROM documents WHERE id = %s", (document_id,)).fetchone()
    assert row is not None
    return str(row[0])


def _hits(cairn: Cairn, ids: Sequence[int], scores: Sequence[float] | None = None) -> list[Hit]:
    """Hits for chunk ids as the system sees them, ranked in the given order."""
    with cairn.db.connection(SYSTEM) as conn:
        rows = fetch_hits(conn, list(ids), access=Access(None))
    scores = scores or [1.0 - i / 10 for i in range(len(ids))]
    return [replace(rows[i][0], score=s) for i, s in zip(ids, scores, strict=True)]


def _parents(cairn: Cairn, hits: Sequence[Hit], principal: Principal = SYSTEM, **options: int) -> list[Hit]:
    with cairn.db.connection(principal) as conn:
        return parent_hits(conn, hits, access=access_for(conn, principal), **options)


def _travel(cairn: Cairn) -> list[int]:
    """Ids of the chunks holding a travel paragraph whole, in order (the first one opens with the headings)."""
    chunks = _chunks(cairn, "guide.md")
    ids = [next(i for i, _, text in chunks if paragraph in text) for paragraph in TRAVEL]
    assert len(set(ids)) == len(TRAVEL)
    return ids


def _check_exact(cairn: Cairn, parents: Sequence[Hit]) -> None:
    for parent in parents:
        assert parent.text == _body(cairn, parent.document_id)[parent.start : parent.end]
        assert parent.text == parent.text.strip()


def test_parent_is_the_whole_section_as_an_exact_slice(cairn: Cairn) -> None:
    chunks = _chunks(cairn, "guide.md")
    assert len(chunks) >= len(TRAVEL) + len(SECURITY)
    travel = _travel(cairn)
    # The section's first chunk starts at the bare headings before it, so it carries the outer path.
    assert travel[0] == chunks[0][0] and chunks[0][1] == ("Staff Guide",) and "## Travel" in chunks[0][2]
    hit = _hits(cairn, [travel[2]])[0]
    assert hit.heading_path == ("Staff Guide", "Travel")
    (parent,) = _parents(cairn, [hit], max_chars=10_000)
    _check_exact(cairn, [parent])
    assert parent.start <= hit.start and parent.end >= hit.end
    assert parent.text.startswith("# Staff Guide\n\n## Travel") and parent.text.endswith(TRAVEL[-1])
    assert all(p in parent.text for p in TRAVEL) and "Security" not in parent.text
    assert (parent.chunk_id, parent.score, parent.page, parent.heading_path) == (
        hit.chunk_id,
        hit.score,
        hit.page,
        hit.heading_path,
    )
    assert parent.scores["parent_chunks"] == len(TRAVEL) and parent.scores["children"] == 1
    (from_opening,) = _parents(cairn, _hits(cairn, [travel[0]]), max_chars=10_000)
    assert (from_opening.start, from_opening.end) == (parent.start, parent.end)

    last_security = _hits(cairn, [chunks[-1][0]])[0]
    (security,) = _parents(cairn, [last_security], max_chars=10_000)
    _check_exact(cairn, [security])
    assert security.text.startswith("## Security") and all(p in security.text for p in SECURITY)
    assert "Taxis" not in security.text


def test_parent_respects_max_chars_and_grows_around_the_hit(cairn: Cairn) -> None:
    travel = _travel(cairn)
    hit = _hits(cairn, [travel[2]])[0]
    sizes = []
    for max_chars in (250, 400, 600, 900):
        (parent,) = _parents(cairn, [hit], max_chars=max_chars)
        _check_exact(cairn, [parent])
        assert len(parent.text) <= max_chars and parent.start <= hit.start and parent.end >= hit.end
        assert "Security" not in parent.text
        sizes.append(len(parent.text))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    (wide,) = _parents(cairn, [hit], max_chars=600)
    assert TRAVEL[1] in wide.text and TRAVEL[3] in wide.text  # both sides, before and after
    (tiny,) = _parents(cairn, [hit], max_chars=10)  # smaller than a chunk: the chunk itself
    assert (tiny.text, tiny.start, tiny.end) == (hit.text, hit.start, hit.end)


def test_parents_are_deduplicated_at_the_better_rank_with_the_better_score(cairn: Cairn) -> None:
    travel = _travel(cairn)
    security = _chunks(cairn, "guide.md")[-1][0]
    hits = _hits(cairn, [travel[1], security, travel[2]], scores=[0.7, 0.6, 0.9])
    parents = _parents(cairn, hits, max_chars=10_000)
    assert [p.chunk_id for p in parents] == [travel[1], security]
    assert parents[0].score == 0.9 and parents[0].scores["children"] == 2
    _check_exact(cairn, parents)

    # Far apart in one section with a small budget: two parents, which never share text.
    apart = _parents(cairn, _hits(cairn, [travel[0], travel[4]]), max_chars=400)
    assert len(apart) == 2
    _check_exact(cairn, apart)
    assert apart[0].text.startswith("# Staff Guide") and apart[0].end <= apart[1].start
    assert apart[1].text.endswith(TRAVEL[4]) and all(len(p.text) <= 400 for p in apart)

    # Neighbours with a budget of about two chunks: the second parent starts where the first ends.
    near = _parents(cairn, _hits(cairn, [travel[2], travel[3]]), max_chars=250)
    _check_exact(cairn, near)
    assert len(near) == 2 and all(len(p.text) <= 250 for p in near)
    assert TRAVEL[1] in near[0].text and near[0].end <= near[1].start
    assert near[1].text.startswith(TRAVEL[3]) and near[1].text.endswith(TRAVEL[4])


def test_a_caller_never_gets_text_it_cannot_read(cairn: Cairn, monkeypatch: pytest.MonkeyPatch) -> None:
    guide_ids = [chunk_id for chunk_id, _, _ in _chunks(cairn, "guide.md")]
    (notes_id,) = [chunk_id for chunk_id, _, _ in _chunks(cairn, "notes.md")]
    hits = _hits(cairn, [*guide_ids, notes_id])
    alice = cairn.principals.resolve("alice")
    bob = cairn.principals.resolve("bob")

    seen = _parents(cairn, hits, alice, max_chars=10_000)
    assert {p.source.rsplit("/", 1)[-1] for p in seen} == {"guide.md", "notes.md"}
    _check_exact(cairn, seen)
    assert _parents(cairn, hits[:-1], bob) == []
    (only,) = _parents(cairn, hits, bob, max_chars=10_000)
    assert only.source.endswith("notes.md") and "Staff" not in only.text and "cafeteria" in only.text

    # Row-level security alone (the application's clause switched off) still shows bob nothing.
    monkeypatch.setattr(Access, "clause", lambda self, column, param="acl_ids": ("", {}))
    assert _parents(cairn, hits[:-1], bob) == []
    assert [p.chunk_id for p in _parents(cairn, hits, bob)] == [notes_id]


def test_hits_of_a_replaced_version_yield_nothing(cairn: Cairn, tmp_path: Path) -> None:
    old = _hits(cairn, [_travel(cairn)[0]])
    (tmp_path / "docs" / "hr" / "guide.md").write_text(GUIDE.replace("economy", "premium economy"), encoding="utf-8")
    assert cairn.ingestor.sync_folder(tmp_path / "docs", "kb").count("updated") == 1
    assert _parents(cairn, old) == []
    assert _parents(cairn, []) == []
