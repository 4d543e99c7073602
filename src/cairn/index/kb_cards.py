"""What a knowledge-base router is told about each knowledge base: :class:`~cairn.retrieve.base.KbCard`.

A card carries the knowledge base's description (``knowledge_bases.description``) and its
centroids: ``k`` unit vectors that summarise its chunk embeddings (spherical k-means over at most
``sample`` chunks; ``k=1`` is the exact mean, ``avg(embedding)`` in SQL). One mean blurs a large,
varied knowledge base into a point that matches nothing well; a few centroids keep its topics
apart (bench/routing.py: macro top-1 0.90 with one mean, 0.98 with 16 centroids on the dev set).
``KbCard.centroid`` is then a ``(k, dim)`` array (``(dim,)`` for ``k=1``); routers score a
knowledge base by its best centroid.

Computing them for every query would be far too slow, so they are cached in process by
:class:`CentroidCache`, keyed by the knowledge base id and a cheap version: its ``kb_stats`` row
``(chunk_count, total_length)``, which the chunk triggers keep exact in the same transaction as
every write. New ingestion changes the version, so the next query recomputes, unless the chunk
count moved by less than ``tolerance`` (1 %: a knowledge base of a million chunks being fed in
batches is not re-clustered after every batch); an edit that keeps both numbers equal is caught
by the age limit ``ttl_s``. No table is needed, so no migration.

Access. The centroids are computed over **all** chunks of the knowledge base, by a system-scope
read on a connection of its own (so they are the same for every caller and can be shared), but a
card is only ever built for a knowledge base the caller can read: :func:`kb_cards` resolves the
names on the caller's connection with the caller's :class:`~cairn.index.access.Access` (the same
rule as :func:`cairn.index.store.kb_ids`, and row-level security applies it again), and a name
the caller cannot read raises the same :class:`~cairn.errors.NotFound` as one that does not
exist. A router therefore never sees, scores or names a knowledge base the caller cannot read.
Within a readable knowledge base the centroids also reflect documents the caller cannot read;
they are used only to choose where to search (the search itself is filtered as always), and
``KbCard.chunks`` is the knowledge base's total: neither is ever to be shown to the caller
(:meth:`cairn.index.store.IndexStore.list_kbs` gives callers their own counts).

A cache miss borrows a second pooled connection; callers that hold one already (retrieval inside
its snapshot) should build cards before the pool can run dry, or keep the pool larger than the
number of concurrent searches.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from cairn.errors import ConfigError, NotFound
from cairn.index.access import Access, access_for
from cairn.index.db import Database
from cairn.retrieve.base import KbCard
from cairn.types import SYSTEM, Principal

Version = tuple[int, int]  # kb_stats (chunk_count, total_length)
Centroids = npt.NDArray[np.float32]  # (dim,) for k=1, else (k, dim); unit-length rows


class CentroidCache:
    """Per-process cache of knowledge-base centroids, shared by all callers of one database.

    ``k`` centroids per knowledge base (1: the exact mean) from at most ``sample`` chunks (taken
    evenly by id, so the same data gives the same centroids); ``ttl_s`` bounds how long an entry is
    trusted, ``tolerance`` how far the chunk count may drift before it is recomputed (see the
    module docstring), ``max_entries`` the memory (least recently used out first). Thread-safe;
    two threads missing the same entry at once may both compute it, which is harmless.
    """

    def __init__(
        self,
        db: Database,
        *,
        k: int = 16,
        sample: int = 2048,
        ttl_s: float = 900.0,
        tolerance: float = 0.01,
        max_entries: int = 1024,
    ) -> None:
        if not 1 <= k <= 256 or sample < k or ttl_s <= 0 or not 0 <= tolerance < 1 or max_entries < 1:
            raise ConfigError(
                "the centroid cache needs 1 <= k <= 256, sample >= k, ttl_s > 0, 0 <= tolerance < 1, max_entries >= 1"
            )
        self.db = db
        self.k = k
        self.sample = sample
        self.ttl_s = ttl_s
        self.tolerance = tolerance
        self.max_entries = max_entries
        self.computed = 0  # how many times centroids were computed (not served from the cache)
        self._entries: OrderedDict[int, tuple[Version, float, Centroids | None]] = OrderedDict()
        self._lock = threading.Lock()

    def centroids(self, kb_id: int, version: Version) -> Centroids | None:
        """The centroids of ``kb_id`` at ``version`` (cached); None for an empty knowledge base."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(kb_id)
            if entry is not None and now - entry[1] < self.ttl_s and self._close_enough(entry, version):
                self._entries.move_to_end(kb_id)
                return entry[2]
        vectors = self._compute(kb_id, version[0]) if version[0] > 0 else None
        with self._lock:
            self.computed += 1
            self._entries[kb_id] = (version, now, vectors)
            self._entries.move_to_end(kb_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return vectors

    def _close_enough(self, entry: tuple[Version, float, Centroids | None], version: Version) -> bool:
        cached = entry[0]
        if cached == version:
            return True
        if entry[2] is None or version[0] == 0:
            return False
        return abs(version[0] - cached[0]) < self.tolerance * cached[0]

    def _compute(self, kb_id: int, count: int) -> Centroids | None:
        # System scope on a connection of its own: every chunk counts, whoever asks (see the module docstring).
        with self.db.connection(SYSTEM) as conn:
            if self.k == 1:
                row = conn.execute("SELECT avg(embedding) FROM chunks WHERE kb_id = %s", (kb_id,)).fetchone()
                if row is None or row[0] is None:
                    return None
                return _unit_rows(_array(row[0]))
            stride = max(1, math.ceil(count / self.sample))
            rows = conn.execute(
                "SELECT embedding FROM chunks WHERE kb_id = %s AND id %% %s = 0 ORDER BY id LIMIT %s",
                (kb_id, stride, self.sample),
            ).fetchall()
            if not rows:  # ids that all miss the stride (a tiny knowledge base): take the first ones
                rows = conn.execute(
                    "SELECT embedding FROM chunks WHERE kb_id = %s ORDER BY id LIMIT %s", (kb_id, self.sample)
                ).fetchall()
        if not rows:
            return None
        return spherical_kmeans(np.stack([_array(r[0]) for r in rows]), self.k)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def spherical_kmeans(vectors: npt.NDArray[np.float32], k: int, *, iterations: int = 25) -> Centroids:
    """``min(k, n)`` unit centroids of unit ``vectors`` by cosine k-means, deterministic.

    Seeds are spread by farthest-point selection from the vector nearest the mean, then Lloyd
    iterations reassign by cosine and re-average; a centroid left without members keeps its place.
    """
    x = _unit_rows(np.asarray(vectors, dtype=np.float32))
    if x.ndim == 1:
        x = x[None, :]
    k = max(1, min(k, len(x)))
    first = int(np.argmax(x @ x.mean(axis=0)))
    chosen = [first]
    distance = 1.0 - x @ x[first]
    for _ in range(k - 1):
        nxt = int(np.argmax(distance))
        if distance[nxt] <= 1e-6:
            break  # the rest duplicate the centroids already chosen
        chosen.append(nxt)
        distance = np.minimum(distance, 1.0 - x @ x[nxt])
    centroids = x[chosen].copy()
    for _ in range(iterations):
        assign = np.argmax(x @ centroids.T, axis=1)
        updated = centroids.copy()
        for j in range(len(centroids)):
            members = x[assign == j]
            if len(members):
                updated[j] = members.mean(axis=0)
        updated = _unit_rows(updated)
        if np.allclose(updated, centroids, atol=1e-6):
            break
        centroids = updated
    return centroids.astype(np.float32)


def _array(value: Any) -> npt.NDArray[np.float32]:
    # pgvector hands back a Vector (newer) or a numpy array (older psycopg adapters).
    array = value.to_numpy() if hasattr(value, "to_numpy") else value
    return np.asarray(array, dtype=np.float32)


def _unit_rows(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    norms[norms == 0] = 1.0
    out: npt.NDArray[np.float32] = (vectors / norms).astype(np.float32)
    return out


def kb_cards(
    conn: psycopg.Connection,
    kbs: Sequence[str | int] | None,
    *,
    access: Access,
    centroids: CentroidCache | None = None,
) -> list[KbCard]:
    """Cards of the named (or numbered) knowledge bases, or of every one the caller can read when ``kbs`` is None.

    ``conn`` and ``access`` are the caller's (inside the caller's snapshot, as retrieval has them);
    a requested knowledge base the caller cannot read raises :class:`~cairn.errors.NotFound`, worded
    like one that does not exist. Without ``centroids`` the cards carry no centroid (a router then
    scores descriptions only). Cards come in the order asked, or by name.
    """
    params: dict[str, Any] = {}
    where = [_visible("kb", access, params)]
    if kbs is not None:
        names = [k for k in kbs if isinstance(k, str)]
        ids = [int(k) for k in kbs if not isinstance(k, str)]
        if not names and not ids:
            return []
        where.append("(kb.name = ANY(%(names)s) OR kb.id = ANY(%(ids)s))")
        params |= {"names": names, "ids": ids}
    rows = conn.execute(
        "SELECT kb.id, kb.name, kb.description, coalesce(s.chunk_count, 0), coalesce(s.total_length, 0)"
        " FROM knowledge_bases kb LEFT JOIN kb_stats s ON s.kb_id = kb.id"
        f" WHERE {' AND '.join(where)} ORDER BY kb.name",
        params,
    ).fetchall()
    if kbs is not None:
        by_key: dict[str | int, Any] = {}
        for row in rows:
            by_key[int(row[0])] = row
            by_key[str(row[1])] = row
        missing = [k for k in kbs if k not in by_key]
        if missing:
            raise NotFound(
                f"knowledge base {', '.join(repr(m) for m in missing)} does not exist",
                hint="create it with `cairn ingest DIR --kb NAME`",
            )
        ordered, seen = [], set()
        for k in kbs:
            row = by_key[k]
            if row[0] not in seen:
                seen.add(row[0])
                ordered.append(row)
        rows = ordered
    cards = []
    for kb_id, name, description, chunk_count, total_length in rows:
        version = (int(chunk_count), int(total_length))
        centroid = centroids.centroids(int(kb_id), version) if centroids is not None else None
        cards.append(KbCard(name=str(name), description=str(description or ""), centroid=centroid, chunks=version[0]))
    return cards


def _visible(alias: str, access: Access, params: dict[str, Any]) -> str:
    """The caller may see a knowledge base when they can read one of its documents (admins: all)."""
    if access.acl_ids is None:
        return "TRUE"
    where, clause_params = access.clause("d.acl_id")
    params |= clause_params
    return f"EXISTS (SELECT 1 FROM documents d WHERE d.kb_id = {alias}.id{where})"


class KbCatalog:
    """Cards for a principal, with centroids cached for the life of the process (one per :class:`Database`)."""

    def __init__(self, db: Database, *, k: int = 16, sample: int = 2048, ttl_s: float = 900.0) -> None:
        self.db = db
        self.centroids = CentroidCache(db, k=k, sample=sample, ttl_s=ttl_s)

    def cards(self, principal: Principal, kbs: Sequence[str | int] | None = None) -> list[KbCard]:
        with self.db.connection(principal) as conn:
            return kb_cards(conn, kbs, access=access_for(conn, principal), centroids=self.centroids)


__all__ = ["CentroidCache", "KbCatalog", "kb_cards", "spherical_kmeans"]
