"""Eight ingests of overlapping folders into one knowledge base at once: one version per document, queries never mixed.

Each ingest is its own :class:`Cairn` (its own connection pool, as separate ``cairn ingest``
processes would have) on a thread, writing in batches of a few chunks so that the runs interleave
transaction by transaction. The folders overlap: the root, each subfolder, twice over. The store
tests prove one writer against readers (tests/integration/index/test_store.py); this proves
writers against writers, through the whole folder sync:

- no ingest fails (no deadlock, no unique violation) and none reports a file as an error;
- afterwards every file is stored exactly once, as exactly the chunks of the version on disk, and
  ``check_index`` finds no duplicate or orphan; files deleted meanwhile are gone;
- while the second round re-indexes every file (``--full``: each document is rewritten by several
  ingests), searches keep running and never see chunks of two versions of one document.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

from cairn.assistant import Cairn
from cairn.index.check import check_index
from cairn.ingest.parse import parse_bytes
from cairn.types import SYSTEM

KB = "shared"
FOLDERS = ("a", "b", "c")
FILES_PER_FOLDER = 6
PARTS = 5
INGESTS = 8
SETTINGS = {
    "chunk_size": 200,
    "chunk_overlap": 0,
    # Parsing is not what this test is about: in-process parsing spares eight worker pools.
    "parse_isolation": "off",
}


def _text(name: str, version: int) -> str:
    """Paragraphs that each become one chunk, every one naming its file and version."""
    return "\n\n".join(
        f"{name} version{version} part{part}: badge access rules for the {name} office, revision {version}."
        for part in range(PARTS)
    )


def _write_all(root: Path, version: int) -> dict[str, str]:
    """Write every file at ``version``; returns source -> content hash."""
    hashes = {}
    for folder in FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for index in range(FILES_PER_FOLDER):
            path = root / folder / f"{folder}{index}.txt"
            data = _text(f"{folder}{index}", version).encode()
            path.write_bytes(data)
            hashes[str(path.resolve())] = hashlib.sha256(data).hexdigest()
    return hashes


def _concurrently(cairns: list[Cairn], targets: list[Path], *, full: bool) -> list[str]:
    """Run one sync per (cairn, target) at the same moment; returns every error any of them met."""
    errors: list[str] = []
    barrier = threading.Barrier(len(targets))

    def ingest(cairn: Cairn, target: Path) -> None:
        try:
            barrier.wait()
            report = cairn.ingestor.sync_folder(target, KB, full=full)
            errors.extend(f"{target}: {f.source}: {f.message}" for f in report.files if f.status == "error")
        except Exception as exc:  # every failure is collected, so one thread's cannot hide another's
            errors.append(f"{target}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=ingest, args=pair) for pair in zip(cairns, targets, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "an ingest did not finish (deadlock?)"
    return errors


def _assert_one_whole_version_each(cairn: Cairn, expected: dict[str, str]) -> None:
    report = check_index(cairn.db)
    assert report.ok, report.problems
    assert (report.duplicates, report.orphans) == (0, 0)
    with cairn.db.connection(SYSTEM) as conn:
        rows = conn.execute(
            "SELECT d.source, d.content_hash, d.body, array_agg(c.text ORDER BY c.ordinal)"
            " FROM documents d JOIN knowledge_bases kb ON kb.id = d.kb_id LEFT JOIN chunks c ON c.document_id = d.id"
            " WHERE kb.name = %s GROUP BY d.id",
            (KB,),
        ).fetchall()
    stored = {source: (digest, body, chunks) for source, digest, body, chunks in rows}
    assert sorted(stored) == sorted(expected), "exactly the files on disk, each stored once"
    for source, (digest, body, chunks) in stored.items():
        assert digest == expected[source], f"{source}: stored an older version"
        wanted = [c.text for c in cairn.chunker.chunk(parse_bytes(body.encode(), Path(source).name))]
        assert chunks == wanted, f"{source}: chunks are not exactly those of its stored version"


def test_overlapping_concurrent_ingests_store_one_version_per_document(
    make_cairn: Callable[..., Cairn], tmp_path: Path
) -> None:
    root = tmp_path / "docs"
    expected = _write_all(root, version=1)
    cairns = [make_cairn(**SETTINGS) for _ in range(INGESTS)]
    for cairn in cairns:
        cairn.ingestor.batch_chunks = 4  # many small transactions, so the writers interleave
    targets = [root, root / "a", root / "b", root, root / "c", root / "a", root / "b", root]

    assert _concurrently(cairns, targets, full=False) == []
    _assert_one_whole_version_each(cairns[0], expected)

    # Round two: every file changes, two are deleted, and every ingest re-indexes in full while
    # searches run, so each document is rewritten several times under the searches' feet.
    expected = _write_all(root, version=2)
    for gone in (root / "a" / "a0.txt", root / "c" / "c5.txt"):
        gone.unlink()
        del expected[str(gone.resolve())]
    reader = make_cairn(**SETTINGS)
    config = reader.retrieval_config.with_(top_k=PARTS * 2)
    stop = threading.Event()
    mixed: list[str] = []
    searches = 0

    def search() -> None:
        nonlocal searches
        while not stop.is_set():
            for name in ("a1", "b2", "c3"):
                hits = reader.retriever.search(f"{name} badge access", [KB], config, principal=SYSTEM).hits
                versions: dict[str, set[str]] = {}
                for hit in hits:
                    words = hit.text.split()
                    versions.setdefault(hit.source, set()).add(words[1])
                mixed.extend(f"{s}: {sorted(v)}" for s, v in versions.items() if len(v) > 1)
                searches += 1

    searcher = threading.Thread(target=search)
    searcher.start()
    try:
        errors = _concurrently(cairns, targets, full=True)
    finally:
        stop.set()
        searcher.join(timeout=60)
    assert errors == []
    assert searches >= 3, "the searches did not overlap the re-indexing"
    assert mixed == [], mixed[:5]
    _assert_one_whole_version_each(cairns[0], expected)
    with cairns[0].db.connection(SYSTEM) as conn:
        versions = conn.execute("SELECT min(version), max(version) FROM documents").fetchone()
    assert versions is not None and versions[0] >= 2, "every document was rewritten at least once"

    # A last sync finds nothing to do: the concurrent runs converged on what is on disk.
    final = cairns[0].ingestor.sync_folder(root, KB)
    assert {f.status for f in final.files} == {"unchanged"}
