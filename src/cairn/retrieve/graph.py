"""Knowledge-graph candidates: chunks that mention the question's entities or their graph neighbours.

The question is linked to stored entities by looking up every run of up to six of its words
(normalised like entity names, :func:`cairn.index.graph.key_spans`), so no model runs at query
time; an extractor, when given, adds the keys it finds (an acronym such as "IT" that is also a
stopword is only linked when the extractor sees it). A single word links only where the corpus
uses it mostly as a name: "Connect" stored from "select Connect" is not linked by "connect to the
VPN", because far more chunks contain the word than mention the entity. Where one linked run
contains another ("Example Book Pro" and "Example") only the longer one counts.

Each linked entity weighs its idf over the searched chunks (an entity named everywhere says
little); chunks score the summed weights of the entities they mention. ``hops`` rounds of
expansion add the entities related to the current ones, strongest first, each weighing
``decay ** hop * idf * w / (w + 1)``, where ``w`` sums the relation's weight over readable evidence
chunks and ``co_mention`` per readable chunk that mentions both (a heading and the names under
it). That brings in the chunk that never names the question's entity but names the entity it is
related to: the second document of a two-hop question.

Everything runs in the caller's snapshot and restricts every statement to the caller's ACL ids
(row-level security re-checks it): an entity or relation seen only in unreadable chunks does not
exist for the caller, not even as a count.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from cairn.errors import InputError
from cairn.index.access import Access
from cairn.index.analyzer import Analyzer
from cairn.index.graph import chunks_mentioning, co_mentioned, entity_frequencies, key_spans, related
from cairn.ingest.entities import EntityExtractor

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GraphConfig:
    limit: int = 100  # chunks returned
    hops: int = 1  # rounds of expansion through relations (0: only the question's own entities)
    decay: float = 0.5  # weight factor per hop
    max_seeds: int = 16  # question entities kept (highest idf first)
    max_neighbours: int = 32  # entities added per hop
    max_words: int = 6  # longest run of question words looked up as an entity name
    co_mention: float = 0.5  # weight of sharing a chunk, next to a relation's 1 per sentence (0: relations only)

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= 1000 or not 0 <= self.hops <= 3 or not 0 < self.decay <= 1:
            raise InputError("graph expansion needs 1 <= limit <= 1000, 0 <= hops <= 3 and 0 < decay <= 1")
        if self.max_seeds < 1 or self.max_neighbours < 0 or not 1 <= self.max_words <= 12 or self.co_mention < 0:
            raise InputError(
                "graph expansion needs max_seeds >= 1, max_neighbours >= 0, 1 <= max_words <= 12, co_mention >= 0"
            )


@dataclass(frozen=True, slots=True)
class LinkedEntity:
    """An entity the expansion used: ``hop`` 0 is named by the question; ``via`` is what it is related to."""

    key: str
    weight: float
    hop: int
    chunks: int  # readable chunks that mention it
    via: str | None = None


@dataclass(frozen=True, slots=True)
class GraphExpansion:
    entities: tuple[LinkedEntity, ...]
    chunks: list[tuple[int, float]]


def link_question(
    conn: psycopg.Connection,
    query_text: str,
    kb_ids: Sequence[int],
    *,
    access: Access,
    extractor: EntityExtractor | None = None,
    analyzer: Analyzer | None = None,
    max_words: int = 6,
    min_name_share: float = 0.5,
) -> dict[str, int]:
    """The stored entities the question names, with the number of readable chunks mentioning each.

    A single word the analyzer drops (a stopword such as "it") is not linked by itself, nor one
    that fewer than ``min_name_share`` of the chunks containing the word mention as an entity.
    """
    analyzer = analyzer or Analyzer()
    spans = [(i, j, key) for i, j, key in key_spans(query_text, max_words) if j - i > 1 or analyzer.terms(key)]
    extracted: set[str] = set()
    if extractor is not None and extractor.name != "off":
        try:
            extracted = {e.key for e in extractor.extract(query_text).entities}
        except Exception:  # linking still works from the question's words
            log.warning("entity extraction failed for a query; linking by its words only", exc_info=True)
    frequencies = entity_frequencies(conn, kb_ids, [k for _, _, k in spans] + sorted(extracted), access=access)
    words = {key for i, j, key in spans if j - i == 1 and key in frequencies and key not in extracted}
    if words:
        containing = term_frequencies(conn, kb_ids, sorted(words), access=access)
        common = {w for w in words if frequencies[w] < min_name_share * containing.get(w, 0)}
        frequencies = {k: v for k, v in frequencies.items() if k not in common}
    matched = [(i, j, key) for i, j, key in spans if key in frequencies]
    keep = {
        key
        for i, j, key in matched
        if not any(a <= i and j <= b and (a, b) != (i, j) for a, b, _ in matched)  # the longest run wins
    }
    keep |= extracted & frequencies.keys()
    return {key: frequencies[key] for key in keep}


def expand(
    conn: psycopg.Connection,
    query_text: str,
    kb_ids: Sequence[int],
    *,
    access: Access,
    extractor: EntityExtractor | None = None,
    analyzer: Analyzer | None = None,
    config: GraphConfig | None = None,
) -> GraphExpansion:
    """Link the question, expand through relations, and score the chunks that mention what was found."""
    cfg = config or GraphConfig()
    if not kb_ids or not query_text.strip():
        return GraphExpansion((), [])
    linked = link_question(
        conn, query_text, kb_ids, access=access, extractor=extractor, analyzer=analyzer, max_words=cfg.max_words
    )
    if not linked:
        return GraphExpansion((), [])
    n = _chunk_count(conn, kb_ids)
    seeds = sorted(
        (LinkedEntity(key, _idf(n, df), 0, df) for key, df in linked.items()), key=lambda e: (-e.weight, e.key)
    )[: cfg.max_seeds]
    found = {e.key: e for e in seeds}
    frontier = list(seeds)
    for hop in range(1, cfg.hops + 1):
        if not frontier or cfg.max_neighbours == 0:
            break
        strength = {e.key: e.weight / _idf(n, e.chunks) for e in frontier}  # 1 for the question's own
        links: dict[tuple[str, str], float] = {}
        for key, other, weight in related(conn, kb_ids, list(strength), access=access, limit=20 * cfg.max_neighbours):
            links[(key, other)] = links.get((key, other), 0.0) + weight
        if cfg.co_mention > 0:
            shared = co_mentioned(conn, kb_ids, list(strength), access=access, limit=20 * cfg.max_neighbours)
            for key, other, together in shared:
                links[(key, other)] = links.get((key, other), 0.0) + cfg.co_mention * together
        best: dict[str, tuple[float, str]] = {}
        for (key, other), link in links.items():
            if other in found:
                continue
            score = strength[key] * link / (link + 1.0)
            if score > best.get(other, (0.0, ""))[0]:
                best[other] = (score, key)
        if not best:
            break
        frequencies = entity_frequencies(conn, kb_ids, list(best), access=access)
        weighted = [
            LinkedEntity(other, cfg.decay**hop * _idf(n, frequencies[other]) * score, hop, frequencies[other], via)
            for other, (score, via) in best.items()
            if other in frequencies
        ]
        frontier = sorted(weighted, key=lambda e: (-e.weight, e.key))[: cfg.max_neighbours]
        found |= {e.key: e for e in frontier}
    chunks = chunks_mentioning(conn, kb_ids, {k: e.weight for k, e in found.items()}, access=access, limit=cfg.limit)
    return GraphExpansion(tuple(found.values()), chunks)


def graph_candidates(
    conn: psycopg.Connection,
    query_text: str,
    kb_ids: Sequence[int],
    *,
    access: Access,
    extractor: EntityExtractor | None = None,
    analyzer: Analyzer | None = None,
    limit: int = 100,
    hops: int = 1,
    decay: float = 0.5,
) -> list[tuple[int, float]]:
    """Chunk ids with a graph score, best first: one more ranked list for fusion with BM25 and dense.

    Empty when the question names no stored entity, so fusing it changes nothing for such questions.
    """
    config = GraphConfig(limit=limit, hops=hops, decay=decay)
    return expand(conn, query_text, kb_ids, access=access, extractor=extractor, analyzer=analyzer, config=config).chunks


def term_frequencies(
    conn: psycopg.Connection, kb_ids: Sequence[int], terms: Sequence[str], *, access: Access
) -> dict[str, int]:
    """How many readable chunks contain each analysed term (from the BM25 postings)."""
    acl, params = access.clause("acl_id")
    rows = conn.execute(
        f"SELECT term, count(*) FROM postings WHERE kb_id = ANY(%(kbs)s) AND term = ANY(%(terms)s){acl} GROUP BY term",
        params | {"kbs": list(kb_ids), "terms": list(terms)},
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def _chunk_count(conn: psycopg.Connection, kb_ids: Sequence[int]) -> int:
    # The collection size BM25 uses too (kb_stats counts every chunk, readable or not, and reveals no text).
    row = conn.execute("SELECT coalesce(sum(chunk_count), 0) FROM kb_stats WHERE kb_id = ANY(%s)", (list(kb_ids),))
    value = row.fetchone()
    return int(value[0]) if value else 0


def _idf(n: int, df: int) -> float:
    return math.log(1.0 + (max(n, df) - df + 0.5) / (df + 0.5))


__all__ = ["GraphConfig", "GraphExpansion", "LinkedEntity", "expand", "graph_candidates", "link_question"]
