"""bench/scale.py end to end on a tiny seed: grown through the store, measured, and the index still checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"


@pytest.mark.parametrize("database_url", ["embedded"], indirect=True)
def test_scale_bench_grows_and_measures(tiny_beir: Path, database_url: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = os.environ | {"CAIRN_DATABASE_URL": database_url, "CAIRN_EMBEDDER": "fake:hash?dim=64"}
    args = [
        *("--dataset", str(tiny_beir), "--chunks-per-doc", "4", "--queries", "2", "--recall-queries", "3"),
        *("--shares", "0.2", "0.5"),  # readers of 20% and 50%: a tiny corpus has no 1% document
    ]
    done = subprocess.run(
        [sys.executable, str(BENCH / "scale.py"), *args, "--sizes", "40", "120", "--out", str(out)],
        env=env | {"CAIRN_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "scale.json").read_text(encoding="utf-8"))
    small, large = result["rows"]
    assert (small["chunks"], large["chunks"]) == (40, 120)  # 24 seed passages or more, then replicas
    assert small["check"]["ok"] and large["check"]["ok"], (small["check"], large["check"])
    assert large["postings"] > small["postings"] and large["document_count"] == 30
    assert large["admin"]["recall"]["hnsw_recall@10"] == 1.0  # HNSW is exact at this size
    for reader in ("20pct", "50pct"):
        assert large[reader]["hybrid"]["p50_ms"] > 0
        assert large[reader]["recall"]["served_recall@10"] == 1.0, large[reader]  # served filtered search: exact
    assert (out / "scale.png").stat().st_size > 10_000 and "| 120 |" in (out / "scale.md").read_text()
    # A second run resumes from what is stored rather than growing again.
    again = subprocess.run(
        [sys.executable, str(BENCH / "scale.py"), *args, "--sizes", "120", "--no-check", "--out", str(out)],
        env=env | {"CAIRN_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    rows = json.loads((out / "scale.json").read_text(encoding="utf-8"))["rows"]
    assert [r["chunks"] for r in rows] == [40, 120] and rows[1]["grown_chunks"] == 0
