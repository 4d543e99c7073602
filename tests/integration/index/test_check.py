"""``check_index`` and ``cairn index check``: a clean index passes, and each kind of damage is named.

Each corruption is made with plain SQL behind cairn's back (dropping a constraint first where the
schema would refuse it), and the test asserts that exactly the matching checks fire, so a check
that fires for the wrong reason, or that also fires on a healthy index, fails here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from cairn.assistant import Cairn
from cairn.cli import index_cmd  # noqa: F401  (registers ``cairn index``)
from cairn.cli.app import app
from cairn.index.check import check_index

PARAGRAPHS = [
    "Remote work is allowed two days a week for every employee after probation.",
    "Travel must be booked through the internal portal and approved by a manager.",
    "The cafeteria opens at eight and closes at three; vegetarian meals are daily.",
    "Security badges must be worn visibly inside the building at all times.",
    "Expense reports are due by the fifth working day of the following month.",
]


def _corpus(root: Path) -> Path:
    folder = root / "docs"
    folder.mkdir()
    for i in range(3):
        paragraphs = PARAGRAPHS[i:] + PARAGRAPHS[:i]
        (folder / f"policy{i}.txt").write_text("\n\n".join(paragraphs * 2), encoding="utf-8")
    (folder / "short.txt").write_text("Parking is free for bicycles.", encoding="utf-8")
    return folder


def _ingested(make_cairn: Callable[..., Cairn], tmp_path: Path) -> Cairn:
    cairn = make_cairn(chunk_size=200, chunk_overlap=0)
    report = cairn.ingestor.sync_folder(_corpus(tmp_path), "kb")
    assert report.ok and report.count("added") == 4
    return cairn


def _sql(cairn: Cairn, *statements: str) -> None:
    """Corrupt the index as the schema owner would (the application role may not alter tables)."""
    with psycopg.connect(cairn.db.url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


# A chunk of a multi-chunk document that has several postings, so one posting can go missing
# without the chunk losing all of them.
_SOME_CHUNK = "(SELECT min(chunk_id) FROM postings GROUP BY chunk_id HAVING count(*) > 3 ORDER BY 1 LIMIT 1)"
_FIRST_DOC = "(SELECT min(id) FROM documents)"

CORRUPTIONS: dict[str, tuple[list[str], dict[str, int]]] = {
    "posting deleted": (
        [
            f"DELETE FROM postings WHERE (chunk_id, term) = (SELECT chunk_id, min(term) FROM postings"
            f" WHERE chunk_id = {_SOME_CHUNK} GROUP BY chunk_id)"
        ],
        {"tf_mismatch": 1},
    ),
    "all postings of a chunk deleted": (
        [f"DELETE FROM postings WHERE chunk_id = {_SOME_CHUNK}"],
        {"missing_postings": 1},
    ),
    "posting dl changed": (
        [f"UPDATE postings SET dl = dl + 1 WHERE chunk_id = {_SOME_CHUNK}"],
        {"dl_mismatch": 1},
    ),
    "chunk text changed": (
        [f"UPDATE chunks SET text = text || ' (edited)' WHERE id = {_SOME_CHUNK}"],
        {"misplaced_text": 1},
    ),
    "kb_stats tampered": (
        ["UPDATE kb_stats SET total_length = total_length + 7"],
        {"kb_stats_drift": 1},
    ),
    "kb_stats of a knowledge base without chunks": (
        [
            "INSERT INTO knowledge_bases (name) VALUES ('empty')",
            "INSERT INTO kb_stats SELECT id, 3, 30 FROM knowledge_bases WHERE name = 'empty'",
        ],
        {"kb_stats_drift": 1},
    ),
    "duplicate ordinal": (
        [
            "ALTER TABLE chunks DROP CONSTRAINT chunks_document_id_ordinal_key",
            "INSERT INTO chunks (document_id, kb_id, ordinal, text, start_char, end_char, length, embedding)"
            f" SELECT document_id, kb_id, ordinal, text, start_char, end_char, 0, embedding FROM chunks"
            f" WHERE id = {_SOME_CHUNK}",
        ],
        {"duplicate_ordinals": 1},
    ),
    "duplicate source": (
        [
            "ALTER TABLE documents DROP CONSTRAINT documents_kb_id_source_key",
            "INSERT INTO documents (kb_id, source, mime, content_hash, size_bytes, body)"
            f" SELECT kb_id, source, mime, content_hash, size_bytes, body FROM documents WHERE id = {_FIRST_DOC}",
        ],
        {"duplicate_sources": 1},
    ),
    "chunk of a deleted document": (
        [
            "ALTER TABLE chunks DROP CONSTRAINT chunks_document_id_fkey",
            "DELETE FROM documents WHERE source LIKE '%short.txt'",
        ],
        {"orphan_chunks": 1},
    ),
    "postings of a deleted chunk": (
        [
            "ALTER TABLE postings DROP CONSTRAINT postings_chunk_id_fkey",
            "CREATE TABLE gone AS SELECT count(*) AS n FROM postings"
            " WHERE chunk_id = (SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id"
            " WHERE d.source LIKE '%short.txt')",
            "DELETE FROM documents WHERE source LIKE '%short.txt'",
        ],
        {"orphan_postings": -1},  # -1: as many as the chunk had, read back from ``gone``
    ),
    "middle chunk lost": (
        [f"DELETE FROM chunks WHERE document_id = {_FIRST_DOC} AND ordinal = 1"],
        {"ordinal_gaps": 1},
    ),
    "embedding of another dimension": (
        ["DROP INDEX chunks_embedding_hnsw_64", f"UPDATE chunks SET embedding = '[1,2,3]' WHERE id = {_SOME_CHUNK}"],
        {"wrong_dimension": 1},
    ),
    "version zero": (
        [f"UPDATE documents SET version = 0 WHERE id = {_FIRST_DOC}"],
        {"bad_versions": 1},
    ),
}


def test_a_clean_ingest_checks_ok(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn = _ingested(make_cairn, tmp_path)
    report = check_index(cairn.db)
    assert report.to_json() == {
        "ok": True,
        "documents": 4,
        "chunks": report.chunks,
        "orphans": 0,
        "duplicates": 0,
        "problems": [],
    }
    assert report.chunks > 4, "the corpus must have multi-chunk documents for the checks to mean much"
    assert set(report.violations) >= {"orphan_postings", "misplaced_text", "kb_stats_drift", "ordinal_gaps"}

    # Updates and deletions keep it clean: the invariants hold across the write path, not only after inserts.
    folder = tmp_path / "docs"
    (folder / "policy0.txt").write_text("\n\n".join(PARAGRAPHS[:2]), encoding="utf-8")
    (folder / "policy1.txt").unlink()
    report2 = cairn.ingestor.sync_folder(folder, "kb")
    assert (report2.count("updated"), report2.count("deleted")) == (1, 1)
    after = check_index(cairn.db)
    assert after.ok and after.documents == 3, after.problems


@pytest.mark.parametrize("database_url", ["embedded"], indirect=True)
@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_is_detected(make_cairn: Callable[..., Cairn], tmp_path: Path, name: str) -> None:
    cairn = _ingested(make_cairn, tmp_path)
    statements, expected = CORRUPTIONS[name]
    _sql(cairn, *statements)
    if expected.get("orphan_postings") == -1:
        with psycopg.connect(cairn.db.url) as conn:
            row = conn.execute("SELECT n FROM gone").fetchone()
        assert row is not None and row[0] > 0
        expected = {"orphan_postings": int(row[0])}

    report = check_index(cairn.db)

    assert not report.ok
    assert {k: v for k, v in report.violations.items() if v} == expected
    assert len(report.problems) == len(expected)
    assert str(next(iter(expected.values()))) in report.problems[0]
    payload = report.to_json()
    assert payload["ok"] is False
    assert payload["orphans"] == expected.get("orphan_postings", 0) + expected.get("orphan_chunks", 0)
    assert payload["duplicates"] == expected.get("duplicate_ordinals", 0) + expected.get("duplicate_sources", 0)


@pytest.mark.parametrize("database_url", ["embedded"], indirect=True)
def test_cli_reports_json_and_exit_status(
    make_cairn: Callable[..., Cairn], tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cairn = _ingested(make_cairn, tmp_path)
    monkeypatch.setenv("CAIRN_DATABASE_URL", database_url)
    monkeypatch.setenv("CAIRN_EMBEDDER", "fake:hash?dim=64")
    monkeypatch.setenv("CAIRN_HOME", str(tmp_path / "home"))
    runner = CliRunner()

    clean = runner.invoke(app, ["index", "check", "--json"])
    assert clean.exit_code == 0, clean.output
    payload = json.loads(clean.stdout)
    assert set(payload) == {"ok", "documents", "chunks", "orphans", "duplicates", "problems"}
    assert payload["ok"] is True and payload["documents"] == 4 and payload["problems"] == []

    human = runner.invoke(app, ["index", "check"])
    assert human.exit_code == 0 and "index ok" in human.stdout and "4 documents" in human.stdout

    _sql(cairn, "UPDATE kb_stats SET chunk_count = chunk_count + 1")
    broken = runner.invoke(app, ["index", "check", "--json"])
    assert broken.exit_code == 1
    payload = json.loads(broken.stdout)
    assert payload["ok"] is False and len(payload["problems"]) == 1 and "kb_stats" in payload["problems"][0]

    human = runner.invoke(app, ["index", "check"])
    assert human.exit_code == 1 and "index broken" in human.stdout and "kb_stats" in human.stdout
