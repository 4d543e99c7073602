"""Drift windows: the written forms, the defaults, and what is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from cairn.errors import InputError
from cairn.ops.drift.windows import Window, parse_window, resolve_windows

NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)


def test_dates_are_whole_days_and_the_end_date_is_included() -> None:
    window = parse_window("2026-11-01..2026-11-15", now=NOW)
    assert window.start == datetime(2026, 11, 1, tzinfo=UTC)
    assert window.end == datetime(2026, 11, 16, tzinfo=UTC)
    assert not window.live and window.label == "2026-11-01..2026-11-15"


def test_times_are_exact_and_naive_ones_are_utc() -> None:
    window = parse_window("2026-11-01T08:00..2026-11-01T20:00+01:00", now=NOW)
    assert window.start == datetime(2026, 11, 1, 8, tzinfo=UTC)
    assert window.end == datetime(2026, 11, 1, 20, tzinfo=timezone(timedelta(hours=1)))


def test_relative_and_open_windows_end_now() -> None:
    assert parse_window("last-7d", now=NOW) == Window(NOW - timedelta(days=7), NOW, "last-7d", live=True)
    assert parse_window("last-36h", now=NOW).start == NOW - timedelta(hours=36)
    assert parse_window("last-90m", now=NOW).start == NOW - timedelta(minutes=90)
    assert parse_window("last-2w", now=NOW).start == NOW - timedelta(weeks=2)
    open_ended = parse_window("2026-11-18..", now=NOW)
    assert open_ended.end == NOW and open_ended.live


def test_defaults_are_the_last_days_against_the_days_before() -> None:
    ref, cur = resolve_windows(None, None, days=7, now=NOW)
    assert (cur.start, cur.end, cur.live) == (NOW - timedelta(days=7), NOW, True)
    assert (ref.start, ref.end, ref.live) == (NOW - timedelta(days=14), NOW - timedelta(days=7), False)


def test_a_missing_reference_is_the_same_span_before_the_current_window() -> None:
    ref, cur = resolve_windows(None, "2026-11-10..2026-11-12", days=7, now=NOW)
    assert cur.span == timedelta(days=3)
    assert (ref.start, ref.end) == (datetime(2026, 11, 7, tzinfo=UTC), datetime(2026, 11, 10, tzinfo=UTC))
    assert "3d" in ref.label


def test_overlapping_windows_are_refused() -> None:
    with pytest.raises(InputError, match="overlaps"):
        resolve_windows("2026-11-01..2026-11-15", "last-7d", days=7, now=NOW)


@pytest.mark.parametrize(
    "spec", ["yesterday", "2026-11-15..2026-11-01", "..2026-11-01", "2026-13-01..", "last-0d", "last-7y", "a..b"]
)
def test_bad_windows_are_refused_with_a_hint(spec: str) -> None:
    with pytest.raises(InputError) as info:
        parse_window(spec, now=NOW)
    assert spec in info.value.message or "empty" in info.value.message


def test_round_trip() -> None:
    window = parse_window("2026-11-01..2026-11-15", now=NOW)
    assert Window.from_json(window.to_json()) == window
