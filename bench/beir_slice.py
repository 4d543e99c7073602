"""A deterministic slice of a BEIR corpus that keeps every judged document of the evaluated queries.

Embedding all of SciFact takes 15-20 minutes per system on two busy cores; a comparison of two
systems needs the same documents in both, and nDCG needs the judged ones. The slice is the
documents judged for the first ``queries`` queries (file order) plus distractors ordered by the
SHA-256 of their id, so two runs with the same arguments index exactly the same corpus on any
machine. Scores on a slice are higher than on the whole corpus (fewer distractors): compare
systems within one run, never a slice's figures with published full-corpus ones.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cairn.eval.beir import BeirDataset
from cairn.types import ParsedDocument


@dataclass(frozen=True, slots=True)
class Slice:
    documents: list[tuple[str, ParsedDocument]]
    query_ids: list[str]
    judged: int  # documents kept because a selected query judges them

    @property
    def queries(self) -> int:
        return len(self.query_ids)


def select(dataset: BeirDataset, docs: int = 0, queries: int = 0) -> Slice:
    """``docs`` documents (0: all) holding every judged document of the first ``queries`` queries (0: all)."""
    if docs < 0 or queries < 0:
        raise SystemExit("--docs and --queries must be 0 (everything) or positive")
    query_ids = list(dataset.queries)[: queries or None]
    judged = {doc for q in query_ids for doc, grade in dataset.qrels.get(q, {}).items() if grade > 0}
    corpus = list(dataset.corpus())
    if docs == 0 or docs >= len(corpus):
        return Slice(corpus, query_ids, len(judged))
    if docs < len(judged):
        raise SystemExit(
            f"--docs {docs} cannot hold the {len(judged)} documents judged for {len(query_ids)} queries;"
            " raise --docs or lower --queries"
        )
    ids = {doc_id for doc_id, _ in corpus}
    missing = judged - ids
    if missing:
        raise SystemExit(f"{len(missing)} judged documents are not in corpus.jsonl (e.g. {sorted(missing)[0]})")
    distractors = sorted(ids - judged, key=lambda d: hashlib.sha256(d.encode()).hexdigest())
    keep = judged | set(distractors[: docs - len(judged)])
    return Slice([(d, p) for d, p in corpus if d in keep], query_ids, len(judged))
