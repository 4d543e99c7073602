"""The audit trail: who asked what, what was retrieved and answered, in a tamper-evident hash chain.

Each record's hash is ``sha256(prev_hash || canonical_json(envelope))``, where the envelope holds
the time, the principal, the kind and the record itself. Editing a record breaks its own hash;
deleting or reordering records breaks the links; deleting the newest records is caught by the
head anchor kept in ``audit_head``. A retention purge removes the oldest records and leaves a
checkpoint (plus a ``purge`` record in the chain) so that what remains still verifies.

The record id is not hashed: order is proven by the links, so swapping two ids reads as a
reordering rather than as an edit. What the chain cannot prove is that nobody with the database
owner's rights rewrote all of it, head included; ``docs/audit.md`` explains why the head hash is
worth exporting elsewhere.

The record is stored as ``jsonb`` and hashed again on verify from what PostgreSQL returns, so
:func:`plain` first reduces every value to what survives a ``jsonb`` round trip unchanged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from cairn.errors import AuthError, Forbidden, InputError, StoreError
from cairn.types import Answer, Hit, Principal

if TYPE_CHECKING:
    import psycopg

    from cairn.index.db import Database

GENESIS = bytes(32)
CHAIN_LOCK_ID = 0x0CA1A0D1
EVENT_KINDS = ("ask", "search", "chat")

_ENTRY_COLUMNS = "id, at, user_id, principal, kind, record, prev_hash, hash"
# jsonb stores numbers as numeric and prints integral ones this large without an exponent, which
# would read back as an int: they are made ints before hashing.
_EXACT_FLOAT_LIMIT = 1e16


# -- canonical form -----------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """``value`` as JSON data that PostgreSQL's ``jsonb`` gives back exactly as it was given.

    Non-finite floats become null and ``-0.0`` becomes ``0.0`` (``jsonb`` has neither), NUL
    characters and lone surrogates are replaced (``jsonb`` and UTF-8 refuse them), and anything
    that is not JSON is turned into JSON the way the rest of cairn does: ``to_json()``, the
    fields of a dataclass, ISO dates, ``str()`` as a last resort.
    """
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value == 0:
            return 0.0
        if value.is_integer() and abs(value) >= _EXACT_FLOAT_LIMIT:
            return int(value)
        return value
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, Mapping):
        return {_clean(str(k)): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((plain(v) for v in value), key=lambda v: canonical_json(v))
    if isinstance(value, datetime):
        return value.isoformat()
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return plain(to_json())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return _clean(str(value))


def _clean(text: str) -> str:
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: one byte string per value, whoever serialises it."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def timestamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def envelope(at: datetime, user_id: int | None, principal: str, kind: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """What a record's hash covers besides the link to its predecessor."""
    return {"at": timestamp(at), "user_id": user_id, "principal": principal, "kind": kind, "record": record}


def chain_hash(prev_hash: bytes, body: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(prev_hash + canonical_json(body)).digest()


# -- what is recorded ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One interaction, with enough lineage to replay it: the exact chunks and document versions
    retrieved, the prompt template, model and parameters, guard verdicts, timings and tokens.

    ``retrieved`` items are ``{chunk_id, document_id, version, source, kb, score}``; ``tokens`` is
    ``{"prompt": int, "completion": int}`` (zeros when no language model was called).
    """

    kind: str
    question: str
    kbs: list[str] = field(default_factory=list)
    rewritten_queries: list[str] = field(default_factory=list)
    retrieved: list[dict[str, Any]] = field(default_factory=list)
    prompt_template: str = ""
    model: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    answer: str = ""
    refused: bool = False
    citations: list[dict[str, Any]] = field(default_factory=list)
    guards: list[dict[str, Any]] = field(default_factory=list)
    grounding: dict[str, Any] | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=lambda: {"prompt": 0, "completion": 0})
    session_id: str | None = None
    variant: str | None = None
    client: str = "cli"
    route: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise InputError(f"unknown audit event kind {self.kind!r}", hint=f"one of {', '.join(EVENT_KINDS)}")

    @classmethod
    def from_answer(
        cls,
        answer: Answer,
        *,
        question: str,
        kbs: Sequence[str],
        kind: str = "ask",
        rewritten_queries: Sequence[str] | None = None,
        prompt_template: str = "",
        params: Mapping[str, Any] | None = None,
        guards: Sequence[Any] | None = None,
        tokens: Mapping[str, int] | None = None,
        session_id: str | None = None,
        variant: str | None = None,
        client: str = "cli",
    ) -> AuditEvent:
        """The event for an answered (or refused) question.

        Without ``rewritten_queries``, the query the answer was retrieved with counts as the
        rewrite when it differs from the question (a chat follow-up). ``guards`` and ``tokens``
        default to the answer's own ``guards``/``tokens`` attributes when it has them.
        """
        if rewritten_queries is None:
            rewritten_queries = [answer.query] if answer.query and answer.query != question else []
        grounding = getattr(answer, "grounding", None)
        grounded = plain(grounding) if grounding is not None else None
        return cls(
            kind=kind,
            question=question,
            kbs=list(kbs),
            rewritten_queries=list(rewritten_queries),
            retrieved=retrieved_from(answer.searched),
            prompt_template=prompt_template,
            model=answer.model,
            params=dict(plain(dict(params or {}))),
            answer=answer.answer,
            refused=answer.refused,
            citations=[{**c.to_json(), "chunk_id": c.chunk_id} for c in answer.citations],
            guards=_dicts(guards if guards is not None else getattr(answer, "guards", ())),
            grounding=grounded if isinstance(grounded, dict) or grounded is None else {"value": grounded},
            timings_ms=dict(answer.timings_ms),
            tokens=_tokens(tokens if tokens is not None else getattr(answer, "tokens", None)),
            session_id=session_id,
            variant=variant,
            client=client,
            route=plain(answer.route) if getattr(answer, "route", None) else None,
        )

    @classmethod
    def from_hits(
        cls,
        query: str,
        hits: Sequence[Hit],
        *,
        kbs: Sequence[str],
        timings_ms: Mapping[str, float] | None = None,
        params: Mapping[str, Any] | None = None,
        client: str = "cli",
    ) -> AuditEvent:
        """The event for a search, which retrieves but does not answer."""
        return cls(
            kind="search",
            question=query,
            kbs=list(kbs),
            retrieved=retrieved_from(hits),
            params=dict(plain(dict(params or {}))),
            timings_ms=dict(timings_ms or {}),
            client=client,
        )

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = plain({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        return record


def retrieved_from(hits: Iterable[Hit]) -> list[dict[str, Any]]:
    """Lineage of the passages: a re-ingest replaces a document's chunks, so the version says which text an id was.

    ``cosine``, when retrieval measured it, is the calibrated relevance the refusal gate uses: unlike
    the fused ``score`` it means the same across queries, which drift detection relies on.
    """
    out = []
    for hit in hits:
        version = hit.scores.get("version")
        item = {
            "chunk_id": hit.chunk_id,
            "document_id": hit.document_id,
            "version": None if version is None else int(version),
            "source": hit.source,
            "kb": hit.kb,
            "score": round(float(hit.score), 6),
        }
        cosine = hit.scores.get("cosine")
        if cosine is not None and math.isfinite(cosine):
            item["cosine"] = round(float(cosine), 6)
        out.append(item)
    return out


def _dicts(items: Iterable[Any]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        value = plain(item)
        out.append(value if isinstance(value, dict) else {"value": value})
    return out


def _tokens(tokens: Any) -> dict[str, int]:
    if not isinstance(tokens, Mapping):
        return {"prompt": 0, "completion": 0}
    return {"prompt": int(tokens.get("prompt") or 0), "completion": int(tokens.get("completion") or 0)}


# -- stored records -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditRef:
    """Where a record landed; ``hash`` (hex) identifies its contents, the id only its place."""

    id: int
    hash: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    user_id: int | None
    principal: str
    kind: str
    record: dict[str, Any]
    prev_hash: bytes
    hash: bytes

    def computed_hash(self) -> bytes:
        return chain_hash(self.prev_hash, envelope(self.at, self.user_id, self.principal, self.kind, self.record))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": timestamp(self.at),
            "user_id": self.user_id,
            "principal": self.principal,
            "kind": self.kind,
            "hash": self.hash.hex(),
            "prev_hash": self.prev_hash.hex(),
            "record": self.record,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> AuditEntry:
        """Read back a line of ``cairn audit export``, so an export can be verified away from the database."""
        return cls(
            id=int(obj["id"]),
            at=datetime.fromisoformat(obj["at"]),
            user_id=obj["user_id"],
            principal=obj["principal"],
            kind=obj["kind"],
            record=obj["record"],
            prev_hash=bytes.fromhex(obj["prev_hash"]),
            hash=bytes.fromhex(obj["hash"]),
        )


def _entry(row: Sequence[Any]) -> AuditEntry:
    return AuditEntry(
        id=int(row[0]),
        at=row[1],
        user_id=row[2],
        principal=row[3],
        kind=row[4],
        record=row[5],
        prev_hash=bytes(row[6]),
        hash=bytes(row[7]),
    )


# -- verification -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """``head_hash`` is the value to keep outside the database: a later verify must reach it."""

    ok: bool
    records: int
    problems: list[str]
    first_bad_id: int | None
    head_id: int = 0
    head_hash: str = GENESIS.hex()
    checkpoint_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "problems": list(self.problems),
            "first_bad_id": self.first_bad_id,
            "head_id": self.head_id,
            "head_hash": self.head_hash,
            "checkpoint_id": self.checkpoint_id,
        }


class ChainChecker:
    """Walks records in id order and names what broke; ``locate`` maps a hash to the id holding it.

    A link to a hash that is still in the log means records were reordered; a link to a hash
    that is nowhere means records were deleted (or replaced together with their hashes). After a
    broken link the walk re-synchronises on the record, so one fault is reported once.
    """

    def __init__(self, start_hash: bytes, locate: Callable[[bytes], int | None]) -> None:
        self.locate = locate
        self.expected = start_hash
        self.last_id: int | None = None
        self.records = 0
        self.problems: list[str] = []
        self.first_bad_id: int | None = None

    def feed(self, entry: AuditEntry) -> None:
        self.records += 1
        if entry.computed_hash() != entry.hash:
            self.problem(entry.id, f"record {entry.id} was modified: its contents do not match its hash")
        if entry.prev_hash != self.expected:
            follows = "the start of the log" if self.last_id is None else f"record {self.last_id}"
            holder = self.locate(entry.prev_hash)
            if holder is None:
                self.problem(
                    entry.id,
                    f"record(s) deleted before record {entry.id}: the record it links to is not in the log"
                    f" (it comes after {follows})",
                )
            else:
                self.problem(
                    entry.id,
                    f"record {entry.id} is out of order: it links to record {holder} but comes after {follows}",
                )
        self.expected = entry.hash
        self.last_id = entry.id

    def finish(self, head_id: int | None, head_hash: bytes) -> None:
        """Compare the end of the walk with the head anchor (``head_id`` None: not known, as for an export)."""
        if head_hash == self.expected:
            return
        ends = "is empty" if self.last_id is None else f"ends at record {self.last_id}"
        holder = self.locate(head_hash)
        if holder is None:
            anchor = "a later record" if head_id is None else f"record {head_id}"
            self.problem(self.last_id, f"newest record(s) deleted: the log {ends} but the head anchor is {anchor}")
        else:
            self.problem(holder, f"the head anchor is record {holder}, not the last record: the log {ends}")

    def problem(self, record_id: int | None, message: str) -> None:
        self.problems.append(message)
        if self.first_bad_id is None:
            self.first_bad_id = record_id


def verify_entries(
    entries: Iterable[AuditEntry], *, start_hash: bytes = GENESIS, head_hash: bytes | None = None
) -> VerifyReport:
    """Verify records held in memory, e.g. the lines of an export (``start_hash``: its first ``prev_hash``)."""
    items = list(entries)
    by_hash = {e.hash: e.id for e in items}
    checker = ChainChecker(start_hash, by_hash.get)
    for entry in sorted(items, key=lambda e: e.id):
        checker.feed(entry)
    last = checker.expected
    if head_hash is not None:
        checker.finish(None, head_hash)
    return VerifyReport(
        ok=not checker.problems,
        records=checker.records,
        problems=checker.problems,
        first_bad_id=checker.first_bad_id,
        head_id=checker.last_id or 0,
        head_hash=last.hex(),
    )


# -- the log ------------------------------------------------------------------------------------


def append_record(conn: psycopg.Connection, principal: Principal, kind: str, record: Mapping[str, Any]) -> AuditRef:
    """Append inside the caller's transaction, so a record can commit together with what it describes."""
    row = conn.execute("SELECT id, at, prev_hash FROM cairn_audit_begin()").fetchone()
    if row is None:
        raise StoreError("the audit log's head anchor is missing", hint="run `cairn audit verify`")
    record_id, at, prev_hash = int(row[0]), row[1], bytes(row[2])
    body = envelope(at, principal.user_id, principal.name, kind, record)
    digest = chain_hash(prev_hash, body)
    conn.execute(
        f"INSERT INTO audit_log ({_ENTRY_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s)",
        (
            record_id,
            at,
            principal.user_id,
            principal.name,
            kind,
            canonical_json(body["record"]).decode(),
            prev_hash,
            digest,
        ),
    )
    return AuditRef(record_id, digest.hex())


def require_identified(principal: Principal) -> None:
    if not principal.is_system and principal.user_id is None:
        raise AuthError("an unidentified caller cannot be audited", hint="resolve the user first")


def require_admin(principal: Principal, what: str) -> None:
    """The Python half of the rule; row-level security applies it again inside PostgreSQL."""
    if not principal.unrestricted:
        raise Forbidden(f"{what} is for administrators", hint="ask an administrator, or run it as the local operator")


class AuditLog:
    """Records interactions and answers the auditor's questions; reads are admin-only.

    ``redact`` (e.g. the PII redactor) is applied to the question, the rewritten queries, the
    answer and the citation texts before they are hashed and stored, so personal data never
    reaches the trail. ``retention_days`` is what :meth:`purge` uses when given no age.
    """

    def __init__(
        self,
        db: Database,
        *,
        redact: Callable[[str], str] | None = None,
        retention_days: float | None = None,
    ) -> None:
        if retention_days is not None and retention_days < 0:
            raise InputError(f"retention_days must be >= 0, not {retention_days}")
        self.db = db
        self.redact = redact
        self.retention_days = retention_days

    def redacted(self, text: str) -> str:
        return self.redact(text) if self.redact is not None else text

    def record(self, principal: Principal, event: AuditEvent) -> AuditRef:
        require_identified(principal)
        record = self._redact(event).to_record()
        with self.db.connection(principal) as conn, conn.transaction():
            return append_record(conn, principal, event.kind, record)

    def _redact(self, event: AuditEvent) -> AuditEvent:
        if self.redact is None:
            return event
        citations = [{**c, "text": self.redacted(str(c["text"]))} if "text" in c else c for c in event.citations]
        grounding = event.grounding
        if grounding is not None and "sentences" in grounding:
            sentences = [{**s, "text": self.redacted(str(s.get("text", "")))} for s in grounding["sentences"]]
            grounding = {**grounding, "sentences": sentences}
        return dataclasses.replace(
            event,
            question=self.redacted(event.question),
            rewritten_queries=[self.redacted(q) for q in event.rewritten_queries],
            answer=self.redacted(event.answer),
            citations=citations,
            grounding=grounding,
        )

    def verify(self, principal: Principal) -> VerifyReport:
        """Walk the whole chain in one snapshot (appends may go on meanwhile)."""
        require_admin(principal, "verifying the audit trail")
        with self.db.connection(principal) as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            head = conn.execute("SELECT last_id, last_hash FROM audit_head").fetchone()
            checkpoint = conn.execute(
                "SELECT id, upto_id, upto_hash, purged, audit_id FROM audit_checkpoints"
                " ORDER BY upto_id DESC, id DESC LIMIT 1"
            ).fetchone()

            def locate(digest: bytes) -> int | None:
                found = conn.execute("SELECT id FROM audit_log WHERE hash = %s", (digest,)).fetchone()
                return None if found is None else int(found[0])

            checker = ChainChecker(GENESIS if checkpoint is None else bytes(checkpoint[2]), locate)
            for entry in _stream(conn, "cairn_audit_verify", "", ()):
                checker.feed(entry)
            if head is None:
                checker.problem(None, "the head anchor is missing")
                head_id, head_hash = 0, GENESIS
            else:
                head_id, head_hash = int(head[0]), bytes(head[1])
                checker.finish(head_id, head_hash)
            if checkpoint is not None:
                stated = conn.execute(
                    "SELECT record FROM audit_log WHERE id = %s AND kind = 'purge'", (checkpoint[4],)
                ).fetchone()
                expected = {"upto_id": checkpoint[1], "upto_hash": bytes(checkpoint[2]).hex(), "purged": checkpoint[3]}
                if stated is None or {k: stated[0].get(k) for k in expected} != expected:
                    checker.problem(
                        int(checkpoint[1]),
                        f"retention checkpoint {checkpoint[0]} is not confirmed by a purge record in the chain",
                    )
        return VerifyReport(
            ok=not checker.problems,
            records=checker.records,
            problems=checker.problems,
            first_bad_id=checker.first_bad_id,
            head_id=head_id,
            head_hash=head_hash.hex(),
            checkpoint_id=None if checkpoint is None else int(checkpoint[0]),
        )

    def export(
        self, principal: Principal, out: TextIO, since: datetime | None = None, until: datetime | None = None
    ) -> int:
        """JSONL in id order, ``since <= at < until``; each line carries its hashes, so it can be re-verified."""
        require_admin(principal, "exporting the audit trail")
        where, params = _time_range(since, until)
        count = 0
        with self.db.connection(principal) as conn, conn.transaction():
            for entry in _stream(conn, "cairn_audit_export", where, params):
                out.write(json.dumps(entry.to_json(), ensure_ascii=False, sort_keys=True) + "\n")
                count += 1
        return count

    def list(self, principal: Principal, limit: int = 20, user: str | None = None) -> list[AuditEntry]:
        """The newest records first, optionally only those of the user named ``user``."""
        require_admin(principal, "reading the audit trail")
        if limit < 1:
            raise InputError(f"limit must be at least 1, not {limit}")
        where, params = ("WHERE principal = %s", (user,)) if user is not None else ("", ())
        with self.db.connection(principal) as conn:
            rows = conn.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM audit_log {where} ORDER BY id DESC LIMIT %s", (*params, limit)
            ).fetchall()
        return [_entry(r) for r in rows]

    def purge(self, principal: Principal, older_than_days: float | None = None) -> int:
        """Delete the oldest records, up to the last one older than the cutoff; returns how many.

        Deletion always removes a prefix of the chain, and the checkpoint plus the ``purge``
        record it appends let :meth:`verify` start from the first survivor. Feedback on the
        purged answers goes with them.
        """
        days = self.retention_days if older_than_days is None else older_than_days
        if days is None:
            raise InputError(
                "no retention period to purge by",
                hint="pass --older-than DAYS or set CAIRN_AUDIT_RETENTION_DAYS",
            )
        if days < 0:
            raise InputError(f"the age to purge must be >= 0 days, not {days}")
        if not principal.is_system:
            raise Forbidden("purging the audit trail is for the system scope (the local operator)")
        with self.db.connection(principal) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (CHAIN_LOCK_ID,))
            cutoff_row = conn.execute("SELECT clock_timestamp() - make_interval(secs => %s)", (days * 86400.0,))
            cutoff = cutoff_row.fetchone()
            assert cutoff is not None
            last = conn.execute(
                "SELECT id, hash FROM audit_log WHERE id = (SELECT max(id) FROM audit_log WHERE at < %s)", (cutoff[0],)
            ).fetchone()
            if last is None:
                return 0
            upto_id, upto_hash = int(last[0]), bytes(last[1])
            purged = conn.execute("DELETE FROM audit_log WHERE id <= %s", (upto_id,)).rowcount
            statement = {
                "upto_id": upto_id,
                "upto_hash": upto_hash.hex(),
                "purged": purged,
                "cutoff": timestamp(cutoff[0]),
                "older_than_days": plain(float(days)),
            }
            ref = append_record(conn, principal, "purge", statement)
            conn.execute(
                "INSERT INTO audit_checkpoints (upto_id, upto_hash, purged, cutoff, audit_id)"
                " VALUES (%s, %s, %s, %s, %s)",
                (upto_id, upto_hash, purged, cutoff[0], ref.id),
            )
        return purged


def _time_range(since: datetime | None, until: datetime | None) -> tuple[str, tuple[Any, ...]]:
    clauses, params = [], []
    if since is not None:
        clauses.append("at >= %s")
        params.append(since)
    if until is not None:
        clauses.append("at < %s")
        params.append(until)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


def _stream(conn: psycopg.Connection, name: str, where: str, params: tuple[Any, ...]) -> Iterator[AuditEntry]:
    """A server-side cursor: the trail may be far larger than memory. Needs an open transaction."""
    with conn.cursor(name=name) as cur:
        cur.itersize = 2000
        cur.execute(f"SELECT {_ENTRY_COLUMNS} FROM audit_log {where} ORDER BY id", params)
        for row in cur:
            yield _entry(row)
