"""The audit trail and the feedback store as the API uses them.

The facade's own instances are used when it has them (they carry its redactor and retention
policy); otherwise they are built the way ``cairn audit`` builds them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cairn.ops.audit import AuditLog
from cairn.ops.feedback import FeedbackStore

if TYPE_CHECKING:
    from cairn.assistant import Cairn


def audit_log(cairn: Cairn) -> AuditLog:
    own = getattr(cairn, "audit", None)
    if isinstance(own, AuditLog):
        return own
    return AuditLog(cairn.db, retention_days=getattr(cairn.settings, "audit_retention_days", None))


def feedback_store(cairn: Cairn) -> FeedbackStore:
    own = getattr(cairn, "feedback", None)
    if isinstance(own, FeedbackStore):
        return own
    return FeedbackStore(cairn.db, audit=audit_log(cairn))
