"""Real ``cairn worker`` processes on one queue: every job exactly once, SIGKILL retried, SIGTERM clean.

The processes are the command operators start (``python -m cairn worker``), on the test database,
with the fake embedder slowed down (``delay_ms`` per chunk) so that a job lasts long enough to be
interrupted in the middle.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cairn.assistant import Cairn
from cairn.index.check import check_index
from cairn.ingest.queue import JobQueue
from cairn.types import SYSTEM

KB = "proc"


def _files(root: Path, count: int) -> Path:
    root.mkdir()
    for i in range(count):
        (root / f"doc{i:03d}.txt").write_text(
            f"Document {i}. " + " ".join(f"budget{i} approval{j}" for j in range(80)), encoding="utf-8"
        )
    return root


def _spawn(tmp_path: Path, database_url: str, *args: str, delay_ms: int, lease_s: float = 30) -> subprocess.Popen[str]:
    env = os.environ | {
        "CAIRN_HOME": str(tmp_path / "home"),
        "CAIRN_DATABASE_URL": database_url,
        "CAIRN_EMBEDDER": f"fake:hash?dim=64&delay_ms={delay_ms}",
        "CAIRN_GENERATOR": "extractive:",
        "CAIRN_WORKER_LEASE_S": str(lease_s),
        "CAIRN_WORKER_POLL_S": "0.1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "cairn", "worker", "--json", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _running_in(cairn: Cairn, pid: int) -> list[int]:
    with cairn.db.connection(SYSTEM) as conn:
        rows = conn.execute(
            "SELECT id FROM ingest_jobs WHERE state = 'running' AND worker LIKE %s",
            (f"{socket.gethostname()}:{pid}/%",),
        ).fetchall()
    return [r[0] for r in rows]


def _versions(cairn: Cairn) -> list[int]:
    with cairn.db.connection(SYSTEM) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM documents ORDER BY source").fetchall()]


def test_worker_processes_and_threads_run_every_job_exactly_once(
    make_cairn: Callable[..., Cairn], database_url: str, tmp_path: Path
) -> None:
    cairn = make_cairn()
    folder = _files(tmp_path / "docs", 48)
    queue = JobQueue(cairn.db, cairn.store)
    sync = queue.enqueue(folder, KB, principal=SYSTEM)
    workers = [
        _spawn(tmp_path, database_url, "--once", "--concurrency", "2", "--batch", "2", delay_ms=15) for _ in range(3)
    ]
    stats = []
    for proc in workers:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        stats.append(json.loads(out))
    jobs = queue.list_jobs(principal=SYSTEM, limit=1000)
    assert len(jobs) == 49
    assert {j.state for j in jobs} == {"done"} and {j.attempts for j in jobs} == {1}
    assert sum(s["done"] for s in stats) == 49 and sum(s["claimed"] for s in stats) == 49
    assert sum(s["lost"] + s["retried"] + s["failed"] for s in stats) == 0
    by_process = {j.worker.split("/")[0] for j in jobs if j.worker}
    assert len(by_process) >= 2, f"one process did everything: {by_process}"
    assert _versions(cairn) == [1] * 48
    assert queue.progress(sync.id, principal=SYSTEM).outcomes["added"] == 48
    assert check_index(cairn.db).ok


def test_a_killed_worker_s_job_is_retried_after_its_lease(
    make_cairn: Callable[..., Cairn], database_url: str, tmp_path: Path
) -> None:
    cairn = make_cairn()
    folder = _files(tmp_path / "docs", 6)
    queue = JobQueue(cairn.db, cairn.store)
    queue.enqueue(folder, KB, principal=SYSTEM)
    victim = _spawn(tmp_path, database_url, "--batch", "1", delay_ms=400, lease_s=2)
    # Kill it in the middle of a file, after it has finished others.
    _wait_for(lambda: len(_versions(cairn)) >= 2 and bool(_running_in(cairn, victim.pid)))
    (killed,) = _running_in(cairn, victim.pid)
    time.sleep(0.1)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    assert queue.get(killed, principal=SYSTEM).state == "running"  # until its lease runs out
    rescuer = _spawn(tmp_path, database_url, "--once", delay_ms=0, lease_s=2)
    _, err = rescuer.communicate(timeout=120)
    assert rescuer.returncode == 0, err
    retried = queue.get(killed, principal=SYSTEM)
    assert retried.state == "done" and retried.attempts == 2
    assert retried.error is not None and f":{victim.pid}/0 stopped before finishing" in retried.error
    jobs = queue.list_jobs(principal=SYSTEM, limit=100)
    assert {j.state for j in jobs} == {"done"}
    assert sorted(j.attempts for j in jobs) == [1] * 6 + [2]
    assert _versions(cairn) == [1] * 6
    report = check_index(cairn.db)
    assert report.ok, report.problems


def test_sigterm_finishes_the_current_file_then_exits(
    make_cairn: Callable[..., Cairn], database_url: str, tmp_path: Path
) -> None:
    cairn = make_cairn()
    folder = _files(tmp_path / "docs", 6)
    queue = JobQueue(cairn.db, cairn.store)
    queue.enqueue(folder, KB, principal=SYSTEM)
    worker = _spawn(tmp_path, database_url, "--batch", "1", delay_ms=400)
    _wait_for(lambda: bool(_running_in(cairn, worker.pid)) and queue.get(1, principal=SYSTEM).state == "done")
    (current,) = _running_in(cairn, worker.pid)
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert queue.get(current, principal=SYSTEM).state == "done"  # the file in hand was finished
    jobs = queue.list_jobs(principal=SYSTEM, limit=100)
    assert "running" not in {j.state for j in jobs}
    left = [j for j in jobs if j.state == "queued"]
    assert left and {j.attempts for j in left} == {0}
    assert json.loads(out)["done"] == 7 - len(left)
    assert check_index(cairn.db).ok
