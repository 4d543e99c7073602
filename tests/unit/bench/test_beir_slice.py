"""The SciFact slice bench/peers.py compares systems on: deterministic, and every judged document kept."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from cairn.eval.beir import load_beir

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from beir_slice import select


@pytest.fixture
def beir(tmp_path: Path) -> Path:
    docs = [{"_id": f"d{i}", "title": f"Title {i}", "text": f"abstract number {i}"} for i in range(40)]
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs), encoding="utf-8")
    queries = [{"_id": f"q{i}", "text": f"claim {i}"} for i in range(5)]
    (tmp_path / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries), encoding="utf-8")
    (tmp_path / "qrels").mkdir()
    judged = ["q0\td3\t1", "q0\td31\t1", "q1\td7\t1", "q2\td12\t1", "q2\td13\t0", "q4\td39\t1"]
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(judged), encoding="utf-8")
    return tmp_path


def test_a_slice_keeps_the_judged_documents_of_its_queries_and_is_deterministic(beir: Path) -> None:
    dataset = load_beir(beir)
    chosen = select(dataset, docs=10, queries=3)
    ids = [doc_id for doc_id, _ in chosen.documents]
    assert chosen.query_ids == ["q0", "q1", "q2"]  # q3 has no judgment: not a test query
    assert {"d3", "d31", "d7", "d12"} <= set(ids) and chosen.judged == 4  # grade 0 is not relevant
    assert len(ids) == 10 and len(set(ids)) == 10
    assert ids == [doc_id for doc_id, _ in select(dataset, docs=10, queries=3).documents]
    assert ids == sorted(ids, key=lambda d: int(d[1:]))  # corpus order is kept
    bigger = {doc_id for doc_id, _ in select(dataset, docs=14, queries=3).documents}
    assert set(ids) < bigger  # distractors come in one fixed order: a larger slice extends a smaller one


def test_the_whole_corpus_and_a_slice_too_small_for_its_judgments(beir: Path) -> None:
    dataset = load_beir(beir)
    assert len(select(dataset).documents) == 40 and select(dataset).queries == 4
    with pytest.raises(SystemExit, match="cannot hold the 5 documents judged"):
        select(dataset, docs=4)
