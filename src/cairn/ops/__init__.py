"""Operations around the answer pipeline: the audit trail and the feedback given on answers."""

from cairn.ops.audit import AuditEntry, AuditEvent, AuditLog, AuditRef, VerifyReport
from cairn.ops.feedback import EXPORT_FORMATS, FeedbackEntry, FeedbackStore

__all__ = [
    "EXPORT_FORMATS",
    "AuditEntry",
    "AuditEvent",
    "AuditLog",
    "AuditRef",
    "FeedbackEntry",
    "FeedbackStore",
    "VerifyReport",
]
