"""Published drift reports, so that every server shows the newest one without recomputing it.

``cairn drift report`` (from cron, say) and the servers' periodic refresh both publish here; each
server polls for a newer report, a one-row index lookup, and shows it as Prometheus gauges. Reading
and writing are admin-only (the reports quote audited questions); the database enforces it too.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from cairn.ops.audit import require_admin
from cairn.ops.drift.report import DriftReport

if TYPE_CHECKING:
    from collections.abc import Iterator

    from cairn.index.db import Database
    from cairn.types import Principal

KEEP_REPORTS = 1000
# Held while a server computes a report, so that replicas sharing a database compute one between them.
REFRESH_LOCK_ID = 0x0CA1D81F


@dataclass(frozen=True, slots=True)
class Published:
    """Where a report was stored; ``computed_at`` says how fresh it is."""

    id: int
    computed_at: datetime


class DriftStore:
    """``retention_days`` (the audit trail's, ``CAIRN_AUDIT_RETENTION_DAYS``) also bounds the reports'
    age: they quote audited questions, which must not outlive the trail they came from."""

    def __init__(self, db: Database, *, retention_days: float | None = None) -> None:
        self.db = db
        self.retention_days = retention_days

    def publish(self, principal: Principal, report: DriftReport) -> Published:
        """Store ``report`` as the newest; only the newest :data:`KEEP_REPORTS`, within the retention, are kept."""
        require_admin(principal, "publishing a drift report")
        with self.db.connection(principal) as conn, conn.transaction():
            row = conn.execute(
                "INSERT INTO drift_reports (computed_at, principal, reference_start, reference_end,"
                " current_start, current_end, alerts, report) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)"
                " RETURNING id, computed_at",
                (
                    report.computed_at,
                    principal.name,
                    report.reference.start,
                    report.reference.end,
                    report.current.start,
                    report.current.end,
                    len(report.alerts),
                    json.dumps(report.to_json(), ensure_ascii=False),
                ),
            ).fetchone()
            assert row is not None
            conn.execute(
                "DELETE FROM drift_reports"
                " WHERE id <= (SELECT id FROM drift_reports ORDER BY id DESC OFFSET %s LIMIT 1)",
                (KEEP_REPORTS,),
            )
            if self.retention_days is not None:
                conn.execute(
                    "DELETE FROM drift_reports WHERE computed_at < now() - make_interval(secs => %s)",
                    (self.retention_days * 86400.0,),
                )
        return Published(int(row[0]), row[1])

    def latest_ref(self, principal: Principal) -> Published | None:
        """The newest report's id and time, without its body: what a poll needs."""
        require_admin(principal, "reading drift reports")
        with self.db.connection(principal) as conn:
            row = conn.execute("SELECT id, computed_at FROM drift_reports ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else Published(int(row[0]), row[1])

    def get(self, principal: Principal, report_id: int) -> DriftReport | None:
        require_admin(principal, "reading drift reports")
        with self.db.connection(principal) as conn:
            row = conn.execute("SELECT report FROM drift_reports WHERE id = %s", (report_id,)).fetchone()
        return None if row is None else DriftReport.from_json(row[0])

    @contextmanager
    def refresh_lock(self, principal: Principal) -> Iterator[bool]:
        """True inside the block when this process may compute the periodic report, False when another
        one is computing it now. The lock is the database's, so it spans hosts."""
        with self.db.connection(principal) as conn, conn.transaction():
            row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (REFRESH_LOCK_ID,)).fetchone()
            yield bool(row and row[0])


__all__ = ["KEEP_REPORTS", "DriftStore", "Published"]
