"""Per-tier token and cost accounting, read back from the audit trail.

Every answer's audit record carries its model route (tier, tokens, cost, failed attempts, whether
the context was sensitive), so the trail is the ledger: it survives restarts and replicas, unlike
the per-process Prometheus counters, and a purge for retention removes usage with the questions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cairn.ops.audit import require_admin
from cairn.types import Principal

if TYPE_CHECKING:
    from cairn.index.db import Database

_USAGE_SQL = """
WITH routed AS (
    SELECT record -> 'route' AS route FROM audit_log
     WHERE kind IN ('ask', 'chat') AND jsonb_typeof(record -> 'route') = 'object' {window}
)
SELECT coalesce(route ->> 'tier', '') AS tier,
       count(*) AS answers,
       coalesce(sum((route -> 'tokens' ->> 'prompt')::bigint), 0) AS prompt_tokens,
       coalesce(sum((route -> 'tokens' ->> 'completion')::bigint), 0) AS completion_tokens,
       coalesce(sum((route ->> 'cost')::float8), 0) AS cost,
       count(*) FILTER (WHERE (route ->> 'sensitive')::boolean) AS sensitive,
       count(*) FILTER (WHERE route ->> 'forced' IS NOT NULL) AS forced
  FROM routed GROUP BY 1 ORDER BY 1
"""
_FAILURES_SQL = """
SELECT attempt ->> 'tier', count(*)
  FROM audit_log, jsonb_array_elements(
       CASE WHEN jsonb_typeof(record -> 'route' -> 'attempts') = 'array' THEN record -> 'route' -> 'attempts'
            ELSE '[]'::jsonb END) AS attempt
 WHERE kind IN ('ask', 'chat') AND attempt ? 'error' {window}
 GROUP BY 1
"""


@dataclass(frozen=True, slots=True)
class TierUsage:
    """One tier's share of the answers in a window; tier ``""`` holds the sensitive refusals (no tier)."""

    tier: str
    answers: int
    prompt_tokens: int
    completion_tokens: int
    cost: float
    sensitive: int
    forced: int
    failures: int

    def to_json(self) -> dict[str, Any]:
        return {
            "tier": self.tier or None,
            "answers": self.answers,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": round(self.cost, 6),
            "sensitive": self.sensitive,
            "forced": self.forced,
            "failures": self.failures,
        }


def tier_usage(db: Database, principal: Principal, since: datetime | None = None) -> list[TierUsage]:
    """Answers, tokens, cost, sensitive contexts and failed attempts per tier since ``since`` (admins only)."""
    require_admin(principal, "reading model usage from the audit trail")
    window, params = (" AND at >= %s", (since,)) if since is not None else ("", ())
    with db.connection(principal) as conn:
        rows = conn.execute(_USAGE_SQL.format(window=window), params).fetchall()
        failures = dict(conn.execute(_FAILURES_SQL.format(window=window), params).fetchall())
    usage = {
        str(r[0]): TierUsage(str(r[0]), int(r[1]), int(r[2]), int(r[3]), float(r[4]), int(r[5]), int(r[6]), 0)
        for r in rows
    }
    for tier, count in failures.items():
        known = usage.get(tier) or TierUsage(str(tier), 0, 0, 0, 0.0, 0, 0, 0)
        usage[str(tier)] = TierUsage(
            known.tier,
            known.answers,
            known.prompt_tokens,
            known.completion_tokens,
            known.cost,
            known.sensitive,
            known.forced,
            int(count),
        )
    return [usage[k] for k in sorted(usage)]


__all__ = ["TierUsage", "tier_usage"]
