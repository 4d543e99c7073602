"""Query rewriting on SciFact: RM3 pseudo-relevance feedback, dense PRF and LLM multi-query, as markdown.

    python bench/rewrite_sweep.py sweep --split train        # tune RM3 (and dense PRF) on train
    python bench/rewrite_sweep.py eval --split test --rewrite 'rm3:?fb_docs=5' --bm25-rewrite 'rm3:?...'
    python bench/rewrite_sweep.py llm --split test --limit 50 # LLM multi-query on the first 50 queries

``CAIRN_HOME`` (or ``--home``) must hold an index of the corpus in the knowledge base ``beir-scifact``
(``cairn eval beir`` builds it). ``eval`` and ``llm`` go through ``Cairn.retriever.search`` with
``RetrievalConfig.rewrite``, exactly what a request runs; ``sweep`` replays the same multi-query
loop (first pass -> feedback = top 20 fused hits -> expand -> lists per rewrite -> weighted sum of
each query's min-max normalised fused scores) on lists computed once: BM25 is scored in memory from
the postings table (checked against ``bm25_search`` at start), dense lists come from pgvector.
Latency figures are per query on a shared 2-core machine: read them as rough.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cairn.assistant import Cairn
from cairn.eval.beir import BeirDataset, load_beir, score
from cairn.index.access import access_for
from cairn.index.analyzer import Analyzer
from cairn.index.search import BM25Params, bm25_search, vector_search
from cairn.index.store import kb_ids
from cairn.retrieve.base import Rewrite
from cairn.retrieve.fusion import convex, min_max, ranked
from cairn.retrieve.hybrid import RetrievalConfig
from cairn.retrieve.rewrite import LLMRewriter, RM3Rewriter, rocchio
from cairn.settings import get_settings
from cairn.types import SYSTEM, Hit

Ranked = list[tuple[int, float]]
DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"
KB = "beir-scifact"
DEPTH = 100  # documents ranked per query, as cairn.eval.beir.run_queries
CANDIDATES = 200  # per list, as run_queries (depth * 2)
FEEDBACK = 20  # first-pass hits handed to expand(), as HybridRetriever
WEIGHTS = (0.5, 1.0, 2.0, 4.0)


# --- the corpus in memory -------------------------------------------------------------------


class MemoryBM25:
    """The BM25 of ``cairn.index.search`` over one knowledge base, scored with numpy."""

    def __init__(self, rows: Iterable[tuple[str, int, int, int]], n: float, avgdl: float, params: BM25Params):
        by_term: dict[str, list[tuple[int, int, int]]] = {}
        for term, chunk_id, tf, dl in rows:
            by_term.setdefault(term, []).append((chunk_id, tf, dl))
        ids = sorted({c for plist in by_term.values() for c, _, _ in plist})
        self.ids = np.asarray(ids, dtype=np.int64)
        where = {c: i for i, c in enumerate(ids)}
        self.df: dict[str, int] = {}
        self.n = n
        self.postings: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = {}
        for term, plist in by_term.items():
            arr = np.asarray(plist, dtype=np.float64)
            df = float(len(plist))
            idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
            tfs, dls = arr[:, 1], arr[:, 2]
            contrib = idf * tfs / (tfs + params.k1 * (1 - params.b + params.b * dls / avgdl))
            self.postings[term] = (np.asarray([where[int(c)] for c in arr[:, 0]], dtype=np.int64), contrib)
            self.df[term] = len(plist)

    def search(self, terms: Mapping[str, float] | Sequence[str], k: int) -> Ranked:
        weights: Mapping[str, float] = (
            {t: w for t, w in terms.items() if w > 0} if isinstance(terms, Mapping) else Counter(terms)
        )
        scores = np.zeros(len(self.ids))
        touched = np.zeros(len(self.ids), dtype=bool)
        for term, w in weights.items():
            if term in self.postings:
                idx, contrib = self.postings[term]
                scores[idx] += w * contrib
                touched[idx] = True
        cand = np.nonzero(touched)[0]
        order = cand[np.lexsort((self.ids[cand], -scores[cand]))][:k]
        return [(int(self.ids[i]), float(scores[i])) for i in order]


@dataclass
class Corpus:
    cairn: Cairn
    bm25: MemoryBM25
    texts: dict[int, str]
    sources: dict[int, str]
    vectors: dict[int, npt.NDArray[np.float32]]
    kb_id: int
    dim: int

    def hits(self, items: Sequence[tuple[int, float]]) -> list[Hit]:
        return [
            Hit(chunk_id=c, document_id=0, source=self.sources[c], text=self.texts[c], start=0, end=0, score=s)
            for c, s in items
        ]

    def dense(self, vector: npt.NDArray[np.float32], k: int, ef_search: int) -> Ranked:
        with self.cairn.db.connection(SYSTEM) as conn, conn.transaction():
            access = access_for(conn, SYSTEM)
            return vector_search(conn, [self.kb_id], vector, k, dim=self.dim, ef_search=ef_search, access=access)


def load_corpus(cairn: Cairn, cfg: RetrievalConfig) -> Corpus:
    with cairn.db.connection(SYSTEM) as conn:
        access = access_for(conn, SYSTEM)
        (kb_id,) = kb_ids(conn, [KB], access)
        stats = conn.execute("SELECT chunk_count, total_length FROM kb_stats WHERE kb_id = %s", (kb_id,)).fetchone()
        assert stats is not None, "the knowledge base has no statistics"
        n, total = stats
        rows = conn.execute("SELECT term, chunk_id, tf, dl FROM postings WHERE kb_id = %s", (kb_id,)).fetchall()
        bm25 = MemoryBM25(rows, float(n), float(total) / float(n), cfg.bm25)
        texts, sources, vectors = {}, {}, {}
        for cid, source, text, emb in conn.execute(
            "SELECT c.id, d.source, c.text, c.embedding FROM chunks c JOIN documents d ON d.id = c.document_id"
            " WHERE c.kb_id = %s",
            (kb_id,),
        ):
            texts[int(cid)], sources[int(cid)] = text, source
            vectors[int(cid)] = np.asarray(emb.to_numpy() if hasattr(emb, "to_numpy") else emb, dtype=np.float32)
        # The in-memory scores must be those of the SQL the retriever runs.
        for query in ("chloroquine retinal toxicity", "cancer cells cancer", "BRCA1 mutation breast"):
            terms = cairn.analyzer.terms(query)
            weighted = {t: 1.0 + i / 3 for i, t in enumerate(dict.fromkeys(terms))}
            for q in (terms, weighted):
                sql = bm25_search(conn, [kb_id], q, 50, cfg.bm25, access=access)
                mem = bm25.search(q, 50)
                assert [c for c, _ in sql] == [c for c, _ in mem], query
                assert np.allclose([s for _, s in sql], [s for _, s in mem], rtol=1e-9), query
    dim = len(next(iter(vectors.values())))
    return Corpus(cairn, bm25, texts, sources, vectors, kb_id, dim)


# --- the multi-query loop of HybridRetriever, replayed --------------------------------------


def fuse(lists: Mapping[str, Ranked], alpha: float) -> Ranked:
    if len(lists) == 1:
        return next(iter(lists.values()))
    return ranked(convex(lists, {"dense": alpha, "bm25": 1.0 - alpha}))


def combine(runs: Sequence[tuple[Ranked, float]]) -> Ranked:
    """HybridRetriever's ``_combine``: weighted sum of each query's min-max normalised fused scores."""
    if len(runs) == 1:
        return runs[0][0]
    total = sum(w for _, w in runs) or 1.0
    out: dict[int, float] = {}
    for ranking, weight in runs:
        for item, s in min_max(ranking).items():
            out[item] = out.get(item, 0.0) + weight * s / total
    return ranked(out)


def documents(corpus: Corpus, fused: Ranked) -> dict[str, float]:
    """Best chunk per document over the first 200 chunks, as run_queries."""
    top = fused[:CANDIDATES]
    ranking: dict[str, float] = {}
    for rank, (cid, _) in enumerate(top):
        ranking.setdefault(corpus.sources[cid], float(len(top) - rank))
        if len(ranking) >= DEPTH:
            break
    return ranking


@dataclass
class FirstPass:
    qid: str
    text: str
    terms: list[str]
    vector: npt.NDArray[np.float32]
    bm25: Ranked
    dense: Ranked
    hybrid: Ranked = field(default_factory=list)


def first_passes(corpus: Corpus, dataset: BeirDataset, cfg: RetrievalConfig, limit: int | None) -> list[FirstPass]:
    out = []
    embedder = corpus.cairn.embedder
    for qid, text in list(dataset.queries.items())[:limit]:
        terms = corpus.cairn.analyzer.terms(text)
        vector = embedder.embed_query(text)
        fp = FirstPass(
            qid, text, terms, vector, corpus.bm25.search(terms, CANDIDATES), corpus.dense(vector, CANDIDATES, 200)
        )
        fp.hybrid = fuse({"bm25": fp.bm25, "dense": fp.dense}, cfg.alpha)
        out.append(fp)
    return out


def evaluate(dataset: BeirDataset, corpus: Corpus, rankings: Mapping[str, Ranked]) -> dict[str, float]:
    return score(dataset, {qid: documents(corpus, r) for qid, r in rankings.items()})


class CachedAnalyzer(Analyzer):
    """Feedback passages recur across queries and parameter settings: analyse each once."""

    @cache  # noqa: B019 - one instance per run
    def term_frequencies(self, text: str) -> Any:
        return super().term_frequencies(text)


class DfFilteredRM3(RM3Rewriter):
    """Anserini's extra filter: expansion terms in more than ``max_df`` of the passages are skipped."""

    def __init__(self, *args: Any, df: Callable[[str], float], max_df: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.df, self.max_df = df, max_df

    def relevance_model(self, feedback: Sequence[Hit]) -> dict[str, float]:
        keep = self.fb_terms
        self.fb_terms = 10_000
        try:
            full = super().relevance_model(feedback)
        finally:
            self.fb_terms = keep
        best = [(t, p) for t, p in sorted(full.items(), key=lambda kv: (-kv[1], kv[0])) if self.df(t) <= self.max_df]
        best = best[: self.fb_terms]
        total = sum(p for _, p in best)
        return {t: p / total for t, p in best} if total else {}


# --- commands ---------------------------------------------------------------------------------


def table(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    def cell(v: object) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def open_cairn(args: argparse.Namespace, **overrides: Any) -> Cairn:
    import cairn.retrieve.rewrite  # noqa: F401 - registers llm: and rm3: even before plugins list it

    home = args.home or os.environ.get("CAIRN_HOME")
    if not home:
        sys.exit("set CAIRN_HOME or --home to a cairn home with the beir-scifact knowledge base")
    return Cairn(get_settings(home=Path(home), **overrides))


def cmd_sweep(args: argparse.Namespace) -> None:
    cairn = open_cairn(args)
    cfg = cairn.retrieval_config
    dataset = load_beir(args.data, args.split)
    t = time.perf_counter()
    corpus = load_corpus(cairn, cfg)
    fps = first_passes(corpus, dataset, cfg, args.limit)
    print(f"loaded corpus and {len(fps)} first passes in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    analyzer = CachedAnalyzer()
    n_chunks = corpus.bm25.n

    def df(term: str) -> float:
        return corpus.bm25.df.get(term, 0) / n_chunks

    rows: list[dict[str, object]] = []
    base_h = evaluate(dataset, corpus, {fp.qid: fp.hybrid for fp in fps})
    base_b = evaluate(dataset, corpus, {fp.qid: fp.bm25 for fp in fps})
    rows.append({"mode": "hybrid", "variant": "no rewrite", **base_h})
    rows.append({"mode": "bm25", "variant": "no rewrite", **base_b})
    grid = [
        (d, t_, o, m)
        for d in args.fb_docs
        for t_ in args.fb_terms
        for o in args.orig
        for m in ((1.0, *args.max_df) if args.max_df else (1.0,))
    ]
    for fb_docs, fb_terms, orig, max_df in grid:
        rm3: RM3Rewriter
        if max_df < 1.0:
            rm3 = DfFilteredRM3(analyzer, fb_docs=fb_docs, fb_terms=fb_terms, orig=orig, df=df, max_df=max_df)
        else:
            rm3 = RM3Rewriter(analyzer, fb_docs=fb_docs, fb_terms=fb_terms, orig=orig)
        label = f"rm3 fb_docs={fb_docs} fb_terms={fb_terms} orig={orig}" + (f" max_df={max_df}" if max_df < 1 else "")
        for mode in ("hybrid", "bm25"):
            expanded: dict[str, tuple[Ranked, Ranked]] = {}
            n_terms = []
            for fp in fps:
                first = fp.hybrid if mode == "hybrid" else fp.bm25
                rewrites = rm3.expand(fp.text, corpus.hits(first[:FEEDBACK]))
                if not rewrites:
                    expanded[fp.qid] = (first, [])
                    continue
                assert rewrites[0].terms is not None
                n_terms.append(len(rewrites[0].terms))
                extra_bm25 = corpus.bm25.search(rewrites[0].terms, CANDIDATES)
                extra = fuse({"bm25": extra_bm25, "dense": fp.dense}, cfg.alpha) if mode == "hybrid" else extra_bm25
                expanded[fp.qid] = (first, extra)
            for weight in (*args.weights, float("inf")):
                runs = {
                    qid: (
                        first
                        if not extra
                        else extra
                        if weight == float("inf")
                        else combine([(first, 1.0), (extra, weight)])
                    )
                    for qid, (first, extra) in expanded.items()
                }
                metrics = evaluate(dataset, corpus, runs)
                w = "replace" if weight == float("inf") else f"{weight:g}"
                rows.append(
                    {
                        "mode": mode,
                        "variant": f"{label} weight={w}",
                        "terms": f"{statistics.mean(n_terms):.1f}" if n_terms else "0",
                        **metrics,
                    }
                )
        print(f"{label}: done", file=sys.stderr)
    if args.prf:
        rows += sweep_prf(args, dataset, corpus, fps, cfg, analyzer)
    columns = ["mode", "variant", "terms", "ndcg@10", "recall@100", "mrr@10"]
    for mode in ("hybrid", "bm25", "hybrid+prf"):
        mine = [r for r in rows if r["mode"] == mode and r["variant"] != "no rewrite"]
        if not mine:
            continue
        base_row = [r for r in rows if r["mode"] == mode.split("+")[0] and r["variant"] == "no rewrite"]
        best = base_row + sorted(mine, key=lambda r: -float(r["ndcg@10"]))[: args.top]  # type: ignore[arg-type]
        print(f"\n### {mode}, {args.split} split ({len(fps)} queries): best {len(best)} of {len(mine)} by nDCG@10\n")
        print(table(best, columns))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def sweep_prf(
    args: argparse.Namespace,
    dataset: BeirDataset,
    corpus: Corpus,
    fps: Sequence[FirstPass],
    cfg: RetrievalConfig,
    analyzer: Analyzer,
) -> list[dict[str, object]]:
    """Dense pseudo-relevance feedback (Rocchio): ``q' = q + beta * mean(top-k feedback vectors)``, re-normalised.

    Needs a query vector on a Rewrite, which the dataclass does not have: measured here only. The
    rewrite's BM25 side is the original query or RM3 (``args.prf_rm3``), its dense side ``q'``.
    """
    rows: list[dict[str, object]] = []
    rm3 = RM3Rewriter(analyzer, **args.prf_rm3) if args.prf_rm3 else None
    for k in args.prf_docs:
        for beta in args.prf_beta:
            extra: dict[str, Ranked] = {}
            for fp in fps:
                head = fp.hybrid[:FEEDBACK]
                q2 = rocchio(fp.vector, [corpus.vectors[c] for c, _ in head[:k]], beta=beta)
                dense2 = corpus.dense(q2, CANDIDATES, 200)
                bm25_2 = fp.bm25
                if rm3 is not None:
                    rw = rm3.expand(fp.text, corpus.hits(head))
                    if rw and rw[0].terms is not None:
                        bm25_2 = corpus.bm25.search(rw[0].terms, CANDIDATES)
                extra[fp.qid] = fuse({"bm25": bm25_2, "dense": dense2}, cfg.alpha)
            for weight in (*args.weights, float("inf")):
                runs = {
                    fp.qid: extra[fp.qid]
                    if weight == float("inf")
                    else combine([(fp.hybrid, 1.0), (extra[fp.qid], weight)])
                    for fp in fps
                }
                w = "replace" if weight == float("inf") else f"{weight:g}"
                side = "rm3 bm25" if rm3 is not None else "original bm25"
                rows.append(
                    {
                        "mode": "hybrid+prf",
                        "variant": f"prf k={k} beta={beta:g} ({side}) weight={w}",
                        **evaluate(dataset, corpus, runs),
                    }
                )
        print(f"prf k={k}: done", file=sys.stderr)
    return rows


def real_runs(
    cairn: Cairn, dataset: BeirDataset, configs: Mapping[str, RetrievalConfig], limit: int | None
) -> dict[str, tuple[dict[str, dict[str, float]], list[float], list[float]]]:
    """Rankings through ``cairn.retriever.search``, per-query total ms and rewrite-stage ms, configs interleaved."""
    out: dict[str, tuple[dict[str, dict[str, float]], list[float], list[float]]] = {
        name: ({}, [], []) for name in configs
    }
    queries = list(dataset.queries.items())[:limit]
    for n, (qid, text) in enumerate(queries, start=1):
        for name, config in configs.items():
            cfg = replace(config, top_k=CANDIDATES, candidates=CANDIDATES, parents=0, compress=None)
            t = time.perf_counter()
            retrieval = cairn.retriever.search(text, [KB], cfg, principal=SYSTEM)
            total = (time.perf_counter() - t) * 1000.0
            ranking: dict[str, float] = {}
            for rank, hit in enumerate(retrieval.hits):
                ranking.setdefault(hit.source, float(len(retrieval.hits) - rank))
                if len(ranking) >= DEPTH:
                    break
            run, totals, stage = out[name]
            run[qid] = ranking
            totals.append(total)
            stage.append(retrieval.timings_ms.get("rewrite", 0.0))
        if n % 50 == 0:
            print(f"{n}/{len(queries)} queries", file=sys.stderr)
    return out


def report_real(
    dataset: BeirDataset,
    results: Mapping[str, tuple[dict[str, dict[str, float]], list[float], list[float]]],
    baselines: Mapping[str, str],
) -> str:
    rows = []
    for name, (run, totals, stage) in results.items():
        metrics = score(dataset, run)
        row: dict[str, object] = {"variant": name, **metrics, "p50 total ms": f"{statistics.median(totals):.1f}"}
        base = baselines.get(name)
        if base is not None:
            added = [a - b for a, b in zip(totals, results[base][1], strict=True)]
            row["p50 added ms"] = f"{statistics.median(added):.1f}"
            row["p50 expand ms"] = f"{statistics.median(stage):.1f}"
        rows.append(row)
    return table(rows, ["variant", "ndcg@10", "recall@100", "mrr@10", "p50 total ms", "p50 added ms", "p50 expand ms"])


def cmd_eval(args: argparse.Namespace) -> None:
    cairn = open_cairn(args)
    dataset = load_beir(args.data, args.split)
    base = cairn.retrieval_config
    configs = {"hybrid": base, "bm25": base.with_(mode="bm25")}
    baselines: dict[str, str] = {}
    for location in args.rewrite:
        configs[f"hybrid + {location}"] = base.with_(rewrite=location)
        baselines[f"hybrid + {location}"] = "hybrid"
    for location in args.bm25_rewrite:
        configs[f"bm25 + {location}"] = base.with_(mode="bm25", rewrite=location)
        baselines[f"bm25 + {location}"] = "bm25"
    cairn.retriever.search("warm up", [KB], base, principal=SYSTEM)
    results = real_runs(cairn, dataset, configs, args.limit)
    n = len(next(iter(results.values()))[0])
    print(f"\n### SciFact {args.split} ({n} queries), through Cairn.retriever.search\n")
    print(report_real(dataset, results, baselines))


class CachingGenerator:
    """Wraps the generator: remembers replies and how long each took, so a rerun costs nothing."""

    def __init__(self, inner: Any, path: Path) -> None:
        self.inner, self.path, self.name = inner, path, inner.name
        self.cache: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else {}
        self.last_ms = 0.0

    def warm_up(self) -> None:
        self.inner.warm_up()

    def generate(self, messages: Any, **kwargs: Any) -> Any:
        from cairn.models.base import Completion

        key = json.dumps([[m.role, m.content] for m in messages] + [sorted(kwargs.items())])
        if key not in self.cache:
            t = time.perf_counter()
            completion = self.inner.generate(messages, **kwargs)
            self.cache[key] = {"text": completion.text, "ms": (time.perf_counter() - t) * 1000.0}
            self.path.write_text(json.dumps(self.cache))
        self.last_ms = self.cache[key]["ms"]
        return Completion(text=self.cache[key]["text"], model=self.name)


def cmd_llm(args: argparse.Namespace) -> None:
    """LLM multi-query on the first ``--limit`` queries: generation latency, and quality per rewrite weight.

    Replies are generated once (cached in ``--cache``) and replayed for every weight, through the
    real retriever; the reported generation time is the first (uncached) one.
    """
    cairn = open_cairn(args, generator=args.generator)
    dataset = load_beir(args.data, args.split)
    generator = CachingGenerator(cairn.generator, Path(args.cache))
    t = time.perf_counter()
    generator.warm_up()
    print(f"generator {generator.name} loaded in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    base = cairn.retrieval_config
    configs = {"hybrid": base, "bm25": base.with_(mode="bm25")}
    baselines: dict[str, str] = {}
    gen_ms: dict[str, float] = {}
    n_rewrites: list[int] = []
    queries = list(dataset.queries.items())[: args.limit]
    rewriter = LLMRewriter(generator, n=args.n, analyzer=cairn.analyzer)  # type: ignore[arg-type]
    for qid, text in queries:
        rewrites: list[Rewrite] = rewriter.expand(text, [])
        gen_ms[qid] = generator.last_ms
        n_rewrites.append(len(rewrites))
        if args.show and len(n_rewrites) <= args.show:
            print(f"- {text}\n" + "".join(f"  - {r.text}\n" for r in rewrites), file=sys.stderr)
    for weight in args.weights:
        location = f"llm:?n={args.n}&weight={weight:g}"
        # The stage cache is keyed by location: pre-build the rewriter on the caching generator.
        cairn.retriever.stages._built[("query rewriter", location)] = LLMRewriter(
            generator,  # type: ignore[arg-type]
            n=args.n,
            weight=weight,
            analyzer=cairn.analyzer,
        )
        configs[f"hybrid + {location}"] = base.with_(rewrite=location)
        baselines[f"hybrid + {location}"] = "hybrid"
        configs[f"bm25 + {location}"] = base.with_(mode="bm25", rewrite=location)
        baselines[f"bm25 + {location}"] = "bm25"
    cairn.retriever.search("warm up", [KB], base, principal=SYSTEM)
    results = real_runs(cairn, dataset, configs, args.limit)
    ms = sorted(gen_ms.values())
    print(f"\n### LLM multi-query, SciFact {args.split}, first {len(queries)} queries ({generator.name})\n")
    print(
        f"Generation of {args.n} reformulations: p50 {statistics.median(ms):.0f} ms, "
        f"p95 {ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]:.0f} ms per query; "
        f"{statistics.mean(n_rewrites):.2f} usable reformulations on average "
        f"({sum(1 for n in n_rewrites if n == 0)} queries with none). "
        "'p50 added ms' below excludes generation (replies replayed from the cache).\n"
    )
    print(report_real(dataset, results, baselines))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", help="cairn home holding the beir-scifact index (default: $CAIRN_HOME)")
    parser.add_argument("--data", type=Path, default=DATA, help="BEIR folder (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)

    sweep = sub.add_parser("sweep", help="tune RM3 (and dense PRF) on the lists of one first pass")
    sweep.add_argument("--split", default="train")
    sweep.add_argument("--limit", type=int, default=None, help="first N queries only")
    sweep.add_argument("--fb-docs", type=int, nargs="+", default=[3, 5, 10])
    sweep.add_argument("--fb-terms", type=int, nargs="+", default=[10, 20, 30])
    sweep.add_argument("--orig", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8])
    sweep.add_argument("--weights", type=float, nargs="+", default=list(WEIGHTS), help="rewrite fusion weights")
    sweep.add_argument("--max-df", type=float, nargs="*", default=[], help="also try Anserini's df filter (e.g. 0.1)")
    sweep.add_argument("--prf", action="store_true", help="also sweep dense Rocchio PRF")
    sweep.add_argument("--prf-docs", type=int, nargs="+", default=[3, 5, 10])
    sweep.add_argument("--prf-beta", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    sweep.add_argument(
        "--prf-rm3", type=json.loads, default=None, help="RM3 for the PRF rewrite, e.g. '{\"fb_docs\": 5}'"
    )
    sweep.add_argument("--top", type=int, default=12, help="rows shown per mode")
    sweep.add_argument("--json", help="write every row here")
    sweep.set_defaults(func=cmd_sweep)

    ev = sub.add_parser("eval", help="baselines and rewrite locations through Cairn.retriever.search")
    ev.add_argument("--split", default="test")
    ev.add_argument("--limit", type=int, default=None)
    ev.add_argument("--rewrite", nargs="*", default=[], help="rewrite locations for hybrid")
    ev.add_argument("--bm25-rewrite", nargs="*", default=[], help="rewrite locations for BM25 only")
    ev.set_defaults(func=cmd_eval)

    llm = sub.add_parser("llm", help="LLM multi-query on the first N queries")
    llm.add_argument("--split", default="test")
    llm.add_argument("--limit", type=int, default=50)
    llm.add_argument("--n", type=int, default=3)
    llm.add_argument("--weights", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    llm.add_argument("--generator", default="local:qwen2.5-1.5b-instruct")
    llm.add_argument("--cache", default="/tmp/rewrite-llm-cache.json", help="replies cache (JSON)")
    llm.add_argument("--show", type=int, default=5, help="print the reformulations of the first N queries")
    llm.set_defaults(func=cmd_llm)

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
