"""Activity over time for the admin page's charts, computed from the audit trail and the feedback.

There is no separate metrics store to keep in step: every figure is derived from the records
:class:`~cairn.ops.audit.AuditLog` already keeps (answers with their timings, refusals and
grounding verdicts) and from :class:`~cairn.ops.feedback.FeedbackStore`, newest first, so the
charts always agree with ``cairn audit list`` and ``cairn feedback list``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from cairn.ops.audit import AuditEntry
from cairn.ops.feedback import FeedbackEntry
from cairn.server.auth import Admin
from cairn.server.context import get_context
from cairn.server.limits import Deadline, run_blocking
from cairn.server.ops import audit_log, feedback_store

router = APIRouter(prefix="/api", tags=["audit"])

Bucket = Literal["hour", "day"]
ANSWER_KINDS = ("ask", "chat")
#: The most buckets a chart gets; older ones are dropped (a week of hours, a quarter of days).
MAX_BUCKETS: dict[str, int] = {"hour": 168, "day": 92}
_STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), without importing numpy."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def bucket_start(at: datetime, bucket: Bucket) -> datetime:
    at = at.astimezone(UTC)
    if bucket == "day":
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    return at.replace(minute=0, second=0, microsecond=0)


@dataclass
class _Tally:
    answers: int = 0
    searches: int = 0
    refused: int = 0
    latencies: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    verdicts: dict[str, int] = field(default_factory=lambda: {"grounded": 0, "partial": 0, "unsupported": 0})
    up: int = 0
    down: int = 0
    flags: int = 0

    def add_record(self, entry: AuditEntry) -> None:
        record = entry.record
        if entry.kind == "search":
            self.searches += 1
            return
        if entry.kind not in ANSWER_KINDS:
            return
        self.answers += 1
        if record.get("refused"):
            self.refused += 1
        total = (record.get("timings_ms") or {}).get("total")
        if isinstance(total, int | float):
            self.latencies.append(float(total))
        grounding = record.get("grounding")
        if isinstance(grounding, dict):
            ratio = grounding.get("supported_ratio")
            if isinstance(ratio, int | float):
                self.ratios.append(float(ratio))
            verdict = grounding.get("verdict")
            if isinstance(verdict, str) and verdict in self.verdicts:
                self.verdicts[verdict] += 1

    def add_feedback(self, entry: FeedbackEntry) -> None:
        if entry.vote == 1:
            self.up += 1
        elif entry.vote == -1:
            self.down += 1
        if entry.flag:
            self.flags += 1

    def to_json(self) -> dict[str, Any]:
        p50, p95 = percentile(self.latencies, 50), percentile(self.latencies, 95)
        return {
            "answers": self.answers,
            "searches": self.searches,
            "refused": self.refused,
            "refusal_rate": round(self.refused / self.answers, 4) if self.answers else None,
            "latency_p50_ms": None if p50 is None else round(p50, 1),
            "latency_p95_ms": None if p95 is None else round(p95, 1),
            "grounding_checked": len(self.ratios),
            "supported_ratio": round(sum(self.ratios) / len(self.ratios), 4) if self.ratios else None,
            **self.verdicts,
            "votes_up": self.up,
            "votes_down": self.down,
            "flags": self.flags,
        }


def activity(
    records: Iterable[AuditEntry],
    feedback: Iterable[FeedbackEntry],
    *,
    bucket: Bucket = "hour",
    since: datetime | None = None,
) -> dict[str, Any]:
    """Contiguous buckets from the first to the last one with data (empty ones included, so a
    chart's x axis is time), at most :data:`MAX_BUCKETS`, plus the totals over the same window."""
    tallies: dict[datetime, _Tally] = {}
    totals = _Tally()
    counted = 0
    for entry in records:
        if since is not None and entry.at < since:
            continue
        counted += 1
        tallies.setdefault(bucket_start(entry.at, bucket), _Tally()).add_record(entry)
        totals.add_record(entry)
    judged = 0
    for item in feedback:
        if since is not None and item.at < since:
            continue
        judged += 1
        tallies.setdefault(bucket_start(item.at, bucket), _Tally()).add_feedback(item)
        totals.add_feedback(item)
    buckets: list[dict[str, Any]] = []
    if tallies:
        step = _STEP[bucket]
        last = max(tallies)
        start = max(min(tallies), last - step * (MAX_BUCKETS[bucket] - 1))
        at = start
        while at <= last:
            tally = tallies.get(at, _Tally())
            buckets.append({"start": at.isoformat().replace("+00:00", "Z"), **tally.to_json()})
            at += step
    return {"bucket": bucket, "records": counted, "feedback": judged, "buckets": buckets, "totals": totals.to_json()}


@router.get("/stats", summary="Answers, latency, refusals, grounding and feedback per hour or day (admins)")
async def stats(
    request: Request,
    principal: Admin,
    bucket: Bucket = "hour",
    days: Annotated[int, Query(ge=1, le=3650, description="Only records of the last DAYS days.")] = 7,
    limit: Annotated[int, Query(ge=1, le=50_000, description="At most this many newest audit records.")] = 5000,
) -> dict[str, Any]:
    context = get_context(request)
    cairn = context.cairn
    since = datetime.now(UTC) - timedelta(days=days)

    def compute() -> dict[str, Any]:
        records = audit_log(cairn).list(principal, limit=limit)
        feedback = feedback_store(cairn).list(principal, limit=limit)
        return activity(records, feedback, bucket=bucket, since=since) | {"days": days}

    return await run_blocking(Deadline(context.config.request_timeout_s), compute)
