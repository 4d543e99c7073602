"""Hostile folders ingested end to end: each file indexed or reported, no hang, no crash, bounded memory.

The folder holds the known bad cases of :mod:`cairn.testing.hostile` (decompression bombs, page
and entry counts over the limits, deep HTML, invalid UTF-8, huge lines, regular-expression traps),
file names and links that try to leave the ingest root or cannot be stored, and seeded mutants of
valid PDF/DOCX/HTML/Markdown/text files. Parsing is isolated in worker processes as configured by
default. For each run:

- the sync finishes (0 crashes) and reports every file exactly once: added (or unchanged), or
  skipped/error with a message; the known cases get exactly their expected outcome;
- no parse takes longer than the per-file limit plus a margin (0 hangs);
- the ingesting process's resident memory stays within a fixed budget above where it started,
  whatever the bombs would inflate to (they inflate, if at all, in a worker);
- ``check_index`` finds the index consistent, and a second sync converges (nothing re-added).

The default suite runs every known case and 50 mutants; ``-m slow`` runs 1,250 mutants and prints
the figures (files, outcomes, peak memory, slowest parse).
"""

from __future__ import annotations

import json
import os
import re
import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cairn.assistant import Cairn
from cairn.index.check import check_index
from cairn.ingest.limits import ParseLimits
from cairn.ingest.parse import Parser
from cairn.ingest.sync import FileReport, SyncReport
from cairn.testing import hostile
from cairn.types import ParsedDocument

KB = "hostile"
SETTINGS = {
    "parse_timeout_s": 10.0,  # the per-file wall limit: a hang costs this, then the file is reported
    "parse_max_unpacked_mb": 16.0,  # small bombs suffice to prove the check
    "parse_max_pages": 200,
}
RSS_BUDGET_MB = 400  # growth of the ingesting process allowed over a whole run
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE / 2**20


class TimedParser:
    """The configured parser, timing every file (the test's view of hangs)."""

    def __init__(self, inner: Parser) -> None:
        self.inner = inner
        self.limits: ParseLimits = inner.limits
        self.seconds: dict[str, float] = {}

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        started = time.perf_counter()
        try:
            return self.inner.parse(data, filename)
        finally:
            self.seconds[filename] = time.perf_counter() - started

    def close(self) -> None:
        self.inner.close()


@dataclass
class Run:
    report: SyncReport
    seconds: float
    rss_start_mb: float
    rss_peak_mb: float
    parse_seconds: dict[str, float]
    outcomes: Counter[str] = field(default_factory=Counter)


def _plant(folder: Path, outside: Path, files: dict[str, bytes]) -> dict[str, str]:
    """Write the files plus hostile names and links; returns the expected status of each special entry."""
    folder.mkdir()
    outside.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (outside / "secret.txt").write_text("password = hunter2")
    specials = {
        os.fsdecode(b"latin1-caf\xe9.txt"): "error",  # not UTF-8: cannot be stored as a source
        "link-out.txt": "skipped",
        "dir-out": "skipped",
        "loop-a": "skipped",
        "loop-b": "skipped",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd.txt": "added",  # traversal-looking names are just names
        "sub..\\..\\boot.ini.txt": "added",
        "name with 'quotes' and\nnewline.txt": "added",
    }
    (folder / os.fsdecode(b"latin1-caf\xe9.txt")).write_text("a name that is not UTF-8")
    (folder / "link-out.txt").symlink_to(outside / "secret.txt")
    (folder / "dir-out").symlink_to(outside, target_is_directory=True)
    (folder / "loop-a").symlink_to(folder / "loop-b")
    (folder / "loop-b").symlink_to(folder / "loop-a")
    # "..\\..\\win.ini.txt" starts with a dot: hidden, like every dotted entry, so neither indexed nor reported.
    for name in ("%2e%2e%2f%2e%2e%2fetc%2fpasswd.txt", "..\\..\\win.ini.txt", "sub..\\..\\boot.ini.txt"):
        (folder / name).write_text("a harmless file with a strange name")
    (folder / "name with 'quotes' and\nnewline.txt").write_text("another strange name")
    return specials


def _ingest(cairn: Cairn, folder: Path) -> Run:
    timed = TimedParser(cairn.parser)
    cairn.ingestor.parser = timed
    start = peak = _rss_mb()

    def sample(item: FileReport) -> None:
        nonlocal peak
        peak = max(peak, _rss_mb())

    started = time.perf_counter()
    report = cairn.ingestor.sync_folder(folder, KB, progress=sample)
    run = Run(report, time.perf_counter() - started, start, max(peak, _rss_mb()), dict(timed.seconds))
    run.outcomes.update(f.status for f in report.files)
    return run


def _check(run: Run, folder: Path, expected: dict[str, str], patterns: dict[str, str], timeout_s: float) -> None:
    reports: dict[str, FileReport] = {}
    for item in run.report.files:
        name = Path(item.source).name
        assert name not in reports, f"{name} reported twice"
        reports[name] = item
    listed = {os.fsencode(p).decode("utf-8", "backslashreplace") for p in os.listdir(folder) if p[0] != "."}
    assert set(reports) == listed, f"missing reports: {listed - set(reports)}; extra: {set(reports) - listed}"
    for name, item in reports.items():
        if item.status in ("error", "skipped"):
            assert item.message, f"{name}: {item.status} without a message"
        if name in expected:
            assert item.status == expected[name], f"{name}: {item.status} ({item.message})"
        if name in patterns:
            said = " ".join((item.message, *item.warnings))
            assert re.search(patterns[name], said), f"{name}: {said!r} does not match {patterns[name]!r}"
    slowest = max(run.parse_seconds.items(), key=lambda kv: kv[1])
    assert slowest[1] < timeout_s + 5, f"{slowest[0]} took {slowest[1]:.1f} s to parse"
    growth = run.rss_peak_mb - run.rss_start_mb
    assert growth < RSS_BUDGET_MB, f"the ingesting process grew by {growth:.0f} MB"


def _hostile_run(make_cairn: Callable[..., Cairn], tmp_path: Path, count: int, seed: int) -> tuple[Cairn, Run]:
    cairn = make_cairn(**SETTINGS)
    limits = ParseLimits.from_settings(cairn.settings)
    bad = hostile.known_bad_files(limits)
    files = {b.name: b.data for b in bad} | {m.name: m.data for m in hostile.mutants(count, seed=seed)}
    folder = tmp_path / "hostile"
    expected = {b.name: b.status for b in bad} | _plant(folder, tmp_path / "outside", files)
    patterns = {b.name: b.message for b in bad if b.message}
    run = _ingest(cairn, folder)
    _check(run, folder, expected, patterns, limits.timeout_s)
    report = check_index(cairn.db)
    assert report.ok, report.problems
    assert report.documents == run.outcomes["added"]

    again = _ingest(cairn, folder)
    assert again.outcomes["added"] == again.outcomes["updated"] == again.outcomes["deleted"] == 0, again.outcomes
    assert again.outcomes["unchanged"] == run.outcomes["added"]
    assert check_index(cairn.db).ok
    return cairn, run


@pytest.mark.parametrize("database_url", ["embedded"], indirect=True)
def test_known_hostile_files_and_mutants_are_each_indexed_or_reported(
    make_cairn: Callable[..., Cairn], tmp_path: Path
) -> None:
    _, run = _hostile_run(make_cairn, tmp_path, count=50, seed=11)
    assert run.outcomes["error"] >= 8 and run.outcomes["added"] >= 30, run.outcomes


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["embedded"], indirect=True)
def test_fuzzed_ingest_of_1250_mutants(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn, run = _hostile_run(make_cairn, tmp_path, count=1250, seed=2024)
    files = sum(run.outcomes[s] for s in ("added", "error", "skipped"))
    assert files >= 1250
    slowest = max(run.parse_seconds.items(), key=lambda kv: kv[1])
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    figures = {
        "files": files,
        "outcomes": dict(run.outcomes),
        "seconds": round(run.seconds, 1),
        "ingester_rss_mb": {"start": round(run.rss_start_mb), "peak": round(run.rss_peak_mb)},
        "largest_child_rss_mb": round(children),
        "slowest_parse": {"file": slowest[0], "seconds": round(slowest[1], 3)},
        "workers_started": getattr(cairn.parser, "started", None),
        "stopped_by_a_process_limit": {
            kind: sum(kind in f.message for f in run.report.files)
            for kind in ("took longer", "CPU time", "memory limit", "crashed")
        },
    }
    print("\nfuzz figures:", json.dumps(figures, indent=2))


@pytest.mark.parametrize("database_url", ["embedded"], indirect=True)
def test_cli_ingest_of_a_hostile_folder_reports_and_exits_3(
    run: Callable[..., tuple[int, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SETTINGS.items():
        monkeypatch.setenv(f"CAIRN_{name.upper()}", str(value))
    limits = ParseLimits(timeout_s=10, max_unpacked_mb=16, max_pages=200)
    bad = hostile.known_bad_files(limits)
    folder = tmp_path / "cli"
    _plant(folder, tmp_path / "outside", {b.name: b.data for b in bad})
    code, out = run("ingest", str(folder), "--kb", KB, "--json")
    assert code == 3
    summary = json.loads(out)
    problems = {Path(p["source"]).name: p for p in summary["problems"]}
    for item in bad:
        if item.status != "added":
            assert problems[item.name]["status"] == item.status and problems[item.name]["message"]
    assert problems["link-out.txt"]["status"] == "skipped"
    assert summary["error"] == sum(b.status == "error" for b in bad) + 1  # + the name that is not UTF-8
    code, out = run("index", "check", "--json")
    assert code == 0 and json.loads(out)["ok"]
