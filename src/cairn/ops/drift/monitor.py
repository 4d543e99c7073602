"""Keeps a server's drift gauges current, off the request path and off the /metrics scrape.

A background thread wakes every ``poll_s`` seconds and:

1. with ``interval_s > 0``, when the newest published report is older than ``interval_s``, takes
   the database's refresh lock (one replica computes, the others skip), computes a report over the
   default windows and publishes it;
2. shows the newest published report, if it has not shown it yet: the one it just computed, or one
   that another replica or a ``cairn drift report`` run published.

With ``interval_s == 0`` the server computes nothing and only shows what ``cairn drift report``
publishes (e.g. from cron). Failures are logged and retried at the next wake-up: drift monitoring
never takes a server down.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cairn.types import SYSTEM, Principal

if TYPE_CHECKING:
    from cairn.assistant import Cairn
    from cairn.ops.drift.detector import DriftDetector
    from cairn.ops.drift.report import DriftReport
    from cairn.ops.drift.store import DriftStore, Published

log = logging.getLogger(__name__)

POLL_S = 60.0


class DriftMonitor:
    def __init__(
        self,
        detector: Callable[[], DriftDetector],
        store: DriftStore,
        show: Callable[[DriftReport], None],
        *,
        interval_s: float,
        poll_s: float = POLL_S,
        principal: Principal = SYSTEM,
    ) -> None:
        if interval_s < 0:
            raise ValueError(f"interval_s must be >= 0, not {interval_s}")
        if poll_s <= 0:
            raise ValueError(f"poll_s must be positive, not {poll_s}")
        self._detector = detector
        self.store = store
        self.show = show
        self.interval_s = interval_s
        self.poll_s = min(poll_s, interval_s) if interval_s > 0 else poll_s
        self.principal = principal
        self.shown_id: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_cairn(cls, cairn: Cairn, *, poll_s: float = POLL_S) -> DriftMonitor:
        from cairn.ops.drift.store import DriftStore

        return cls(
            lambda: cairn.drift,
            DriftStore(cairn.db, retention_days=cairn.settings.audit_retention_days),
            cairn.telemetry.observe_drift,
            interval_s=cairn.settings.drift_interval_s,
            poll_s=poll_s,
        )

    def _stale(self, latest: Published | None) -> bool:
        if self.interval_s <= 0:
            return False
        if latest is None:
            return True
        return (datetime.now(UTC) - latest.computed_at).total_seconds() >= self.interval_s

    def tick(self) -> DriftReport | None:
        """One wake-up (see the module docstring); returns the report it showed, if any."""
        latest = self.store.latest_ref(self.principal)
        if self._stale(latest):
            with self.store.refresh_lock(self.principal) as mine:
                latest = self.store.latest_ref(self.principal)  # another replica may have just published
                if mine and self._stale(latest):
                    detector = self._detector()
                    report = detector.report(self.principal, *detector.windows())
                    published = self.store.publish(self.principal, report)
                    self.show(report)
                    self.shown_id = published.id
                    return report
        if latest is None or latest.id == self.shown_id:
            return None
        stored = self.store.get(self.principal, latest.id)
        if stored is None:  # pruned in between: the next wake-up sees the newer one
            return None
        self.show(stored)
        self.shown_id = latest.id
        return stored

    def _run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:
                log.warning("drift refresh failed; retrying in %.0f s", self.poll_s, exc_info=True)
            if self._stop.wait(self.poll_s):
                return

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="cairn-drift", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


__all__ = ["POLL_S", "DriftMonitor"]
