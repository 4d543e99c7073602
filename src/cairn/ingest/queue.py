"""The ingestion queue: jobs in PostgreSQL (m008_ingest_jobs.sql) that any number of workers share.

The database is the only coordinator. ``cairn ingest DIR --queue`` enqueues one *folder* job; the worker
that claims it lists the folder, deletes the documents of removed files and turns every file into a
*file* job, so the files of one large folder spread over all workers. A claim is one short transaction
that locks rows with ``FOR UPDATE SKIP LOCKED``: concurrent claimers skip each other's rows instead of
waiting, and no row is handed out twice. A claimed job carries a lease that the worker's heartbeat
keeps extending; when a worker dies its lease runs out and the next claim takes the job over. Every
claim counts as an attempt, so a file that kills its worker each time fails after ``max_attempts``
with the reason, instead of taking the fleet down one worker after another.

Running a file job twice is harmless (the second run finds the content unchanged), so the queue
promises at-least-once execution and the index stays exactly-once per document version.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import psycopg

from cairn.errors import Forbidden, InputError, NotFound
from cairn.index.db import Database
from cairn.index.store import IndexStore
from cairn.ingest.sync import printable
from cairn.types import SYSTEM, Principal

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
STATES: tuple[JobState, ...] = ("queued", "running", "done", "failed", "cancelled")
FINISHED: tuple[JobState, ...] = ("done", "failed", "cancelled")

_COLUMNS = (
    "j.id, j.kind, kb.name, j.path, j.root, j.readers, j.full_reindex, j.prune, j.parent_id, j.state, j.attempts,"
    " j.max_attempts, j.worker, j.lease_until, j.outcome, j.error, j.result, j.requested_by, j.created_at,"
    " j.started_at, j.finished_at"
)

# A lease that ran out on the last allowed attempt: the job fails with the reason. (Run without
# parameters: its % signs reach format() as they are.)
_REAP = """
UPDATE ingest_jobs j
   SET state = 'failed', finished_at = now(), lease_until = NULL,
       error = format('worker %s stopped before finishing it (its lease ran out) on attempt %s of %s',
                      j.worker, j.attempts, j.max_attempts)
 WHERE j.id IN (SELECT id FROM ingest_jobs
                 WHERE state = 'running' AND lease_until < now() AND attempts >= max_attempts
                 FOR UPDATE SKIP LOCKED)
"""

# A dead worker's job first (it has waited longest), else the oldest queued one.
_PICK_EXPIRED = """
SELECT id, kind, kb_id, root, readers, full_reindex FROM ingest_jobs
 WHERE state = 'running' AND lease_until < now() AND attempts < max_attempts
 ORDER BY lease_until LIMIT 1 FOR UPDATE SKIP LOCKED
"""
_PICK_QUEUED = """
SELECT id, kind, kb_id, root, readers, full_reindex FROM ingest_jobs
 WHERE state = 'queued' AND run_after <= now()
 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
"""
# More files of the same sync (same knowledge base, folder, readers and mode): one ingest call for all.
_PICK_COMPANIONS = """
SELECT id FROM ingest_jobs
 WHERE state = 'queued' AND run_after <= now() AND kind = 'file' AND kb_id = %s AND root = %s
   AND readers = %s AND full_reindex = %s AND id <> %s
 ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
"""
_TAKE = f"""
UPDATE ingest_jobs j
   SET state = 'running', worker = %(worker)s, attempts = j.attempts + 1, started_at = now(),
       lease_until = now() + make_interval(secs => %(lease)s),
       error = CASE WHEN j.state = 'running'
                    THEN format('worker %%s stopped before finishing it (its lease ran out)', j.worker)
                    ELSE j.error END
  FROM knowledge_bases kb
 WHERE kb.id = j.kb_id AND j.id = ANY(%(ids)s)
RETURNING {_COLUMNS}
"""

_FINISH = """
UPDATE ingest_jobs j
   SET state = u.state, outcome = u.outcome, error = coalesce(u.error, j.error), result = u.result,
       finished_at = now(), lease_until = NULL
  FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::jsonb[]) AS u(id, state, outcome, error, result)
 WHERE j.id = u.id AND j.state = 'running' AND j.worker = %s
RETURNING j.id
"""

# Back to the queue: after a failed attempt (``worker`` set: only while the job is still ours), or by
# `cairn jobs retry` (failed or cancelled jobs). A file already waiting under another job is not queued
# twice: this one is cancelled as superseded instead.
_REQUEUE = """
UPDATE ingest_jobs j
   SET state = 'queued', run_after = now() + make_interval(secs => %(delay)s),
       lease_until = NULL, finished_at = NULL, error = coalesce(%(error)s, j.error),
       attempts = CASE WHEN %(reset)s THEN 0 ELSE greatest(j.attempts - %(refund)s, 0) END
 WHERE j.id = %(id)s AND j.state = ANY(%(states)s) AND (%(worker)s::text IS NULL OR j.worker = %(worker)s)
RETURNING j.id
"""
_SUPERSEDE = """
UPDATE ingest_jobs j
   SET state = 'cancelled', finished_at = now(), lease_until = NULL,
       error = coalesce(%(error)s || '; ', '') || 'superseded by a newer job for the same file'
 WHERE j.id = %(id)s AND j.state = ANY(%(states)s) AND (%(worker)s::text IS NULL OR j.worker = %(worker)s)
RETURNING j.id
"""


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    kind: Literal["folder", "file"]
    kb: str
    path: str
    root: str
    readers: tuple[str, ...]
    full: bool
    prune: bool
    parent_id: int | None
    state: JobState
    attempts: int
    max_attempts: int
    worker: str | None
    lease_until: datetime | None
    outcome: str | None
    error: str | None
    result: dict[str, Any]
    requested_by: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Job:
        values = list(row)
        values[5] = tuple(values[5])
        return cls(*values)

    def to_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id,
            "kind": self.kind,
            "kb": self.kb,
            "path": self.path,
            "state": self.state,
            "outcome": self.outcome,
            "error": self.error,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "worker": self.worker,
            "parent_id": self.parent_id,
            "readers": list(self.readers),
            "full": self.full,
            "result": self.result,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a worker's attempt at a job ended: ``done``, ``failed`` (final), ``retry`` or ``release``.

    ``retry`` puts the job back after ``delay_s`` (the attempt counted; on the last attempt it fails
    instead); ``release`` gives back a job the worker did not get to (stopping), without counting it.
    """

    job: Job
    action: Literal["done", "failed", "retry", "release"]
    outcome: str | None = None
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """A queued sync (a folder job and the file jobs it became), counted like an inline ingest."""

    job: Job
    states: dict[str, int]
    outcomes: dict[str, int]
    failures: list[dict[str, Any]]

    @property
    def finished(self) -> bool:
        return self.job.state in FINISHED and not self.states.get("queued") and not self.states.get("running")

    @property
    def ok(self) -> bool:
        return self.job.state != "failed" and not self.states.get("failed")

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job.id,
            "kb": self.job.kb,
            "path": self.job.path,
            "state": self.job.state,
            "finished": self.finished,
            "jobs": {s: self.states.get(s, 0) for s in STATES},
            **{o: self.outcomes.get(o, 0) for o in ("added", "updated", "unchanged", "deleted", "skipped", "error")},
            "problems": self.failures,
        }


def require_writer(principal: Principal) -> None:
    """Queued ingestion writes knowledge bases and names files: the system scope and administrators only."""
    if not principal.unrestricted:
        raise Forbidden(
            "only administrators manage the ingestion queue",
            hint="an administrator (`cairn users set NAME --admin`) or the local operator can",
        )


class JobQueue:
    """The ``ingest_jobs`` table; every method is one or two short transactions."""

    def __init__(self, db: Database, store: IndexStore, *, max_attempts: int = 3) -> None:
        if not 1 <= max_attempts <= 100:
            raise InputError("max_attempts must be between 1 and 100")
        self.db = db
        self.store = store
        self.max_attempts = max_attempts

    # -- enqueueing --------------------------------------------------------------------------------
    def enqueue(
        self,
        path: Path,
        kb: str,
        *,
        principal: Principal,
        readers: tuple[str, ...] = (),
        full: bool = False,
        prune: bool = True,
    ) -> Job:
        """Queue a sync of ``path`` (a folder job, or one file job) into ``kb``; workers do the rest.

        The path is resolved here and must be the same path on the workers (a shared volume).
        """
        require_writer(principal)
        target = Path(path).expanduser()
        if not target.exists():
            raise NotFound(f"{path} does not exist", hint="the workers read the same path: mount one shared volume")
        target = target.resolve()
        if printable(str(target)) != str(target):
            raise InputError(f"{printable(str(target))}: the path is not valid UTF-8", hint="rename it")
        kind = "folder" if target.is_dir() else "file"
        root = target if kind == "folder" else target.parent
        kb_id = self.store.ensure_kb(kb)
        requested_by = None if principal.is_system else principal.user_id
        with self._connection(principal) as conn:
            if kind == "file":
                row = conn.execute(
                    "INSERT INTO ingest_jobs (kind, kb_id, path, root, readers, full_reindex, prune, max_attempts,"
                    " requested_by) VALUES ('file', %s, %s, %s, %s, %s, false, %s, %s)"
                    " ON CONFLICT (kb_id, path) WHERE state = 'queued' AND kind = 'file' DO UPDATE"
                    " SET root = EXCLUDED.root, readers = EXCLUDED.readers, parent_id = NULL,"
                    " full_reindex = ingest_jobs.full_reindex OR EXCLUDED.full_reindex RETURNING id",
                    (kb_id, str(target), str(root), list(readers), full, self.max_attempts, requested_by),
                ).fetchone()
            else:
                row = conn.execute(
                    "INSERT INTO ingest_jobs (kind, kb_id, path, root, readers, full_reindex, prune, max_attempts,"
                    " requested_by) VALUES ('folder', %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                    (kb_id, str(target), str(root), list(readers), full, prune, self.max_attempts, requested_by),
                ).fetchone()
            assert row is not None
        return self.get(int(row[0]), principal=principal)

    # -- the worker's side -------------------------------------------------------------------------
    def claim(self, worker: str, *, lease_s: float, batch: int = 1) -> list[Job]:
        """Take the next job (and up to ``batch - 1`` more files of the same sync); [] when none is due."""
        with self.db.connection(SYSTEM) as conn, conn.transaction():
            conn.execute(_REAP)
            first = conn.execute(_PICK_EXPIRED).fetchone() or conn.execute(_PICK_QUEUED).fetchone()
            if first is None:
                return []
            ids = [int(first[0])]
            if first[1] == "file" and batch > 1:
                more = conn.execute(_PICK_COMPANIONS, (first[2], first[3], first[4], first[5], first[0], batch - 1))
                ids += [int(r[0]) for r in more.fetchall()]
            rows = conn.execute(_TAKE, {"worker": worker, "lease": lease_s, "ids": ids}).fetchall()
        return sorted((Job.from_row(r) for r in rows), key=lambda j: j.id)

    def heartbeat(self, held: Mapping[str, Collection[int]], *, lease_s: float) -> set[int]:
        """Extend the leases of the jobs each worker holds (worker id -> job ids); returns the ids still held.

        By job id, not by worker: a job whose result could not be recorded must be left to expire.
        """
        pairs = [(job_id, worker) for worker, ids in held.items() for job_id in ids]
        if not pairs:
            return set()
        with self.db.connection(SYSTEM) as conn:
            rows = conn.execute(
                "UPDATE ingest_jobs j SET lease_until = now() + make_interval(secs => %s)"
                " FROM unnest(%s::bigint[], %s::text[]) AS h(id, worker)"
                " WHERE j.id = h.id AND j.worker = h.worker AND j.state = 'running' RETURNING j.id",
                (lease_s, [p[0] for p in pairs], [p[1] for p in pairs]),
            ).fetchall()
        return {int(r[0]) for r in rows}

    def finish(self, worker: str, outcomes: Sequence[Outcome]) -> set[int]:
        """Record how the attempts ended; returns the ids that were no longer this worker's (lease lost)."""
        final = [o for o in outcomes if o.action in ("done", "failed")]
        again = [o for o in outcomes if o.action in ("retry", "release")]
        # A retry on the last allowed attempt is a failure.
        final += [
            Outcome(o.job, "failed", o.outcome, o.error, o.result)
            for o in again
            if o.action == "retry" and o.job.attempts >= o.job.max_attempts
        ]
        again = [o for o in again if not (o.action == "retry" and o.job.attempts >= o.job.max_attempts)]
        recorded: set[int] = set()
        with self.db.connection(SYSTEM) as conn, conn.transaction():
            if final:
                rows = conn.execute(
                    _FINISH,
                    (
                        [o.job.id for o in final],
                        ["done" if o.action == "done" else "failed" for o in final],
                        [o.outcome for o in final],
                        [o.error for o in final],
                        [json.dumps(o.result) for o in final],
                        worker,
                    ),
                ).fetchall()
                recorded |= {int(r[0]) for r in rows}
            for o in again:
                refund = 1 if o.action == "release" else 0
                if self._requeue(conn, o.job.id, ("running",), worker, o.error, o.delay_s, refund=refund):
                    recorded.add(o.job.id)
        return {o.job.id for o in outcomes} - recorded

    def expand(
        self,
        job: Job,
        worker: str,
        files: Sequence[str],
        *,
        deleted: int,
        unreadable: Sequence[str] = (),
        skipped: Mapping[str, str] | None = None,
    ) -> bool:
        """Turn a claimed folder job into file jobs and finish it, in one transaction; False if no longer ours.

        ``skipped`` (path -> reason: links leading out, unusable names) is kept in the job's result.
        """
        files = list(dict.fromkeys(files))
        problem = f"{len(unreadable)} folders cannot be read; their documents are kept" if unreadable else None
        result = {
            "files": len(files),
            "deleted": deleted,
            "unreadable": list(unreadable),
            "skipped": dict(skipped or {}),
        }
        with self.db.connection(SYSTEM) as conn, conn.transaction():
            held = conn.execute(
                "SELECT kb_id, requested_by FROM ingest_jobs WHERE id = %s AND state = 'running' AND worker = %s"
                " FOR UPDATE",
                (job.id, worker),
            ).fetchone()
            if held is None:
                return False
            conn.execute(
                "INSERT INTO ingest_jobs (kind, kb_id, path, root, readers, full_reindex, prune, parent_id,"
                " max_attempts, requested_by)"
                " SELECT 'file', %s, p, %s, %s, %s, false, %s, %s, %s FROM unnest(%s::text[]) AS p"
                " ON CONFLICT (kb_id, path) WHERE state = 'queued' AND kind = 'file' DO UPDATE"
                " SET root = EXCLUDED.root, readers = EXCLUDED.readers, parent_id = EXCLUDED.parent_id,"
                " full_reindex = ingest_jobs.full_reindex OR EXCLUDED.full_reindex",
                (held[0], job.root, list(job.readers), job.full, job.id, job.max_attempts, held[1], files),
            )
            conn.execute(
                "UPDATE ingest_jobs SET state = %s, outcome = 'expanded', error = %s, result = %s,"
                " finished_at = now(), lease_until = NULL WHERE id = %s",
                ("failed" if problem else "done", problem, json.dumps(result), job.id),
            )
        return True

    def drained(self) -> bool:
        """Nothing queued and nothing running (a dead worker's job counts: it will be taken over)."""
        with self.db.connection(SYSTEM) as conn:
            row = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM ingest_jobs WHERE state IN ('queued', 'running'))")
            found = row.fetchone()
        return bool(found and found[0])

    # -- administration ----------------------------------------------------------------------------
    def get(self, job_id: int, *, principal: Principal) -> Job:
        jobs = self._select(principal, "j.id = %s", (job_id,), limit=1)
        if not jobs:
            raise NotFound(f"job {job_id} does not exist", hint="see `cairn jobs list`")
        return jobs[0]

    def list_jobs(
        self,
        *,
        principal: Principal,
        states: Sequence[str] = (),
        kb: str | None = None,
        parent: int | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """The newest jobs first, filtered by state, knowledge base and the sync they belong to."""
        where, params = self._filters(states, kb, parent)
        return self._select(principal, where, params, limit=limit, newest_first=True)

    def counts(self, *, principal: Principal, kb: str | None = None, parent: int | None = None) -> dict[str, int]:
        require_writer(principal)
        where, params = self._filters((), kb, parent)
        with self._connection(principal) as conn:
            rows = conn.execute(
                "SELECT j.state, count(*) FROM ingest_jobs j JOIN knowledge_bases kb ON kb.id = j.kb_id"
                f" WHERE {where} GROUP BY j.state",
                params,
            ).fetchall()
        return dict.fromkeys(STATES, 0) | {r[0]: int(r[1]) for r in rows}

    def progress(self, job_id: int, *, principal: Principal) -> SyncProgress:
        """A sync's state: its own job and, for a folder, the file jobs it turned into."""
        job = self.get(job_id, principal=principal)
        with self._connection(principal) as conn:
            rows = conn.execute(
                "SELECT state, coalesce(outcome, ''), count(*) FROM ingest_jobs WHERE id = %s OR parent_id = %s"
                " GROUP BY 1, 2",
                (job.id if job.kind == "file" else -1, job.id),
            ).fetchall()
            failed = conn.execute(
                "SELECT path, coalesce(outcome, ''), error FROM ingest_jobs"
                " WHERE (id = %s OR parent_id = %s) AND state = 'failed' ORDER BY id LIMIT 100",
                (job.id, job.id),
            ).fetchall()
        states: dict[str, int] = {}
        outcomes: dict[str, int] = {}
        for state, outcome, n in rows:
            states[state] = states.get(state, 0) + int(n)
            if outcome:
                outcomes[outcome] = outcomes.get(outcome, 0) + int(n)
        if job.kind == "folder":  # what the listing itself decided: removed files, links not followed
            outcomes["deleted"] = outcomes.get("deleted", 0) + int(job.result.get("deleted", 0))
            outcomes["skipped"] = outcomes.get("skipped", 0) + len(job.result.get("skipped", {}))
        problems = [{"source": r[0], "status": r[1] or "failed", "message": r[2] or ""} for r in failed]
        return SyncProgress(job, states, outcomes, problems)

    def retry(self, ids: Sequence[int] = (), *, principal: Principal, kb: str | None = None) -> int:
        """Queue failed or cancelled jobs again with fresh attempts (all failed ones when no id is given)."""
        require_writer(principal)
        where, params = self._filters(("failed",) if not ids else ("failed", "cancelled"), kb, None)
        if ids:
            where += " AND j.id = ANY(%s)"
            params = (*params, list(ids))
        with self._connection(principal) as conn, conn.transaction():
            targets = conn.execute(
                f"SELECT j.id FROM ingest_jobs j JOIN knowledge_bases kb ON kb.id = j.kb_id WHERE {where}"
                " ORDER BY j.id FOR UPDATE OF j",
                params,
            ).fetchall()
            done = 0
            for (job_id,) in targets:
                again = self._requeue(conn, int(job_id), ("failed", "cancelled"), None, None, 0.0, reset=True)
                done += again == "queued"
        return done

    def cancel(self, ids: Sequence[int] = (), *, principal: Principal, kb: str | None = None) -> int:
        """Cancel queued jobs (a folder job's queued files with it); running ones finish their file."""
        require_writer(principal)
        where, params = self._filters(("queued",), kb, None)
        if ids:
            where += " AND (j.id = ANY(%s) OR j.parent_id = ANY(%s))"
            params = (*params, list(ids), list(ids))
        with self._connection(principal) as conn:
            cur = conn.execute(
                "UPDATE ingest_jobs j SET state = 'cancelled', finished_at = now(), error = 'cancelled'"
                f" FROM knowledge_bases kb WHERE kb.id = j.kb_id AND {where}",
                params,
            )
        return cur.rowcount

    def purge(self, *, principal: Principal, older_than_days: float) -> int:
        """Delete finished jobs older than this (the queue keeps a record of every file of every sync)."""
        require_writer(principal)
        if older_than_days < 0:
            raise InputError("--older-than must be zero or more days")
        with self._connection(principal) as conn:
            cur = conn.execute(
                "DELETE FROM ingest_jobs WHERE finished_at IS NOT NULL"
                " AND finished_at < now() - make_interval(secs => %s)",
                (older_than_days * 86400.0,),
            )
        return cur.rowcount

    # -- helpers -----------------------------------------------------------------------------------
    @contextmanager
    def _connection(self, principal: Principal) -> Iterator[psycopg.Connection]:
        """A connection for ``principal``; row-level security refusing a write is reported as Forbidden."""
        with self.db.connection(principal) as conn:
            try:
                yield conn
            except psycopg.errors.InsufficientPrivilege as exc:
                raise Forbidden("only administrators manage the ingestion queue") from exc

    def _select(
        self,
        principal: Principal,
        where: str,
        params: Sequence[Any],
        *,
        limit: int,
        newest_first: bool = False,
    ) -> list[Job]:
        require_writer(principal)
        if not 1 <= limit <= 100_000:
            raise InputError("the limit must be between 1 and 100000")
        order = "j.id DESC" if newest_first else "j.id"
        with self._connection(principal) as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM ingest_jobs j JOIN knowledge_bases kb ON kb.id = j.kb_id"
                f" WHERE {where} ORDER BY {order} LIMIT %s",
                (*params, limit),
            ).fetchall()
        return [Job.from_row(r) for r in rows]

    @staticmethod
    def _filters(states: Sequence[str], kb: str | None, parent: int | None) -> tuple[str, tuple[Any, ...]]:
        unknown = sorted(set(states) - set(STATES))
        if unknown:
            raise InputError(f"unknown job state {', '.join(unknown)}", hint=f"one of {', '.join(STATES)}")
        clauses: list[str] = ["TRUE"]
        params: list[Any] = []
        if states:
            clauses.append("j.state = ANY(%s)")
            params.append(list(states))
        if kb is not None:
            clauses.append("kb.name = %s")
            params.append(kb)
        if parent is not None:
            clauses.append("j.parent_id = %s")
            params.append(parent)
        return " AND ".join(clauses), tuple(params)

    @staticmethod
    def _requeue(
        conn: psycopg.Connection,
        job_id: int,
        states: Sequence[str],
        worker: str | None,
        error: str | None,
        delay_s: float,
        *,
        reset: bool = False,
        refund: int = 0,
    ) -> Literal["queued", "superseded"] | None:
        """Queue one job again (a savepoint: the file may already wait under a newer job, see _SUPERSEDE).

        None when the job is not in one of ``states`` (or no longer ``worker``'s).
        """
        params = {
            "id": job_id,
            "states": list(states),
            "worker": worker,
            "error": error,
            "delay": delay_s,
            "reset": reset,
            "refund": refund,
        }
        try:
            with conn.transaction():
                return "queued" if conn.execute(_REQUEUE, params).fetchone() is not None else None
        except psycopg.errors.UniqueViolation:
            return "superseded" if conn.execute(_SUPERSEDE, params).fetchone() is not None else None
