"""The ingestion queue's contract, tested on the table itself: claims, leases, attempts, access.

Each worker here is only a name: the tests claim and finish jobs by hand, so every rule (SKIP LOCKED
hands a job to one claimer, a lease that runs out passes the job on and counts an attempt, the last
attempt fails with its reason, a file waits in the queue once) is checked without timing luck.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from cairn.assistant import Cairn
from cairn.errors import Forbidden, NotFound
from cairn.ingest.queue import JobQueue, Outcome
from cairn.types import SYSTEM, Principal


def _folder(root: Path, count: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (root / f"doc{i:03d}.txt").write_text(f"Document {i} is about topic {i % 7}.\n", encoding="utf-8")
    return root


def _queue(cairn: Cairn, max_attempts: int = 3) -> JobQueue:
    return JobQueue(cairn.db, cairn.store, max_attempts=max_attempts)


def _file_jobs(queue: JobQueue, tmp_path: Path, count: int, kb: str = "q") -> list[int]:
    folder = _folder(tmp_path / "docs", count)
    return [queue.enqueue(p, kb, principal=SYSTEM).id for p in sorted(folder.iterdir())]


def test_concurrent_claimers_never_get_the_same_job(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn = make_cairn()
    queue = _queue(cairn)
    ids = _file_jobs(queue, tmp_path, 60)
    taken: dict[str, list[int]] = {}

    def claimer(name: str) -> None:
        mine = taken.setdefault(name, [])
        while True:
            jobs = queue.claim(name, lease_s=60, batch=3)
            if not jobs:
                return
            mine.extend(j.id for j in jobs)
            queue.finish(name, [Outcome(j, "done", "added") for j in jobs])

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    claimed = [i for ids_ in taken.values() for i in ids_]
    assert sorted(claimed) == sorted(ids)  # every job once, none twice
    assert sum(1 for ids_ in taken.values() if ids_) >= 2
    jobs = queue.list_jobs(principal=SYSTEM, limit=1000)
    assert {j.state for j in jobs} == {"done"} and {j.attempts for j in jobs} == {1}


def test_a_batch_holds_files_of_one_sync_only(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn = make_cairn()
    queue = _queue(cairn)
    a = _folder(tmp_path / "a", 3)
    b = _folder(tmp_path / "b", 3)
    for p in sorted(a.iterdir()):
        queue.enqueue(p, "q", principal=SYSTEM)
    for p in sorted(b.iterdir()):
        queue.enqueue(p, "q", principal=SYSTEM, readers=("group:hr",))
    first = queue.claim("w", lease_s=60, batch=10)
    assert [Path(j.path).parent for j in first] == [a.resolve()] * 3
    second = queue.claim("w", lease_s=60, batch=10)
    assert [Path(j.path).parent for j in second] == [b.resolve()] * 3
    assert {j.readers for j in second} == {("group:hr",)}


def test_an_expired_lease_passes_the_job_on_and_counts_an_attempt(
    make_cairn: Callable[..., Cairn], tmp_path: Path
) -> None:
    cairn = make_cairn()
    queue = _queue(cairn)
    (job_id,) = _file_jobs(queue, tmp_path, 1)
    (held,) = queue.claim("dead", lease_s=1, batch=1)
    assert held.id == job_id and held.attempts == 1
    assert queue.claim("alive", lease_s=60) == []  # the lease still runs
    assert not queue.drained()
    time.sleep(1.3)
    (again,) = queue.claim("alive", lease_s=60)
    assert again.id == job_id and again.attempts == 2 and again.worker == "alive"
    assert again.error is not None and "dead stopped before finishing" in again.error
    # The dead worker's late result is not recorded: the job is someone else's now.
    assert queue.finish("dead", [Outcome(held, "done", "added")]) == {job_id}
    assert queue.finish("alive", [Outcome(again, "done", "added")]) == set()
    assert queue.get(job_id, principal=SYSTEM).state == "done"
    assert queue.drained()


def test_the_heartbeat_keeps_a_lease_alive(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn = make_cairn()
    queue = _queue(cairn)
    (job_id,) = _file_jobs(queue, tmp_path, 1)
    queue.claim("slow", lease_s=1)
    for _ in range(3):
        time.sleep(0.5)
        assert queue.heartbeat({"slow": {job_id}}, lease_s=1) == {job_id}
    assert queue.claim("other", lease_s=60) == []
    assert queue.heartbeat({"other": {job_id}}, lease_s=1) == set()  # only the holder can extend


def test_the_last_attempt_fails_with_its_reason(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn = make_cairn()
    queue = _queue(cairn, max_attempts=2)
    (job_id,) = _file_jobs(queue, tmp_path, 1)
    (first,) = queue.claim("a", lease_s=60)
    assert queue.finish("a", [Outcome(first, "retry", error="embedding server down")]) == set()
    requeued = queue.get(job_id, principal=SYSTEM)
    assert requeued.state == "queued" and requeued.error == "embedding server down"
    (second,) = queue.claim("b", lease_s=1)
    assert second.attempts == 2
    time.sleep(1.3)  # b dies on the last attempt
    assert queue.claim("c", lease_s=60) == []
    failed = queue.get(job_id, principal=SYSTEM)
    assert failed.state == "failed" and failed.finished_at is not None
    assert failed.error == "worker b stopped before finishing it (its lease ran out) on attempt 2 of 2"
    # `cairn jobs retry` gives it fresh attempts.
    assert queue.retry(principal=SYSTEM) == 1
    assert queue.get(job_id, principal=SYSTEM).attempts == 0
    assert [j.id for j in queue.claim("c", lease_s=60)] == [job_id]


def test_a_retry_waits_out_its_back_off(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn = make_cairn()
    queue = _queue(cairn)
    _file_jobs(queue, tmp_path, 1)
    (job,) = queue.claim("a", lease_s=60)
    queue.finish("a", [Outcome(job, "retry", error="database restarting", delay_s=30)])
    assert queue.claim("a", lease_s=60) == []
    assert not queue.drained()  # a job waiting for its retry is still work to do
    # A release (a stopping worker) is not an attempt.
    (other,) = _file_jobs(queue, tmp_path / "more", 1)
    (taken,) = queue.claim("a", lease_s=60)
    queue.finish("a", [Outcome(taken, "release")])
    back = queue.get(other, principal=SYSTEM)
    assert back.state == "queued" and back.attempts == 0


def test_a_file_waits_in_the_queue_once(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn = make_cairn()
    queue = _queue(cairn)
    path = _folder(tmp_path / "docs", 1) / "doc000.txt"
    first = queue.enqueue(path, "q", principal=SYSTEM)
    second = queue.enqueue(path, "q", principal=SYSTEM, readers=("group:it",), full=True)
    assert second.id == first.id and second.readers == ("group:it",) and second.full
    # A failed job retried while a newer job for the same file waits is superseded, not doubled.
    (job,) = queue.claim("a", lease_s=60)
    queue.finish("a", [Outcome(job, "failed", "error", error="corrupt")])
    newer = queue.enqueue(path, "q", principal=SYSTEM)
    assert newer.id != job.id
    assert queue.retry([job.id], principal=SYSTEM) == 0
    old = queue.get(job.id, principal=SYSTEM)
    assert old.state == "cancelled" and old.error is not None and "superseded" in old.error
    assert [j.id for j in queue.list_jobs(principal=SYSTEM, states=["queued"])] == [newer.id]


def test_cancel_and_purge(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn = make_cairn()
    queue = _queue(cairn)
    ids = _file_jobs(queue, tmp_path, 4)
    (running,) = queue.claim("a", lease_s=60)
    assert queue.cancel(ids, principal=SYSTEM) == 3  # the running one finishes its file
    assert queue.get(running.id, principal=SYSTEM).state == "running"
    queue.finish("a", [Outcome(running, "done", "added")])
    assert queue.purge(principal=SYSTEM, older_than_days=1) == 0
    assert queue.purge(principal=SYSTEM, older_than_days=0) == 4
    with pytest.raises(NotFound):
        queue.get(ids[0], principal=SYSTEM)


def test_deleting_a_knowledge_base_drops_its_jobs(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn = make_cairn()
    queue = _queue(cairn)
    ids = _file_jobs(queue, tmp_path, 2, kb="gone")
    cairn.store.drop_kb("gone")
    assert queue.list_jobs(principal=SYSTEM) == []
    with pytest.raises(NotFound):
        queue.get(ids[0], principal=SYSTEM)


def _user(cairn: Cairn, name: str, *, admin: bool = False) -> Principal:
    cairn.principals.add_user(name, ["staff"], admin=admin)
    return cairn.principals.resolve(name)


def test_only_administrators_see_or_add_jobs(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn = make_cairn()
    queue = _queue(cairn)
    alice = _user(cairn, "alice")
    root = _user(cairn, "root", admin=True)
    folder = _folder(tmp_path / "docs", 2)
    # An ordinary user may read the documents (group staff) but may not write the knowledge base.
    cairn.ingestor.sync_folder(folder, "q", readers=("group:staff",))
    with pytest.raises(Forbidden):
        queue.enqueue(folder, "q", principal=alice)
    with pytest.raises(Forbidden):
        queue.list_jobs(principal=alice)
    with pytest.raises(Forbidden):
        queue.retry(principal=alice)
    job = queue.enqueue(folder, "q", principal=root)
    assert job.requested_by == root.user_id
    assert [j.id for j in queue.list_jobs(principal=root)] == [job.id]
    assert queue.cancel([job.id], principal=root) == 1


def test_row_level_security_guards_the_table_itself(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    """The second layer: SQL that skips JobQueue's check still sees no job and cannot add one."""
    cairn = make_cairn()
    queue = _queue(cairn)
    alice = _user(cairn, "alice")
    root = _user(cairn, "root", admin=True)
    folder = _folder(tmp_path / "docs", 1)
    queue.enqueue(folder, "q", principal=SYSTEM)
    kb_id = cairn.store.ensure_kb("q")
    insert = "INSERT INTO ingest_jobs (kind, kb_id, path, root, requested_by) VALUES ('folder', %s, '/etc', '/etc', %s)"
    with cairn.db.connection(alice) as conn:
        assert conn.execute("SELECT count(*) FROM ingest_jobs").fetchone() == (0,)
        assert conn.execute("UPDATE ingest_jobs SET state = 'cancelled'").rowcount == 0
        assert conn.execute("DELETE FROM ingest_jobs").rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(insert, (kb_id, alice.user_id))
    with cairn.db.connection(root) as conn:
        assert conn.execute("SELECT count(*) FROM ingest_jobs").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # not in someone else's name
            conn.execute(insert, (kb_id, alice.user_id))
    # A connection nobody was named on sees nothing.
    with cairn.db.connection(Principal("nobody")) as conn:
        assert conn.execute("SELECT count(*) FROM ingest_jobs").fetchone() == (0,)
