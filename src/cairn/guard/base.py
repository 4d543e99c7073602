"""The contract every guard keeps, and the registry a plugin adds its own guards to.

A guard only judges text; what happens to a flagged text (refuse, quote, redact, log) is the
deployment's policy and lives in :mod:`cairn.guard.policy`, so one detector serves every stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from cairn.registry import Registry

Policy = Literal["block", "warn", "log", "off"]
POLICIES: tuple[Policy, ...] = ("block", "warn", "log", "off")


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """What one guard found in one text.

    ``spans`` are ``(start, end)`` offsets into the text as given (not a normalised copy), so a
    caller can highlight or excerpt exactly what triggered the guard; ``reasons`` are stable
    slugs (``override``, ``email``) fit for the audit log and for counting.
    """

    guard: str
    flagged: bool
    score: float
    reasons: tuple[str, ...] = ()
    spans: tuple[tuple[int, int], ...] = ()

    def to_json(self) -> dict[str, object]:
        """A ``json.dumps``-ready dict for the audit log and API responses."""
        return {
            "guard": self.guard,
            "flagged": self.flagged,
            "score": round(self.score, 4),
            "reasons": list(self.reasons),
            "spans": [[start, end] for start, end in self.spans],
        }


@runtime_checkable
class Guard(Protocol):
    """Judges a text; must be cheap to build, offline, and safe to call from several threads."""

    name: str

    def check(self, text: str) -> GuardVerdict: ...


GUARDS: Registry[Guard] = Registry("guard")


def create_guard(location: str, **kwargs: object) -> Guard:
    return GUARDS.create(location, **kwargs)
