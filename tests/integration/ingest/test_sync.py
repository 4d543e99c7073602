"""Folder sync end to end on real Postgres: incremental, atomic, and tolerant of bad files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cairn.assistant import Cairn
from cairn.types import SYSTEM


def _write(root: Path, name: str, content: str | bytes) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _statuses(report: object) -> dict[str, str]:
    return {Path(f.source).name: f.status for f in report.files}  # type: ignore[attr-defined]


def test_incremental_sync(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn = make_cairn(chunk_size=200, chunk_overlap=20)
    docs = tmp_path / "docs"
    _write(
        docs,
        "policy.md",
        "# Travel\n\nTrains are preferred for trips under 500 km.\n\n## Hotels\n\nBook via the portal.",
    )
    _write(docs, "fake.pdf", "This PDF is really plain text about the canteen menu.")
    _write(docs, "corrupt.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 4)
    _write(docs, "image.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    _write(docs, "sub/notes.txt", "Parking permits are renewed every January.")
    _write(docs, ".hidden.txt", "never indexed")

    first = cairn.ingestor.sync_folder(docs, "kb")
    status = _statuses(first)
    assert status == {
        "policy.md": "added",
        "fake.pdf": "added",
        "corrupt.pdf": "error",
        "image.png": "skipped",
        "notes.txt": "added",
    }
    assert not first.ok
    fake = next(f for f in first.files if f.source.endswith("fake.pdf"))
    assert any("text" in w for w in fake.warnings)
    hits = cairn.retriever.search("train trips hotels", ["kb"], principal=SYSTEM).hits
    assert hits[0].source.endswith("policy.md") and hits[0].heading_path[0] == "Travel"

    second = cairn.ingestor.sync_folder(docs, "kb")
    assert _statuses(second)["policy.md"] == "unchanged"

    _write(docs, "sub/notes.txt", "Parking permits are now renewed every March.")
    (docs / "fake.pdf").unlink()
    third = cairn.ingestor.sync_folder(docs, "kb")
    status = _statuses(third)
    assert status["notes.txt"] == "updated" and status["fake.pdf"] == "deleted"
    texts = " ".join(h.text for h in cairn.retriever.search("parking permits canteen", ["kb"], principal=SYSTEM).hits)
    assert "March" in texts and "January" not in texts and "canteen" not in texts
    (doc,) = [d for d in cairn.store.list_documents(SYSTEM, "kb") if d.source.endswith("notes.txt")]
    assert doc.version == 2

    full = cairn.ingestor.sync_folder(docs, "kb", full=True)
    assert _statuses(full)["policy.md"] == "updated"
    assert {Path(d.source).name for d in cairn.store.list_documents(SYSTEM, "kb")} == {"policy.md", "notes.txt"}


def test_corrupt_update_keeps_last_good_version(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn = make_cairn()
    docs = tmp_path / "docs"
    _write(docs, "a.html", "<html><body><p>The VPN gateway is vpn.example.com.</p></body></html>")
    cairn.ingestor.sync_folder(docs, "kb")
    (docs / "a.html").write_bytes(b"\x00\x01\x02 not html any more \xff\xfe" * 10)
    report = cairn.ingestor.sync_folder(docs, "kb")
    assert _statuses(report)["a.html"] in ("error", "skipped")
    assert "vpn.example.com" in cairn.retriever.search("vpn gateway", ["kb"], principal=SYSTEM).hits[0].text


def test_metadata_filters_apply_inside_retrieval(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    from cairn.index.search import Filters

    cairn = make_cairn()
    docs = tmp_path / "docs"
    _write(docs, "policies/leave.md", "# Leave\n\nAnnual leave is 30 days for every employee.")
    _write(docs, "notes/leave.txt", "Annual leave notes: 30 days, ask your manager.")
    _write(docs, "notes/100%_leave.txt", "Annual leave planning sheet.")
    cairn.ingestor.sync_folder(docs, "kb")
    assert len({h.source for h in cairn.retriever.search("annual leave", ["kb"], principal=SYSTEM).hits}) == 3
    only_md = cairn.retriever.search(
        "annual leave", ["kb"], filters=Filters(mimes=("text/markdown",)), principal=SYSTEM
    ).hits
    assert {Path(h.source).name for h in only_md} == {"leave.md"}
    under_notes = cairn.retriever.search(
        "annual leave", ["kb"], filters=Filters(sources=("notes/*",)), principal=SYSTEM
    ).hits
    assert {Path(h.source).name for h in under_notes} == {"leave.txt", "100%_leave.txt"}
    literal = cairn.retriever.search(
        "annual leave", ["kb"], filters=Filters(sources=("100%_*",)), principal=SYSTEM
    ).hits
    assert {Path(h.source).name for h in literal} == {"100%_leave.txt"}
    meta = cairn.retriever.search(
        "annual leave", ["kb"], filters=Filters(metadata=(("filename", "leave.md"),)), principal=SYSTEM
    ).hits
    assert {Path(h.source).name for h in meta} == {"leave.md"}
    assert (
        cairn.retriever.search("annual leave", ["kb"], filters=Filters(sources=("*.pdf",)), principal=SYSTEM).hits == []
    )
