"""``cairn worker``: runs queued ingestion jobs (:mod:`cairn.ingest.queue`) until it is stopped.

Workers share nothing but the database, so the way to ingest faster is to start more of them, on
as many hosts as read the shared folder. Each worker process runs ``concurrency`` slots (threads:
useful while files wait on a remote embedder or the database) and one heartbeat thread that keeps
the leases of the jobs in hand alive; a worker that dies simply stops renewing, and its jobs go to
whoever claims next once the lease has run out.

A file job is executed by :meth:`Ingestor.sync_files`, the code path of ``cairn ingest``, so every
invariant of the index holds whoever ingests: one version per document, replaced atomically,
readers from the ``.cairn-acl`` sidecars, the same limits. A stop request (SIGTERM) lets each slot
finish the document it is writing, hands the rest of its claim back to the queue uncounted and
returns.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cairn.errors import CairnError
from cairn.index.store import IndexStore
from cairn.ingest.queue import Job, JobQueue, Outcome
from cairn.ingest.sync import FileReport, Ingestor, SyncReport, iter_files, printable

log = logging.getLogger(__name__)

MAX_RETRY_DELAY_S = 300.0


@dataclass(slots=True)
class WorkerStats:
    claimed: int = 0
    done: int = 0
    failed: int = 0
    retried: int = 0
    released: int = 0
    lost: int = 0  # finished after the lease had gone to another worker: not recorded by this one
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "claimed": self.claimed,
            "done": self.done,
            "failed": self.failed,
            "retried": self.retried,
            "released": self.released,
            "lost": self.lost,
            "outcomes": dict(self.outcomes),
            "seconds": round(self.seconds, 3),
            "jobs_per_s": round(self.done / self.seconds, 2) if self.seconds > 0 else None,
        }


class Worker:
    """Claims and runs jobs in ``concurrency`` threads; :meth:`run` returns when stopped (or drained)."""

    def __init__(
        self,
        queue: JobQueue,
        ingestor: Ingestor,
        store: IndexStore,
        *,
        concurrency: int = 1,
        batch: int = 8,
        lease_s: float = 60.0,
        poll_s: float = 1.0,
        retry_delay_s: float = 5.0,
        name: str | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
        on_report: Callable[[SyncReport], None] | None = None,
    ) -> None:
        if concurrency < 1 or batch < 1:
            raise ValueError("concurrency and batch must be at least 1")
        if lease_s <= 0 or poll_s <= 0 or retry_delay_s < 0:
            raise ValueError("lease_s and poll_s must be positive, retry_delay_s not negative")
        self.queue = queue
        self.ingestor = ingestor
        self.store = store
        self.concurrency = concurrency
        self.batch = batch
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.retry_delay_s = retry_delay_s
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.on_outcome = on_outcome
        self.on_report = on_report
        self.stats = WorkerStats()
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._lock = threading.Lock()
        self._held: dict[str, set[int]] = {}

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """Finish the document being written, give the rest of the claimed jobs back, then return from run()."""
        self._stop.set()

    def run(self, *, once: bool = False) -> WorkerStats:
        """Run jobs until :meth:`stop`; with ``once``, until nothing is queued or running anywhere."""
        started = time.perf_counter()
        self._finished.clear()
        slots = [
            threading.Thread(target=self._loop, args=(f"{self.name}/{i}", once), name=f"cairn-worker-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        beat = threading.Thread(target=self._heartbeat, name="cairn-worker-heartbeat", daemon=True)
        for thread in slots:
            thread.start()
        beat.start()
        try:
            while any(t.is_alive() for t in slots):
                for thread in slots:
                    thread.join(timeout=0.2)  # short joins: the main thread must stay free for signals
        finally:
            self._finished.set()
            self.stats.seconds = time.perf_counter() - started
        return self.stats

    # -- the slots -------------------------------------------------------------------------------
    def _loop(self, slot: str, once: bool) -> None:
        while not self._stop.is_set():
            try:
                jobs = self.queue.claim(slot, lease_s=self.lease_s, batch=self.batch)
                if not jobs:
                    if once and self.queue.drained():
                        return
                    self._stop.wait(self.poll_s)
                    continue
            except CairnError as exc:  # the database is away: keep trying, the jobs wait in it
                log.warning("%s cannot reach the queue: %s", slot, exc.message)
                self._stop.wait(self.poll_s)
                continue
            with self._lock:
                self._held[slot] = {j.id for j in jobs}
                self.stats.claimed += len(jobs)
            try:
                outcomes = self._execute(slot, jobs)
                lost = self.queue.finish(slot, outcomes) if outcomes else set()
            except Exception as exc:
                # The results cannot be recorded: the leases run out and the jobs are done again.
                reason = exc.message if isinstance(exc, CairnError) else f"{type(exc).__name__}: {exc}"
                log.warning("%s could not record jobs %s: %s", slot, [j.id for j in jobs], reason)
                continue
            finally:
                with self._lock:
                    self._held.pop(slot, None)
            self._count(outcomes, lost)

    def _execute(self, slot: str, jobs: Sequence[Job]) -> list[Outcome]:
        if jobs[0].kind == "folder":
            return [o for job in jobs for o in self._expand(slot, job)]
        return self._ingest(jobs)

    def _expand(self, slot: str, job: Job) -> list[Outcome]:
        """List the folder, delete what is gone, queue its files; recorded by the queue itself."""
        root = Path(job.path)
        try:
            if not root.is_dir():
                return [self._missing(job, f"the folder {root} is not visible on this worker ({self.name})")]
            unreadable: list[str] = []
            refused: list[tuple[Path, str]] = []
            listed = [str(p.resolve()) for p in iter_files(root, unreadable, refused)]
            files = [f for f in listed if printable(f) == f]
            skipped = {printable(str(link)): reason for link, reason in refused}
            skipped |= {printable(f): "file name is not valid UTF-8; rename the file" for f in listed if f not in files}
            gone: list[str] = []
            if job.prune and not unreadable:
                keep = set(listed)
                prefix = str(root) + os.sep
                gone = sorted(s for s in self.store.stored_state(job.kb) if s.startswith(prefix) and s not in keep)
                self.store.delete_documents(job.kb, gone)
            unreadable = [printable(u) for u in unreadable]
            if self.queue.expand(job, slot, files, deleted=len(gone), unreadable=unreadable, skipped=skipped):
                with self._lock:
                    self.stats.done += 1
                    self.stats.outcomes["expanded"] += 1
                log.info("job %s: %s expanded into %d files, %d documents deleted", job.id, root, len(files), len(gone))
            else:
                with self._lock:
                    self.stats.lost += 1
            return []
        except Exception as exc:  # every failure is recorded on the job, with its reason
            return [self._failure(job, exc)]

    def _ingest(self, jobs: Sequence[Job]) -> list[Outcome]:
        """Index a claim of file jobs (same knowledge base, folder, readers) in one ingest call."""
        first = jobs[0]
        root = Path(first.root)
        outcomes: dict[int, Outcome] = {}
        present: list[Job] = []
        for job in jobs:
            if os.path.lexists(job.path):
                present.append(job)
            elif root.is_dir():  # the file was removed since it was queued: the sync removes its document
                try:
                    removed = self.store.delete_documents(first.kb, [job.path])
                    outcomes[job.id] = Outcome(job, "done", "deleted", result={"documents": removed})
                except Exception as exc:  # recorded on the job
                    outcomes[job.id] = self._failure(job, exc)
            else:
                outcomes[job.id] = self._missing(job, f"the folder {root} is not visible on this worker ({self.name})")
        by_source = {str(Path(j.path).resolve()): j for j in present}
        by_source |= {printable(source): j for source, j in list(by_source.items())}  # how errors name a file
        reports: dict[int, FileReport] = {}

        def on_file(report: FileReport) -> None:
            job = by_source.get(report.source)
            if job is not None:
                reports[job.id] = report

        cause: BaseException | None = None
        if present:
            try:
                report = self.ingestor.sync_files(
                    [Path(j.path) for j in present],
                    first.kb,
                    acl_root=root,
                    full=first.full,
                    readers=first.readers,
                    progress=on_file,
                    stop=self._stop.is_set,
                )
                if self.on_report is not None:
                    self.on_report(report)
            except Exception as exc:  # the jobs without a result get the reason
                cause = exc
        for job in present:
            done = reports.get(job.id)
            if done is not None:
                outcomes[job.id] = _file_outcome(job, done)
            elif cause is not None:
                outcomes[job.id] = self._failure(job, cause)
            elif self._stop.is_set():  # not reached before the stop request: back to the queue, uncounted
                outcomes[job.id] = Outcome(job, "release")
            else:  # never released without a stop: a job that keeps getting no result must end
                outcomes[job.id] = Outcome(job, "failed", "error", error="the ingest reported nothing for this file")
        return [outcomes[j.id] for j in jobs]

    def _missing(self, job: Job, message: str) -> Outcome:
        """A path this worker cannot see (a volume not mounted here): another worker may, so try again."""
        return Outcome(job, "retry", error=message, delay_s=self._delay(job))

    def _failure(self, job: Job, exc: BaseException) -> Outcome:
        """A request error (4xx) is final; anything else (database, model server, a bug) is retried."""
        if isinstance(exc, CairnError):
            message = exc.message
            final = 400 <= exc.status < 500
        else:
            log.error("job %s (%s) failed", job.id, job.path, exc_info=exc)
            message = f"{type(exc).__name__}: {exc}"
            final = False
        if final:
            return Outcome(job, "failed", "error", error=message)
        return Outcome(job, "retry", error=message, delay_s=self._delay(job))

    def _delay(self, job: Job) -> float:
        return float(min(self.retry_delay_s * 2.0 ** max(job.attempts - 1, 0), MAX_RETRY_DELAY_S))

    def _count(self, outcomes: Sequence[Outcome], lost: set[int]) -> None:
        with self._lock:
            self.stats.lost += len(lost)
            for o in outcomes:
                if o.job.id in lost:
                    continue
                last = o.job.attempts >= o.job.max_attempts
                if o.action == "done":
                    self.stats.done += 1
                    self.stats.outcomes[o.outcome or "done"] += 1
                elif o.action == "failed" or (o.action == "retry" and last):
                    self.stats.failed += 1
                elif o.action == "retry":
                    self.stats.retried += 1
                else:
                    self.stats.released += 1
        for o in outcomes:
            if o.action in ("failed", "retry"):
                log.warning(
                    "job %s (%s): %s (attempt %d of %d)",
                    o.job.id,
                    o.job.path,
                    o.error,
                    o.job.attempts,
                    o.job.max_attempts,
                )
            if self.on_outcome is not None and o.job.id not in lost:
                self.on_outcome(o)

    # -- leases ----------------------------------------------------------------------------------
    def _heartbeat(self) -> None:
        while not self._finished.wait(self.lease_s / 3):
            with self._lock:
                held = {slot: set(ids) for slot, ids in self._held.items()}
            if not held:
                continue
            try:
                kept = self.queue.heartbeat(held, lease_s=self.lease_s)
            except CairnError as exc:
                log.warning("heartbeat failed (the leases may run out): %s", exc.message)
                continue
            missing = {i for ids in held.values() for i in ids} - kept
            if missing:
                log.warning("lost the lease of jobs %s: another worker may run them too", sorted(missing))


def _file_outcome(job: Job, report: FileReport) -> Outcome:
    result: dict[str, Any] = {"chunks": report.chunks, "pages": report.pages}
    if report.message:
        result["message"] = report.message
    if report.warnings:
        result["warnings"] = list(report.warnings)
    if report.status == "error":
        return Outcome(job, "failed", "error", error=report.message, result=result)
    return Outcome(job, "done", report.status, result=result)
