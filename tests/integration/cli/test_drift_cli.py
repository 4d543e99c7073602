"""``cairn drift report``: JSON shape, the table, the plot, exit status 4 on drift, who may run it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from cairn.assistant import Cairn
from cairn.errors import Forbidden, InputError
from cairn.ops.audit import AuditEvent
from cairn.ops.drift import SIGNALS
from cairn.types import SYSTEM

QUESTIONS = [
    f"How do I {verb} my {thing}?"
    for verb in ("reset", "claim", "replace", "renew", "report", "book", "cancel", "approve")
    for thing in ("laptop", "expenses", "badge", "hotel", "password", "training", "leave")
]  # 56 questions


def _burst(cairn: Cairn, *, seed: int, refusal: float) -> str:
    """Audit one answer per question; returns the burst's window as ``START..END`` (database clock)."""
    rng = np.random.default_rng(seed)
    ids = []
    for question in QUESTIONS:
        refused = bool(rng.random() < refusal)
        cosine = float(np.clip(rng.normal(0.3 if refused else 0.6, 0.05), 0, 1))
        event = AuditEvent(
            kind="ask",
            question=question,
            kbs=["default"],
            retrieved=[
                {
                    "chunk_id": 1,
                    "document_id": 1,
                    "version": 1,
                    "source": "a.md",
                    "kb": "default",
                    "score": 1.0,
                    "cosine": cosine,
                }
            ],
            answer="" if refused else " ".join(["word"] * int(rng.integers(20, 40))),
            refused=refused,
            grounding=None if refused else {"verdict": "grounded", "supported_ratio": 1.0},
            timings_ms={"total": 30.0},
        )
        ids.append(cairn.audit.record(SYSTEM, event).id)
    at = {e.id: e.at for e in cairn.audit.list(SYSTEM, limit=len(ids))}
    time.sleep(0.01)
    return f"{at[ids[0]].isoformat()}..{(at[ids[-1]] + timedelta(microseconds=1)).isoformat()}"


@pytest.fixture
def windows(make_cairn: Callable[..., Cairn]) -> tuple[str, str]:
    """A reference burst refusing 5% and a current one refusing 60%; the current one is open-ended (live)."""
    cairn = make_cairn()
    reference = _burst(cairn, seed=1, refusal=0.05)
    current = _burst(cairn, seed=2, refusal=0.6)
    cairn.principals.add_user("alice")
    return reference, current.partition("..")[0] + ".."


def test_json_report_exits_4_on_drift_and_is_published(
    run: Callable[..., tuple[int, str]], windows: tuple[str, str], tmp_path: Path
) -> None:
    reference, current = windows
    png = tmp_path / "drift.png"
    code, out = run(
        "drift",
        "report",
        "--reference",
        reference,
        "--current",
        current,
        "--min-samples",
        "40",
        "--json",
        "--plot",
        str(png),
    )
    assert code == 4
    report = json.loads(out)
    assert set(report) >= {
        "reference",
        "current",
        "computed_at",
        "seconds",
        "embedder",
        "records",
        "drift",
        "alerts",
        "config",
        "signals",
        "published",
    }
    assert report["drift"] is True and "refusal_rate" in report["alerts"]
    assert report["records"] == {"reference": 56, "current": 56}
    assert report["current"]["live"] is True and isinstance(report["published"], int)
    assert [s["signal"] for s in report["signals"]] == list(SIGNALS)
    for signal in report["signals"]:
        assert set(signal) == {
            "signal",
            "group",
            "statistic_name",
            "statistic",
            "p_value",
            "value",
            "threshold",
            "alert_when",
            "verdict",
            "reason",
            "reference",
            "current",
            "details",
        }
        assert signal["verdict"] in ("ok", "drift", "insufficient_data")
    refusal = next(s for s in report["signals"] if s["signal"] == "refusal_rate")
    assert refusal["verdict"] == "drift" and refusal["p_value"] < refusal["threshold"] == 0.01
    assert refusal["reference"]["n"] == 56 and refusal["current"]["rate"] > 0.4
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_and_exit_status_0_without_a_verdict(
    run: Callable[..., tuple[int, str]], windows: tuple[str, str]
) -> None:
    reference, current = windows
    code, out = run("drift", "report", "--reference", reference, "--current", current, "--min-samples", "40")
    assert code == 4
    row = next(line for line in out.splitlines() if "refusal_rate" in line and "%" in line)
    assert "5.4% of 56" in row and "p < 0.01" in row and row.rstrip(" │").endswith("drift")
    assert "drift in top_score_psi, top_score_ks, refusal_rate (exit status 4)" in out
    code, out = run(
        "drift", "report", "--reference", reference, "--current", current, "--min-samples", "100", "--no-publish"
    )
    assert code == 0, "no signal has the data for a verdict: nothing to alert on"
    assert "insufficient data" in out and "no drift" in out


def test_bad_windows_and_non_administrators_are_refused(
    run: Callable[..., tuple[int, str]], windows: tuple[str, str]
) -> None:
    reference, current = windows
    with pytest.raises(InputError, match="overlaps"):
        run("drift", "report", "--reference", reference, "--current", reference)
    with pytest.raises(InputError, match="not a window"):
        run("drift", "report", "--current", "yesterday")
    with pytest.raises(Forbidden):
        run("drift", "report", "--reference", reference, "--current", current, "--as-user", "alice")
