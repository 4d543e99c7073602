"""Contextual compression and small-to-big on the answer path: words of context, evidence kept, time.

    python bench/compress_tokens.py --home /tmp/sci-copy                        # SciFact test, top 5
    python bench/compress_tokens.py --home /tmp/sci-copy --split train --limit 200 \\
        --configs "embedding:?keep=0.3" "embedding:?keep=0.5&lexical=0"          # choose on train
    python bench/compress_tokens.py --home /tmp/sci-copy --samples samples       # + the sample corpus
    python bench/compress_tokens.py --home /tmp/sci-copy --limit 5 --llm local:qwen2.5-1.5b-instruct

``--home`` is a cairn home whose knowledge base ``beir-<dataset>`` already holds the BEIR corpus
(``cairn eval beir`` builds one); the sample corpus, when asked for, is indexed into it twice (as
``samples-1200`` and ``samples-400``, chunk sizes 1200 and 400), so use a copy you may write to.

Compression (rows per compressor location, plus two baselines: ``none`` and ``lead``, the first
``keep`` fraction of each passage's sentences): words of the top-5 passages before and after
(whitespace words), pieces handed on, the share of (query, relevant document in the top 5) pairs
that still reach the generator (1.0 by construction: each passage keeps its best sentence), and
two evidence proxies, since the BEIR files carry no sentence-level rationales: is the relevant
passage's sentence with the best analysed-term F1 against the claim still there (SciFact claims
paraphrase a rationale sentence), and its sentence with the best cosine? Each proxy favours the
scorer of its own kind (lexical, embedding): read them together, and against ``lead`` at the same
words. p50/p95 are of the stage alone, in ms; rows marked "cached" reused the sentence vectors of
the first embedding row, so only that row's time is the real cost.

Small-to-big (rows per ``--parents`` budget): how many parents differ from their child, how many
hits were merged into another's parent, words before and after, p50 of the stage in ms.

``--llm LOCATION``: the ``llm:`` compressor with that generator on the first ``--llm-limit``
questions of each corpus: words saved, reply lines that mapped back to a passage sentence.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from cairn.assistant import Cairn
from cairn.errors import NotFound
from cairn.eval.beir import kb_name_for, load_beir
from cairn.index.access import access_for
from cairn.index.analyzer import Analyzer
from cairn.models.base import Embedder, Vectors, create_generator
from cairn.retrieve.base import COMPRESSORS
from cairn.retrieve.compress import EmbeddingCompressor, LlmCompressor, map_reply, normalise, sentence_spans, slice_hit
from cairn.retrieve.parents import parent_hits
from cairn.settings import Settings, get_settings
from cairn.types import SYSTEM, Hit

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
DEFAULT_CONFIGS = (  # the first pays for the sentence vectors, the others reuse them
    "embedding:?keep=0.5",
    "embedding:?keep=0.4",
    "embedding:?keep=0.3",
    "embedding:?keep=0.3&neighbours=1",
    "embedding:?keep=0.5&lexical=0",
    "embedding:?keep=0.5&lexical=1",
    "embedding:?keep=0.3&lexical=1",
)


@dataclass
class Tally:
    words_before: list[int] = field(default_factory=list)
    words_after: list[int] = field(default_factory=list)
    pieces: list[int] = field(default_factory=list)
    ms: list[float] = field(default_factory=list)
    relevant: int = 0
    relevant_kept: int = 0
    oracle: int = 0
    oracle_kept: int = 0
    cosine_oracle_kept: int = 0
    changed: int = 0  # small-to-big: parents whose span differs from their child's
    merged: int = 0  # small-to-big: hits absorbed by a better-ranked hit's parent
    hits: int = 0


Run = tuple[str, str, list[Hit], set[str]]  # query id, text, top hits, relevant document ids


class Stage(Protocol):
    def compress(self, query: str, hits: Sequence[Hit]) -> list[Hit]: ...


def words(hits: Sequence[Hit]) -> int:
    return sum(len(h.text.split()) for h in hits)


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class Lead:
    """Baseline: the first ``keep`` fraction of each passage's sentences (at least one)."""

    def __init__(self, keep: float) -> None:
        self.keep = keep

    def compress(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        out: list[Hit] = []
        for hit in hits:
            spans = sentence_spans(hit.text)
            if len(spans) <= 1:
                out.append(hit)
                continue
            out.extend(slice_hit(hit, spans, range(max(1, math.ceil(self.keep * len(spans) - 1e-9)))))
        return out


class Nothing:
    def compress(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        return list(hits)


def oracle_span(claim: str, text: str, analyzer: Analyzer) -> tuple[int, int] | None:
    """The sentence of ``text`` with the best analysed-term F1 against the claim (None if no overlap)."""
    terms = set(analyzer.terms(claim))
    best, best_f1 = None, 0.0
    for a, b in sentence_spans(text):
        own = set(analyzer.terms(text[a:b]))
        common = len(terms & own)
        if not common:
            continue
        f1 = 2 * common / (len(terms) + len(own))
        if f1 > best_f1:
            best, best_f1 = (a, b), f1
    return best


class CachedEmbedder:
    """The real embedder with a memo of document vectors, so configurations after the first reuse them."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.memo: dict[str, Vectors] = {}

    def warm_up(self) -> None:
        self.inner.warm_up()

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        missing = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if missing:
            self.memo.update(zip(missing, self.inner.embed_documents(missing), strict=True))
        return np.stack([self.memo[t] for t in texts]) if texts else np.zeros((0, self.dim), dtype=np.float32)

    def embed_query(self, text: str) -> Vectors:
        return self.inner.embed_query(text)


def compression_rows(cairn: Cairn, runs: list[Run], configs: Sequence[str]) -> list[dict[str, object]]:
    """One row per compressor; embedding rows after the first reuse its sentence vectors (see "cached")."""
    analyzer = Analyzer()
    embedder = CachedEmbedder(cairn.embedder)
    stages: dict[str, Stage] = {"none": Nothing(), "lead (keep=0.5)": Lead(0.5), "lead (keep=0.3)": Lead(0.3)}
    for location in configs:
        built = COMPRESSORS.create(location, embedder=embedder, analyzer=analyzer, generator=None)
        built.warm_up()
        stages[location] = built
    # The two evidence proxies of each relevant passage: its sentence with the best term F1
    # against the claim, and its sentence with the best cosine (each favours its own kind of scorer).
    oracles: dict[tuple[str, int], tuple[tuple[int, int] | None, tuple[int, int] | None]] = {}
    for qid, query, hits, relevant in runs:
        qvec = cairn.embedder.embed_query(query)
        for hit in hits:
            spans = sentence_spans(hit.text)
            if hit.source in relevant and spans:
                cosines = cairn.embedder.embed_documents([hit.text[a:b] for a, b in spans]) @ qvec
                best = spans[int(np.argmax(cosines))]
                oracles[qid, hit.chunk_id] = (oracle_span(query, hit.text, analyzer), best)
    rows = []
    seen_vectors = False
    for label, stage in stages.items():
        tally = Tally()
        embeds = isinstance(stage, EmbeddingCompressor) and stage.lexical < 1
        cached = seen_vectors and embeds
        for qid, query, hits, relevant in runs:
            t = time.perf_counter()
            out = stage.compress(query, hits)
            tally.ms.append((time.perf_counter() - t) * 1000.0)
            tally.words_before.append(words(hits))
            tally.words_after.append(words(out))
            tally.pieces.append(len(out))
            for hit in hits:
                if hit.source not in relevant:
                    continue
                tally.relevant += 1
                kept = [p for p in out if p.chunk_id == hit.chunk_id]
                tally.relevant_kept += bool(kept)
                lexical, semantic = oracles.get((qid, hit.chunk_id), (None, None))
                if lexical is None or semantic is None:
                    continue
                tally.oracle += 1
                for span, into in ((lexical, "oracle_kept"), (semantic, "cosine_oracle_kept")):
                    lo, hi = hit.start + span[0], hit.start + span[1]
                    if any(p.start <= lo and hi <= p.end for p in kept):
                        setattr(tally, into, getattr(tally, into) + 1)
        seen_vectors = seen_vectors or embeds
        before, after = sum(tally.words_before), sum(tally.words_after)
        rows.append(
            {
                "compressor": label,
                "words/query before": statistics.mean(tally.words_before),
                "words/query after": statistics.mean(tally.words_after),
                "saved": 1 - after / before if before else 0.0,
                "pieces/query": statistics.mean(tally.pieces),
                "relevant docs kept": tally.relevant_kept / tally.relevant if tally.relevant else float("nan"),
                "F1-oracle sentence kept": tally.oracle_kept / tally.oracle if tally.oracle else float("nan"),
                "cosine-oracle sentence kept": tally.cosine_oracle_kept / tally.oracle
                if tally.oracle
                else float("nan"),
                "p50 ms": pct(tally.ms, 0.5),
                "p95 ms": pct(tally.ms, 0.95),
                "cached": "yes" if cached else "",
            }
        )
    return rows


def llm_rows(generator_location: str, runs: list[Run], corpus: str, settings: Settings) -> list[dict[str, object]]:
    """The ``llm:`` compressor on a few questions: words kept, reply lines that mapped back, time."""
    generator = create_generator(generator_location, settings=settings)
    compressor = LlmCompressor(generator)
    compressor.warm_up()
    tally = Tally()
    lines = mapped = 0
    for _, query, hits, relevant in runs:
        t = time.perf_counter()
        out, reply = compressor.extract(query, hits)
        tally.ms.append((time.perf_counter() - t) * 1000.0)
        tally.words_before.append(words(hits))
        tally.words_after.append(words(out))
        texts, split = [h.text for h in hits], [sentence_spans(h.text) for h in hits]
        for line in reply.splitlines():
            if len(normalise(line)) >= 3 and normalise(line) != "none":
                lines += 1
                mapped += any(map_reply(line, texts, split))
        for hit in hits:
            if hit.source in relevant:
                tally.relevant += 1
                tally.relevant_kept += any(p.chunk_id == hit.chunk_id for p in out)
    before, after = sum(tally.words_before), sum(tally.words_after)
    return [
        {
            "corpus": corpus,
            "generator": generator_location,
            "questions": len(runs),
            "words/query before": statistics.mean(tally.words_before),
            "words/query after": statistics.mean(tally.words_after),
            "saved": 1 - after / before if before else 0.0,
            "reply lines mapped to a sentence": f"{mapped}/{lines}",
            "relevant docs kept": tally.relevant_kept / tally.relevant if tally.relevant else float("nan"),
            "p50 ms": pct(tally.ms, 0.5),
        }
    ]


def parent_rows(cairn: Cairn, runs: list[Run], budgets: Sequence[int], corpus: str) -> list[dict[str, object]]:
    rows = []
    for budget in budgets:
        tally = Tally()
        with cairn.db.connection(SYSTEM) as conn:
            access = access_for(conn, SYSTEM)
            for _, _, hits, _ in runs:
                t = time.perf_counter()
                parents = parent_hits(conn, hits, access=access, max_chars=budget)
                tally.ms.append((time.perf_counter() - t) * 1000.0)
                tally.hits += len(hits)
                tally.merged += len(hits) - len(parents)
                by_chunk = {h.chunk_id: h for h in hits}
                tally.changed += sum(
                    (p.start, p.end) != (by_chunk[p.chunk_id].start, by_chunk[p.chunk_id].end) for p in parents
                )
                tally.words_before.append(words(hits))
                tally.words_after.append(words(parents))
        rows.append(
            {
                "corpus": corpus,
                "max_chars": budget,
                "hits": tally.hits,
                "parents differing from child": tally.changed,
                "hits merged": tally.merged,
                "words/query before": statistics.mean(tally.words_before),
                "words/query after": statistics.mean(tally.words_after),
                "p50 ms": pct(tally.ms, 0.5),
            }
        )
    return rows


def retrieve(cairn: Cairn, kb: str, queries: dict[str, str], qrels: dict[str, dict[str, int]], top_k: int) -> list[Run]:
    config = cairn.retrieval_config.with_(top_k=top_k, parents=0, compress=None)
    runs: list[Run] = []
    for qid, text in queries.items():
        hits = cairn.retriever.search(text, [kb], config, principal=SYSTEM).hits
        runs.append((qid, text, list(hits), {d for d, rel in qrels.get(qid, {}).items() if rel > 0}))
    return runs


def table(rows: list[dict[str, object]]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
        return str(value)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True, help="cairn home with the BEIR corpus indexed (a copy)")
    parser.add_argument("--dataset", type=Path, default=SHARED / "scifact", help="BEIR folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="first N queries only (0: the sample corpus only)")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--configs", nargs="*", default=list(DEFAULT_CONFIGS), help="compressor locations")
    parser.add_argument("--parents", nargs="*", type=int, default=[2400, 4000], help="small-to-big max_chars")
    parser.add_argument("--samples", type=Path, default=None, help="also index and measure this folder (samples/)")
    parser.add_argument("--llm", default=None, help="also run llm: with this generator location (slow on CPU)")
    parser.add_argument("--llm-limit", type=int, default=5, help="questions per corpus for --llm")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("CAIRN_ONNX_THREADS", "1")
    sections: list[tuple[str, list[dict[str, object]]]] = []
    parents: list[dict[str, object]] = []
    llm: list[dict[str, object]] = []
    if args.limit != 0:
        cairn = Cairn(get_settings(home=args.home))
        try:
            cairn.retriever.warm_up()
            dataset = load_beir(args.dataset, args.split)
            queries = dict(list(dataset.queries.items())[: args.limit])
            t = time.perf_counter()
            runs = retrieve(cairn, kb_name_for(dataset), queries, dataset.qrels, args.top_k)
            print(f"retrieved {len(runs)} queries in {time.perf_counter() - t:.0f} s", file=sys.stderr)
            title = f"Compression: {dataset.name} {args.split}, {len(runs)} queries, hybrid top {args.top_k}"
            sections.append((title, compression_rows(cairn, runs, args.configs)))
            parents += parent_rows(cairn, runs, args.parents, f"{dataset.name} {args.split}")
            if args.llm:
                llm += llm_rows(args.llm, runs[: args.llm_limit], f"{dataset.name} {args.split}", cairn.settings)
        finally:
            cairn.close()
    if args.samples is not None:
        questions = [q.strip() for q in (args.samples / "questions.txt").read_text().splitlines() if q.strip()]
        sample_queries = {str(i): q for i, q in enumerate(questions)}
        # The documents only: the questions file would otherwise be every question's best match.
        corpus = Path(tempfile.mkdtemp(prefix="cairn-samples-")) / "samples"
        shutil.copytree(args.samples, corpus, ignore=shutil.ignore_patterns("questions.txt"))
        for size, overlap in ((1200, 150), (400, 60)):
            sized = Cairn(get_settings(home=args.home, chunk_size=size, chunk_overlap=overlap))
            try:
                kb = f"samples-{size}"
                with contextlib.suppress(NotFound):
                    sized.store.drop_kb(kb)  # a fresh index of exactly these files
                report = sized.ingestor.sync_folder(corpus, kb)
                print(f"{kb}: {report.count('added')} added, {report.count('deleted')} deleted", file=sys.stderr)
                sample_runs = retrieve(sized, kb, sample_queries, {}, args.top_k)
                parents += parent_rows(sized, sample_runs, args.parents, f"samples (chunks {size})")
                title = f"Compression: samples (chunks {size}), {len(sample_runs)} questions, top {args.top_k}"
                sections.append((title, compression_rows(sized, sample_runs, args.configs)))
                if args.llm:
                    llm += llm_rows(args.llm, sample_runs[: args.llm_limit], f"samples (chunks {size})", sized.settings)
            finally:
                sized.close()
        shutil.rmtree(corpus.parent, ignore_errors=True)
    sections.append((f"Small-to-big: parents of the hybrid top {args.top_k}", parents))
    if llm:
        sections.append(("LLM extraction (llm:)", llm))
    for title, rows in sections:
        print(f"## {title}\n\n{table(rows)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
