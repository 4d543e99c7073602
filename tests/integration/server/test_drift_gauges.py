"""A published drift report reaches every server's /metrics without a scrape computing anything."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from cairn.ops.drift import DRIFT, INSUFFICIENT, OK, DriftReport, DriftStore, Signal, Window
from cairn.types import SYSTEM

from .conftest import World


def _report(computed_at: datetime) -> DriftReport:
    reference = Window(computed_at - timedelta(days=14), computed_at - timedelta(days=7), "ref")
    current = Window(computed_at - timedelta(days=7), computed_at, "last-7d", live=True)
    signals = (
        Signal("query_mmd", 0.0004, 0.41, 0.01, OK, {"n": 800}, {"n": 900}),
        Signal("refusal_rate", 0.18, 0.00002, 0.01, DRIFT, {"n": 800, "rate": 0.1}, {"n": 900, "rate": 0.28}),
        Signal("feedback_down_rate", None, None, 0.01, INSUFFICIENT, {"n": 3}, {"n": 4}, reason="too few votes"),
    )
    return DriftReport(reference, current, signals, computed_at, 9.5, "onnx-minilm", (800, 900))


def _metrics(client: TestClient, world: World, needle: str) -> str:
    deadline = time.monotonic() + 20
    while True:
        text = client.get("/metrics", headers=world.auth("bob")).text
        if needle in text or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def test_the_newest_published_report_is_served_as_gauges(make_client: Callable[..., TestClient], world: World) -> None:
    computed_at = datetime.now(UTC).replace(microsecond=0)
    DriftStore(world.cairn.db).publish(SYSTEM, _report(computed_at))
    client = make_client()
    text = _metrics(client, world, 'cairn_drift_alert{signal="refusal_rate"}')
    assert 'cairn_drift_alert{signal="refusal_rate"} 1.0' in text
    assert 'cairn_drift_alert{signal="query_mmd"} 0.0' in text
    assert 'cairn_drift_value{signal="refusal_rate"} 2e-05' in text
    assert 'cairn_drift_threshold{signal="refusal_rate"} 0.01' in text
    assert 'cairn_drift_statistic{signal="refusal_rate"} 0.18' in text
    assert 'signal="feedback_down_rate"' not in text, "no data, no series"
    stamp = next(line for line in text.splitlines() if line.startswith("cairn_drift_report_timestamp_seconds "))
    assert float(stamp.split()[1]) == computed_at.timestamp()
