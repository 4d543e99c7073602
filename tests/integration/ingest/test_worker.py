"""Queued ingestion end to end, in-process: the worker builds the same index as ``cairn ingest``.

Workers here are threads of the test process; tests/integration/ingest/test_worker_processes.py runs
real processes, kills them and counts.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

from cairn.assistant import Cairn
from cairn.index.check import check_index
from cairn.ingest.queue import JobQueue
from cairn.ingest.worker import Worker
from cairn.types import SYSTEM


def _corpus(root: Path) -> Path:
    """Nested folders with sidecars, a corrupt PDF and an unsupported file: every path of a sync."""
    (root / "hr" / "salaries").mkdir(parents=True)
    (root / "it").mkdir()
    for i in range(12):
        folder = root / ("hr" if i % 3 == 0 else "it" if i % 3 == 1 else "")
        (folder / f"note{i:02d}.md").write_text(
            f"# Note {i}\n\n" + " ".join(f"policy{i} word{j}" for j in range(60 + 40 * i)), encoding="utf-8"
        )
    (root / "hr" / ".cairn-acl").write_text("groups: hr\n", encoding="utf-8")
    (root / "hr" / "salaries" / "band.txt").write_text("Salary bands are reviewed in March.", encoding="utf-8")
    (root / "hr" / "salaries" / ".cairn-acl").write_text("users: carol\n", encoding="utf-8")
    (root / "it" / "laptops.txt").write_text("Laptops are replaced every four years.", encoding="utf-8")
    (root / "it" / "laptops.txt.cairn-acl").write_text("groups: it, staff\n", encoding="utf-8")
    (root / "broken.pdf").write_bytes(b"%PDF-1.7\nthis is not a pdf at all")
    (root / "image.bin").write_bytes(bytes(range(256)) * 4)
    return root


def _index(cairn: Cairn, kb: str) -> dict[str, tuple[str, int, tuple[str, ...]]]:
    """source -> (content hash, chunk count, readers), what two ways of ingesting must agree on."""
    return {d.source: (d.content_hash, d.chunks, d.readers) for d in cairn.store.list_documents(SYSTEM, kb)}


def _worker(cairn: Cairn, **options: object) -> Worker:
    queue = JobQueue(cairn.db, cairn.store)
    settings: dict[str, object] = {"lease_s": 30.0, "poll_s": 0.05, "retry_delay_s": 0.0} | options
    return Worker(queue, cairn.ingestor, cairn.store, **settings)  # type: ignore[arg-type]


def test_a_queued_sync_builds_the_index_an_inline_sync_builds(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn = make_cairn()
    folder = _corpus(tmp_path / "docs")
    inline = cairn.ingestor.sync_folder(folder, "inline", readers=("group:staff",))
    queue = JobQueue(cairn.db, cairn.store)
    sync = queue.enqueue(folder, "queued", principal=SYSTEM, readers=("group:staff",))
    stats = _worker(cairn, concurrency=3, batch=2).run(once=True)
    assert _index(cairn, "queued") == _index(cairn, "inline")
    assert check_index(cairn.db).ok
    progress = queue.progress(sync.id, principal=SYSTEM)
    assert progress.finished and not progress.ok  # the corrupt PDF
    assert progress.outcomes.get("added") == inline.count("added") == 14
    assert progress.outcomes.get("skipped") == inline.count("skipped") == 1
    assert [p["source"] for p in progress.failures] == [str((folder / "broken.pdf").resolve())]
    files = queue.list_jobs(principal=SYSTEM, parent=sync.id, limit=100)
    assert len(files) == 16 and {j.attempts for j in files} == {1}
    assert stats.done + stats.failed == 17 and stats.failed == 1  # the folder job counts as done


def test_a_second_sync_deletes_removed_files_and_updates_readers(
    make_cairn: Callable[..., Cairn], tmp_path: Path
) -> None:
    cairn = make_cairn()
    folder = _corpus(tmp_path / "docs")
    queue = JobQueue(cairn.db, cairn.store)
    queue.enqueue(folder, "kb", principal=SYSTEM)
    _worker(cairn).run(once=True)
    (folder / "it" / "note01.md").unlink()
    (folder / "hr" / ".cairn-acl").write_text("groups: hr, legal\n", encoding="utf-8")
    (folder / "new.txt").write_text("A new policy on parking.", encoding="utf-8")
    second = queue.enqueue(folder, "kb", principal=SYSTEM)
    _worker(cairn).run(once=True)
    progress = queue.progress(second.id, principal=SYSTEM).to_json()
    assert (progress["added"], progress["deleted"]) == (1, 1)
    assert progress["updated"] == 4  # the four hr notes: new readers, no re-embedding
    inline = make_cairn()
    inline.ingestor.sync_folder(folder, "inline")
    assert _index(cairn, "kb") == _index(inline, "inline")


def test_a_file_removed_while_queued_is_removed_from_the_index(
    make_cairn: Callable[..., Cairn], tmp_path: Path
) -> None:
    cairn = make_cairn()
    folder = _corpus(tmp_path / "docs")
    cairn.ingestor.sync_folder(folder, "kb")
    target = folder / "it" / "laptops.txt"
    queue = JobQueue(cairn.db, cairn.store)
    job = queue.enqueue(target, "kb", principal=SYSTEM)
    target.unlink()
    _worker(cairn).run(once=True)
    done = queue.get(job.id, principal=SYSTEM)
    assert (done.state, done.outcome, done.result) == ("done", "deleted", {"documents": 1})
    assert str(target.resolve()) not in _index(cairn, "kb")


def test_stopping_finishes_what_was_read_and_hands_the_rest_back(
    make_cairn: Callable[..., Cairn], tmp_path: Path
) -> None:
    cairn = make_cairn(embedder="fake:hash?dim=64&delay_ms=150")
    cairn.ingestor.batch_chunks = 1  # each file is written before the next one is read
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(6):
        (folder / f"f{i}.txt").write_text(f"File {i} about travel.", encoding="utf-8")
    queue = JobQueue(cairn.db, cairn.store)
    for path in sorted(folder.iterdir()):
        queue.enqueue(path, "kb", principal=SYSTEM)
    worker = _worker(cairn, batch=6)
    threading.Timer(0.25, worker.stop).start()
    stats = worker.run()
    jobs = queue.list_jobs(principal=SYSTEM)
    done = [j for j in jobs if j.state == "done"]
    back = [j for j in jobs if j.state == "queued"]
    assert len(done) + len(back) == 6 and done and back
    assert stats.done == len(done) and stats.released == len(back)
    assert {j.attempts for j in back} == {0}  # handed back, not counted as a try
    assert len(_index(cairn, "kb")) == len(done)
    assert check_index(cairn.db).ok


def test_cli_queue_wait_and_jobs_commands(run: Callable[..., tuple[int, str]], tmp_path: Path) -> None:
    folder = _corpus(tmp_path / "docs")
    code, output = run("ingest", str(folder), "--kb", "kb", "--queue", "--json")
    assert code == 0
    queued = json.loads(output)
    assert queued["kind"] == "folder" and queued["state"] == "queued"
    code, output = run("worker", "--once", "--json", "--concurrency", "2")
    assert code == 0
    stats = json.loads(output)
    assert stats["done"] == 16 and stats["failed"] == 1
    code, output = run("jobs", "list", "--json", "--state", "failed")
    listing = json.loads(output)
    assert listing["counts"]["done"] == 16 and listing["counts"]["failed"] == 1
    (failed,) = listing["jobs"]
    assert failed["path"].endswith("broken.pdf") and failed["outcome"] == "error" and failed["error"]
    code, output = run("jobs", "show", str(queued["job"]), "--json")
    assert json.loads(output)["sync"]["jobs"]["failed"] == 1
    assert run("jobs", "retry")[1].strip() == "1 jobs queued again"
    assert run("jobs", "cancel", "--all")[1].strip() == "1 jobs cancelled"
    assert (
        run("jobs", "purge", "--older-than", "0")[1].strip() == "17 finished jobs deleted"
    )  # the folder job and its 16 files


def test_cli_ingest_queue_wait_follows_the_workers(
    run: Callable[..., tuple[int, str]], make_cairn: Callable[..., Cairn], tmp_path: Path
) -> None:
    folder = _corpus(tmp_path / "docs")
    (folder / "broken.pdf").unlink()
    worker = _worker(make_cairn(), concurrency=2)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        code, output = run("ingest", str(folder), "--kb", "kb", "--queue", "--wait", "--json")
    finally:
        worker.stop()
        thread.join(timeout=60)
    summary = json.loads(output)
    assert code == 0 and summary["finished"] and summary["added"] == 14 and summary["skipped"] == 1
    assert summary["jobs"]["done"] == 15 and summary["jobs"]["failed"] == 0


def test_links_out_of_the_folder_and_unusable_names_are_reported_not_queued(
    make_cairn: Callable[..., Cairn], tmp_path: Path
) -> None:
    cairn = make_cairn()
    outside = tmp_path / "secret.txt"
    outside.write_text("The root password is hunter2.", encoding="utf-8")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "ok.txt").write_text("Parking is free on Fridays.", encoding="utf-8")
    (folder / "leak.txt").symlink_to(outside)
    bad_name = os.fsdecode(b"caf\xe9.txt")
    (folder / bad_name).write_text("Latin-1 name.", encoding="utf-8")
    queue = JobQueue(cairn.db, cairn.store)
    sync = queue.enqueue(folder, "kb", principal=SYSTEM)
    _worker(cairn).run(once=True)
    folder_job = queue.get(sync.id, principal=SYSTEM)
    assert folder_job.state == "done" and folder_job.result["files"] == 1
    reasons = folder_job.result["skipped"]
    assert set(reasons) == {str(folder / "leak.txt"), str(folder.resolve()) + "/caf\\xe9.txt"}
    assert queue.progress(sync.id, principal=SYSTEM).to_json()["skipped"] == 2
    assert list(_index(cairn, "kb")) == [str((folder / "ok.txt").resolve())]
