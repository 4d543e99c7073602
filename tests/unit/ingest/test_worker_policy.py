"""How a worker judges an attempt, without a database: what is final, what is retried, how long it waits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cairn.errors import CorruptDocument, ModelError, StoreError
from cairn.ingest.queue import Job
from cairn.ingest.sync import FileReport
from cairn.ingest.worker import MAX_RETRY_DELAY_S, Worker, _file_outcome


def _job(attempts: int = 1) -> Job:
    now = datetime.now(UTC)
    return Job(
        id=7, kind="file", kb="kb", path="/data/a.pdf", root="/data", readers=(), full=False, prune=False,
        parent_id=1, state="running", attempts=attempts, max_attempts=3, worker="h:1/0", lease_until=now,
        outcome=None, error=None, result={}, requested_by=None, created_at=now, started_at=now, finished_at=None,
    )  # fmt: skip


def _worker(**options: Any) -> Worker:
    return Worker(None, None, None, **options)  # type: ignore[arg-type]  # the queue is never reached here


def test_a_request_error_is_final_and_a_server_error_is_retried() -> None:
    worker = _worker(retry_delay_s=5)
    corrupt = worker._failure(_job(), CorruptDocument("a.pdf: unreadable PDF"))
    assert (corrupt.action, corrupt.outcome, corrupt.error) == ("failed", "error", "a.pdf: unreadable PDF")
    for exc in (StoreError("database restarting"), ModelError("embedding server 502"), RuntimeError("bug")):
        retry = worker._failure(_job(), exc)
        assert retry.action == "retry" and retry.delay_s == 5
    assert worker._failure(_job(), RuntimeError("bug")).error == "RuntimeError: bug"


def test_the_back_off_doubles_and_is_capped() -> None:
    worker = _worker(retry_delay_s=5)
    assert [worker._delay(_job(a)) for a in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert worker._delay(_job(30)) == MAX_RETRY_DELAY_S


def test_a_file_report_becomes_the_job_s_outcome() -> None:
    added = _file_outcome(_job(), FileReport("/data/a.pdf", "added", chunks=3, pages=2, warnings=("scanned",)))
    assert (added.action, added.outcome) == ("done", "added")
    assert added.result == {"chunks": 3, "pages": 2, "warnings": ["scanned"]}
    failed = _file_outcome(_job(), FileReport("/data/a.pdf", "error", message="unreadable PDF"))
    assert (failed.action, failed.error) == ("failed", "unreadable PDF")
    skipped = _file_outcome(_job(), FileReport("/data/a.bin", "skipped", message="unsupported format"))
    assert (skipped.action, skipped.outcome) == ("done", "skipped")


@pytest.mark.parametrize("options", [{"concurrency": 0}, {"batch": 0}, {"lease_s": 0}, {"retry_delay_s": -1}])
def test_impossible_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _worker(**options)
