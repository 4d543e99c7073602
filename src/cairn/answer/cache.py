"""A permission-aware answer cache, exact and semantic, that cannot serve what the caller may not read.

An entry is keyed by

* the **normalised question** (Unicode NFKC, casefolded, whitespace collapsed, trailing punctuation
  dropped), or, for a semantic hit, a question whose embedding is at least ``semantic_threshold``
  cosine-similar to it and that has the same :func:`specifics` (tokens with digits, negation):
  embedders put "SEV1" and "SEV2" questions at a cosine of 0.97 (bench/cache.py);
* the **scope**: the sorted knowledge bases, the caller's ``config_key`` (retrieval config,
  generator, prompt template, guards: see :func:`config_key`) and the embedder;
* the caller's **permission set**: the SHA-256 of the sorted ACL ids it may read, computed by
  PostgreSQL (``cairn_cache_perm()`` in m006_answer_cache.sql) from its own users and groups on the
  caller's connection. Callers who see exactly the same documents share entries; an admin's set
  holds ACL 1 (no readers), which no user's set holds, so an admin's entries are never a user's.

and stored with the **versions of its supporting documents**: every cited passage's document and
every searched passage's (the passages given to the model are among the searched ones).

Why it cannot leak. Every read and write runs on the caller's own connection
(``db.connection(principal)``), so three independent checks stand between an entry and a caller:

1. row-level security on ``answer_cache`` shows a caller only the entries of the permission set the
   database computes for it, whatever key the application asks for;
2. serving re-checks, in the caller's snapshot and under its RLS on ``documents`` plus the
   application's ACL clause, that every supporting document still exists at the stored version and
   is readable; an entry that fails is deleted and the lookup misses;
3. triggers drop the entries of a document when its version or reader list changes or when it is
   deleted, and :meth:`AnswerCache.store` refuses an answer whose passages are gone (a new version
   replaced them while it was being generated) or unreadable.

Refusals are cached too, differently: "not found" depends on the whole knowledge base, not on cited
documents (a new document can make the question answerable). A refusal is stored with a fingerprint
of the caller's visible documents (ids and versions) in the requested knowledge bases, taken at
lookup time, before retrieval ran, and is served only while the fingerprint is unchanged. Refusals
are never served semantically: a paraphrase may well find what the original did not.

Semantic hits are shared among callers of one permission set, like exact ones, but the served
answer carries the caller's question as ``query`` and none of the original question's retrieval
trace (rewrites, sub-questions), so another user's wording is not shown. Only questions without
chat history belong here (a follow-up depends on the conversation).

Typical use (what :class:`cairn.assistant.Cairn` does)::

    probe = cache.lookup(principal, question, kbs, key)
    if probe.answer is not None:
        return probe.answer             # audit it as usual
    answer = engine.ask(question, kbs, principal=principal, config=cfg)
    cache.store(probe, answer)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import psycopg

from cairn.errors import ConfigError, StoreError
from cairn.index.access import Access, access_for
from cairn.types import SYSTEM, Answer, Citation, Hit, Principal

if TYPE_CHECKING:
    from cairn.index.db import Database
    from cairn.models.base import Embedder

log = logging.getLogger(__name__)

_TRAILING = re.compile(r"[\s?!.;:,]+$")
_WORD = re.compile(r"\w+")
_NEGATIONS = frozenset({"not", "no", "never", "none", "nor", "without"})
_PAYLOAD_VERSION = 1
_MAINTAIN_EVERY = 256  # stores between opportunistic purges
_SEMANTIC_CANDIDATES = 5


# -- keys ---------------------------------------------------------------------------------------
def normalise_question(text: str) -> str:
    """The cache's form of a question: NFKC, casefolded, single spaces, no trailing punctuation."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _TRAILING.sub("", " ".join(folded.split()))


def specifics(normalised: str) -> tuple[frozenset[str], bool]:
    """What a semantic match must share besides meaning: the tokens holding a digit (SEV1, Q3, 2026,
    v2: embeddings barely tell them apart) and whether the question is negated."""
    words = _WORD.findall(normalised.replace("n't", " not"))
    return frozenset(w for w in words if any(ch.isdigit() for ch in w)), any(w in _NEGATIONS for w in words)


def config_key(*parts: Any) -> str:
    """A stable digest of whatever decides an answer besides the question (any JSON-able values).

    Dict order does not matter; values JSON cannot hold are taken as ``str()``.
    """
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def scope_key(kbs: Iterable[str], config: str, embedder: str) -> bytes:
    """What entries must share to be comparable: knowledge bases (order-free), pipeline, embedder."""
    blob = json.dumps(["scope", sorted(set(kbs)), config, embedder], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).digest()


def exact_key(scope: bytes, normalised: str) -> bytes:
    return hashlib.sha256(scope + b"\x00" + normalised.encode("utf-8")).digest()


# -- answers as JSON ------------------------------------------------------------------------------
def answer_to_payload(answer: Answer) -> dict[str, Any]:
    """Everything of an :class:`Answer` but its audit id, as JSON data; :func:`answer_from_payload` inverts it."""
    payload: dict[str, Any] = _finite(
        {
            "v": _PAYLOAD_VERSION,
            "answer": answer.answer,
            "refused": answer.refused,
            "citations": [
                {
                    "id": c.id,
                    "source": c.source,
                    "page": c.page,
                    "start": c.start,
                    "end": c.end,
                    "text": c.text,
                    "chunk_id": c.chunk_id,
                }
                for c in answer.citations
            ],
            "timings_ms": dict(answer.timings_ms),
            "searched": [_hit_to_json(h) for h in answer.searched],
            "query": answer.query,
            "model": answer.model,
            "grounding": answer.grounding,
            "guards": [dict(g) for g in answer.guards],
            "tokens": dict(answer.tokens),
            "trace": dict(answer.trace),
        }
    )
    return payload


def answer_from_payload(payload: Mapping[str, Any]) -> Answer:
    if payload.get("v") != _PAYLOAD_VERSION:
        raise ValueError(f"unknown answer payload version {payload.get('v')!r}")
    return Answer(
        answer=str(payload["answer"]),
        refused=bool(payload["refused"]),
        citations=tuple(
            Citation(
                id=int(c["id"]),
                source=str(c["source"]),
                page=c["page"],
                start=int(c["start"]),
                end=int(c["end"]),
                text=str(c["text"]),
                chunk_id=c["chunk_id"],
            )
            for c in payload["citations"]
        ),
        timings_ms={str(k): float(v) for k, v in payload["timings_ms"].items() if v is not None},
        searched=tuple(_hit_from_json(h) for h in payload["searched"]),
        query=str(payload["query"]),
        model=str(payload["model"]),
        grounding=payload["grounding"],
        guards=tuple(dict(g) for g in payload["guards"]),
        tokens={str(k): int(v) for k, v in payload["tokens"].items()},
        audit_id=None,
        trace=dict(payload["trace"]),
    )


def _hit_to_json(hit: Hit) -> dict[str, Any]:
    return {
        "chunk_id": hit.chunk_id,
        "document_id": hit.document_id,
        "source": hit.source,
        "text": hit.text,
        "start": hit.start,
        "end": hit.end,
        "score": hit.score,
        "page": hit.page,
        "title": hit.title,
        "kb": hit.kb,
        "heading_path": list(hit.heading_path),
        "scores": dict(hit.scores),
        "flags": list(hit.flags),
    }


def _hit_from_json(data: Mapping[str, Any]) -> Hit:
    return Hit(
        chunk_id=int(data["chunk_id"]),
        document_id=int(data["document_id"]),
        source=str(data["source"]),
        text=str(data["text"]),
        start=int(data["start"]),
        end=int(data["end"]),
        score=float(data["score"]) if data["score"] is not None else math.nan,
        page=data["page"],
        title=str(data["title"]),
        kb=str(data["kb"]),
        heading_path=tuple(str(h) for h in data["heading_path"]),
        scores={str(k): float(v) for k, v in data["scores"].items() if v is not None},
        flags=tuple(str(f) for f in data["flags"]),
    )


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats as null (``jsonb`` has no NaN) and tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# -- the cache ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CacheProbe:
    """What :meth:`AnswerCache.lookup` found: a served ``answer``, or what :meth:`AnswerCache.store` needs.

    ``kind`` is ``exact`` or ``semantic`` for a hit, ``miss`` for a miss that may be stored, and
    ``skip`` when the request is not cacheable (an anonymous caller, an empty question, a database
    error during the lookup).
    """

    kind: str
    principal: Principal
    question: str
    kbs: tuple[str, ...]
    normalised: str = ""
    scope: bytes = b""
    key: bytes = b""
    perm: bytes | None = None
    embedding: npt.NDArray[np.float32] | None = field(default=None, repr=False)
    fingerprint: str | None = None
    answer: Answer | None = None
    similarity: float | None = None
    lookup_ms: float = 0.0

    @property
    def hit(self) -> bool:
        return self.answer is not None


@dataclass(slots=True)
class _Counters:
    lookups: int = 0
    exact_hits: int = 0
    semantic_hits: int = 0
    misses: int = 0
    skipped_lookups: int = 0
    stale: int = 0  # entries found but no longer valid (deleted at lookup)
    stored: int = 0
    not_stored: int = 0
    errors: int = 0
    lookup_ms: float = 0.0
    hit_lookup_ms: float = 0.0
    saved_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    payload: Mapping[str, Any]
    refused: bool
    cost_ms: float
    age_s: float
    valid: bool
    similarity: float | None = None
    question: str = ""


class AnswerCache:
    """Answers for repeated (and, with ``semantic_threshold``, paraphrased) questions; see the module doc.

    ``ttl_s``: how long an entry lives at most. ``semantic_threshold``: the cosine at or above which
    a cached question counts as the same (None: exact matches only). ``cache_refusals``: store
    "not found" answers too (validated by the knowledge bases' content, see the module doc).
    ``max_entries``: :meth:`purge` keeps at most this many, the most recently used.
    """

    def __init__(
        self,
        db: Database,
        embedder: Embedder | None,
        *,
        ttl_s: float = 86_400.0,
        semantic_threshold: float | None = 0.95,
        cache_refusals: bool = True,
        max_entries: int | None = 10_000,
    ) -> None:
        if not ttl_s > 0:
            raise ConfigError(f"answer cache ttl must be positive, got {ttl_s}")
        if semantic_threshold is not None and not 0.0 < semantic_threshold <= 1.0:
            raise ConfigError(f"semantic threshold must be in (0, 1], got {semantic_threshold}")
        if semantic_threshold is not None and embedder is None:
            raise ConfigError("a semantic answer cache needs an embedder")
        if max_entries is not None and max_entries < 1:
            raise ConfigError(f"max_entries must be at least 1, got {max_entries}")
        self.db = db
        self.embedder = embedder
        self.ttl_s = float(ttl_s)
        self.semantic_threshold = semantic_threshold
        self.cache_refusals = cache_refusals
        self.max_entries = max_entries
        self._counters = _Counters()
        self._lock = threading.Lock()

    # -- lookup ------------------------------------------------------------------------------
    def lookup(self, principal: Principal, question: str, kbs: Sequence[str], config: str) -> CacheProbe:
        """The cached answer for ``question`` if one is valid for ``principal`` now; else a probe to store with.

        ``config`` is the caller's :func:`config_key` of the pipeline that would answer.
        """
        started = time.perf_counter()
        normalised = normalise_question(question)
        base = CacheProbe("skip", principal, question, tuple(kbs))
        if not normalised or not kbs or (principal.user_id is None and not principal.is_system):
            return self._skipped(base, started)
        scope = scope_key(kbs, config, getattr(self.embedder, "name", ""))
        probe = replace(base, kind="miss", normalised=normalised, scope=scope, key=exact_key(scope, normalised))
        try:
            probe = self._lookup(probe, started)
        except StoreError as exc:
            log.warning("answer cache lookup failed, answering without it: %s", exc.message)
            with self._lock:
                self._counters.errors += 1
            return self._skipped(base, started)
        ms = _ms(started)
        probe = replace(probe, lookup_ms=ms)
        with self._lock:
            c = self._counters
            c.lookups += 1
            c.lookup_ms += ms
            if probe.kind == "skip":
                c.skipped_lookups += 1
            elif probe.answer is None:
                c.misses += 1
            else:
                c.hit_lookup_ms += ms
                if probe.kind == "exact":
                    c.exact_hits += 1
                else:
                    c.semantic_hits += 1
        return probe

    def _skipped(self, probe: CacheProbe, started: float) -> CacheProbe:
        ms = _ms(started)
        with self._lock:
            self._counters.lookups += 1
            self._counters.skipped_lookups += 1
            self._counters.lookup_ms += ms
        return replace(probe, kind="skip", lookup_ms=ms)

    def _lookup(self, probe: CacheProbe, started: float) -> CacheProbe:
        principal = probe.principal
        embedding: npt.NDArray[np.float32] | None = None
        with self.db.connection(principal) as conn:
            perm, readable = self._permission(conn)
            if readable == 0:
                return replace(probe, kind="skip")  # a caller who can read nothing is only ever refused
            access = access_for(conn, principal)
            probe = replace(probe, perm=perm)
            exact = self._exact(conn, probe, access)
            if exact is not None:
                if exact.valid:
                    return self._serve(conn, probe, exact, "exact", started)
                self._drop_stale(conn, exact.id)
            if self.semantic_threshold is not None and self.embedder is not None:
                embedding = np.asarray(self.embedder.embed_query(probe.normalised), dtype=np.float32)
                probe = replace(probe, embedding=embedding)
                wanted = specifics(probe.normalised)
                for row in self._nearest(conn, probe, embedding, access):
                    if row.similarity is None or row.similarity < self.semantic_threshold:
                        break
                    if specifics(row.question) != wanted:
                        continue  # SEV1 is not SEV2, whatever the cosine says
                    if row.valid:
                        return self._serve(conn, probe, row, "semantic", started)
                    self._drop_stale(conn, row.id)
            if self.cache_refusals:
                probe = replace(probe, fingerprint=self._fingerprint(conn, probe.kbs, access))
        return probe

    def _permission(self, conn: psycopg.Connection) -> tuple[bytes, int]:
        """The caller's permission key and how many ACL sets it may read, from the database itself."""
        row = conn.execute("SELECT cairn_cache_perm(), cardinality(cairn_visible_acls())").fetchone()
        assert row is not None
        return bytes(row[0]), int(row[1] or 0)

    def _exact(self, conn: psycopg.Connection, probe: CacheProbe, access: Access) -> _Row | None:
        valid, params = _validity(access)
        row = conn.execute(
            "SELECT e.id, e.answer, e.refused, e.cost_ms, extract(epoch FROM now() - e.created_at),"
            f" {valid} FROM answer_cache e"
            " WHERE e.perm = %(perm)s AND e.key = %(key)s AND e.expires_at > now()",
            params | {"perm": probe.perm, "key": probe.key, "kbs": list(probe.kbs)},
        ).fetchone()
        if row is None:
            return None
        return _Row(int(row[0]), row[1], bool(row[2]), float(row[3]), float(row[4]), bool(row[5]))

    def _nearest(
        self, conn: psycopg.Connection, probe: CacheProbe, embedding: npt.NDArray[np.float32], access: Access
    ) -> list[_Row]:
        dim = int(embedding.shape[-1])
        valid, params = _validity(access)
        distance = f"e.embedding::vector({dim}) <=> %(vec)s::vector({dim})"
        rows = conn.execute(
            "SELECT e.id, e.answer, e.refused, e.cost_ms, extract(epoch FROM now() - e.created_at),"
            f" {valid}, 1 - ({distance}), e.question FROM answer_cache e"
            " WHERE e.perm = %(perm)s AND e.scope = %(scope)s AND e.dim = %(dim)s AND NOT e.refused"
            f" AND e.key <> %(key)s AND e.expires_at > now() ORDER BY {distance} LIMIT %(k)s",
            params
            | {
                "perm": probe.perm,
                "scope": probe.scope,
                "key": probe.key,
                "dim": dim,
                "vec": embedding,
                "kbs": list(probe.kbs),
                "k": _SEMANTIC_CANDIDATES,
            },
        ).fetchall()
        return [_Row(int(r[0]), r[1], bool(r[2]), float(r[3]), float(r[4]), bool(r[5]), float(r[6])) for r in rows]

    def _fingerprint(self, conn: psycopg.Connection, kbs: Sequence[str], access: Access) -> str:
        sql, params = _fingerprint_sql(access)
        row = conn.execute(sql, params | {"kbs": list(kbs)}).fetchone()
        assert row is not None
        return str(row[0])

    def _serve(self, conn: psycopg.Connection, probe: CacheProbe, row: _Row, kind: str, started: float) -> CacheProbe:
        with conn.transaction():
            # A lost hit count is harmless: no need to wait for the disk (it cost 10 ms per hit).
            conn.execute("SET LOCAL synchronous_commit = off")
            conn.execute(
                "UPDATE answer_cache SET hits = hits + 1, last_hit_at = now()"
                " WHERE id = (SELECT id FROM answer_cache WHERE id = %s FOR UPDATE SKIP LOCKED)",
                (row.id,),
            )
        cached = answer_from_payload(row.payload)
        query = probe.question.strip()
        text = cached.answer
        if cached.refused and cached.query:  # the refusal names what it searched for: now this question
            text = text.replace(f"I searched for {cached.query!r}", f"I searched for {query!r}", 1)
        ms = _ms(started)
        saved = max(0.0, row.cost_ms - ms)
        with self._lock:
            self._counters.saved_ms += saved
        note: dict[str, Any] = {"kind": kind, "entry": row.id, "age_s": round(row.age_s, 1), "saved_ms": round(saved)}
        if row.similarity is not None:
            note["similarity"] = round(row.similarity, 4)
        # A semantic hit answers another question: its rewrites and sub-questions are not this caller's.
        trace = {**cached.trace, "cache": note} if kind == "exact" else {"cache": note}
        answer = replace(
            cached,
            answer=text,
            query=query,
            timings_ms={"cache": ms, "total": ms},
            tokens={},
            audit_id=None,
            trace=trace,
        )
        return replace(probe, kind=kind, answer=answer, similarity=row.similarity)

    def _drop_stale(self, conn: psycopg.Connection, entry_id: int) -> None:
        conn.execute("DELETE FROM answer_cache WHERE id = %s", (entry_id,))
        with self._lock:
            self._counters.stale += 1

    # -- store -------------------------------------------------------------------------------
    def store(self, probe: CacheProbe, answer: Answer) -> bool:
        """Keep ``answer`` (the engine's, for ``probe``'s question) if it can be validated later; True if stored.

        Not stored: a probe that was a hit or not cacheable, a refusal when refusals are not cached,
        an answer citing a passage without a chunk id, one whose passages are gone or unreadable
        now, or a caller whose permissions changed while it was being answered.
        """
        if probe.kind != "miss" or probe.perm is None:
            return self._not_stored()
        chunk_ids: list[int] = []
        if answer.refused:
            if not self.cache_refusals or probe.fingerprint is None:
                return self._not_stored()
        else:
            cited = [c.chunk_id for c in answer.citations]
            if not cited or any(c is None for c in cited):
                return self._not_stored()
            chunk_ids = sorted({int(c) for c in cited if c is not None} | {h.chunk_id for h in answer.searched})
        try:
            payload = json.dumps(answer_to_payload(answer), allow_nan=False, ensure_ascii=False)
            stored = self._store(probe, answer, payload, chunk_ids)
        except (StoreError, ValueError) as exc:
            log.warning("answer cache store failed: %s", getattr(exc, "message", exc))
            with self._lock:
                self._counters.errors += 1
            return self._not_stored()
        if not stored:
            return self._not_stored()
        with self._lock:
            self._counters.stored += 1
            maintain = self._counters.stored % _MAINTAIN_EVERY == 0
        if maintain:
            try:
                self.purge()
            except StoreError as exc:  # pragma: no cover - housekeeping only
                log.warning("answer cache purge failed: %s", exc.message)
        return True

    def _store(self, probe: CacheProbe, answer: Answer, payload: str, chunk_ids: list[int]) -> bool:
        embedding = probe.embedding
        with self.db.connection(probe.principal) as conn, conn.transaction():
            conn.execute("SET LOCAL synchronous_commit = off")  # an entry lost in a crash is only a miss
            perm, _ = self._permission(conn)
            if perm != probe.perm:
                return False
            docs: dict[int, int] = {}
            if chunk_ids:
                access = access_for(conn, probe.principal)
                doc_acl, params = access.clause("d.acl_id")
                chunk_acl, _ = access.clause("c.acl_id")
                rows = conn.execute(
                    "SELECT c.id, d.id, d.version FROM chunks c JOIN documents d ON d.id = c.document_id"
                    f" WHERE c.id = ANY(%(ids)s){doc_acl}{chunk_acl}",
                    params | {"ids": chunk_ids},
                ).fetchall()
                if {int(r[0]) for r in rows} != set(chunk_ids):
                    return False
                docs = {int(r[1]): int(r[2]) for r in rows}
            row = conn.execute(
                "INSERT INTO answer_cache (perm, scope, key, question, embedding, dim, refused, kb_fingerprint,"
                " doc_count, answer, cost_ms, expires_at)"
                " VALUES (%(perm)s, %(scope)s, %(key)s, %(question)s, %(embedding)s, %(dim)s, %(refused)s,"
                " %(fingerprint)s, %(docs)s, %(answer)s::jsonb, %(cost)s,"
                " now() + make_interval(secs => %(ttl)s))"
                " ON CONFLICT (perm, key) DO UPDATE SET question = EXCLUDED.question, embedding = EXCLUDED.embedding,"
                " dim = EXCLUDED.dim, refused = EXCLUDED.refused, kb_fingerprint = EXCLUDED.kb_fingerprint,"
                " doc_count = EXCLUDED.doc_count, answer = EXCLUDED.answer, cost_ms = EXCLUDED.cost_ms,"
                " expires_at = EXCLUDED.expires_at, hits = 0, created_at = now(), last_hit_at = NULL"
                " RETURNING id",
                {
                    "perm": perm,
                    "scope": probe.scope,
                    "key": probe.key,
                    "question": probe.normalised,
                    "embedding": embedding,
                    "dim": None if embedding is None else int(embedding.shape[-1]),
                    "refused": answer.refused,
                    "fingerprint": probe.fingerprint if answer.refused else None,
                    "docs": len(docs),
                    "answer": payload,
                    "cost": float(answer.timings_ms.get("total", 0.0)),
                    "ttl": self.ttl_s,
                },
            ).fetchone()
            assert row is not None
            entry = int(row[0])
            conn.execute("DELETE FROM answer_cache_documents WHERE entry_id = %s", (entry,))
            if docs:
                conn.execute(
                    "INSERT INTO answer_cache_documents (entry_id, document_id, version)"
                    " SELECT %s, d, v FROM unnest(%s::bigint[], %s::int[]) AS t(d, v)",
                    (entry, list(docs), list(docs.values())),
                )
        return True

    def _not_stored(self) -> bool:
        with self._lock:
            self._counters.not_stored += 1
        return False

    # -- maintenance -------------------------------------------------------------------------
    def invalidate_documents(self, document_ids: Iterable[int]) -> int:
        """Drop the entries built from any of these documents; returns how many.

        The database's triggers already do this on every new version, reader change and deletion;
        this is for changes they cannot see (say, a document's meaning changed through another one).
        """
        ids = sorted({int(i) for i in document_ids})
        if not ids:
            return 0
        with self.db.connection(SYSTEM) as conn:
            cur = conn.execute(
                "DELETE FROM answer_cache WHERE id IN"
                " (SELECT entry_id FROM answer_cache_documents WHERE document_id = ANY(%s))",
                (ids,),
            )
            return cur.rowcount

    def purge(self, *, everything: bool = False) -> int:
        """Drop expired entries, entries that lost a supporting document, and the least recently used
        beyond ``max_entries`` (or every entry with ``everything``); returns how many."""
        with self.db.connection(SYSTEM) as conn, conn.transaction():
            if everything:
                return conn.execute("DELETE FROM answer_cache").rowcount
            dropped = conn.execute("DELETE FROM answer_cache WHERE expires_at <= now()").rowcount
            dropped += conn.execute(
                "DELETE FROM answer_cache e WHERE e.doc_count <>"
                " (SELECT count(*) FROM answer_cache_documents l WHERE l.entry_id = e.id)"
            ).rowcount
            if self.max_entries is not None:
                dropped += conn.execute(
                    "DELETE FROM answer_cache WHERE id IN (SELECT id FROM answer_cache"
                    " ORDER BY coalesce(last_hit_at, created_at) DESC, id DESC OFFSET %s)",
                    (self.max_entries,),
                ).rowcount
            return dropped

    def stats(self) -> dict[str, Any]:
        """This process's hit rate and latency saved, and the entries stored (all callers)."""
        with self._lock:
            c = replace(self._counters)
        answered = c.exact_hits + c.semantic_hits + c.misses
        hits = c.exact_hits + c.semantic_hits
        with self.db.connection(SYSTEM) as conn:
            row = conn.execute("SELECT count(*), coalesce(sum(hits), 0) FROM answer_cache").fetchone()
        entries, total_hits = (int(row[0]), int(row[1])) if row else (0, 0)
        return {
            "lookups": c.lookups,
            "exact_hits": c.exact_hits,
            "semantic_hits": c.semantic_hits,
            "misses": c.misses,
            "skipped": c.skipped_lookups,
            "stale": c.stale,
            "stored": c.stored,
            "not_stored": c.not_stored,
            "errors": c.errors,
            "hit_rate": round(hits / answered, 4) if answered else 0.0,
            "mean_lookup_ms": round(c.lookup_ms / c.lookups, 2) if c.lookups else 0.0,
            "mean_hit_ms": round(c.hit_lookup_ms / hits, 2) if hits else 0.0,
            "saved_ms": round(c.saved_ms, 1),
            "entries": entries,
            "entry_hits": total_hits,
        }


def _validity(access: Access) -> tuple[str, dict[str, Any]]:
    """SQL true when entry ``e`` may be served now: for an answer, every supporting document exists at
    its stored version and is readable here; for a refusal, the knowledge bases' visible content is
    unchanged. Evaluated in the caller's statement, so in its snapshot and under its RLS."""
    doc_acl, params = access.clause("d.acl_id")
    fingerprint, _ = _fingerprint_sql(access)
    documents = (
        "(SELECT count(*) FROM answer_cache_documents l JOIN documents d"
        f" ON d.id = l.document_id AND d.version = l.version WHERE l.entry_id = e.id{doc_acl})"
    )
    sql = (
        f"CASE WHEN e.refused THEN e.kb_fingerprint = ({fingerprint})"
        f" ELSE e.doc_count > 0 AND {documents} = e.doc_count END"
    )
    return sql, params


def _fingerprint_sql(access: Access) -> tuple[str, dict[str, Any]]:
    """The caller's visible documents of knowledge bases ``%(kbs)s`` (ids and versions) as one string."""
    doc_acl, params = access.clause("d.acl_id")
    sql = (
        "SELECT count(*)::text || ':' || coalesce(sum(hashtextextended(d.id::text || '.' || d.version::text, 0)"
        "::numeric), 0)::text FROM documents d JOIN knowledge_bases k ON k.id = d.kb_id"
        f" WHERE k.name = ANY(%(kbs)s){doc_acl}"
    )
    return sql, params


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


__all__ = [
    "AnswerCache",
    "CacheProbe",
    "answer_from_payload",
    "answer_to_payload",
    "config_key",
    "exact_key",
    "normalise_question",
    "scope_key",
    "specifics",
]
