"""The CLI's JSON contracts, exit codes and incremental ingest, through the real command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_ingest_ask_search_contracts(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "it.txt").write_text("Report suspicious emails immediately to security@example.com.", encoding="utf-8")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 4)

    code, out = run("ingest", str(docs), "--kb", "handbook", "--json")
    summary = json.loads(out)
    assert code == 3, "a failed file makes the exit status 3"
    assert (summary["added"], summary["error"], summary["files"]) == (1, 1, 2)
    assert summary["problems"][0]["source"].endswith("broken.pdf")

    (docs / "broken.pdf").unlink()
    code, out = run("ingest", str(docs), "--kb", "handbook", "--json")
    assert code == 0 and json.loads(out)["unchanged"] == 1

    code, out = run("ask", "How do I report a suspicious email?", "--kb", "handbook", "--json")
    answer = json.loads(out)
    assert code == 0
    assert set(answer) == {"answer", "refused", "citations", "timings_ms", "grounding", "guards", "audit_id", "route"}
    assert (answer["route"]["tier"], answer["route"]["sensitive"]) == ("default", None), "one local tier: not assessed"
    assert answer["refused"] is False and "security@example.com" in answer["answer"]
    (citation,) = answer["citations"]
    assert set(citation) == {"id", "chunk_id", "source", "page", "start", "end", "text"}
    assert citation["source"].endswith("it.txt") and citation["page"] is None
    body = (docs / "it.txt").read_text(encoding="utf-8")
    assert body[citation["start"] : citation["end"]] == citation["text"]

    code, out = run("ask", "What is the capital of France?", "--kb", "handbook", "--json")
    assert code == 0 and json.loads(out)["refused"] is True and json.loads(out)["citations"] == []

    code, out = run("search", "suspicious email", "--kb", "handbook", "--json", "-k", "3")
    hits = json.loads(out)["hits"]
    assert code == 0 and len(hits) == 1
    assert set(hits[0]) == {"chunk_id", "source", "page", "start", "end", "score", "text"}

    code, out = run("kb", "list", "--json")
    assert json.loads(out)["knowledge_bases"][0] | {"description": ""} == {
        "name": "handbook",
        "description": "",
        "documents": 1,
        "chunks": 1,
    }

    code, out = run("kb", "describe", "handbook", "IT security rules for staff")
    assert code == 0
    code, out = run("kb", "list", "--json")
    assert json.loads(out)["knowledge_bases"][0]["description"] == "IT security rules for staff"

    code, out = run("search", "suspicious email", "--kb", "*", "--profile", "quality", "--json")
    assert code == 0 and json.loads(out)["hits"][0]["source"].endswith("it.txt")

    code, out = run("index", "graph", "--kb", "handbook", "--json")
    graph = json.loads(out)
    assert code == 0 and graph["chunks"] == 1 and graph["failed"] == 0 and graph["extractor"].startswith("heuristic")

    code, out = run("index", "check", "--json")
    assert code == 0 and json.loads(out)["ok"] is True


def test_errors_are_json_and_exit_1(run, tmp_path: Path, database_url: str) -> None:  # type: ignore[no-untyped-def]
    """Through the real entry point (main), where errors are mapped: no traceback, JSON on stdout."""
    env = {**os.environ, "CAIRN_HOME": str(tmp_path / "home"), "CAIRN_DATABASE_URL": database_url}
    env["CAIRN_EMBEDDER"] = "fake:hash?dim=64"
    proc = subprocess.run(
        [sys.executable, "-m", "cairn", "ask", "anything", "--kb", "missing", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["error"]["code"] == "not_found"
    assert "Traceback" not in proc.stderr
    human = subprocess.run(
        [sys.executable, "-m", "cairn", "search", "x", "--kb", "missing"], capture_output=True, text=True, env=env
    )
    assert human.returncode == 1 and human.stderr.startswith("Error: knowledge base 'missing' does not exist")
