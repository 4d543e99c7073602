"""bench/peers.py end to end on a tiny corpus, where the peers' packages are installed (`.[bench]`; not in CI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"


@pytest.mark.parametrize("database_url", ["embedded"], indirect=True)
def test_peers_bench_compares_cairn_with_langchain_chroma(tiny_beir: Path, database_url: str, tmp_path: Path) -> None:
    pytest.importorskip("langchain_chroma", reason="the peers' packages are the optional extra `bench`")
    pytest.importorskip("langchain_text_splitters")
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "peers.py"),
            *("--dataset", str(tiny_beir), "--peers", "chroma-onnx", "--docs", "12", "--queries", "4"),
            *("--sample-copies", "1", "--out", str(out)),
        ],
        env=os.environ | {"CAIRN_DATABASE_URL": database_url, "CAIRN_EMBEDDER": "fake:hash?dim=64"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "peers.json").read_text(encoding="utf-8"))
    assert result["refused"] == 0, result["refused_addresses"]  # Chroma neither downloaded nor phoned home
    rows = {r["system"]: r for r in result["scifact"]["rows"]}
    assert set(rows) == {"cairn", "chroma-onnx"}
    assert rows["cairn"]["documents"] == rows["chroma-onnx"]["documents"] == 12
    assert all(r["p50_ms"] > 0 and 0 <= r["ndcg@10"] <= 1 for r in rows.values())
    files = {r["system"]: r for r in result["files"]["rows"]}
    assert files["cairn"]["pages"] == files["chroma-onnx"]["pages"] > 0  # same parsers, same pages
    assert "ingestion speed-up" in (out / "peers.md").read_text()
