"""Time windows of audited interactions: ``START..END``, ``last-7d``, or the default pair.

A window is ``start <= at < end`` in UTC, the audit trail's clock. Written forms:

``2026-11-01..2026-11-15``
    Dates are whole days: the end date is included (the window ends at the next midnight).
``2026-11-01T08:00..2026-11-01T20:00+01:00``
    Times are exact; the end time is excluded. A time without an offset is UTC.
``2026-11-01..``
    Open-ended: up to now.
``last-7d`` (also ``h`` hours, ``m`` minutes, ``w`` weeks)
    The span ending now.

Without a reference window, the reference is the span of the same length just before the current
window; without either, the current window is the last ``days`` days and the reference the ``days``
before it. Windows that overlap are refused: a record in both would make the samples dependent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cairn.errors import InputError

_RELATIVE = re.compile(r"last-(\d+(?:\.\d+)?)([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True, slots=True)
class Window:
    """``start <= at < end``; ``live`` when it ends at the time it was resolved (now)."""

    start: datetime
    end: datetime
    label: str
    live: bool = False

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise InputError("window bounds must carry a time zone")
        if self.start >= self.end:
            raise InputError(f"the window {self.label!r} is empty: it must start before it ends")

    @property
    def span(self) -> timedelta:
        return self.end - self.start

    def overlaps(self, other: Window) -> bool:
        return self.start < other.end and other.start < self.end

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "label": self.label, "live": self.live}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Window:
        return cls(
            start=datetime.fromisoformat(obj["start"]),
            end=datetime.fromisoformat(obj["end"]),
            label=str(obj.get("label", "")),
            live=bool(obj.get("live", False)),
        )


def _bound(text: str, *, is_end: bool, now: datetime, spec: str) -> tuple[datetime, bool]:
    """A bound and whether it is "now"; a date alone is a whole day (an end date is included)."""
    text = text.strip()
    if not text:
        if not is_end:
            raise InputError(f"the window {spec!r} has no start", hint="e.g. 2026-11-01..2026-11-15 or last-7d")
        return now, True
    try:
        if "T" not in text and " " not in text:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return (moment + timedelta(days=1) if is_end else moment), False
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            f"not a date or time in the window {spec!r}: {text!r}",
            hint="ISO 8601, e.g. 2026-11-01 or 2026-11-01T08:00+01:00",
        ) from None
    return (parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)), False


def parse_window(spec: str, *, now: datetime) -> Window:
    """One window from its written form (see the module docstring)."""
    text = spec.strip()
    relative = _RELATIVE.fullmatch(text)
    if relative:
        amount = float(relative.group(1))
        span = timedelta(**{_UNITS[relative.group(2)]: amount})
        if span <= timedelta(0):
            raise InputError(f"the window {spec!r} is empty")
        return Window(now - span, now, text, live=True)
    if ".." not in text:
        raise InputError(
            f"not a window: {spec!r}", hint="START..END (ISO dates or times; END may be empty) or last-7d / last-24h"
        )
    first, _, second = text.partition("..")
    start, _ = _bound(first, is_end=False, now=now, spec=spec)
    end, live = _bound(second, is_end=True, now=now, spec=spec)
    if start >= end:
        raise InputError(f"the window {spec!r} ends before it starts")
    return Window(start, end, text, live=live)


def resolve_windows(
    reference: str | None, current: str | None, *, days: float, now: datetime | None = None
) -> tuple[Window, Window]:
    """The reference and current windows from their written forms, defaults filled in."""
    if days <= 0:
        raise InputError(f"the default window length must be positive, not {days} days")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    span = timedelta(days=days)
    length = f"{days:g}d"
    cur = (
        parse_window(current, now=now) if current is not None else Window(now - span, now, f"last-{length}", live=True)
    )
    if reference is not None:
        ref = parse_window(reference, now=now)
    else:
        ref = Window(cur.start - cur.span, cur.start, f"the {_describe(cur.span)} before {cur.label}")
    if ref.overlaps(cur):
        raise InputError(
            f"the reference window {ref.label!r} overlaps the current window {cur.label!r}",
            hint="a record in both windows would be compared with itself; choose disjoint windows",
        )
    return ref, cur


def _describe(span: timedelta) -> str:
    seconds = span.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


__all__ = ["Window", "parse_window", "resolve_windows"]
