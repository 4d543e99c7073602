"""The read side of the index: BM25 and vector top-k, and hit hydration, all inside one snapshot.

BM25 is Lucene's Okapi BM25 (idf ``log(1 + (N - df + 0.5) / (df + 0.5))``, tf part without the
constant ``k1 + 1`` factor, as in Lucene 8+ and bm25s), computed in SQL
from the postings table; collection statistics are those of the knowledge bases searched.

Every function takes the caller's :class:`~cairn.index.access.Access` as a required argument and
restricts each statement to the ACL ids it may read (row-level security re-checks the same rule).
Like Elasticsearch's document-level security, BM25's collection statistics (N, avgdl, df) count
every document of the knowledge base, readable or not: scores can shift with documents the
caller cannot see, but no text, id or count of them is returned.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from cairn.index.access import Access
from cairn.types import Hit

# The CTEs are MATERIALIZED: with row-level security on postings the planner cannot estimate how
# many rows survive the policy, and without the fence it re-ran the statistics once per posting.
_BM25_SQL = """
WITH q AS MATERIALIZED (
    SELECT * FROM unnest(%(terms)s::text[], %(qtf)s::float8[]) AS q(term, qtf)
), stats AS MATERIALIZED (
    SELECT coalesce(sum(chunk_count), 0)::float8 AS n,
           coalesce(sum(total_length)::float8 / nullif(sum(chunk_count), 0), 1) AS avgdl
      FROM kb_stats WHERE kb_id = ANY(%(kbs)s)
), df AS MATERIALIZED (
    SELECT term, count(*)::float8 AS df FROM postings
     WHERE kb_id = ANY(%(kbs)s) AND term = ANY(%(terms)s) GROUP BY term
)
SELECT p.chunk_id,
       sum(q.qtf * ln(1 + (s.n - df.df + 0.5) / (df.df + 0.5))
           * p.tf / (p.tf + %(k1)s * (1 - %(b)s + %(b)s * p.dl / s.avgdl))) AS score
  FROM postings p
  JOIN q ON q.term = p.term
  JOIN df ON df.term = p.term
 CROSS JOIN stats s
 WHERE p.kb_id = ANY(%(kbs)s) AND p.term = ANY(%(terms)s){acl}{filter}
 GROUP BY p.chunk_id
 ORDER BY score DESC, p.chunk_id
 LIMIT %(k)s
"""


@dataclass(frozen=True, slots=True)
class Filters:
    """Metadata restrictions applied inside the SQL of every retriever (never after the top-k).

    ``sources`` are shell-style globs on the document path (``*.pdf``, ``policies/**``); ``mimes``
    exact MIME types; ``metadata`` key/value pairs the document's metadata must contain.
    """

    sources: tuple[str, ...] = ()
    mimes: tuple[str, ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.sources or self.mimes or self.metadata)

    def document_clause(self, alias: str = "d") -> tuple[str, dict[str, Any]]:
        """A SQL condition on ``documents AS alias`` and its parameters."""
        parts: list[str] = []
        params: dict[str, Any] = {}
        if self.sources:
            parts.append(f"{alias}.source ~ ANY(%(f_sources)s)")
            params["f_sources"] = [glob_to_regex(g) for g in self.sources]
        if self.mimes:
            parts.append(f"{alias}.mime = ANY(%(f_mimes)s)")
            params["f_mimes"] = list(self.mimes)
        if self.metadata:
            parts.append(f"{alias}.metadata @> %(f_meta)s::jsonb")
            params["f_meta"] = json.dumps(dict(self.metadata))
        return " AND ".join(parts) or "TRUE", params


def glob_to_regex(pattern: str) -> str:
    """Translate a path glob to a PostgreSQL regular expression, with shell semantics.

    ``*`` and ``?`` stay within one path segment, ``**`` crosses segments. A relative pattern
    (``*.pdf``, ``policies/*``) matches the end of the path at a segment boundary; an absolute one
    (``/srv/docs/**``) the whole path.
    """
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        ch = pattern[i]
        out.append("[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch))
        i += 1
    body = "".join(out)
    return f"^{body}$" if pattern.startswith("/") else f"(^|/){body}$"


def _chunk_filter(filters: Filters | None, column: str) -> tuple[str, dict[str, Any]]:
    if not filters:
        return "", {}
    clause, params = filters.document_clause()
    return (
        f" AND {column} IN (SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id"
        f" WHERE c.kb_id = ANY(%(kbs)s) AND {clause})",
        params,
    )


@dataclass(frozen=True, slots=True)
class BM25Params:
    k1: float = 1.2
    b: float = 0.75


def bm25_search(
    conn: psycopg.Connection,
    kb_ids: Sequence[int],
    terms: Sequence[str] | Mapping[str, float],
    k: int,
    params: BM25Params | None = None,
    filters: Filters | None = None,
    *,
    access: Access,
) -> list[tuple[int, float]]:
    """Top ``k`` chunk ids by BM25 for the analysed query ``terms`` (repeats weigh as in Lucene).

    ``terms`` may also map each analysed term to its query weight (RM3 expansion): the score is
    then the weighted sum of the terms' BM25 contributions; terms weighted ``<= 0`` are left out.
    """
    counts: Mapping[str, float]
    if isinstance(terms, Mapping):
        counts = {t: float(w) for t, w in terms.items() if w > 0 and math.isfinite(w)}
    else:
        counts = Counter(terms)
    if not counts or not kb_ids:
        return []
    params = params or BM25Params()
    where, extra = _chunk_filter(filters, "p.chunk_id")
    acl, acl_params = access.clause("p.acl_id")
    rows = conn.execute(
        _BM25_SQL.replace("{filter}", where).replace("{acl}", acl),
        extra
        | acl_params
        | {
            "terms": list(counts),
            "qtf": list(counts.values()),
            "kbs": list(kb_ids),
            "k1": params.k1,
            "b": params.b,
            "k": k,
        },
    ).fetchall()
    return [(int(r[0]), float(r[1])) for r in rows]


def vector_search(
    conn: psycopg.Connection,
    kb_ids: Sequence[int],
    vector: npt.NDArray[np.float32],
    k: int,
    *,
    dim: int,
    ef_search: int = 200,
    filters: Filters | None = None,
    access: Access,
    exact_fallback: bool = True,
) -> list[tuple[int, float]]:
    """Top ``k`` chunk ids by cosine similarity: the HNSW index, or an exact scan where the index comes up short.

    A filtered HNSW scan (pgvector's iterative scan) gives up after ``hnsw.max_scan_tuples`` index
    tuples (20,000 by default): a caller who may read only a sliver of a large index (a narrow ACL,
    a small knowledge base next to big ones, a source filter) gets fewer than ``k`` rows although
    more exist, or none (bench/scale.py measures it). Fewer than ``k`` rows is that failure's
    signature, or there are fewer readable rows than ``k`` in all; either way an exact scan of the
    readable rows answers correctly, and the ``(kb_id, acl_id)`` index (m010) keeps its cost in
    proportion to what the caller can read. ``exact_fallback=False`` is the index alone (benchmarks).
    """
    if not kb_ids:
        return []
    # pgvector accepts ef_search up to 1000; a larger k is served by the iterative scan.
    conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(min(1000, max(ef_search, k))),))
    conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
    where, extra = _chunk_filter(filters, "id")
    acl, acl_params = access.clause("acl_id")
    params = extra | acl_params | {"q": np.asarray(vector, dtype=np.float32), "kbs": list(kb_ids), "k": k}
    rows = conn.execute(
        f"SELECT id, embedding::vector({dim}) <=> %(q)s::vector({dim}) AS distance FROM chunks"
        f" WHERE kb_id = ANY(%(kbs)s){acl}{where}"
        f" ORDER BY embedding::vector({dim}) <=> %(q)s::vector({dim}) LIMIT %(k)s",
        params,
    ).fetchall()
    if exact_fallback and len(rows) < k:
        # The same distance on the bare column: no index matches that expression, so this is exact.
        rows = conn.execute(
            f"SELECT id, embedding <=> %(q)s::vector AS distance FROM chunks WHERE kb_id = ANY(%(kbs)s){acl}{where}"
            " ORDER BY distance, id LIMIT %(k)s",
            params,
        ).fetchall()
    hits = [(int(r[0]), 1.0 - float(r[1])) for r in rows]
    hits.sort(key=lambda h: (-h[1], h[0]))
    return hits


def fetch_hits(
    conn: psycopg.Connection,
    chunk_ids: Sequence[int],
    *,
    access: Access,
    query_vector: npt.NDArray[np.float32] | None = None,
    dim: int = 0,
    with_embeddings: bool = False,
) -> dict[int, tuple[Hit, npt.NDArray[np.float32] | None]]:
    """Hydrate chunk ids into :class:`Hit` records (score 0; the caller sets it).

    With ``query_vector`` each hit gets ``scores['cosine']``, the calibrated relevance used for refusal.
    """
    if not chunk_ids:
        return {}
    cosine = "NULL::float8"
    params: dict[str, Any] = {"ids": list(chunk_ids)}
    if query_vector is not None:
        cosine = f"1 - (c.embedding::vector({dim}) <=> %(q)s::vector({dim}))"
        params["q"] = np.asarray(query_vector, dtype=np.float32)
    embedding = "c.embedding" if with_embeddings else "NULL"
    acl, acl_params = access.clause("c.acl_id")
    params |= acl_params
    rows = conn.execute(
        "SELECT c.id, c.document_id, d.source, c.text, c.start_char, c.end_char, c.page, d.title, kb.name,"
        f" c.heading_path, d.version, {cosine}, {embedding}, c.flags"
        " FROM chunks c JOIN documents d ON d.id = c.document_id JOIN knowledge_bases kb ON kb.id = c.kb_id"
        f" WHERE c.id = ANY(%(ids)s){acl}",
        params,
    ).fetchall()
    out: dict[int, tuple[Hit, npt.NDArray[np.float32] | None]] = {}
    for r in rows:
        scores = {"version": float(r[10])}
        if r[11] is not None:
            scores["cosine"] = float(r[11])
        hit = Hit(
            chunk_id=int(r[0]),
            document_id=int(r[1]),
            source=r[2],
            text=r[3],
            start=int(r[4]),
            end=int(r[5]),
            page=r[6],
            title=r[7],
            kb=r[8],
            heading_path=tuple(r[9] or ()),
            score=0.0,
            scores=scores,
            flags=tuple(r[13] or ()),
        )
        vec = None if r[12] is None else np.asarray(r[12].to_numpy() if hasattr(r[12], "to_numpy") else r[12])
        out[hit.chunk_id] = (hit, vec)
    return out
