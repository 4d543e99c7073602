"""Knowledge-graph retrieval: does the graph list help multi-hop questions, and does it hurt SciFact?

    python bench/graph_multihop.py multihop [--extractor heuristic:] [--home /tmp/graph-mh]
    python bench/graph_multihop.py scifact --home /tmp/sci-graph --extractor spacy: --build [--split test]
    python bench/graph_multihop.py overhead [--extractor spacy:]

``multihop`` indexes samples/handbook and samples/sources (real embedder, graph extracted at
ingestion) and asks bench/data/multihop.jsonl: 20 questions written for this benchmark (by the
author of cairn.retrieve.graph, from the sample documents), each needing two documents that an
entity links. It reports recall@5/@10 of the needed documents (their share among the sources of
the top passages) and "all@k" (both found), for hybrid retrieval alone and with the graph list
fused in. ``scifact`` runs the backfill (cairn.index.graph.build_graph) on a copy of an indexed
SciFact home, timing it, and reports nDCG@10 with and without the graph list. ``overhead`` times
extraction per chunk against the rest of ingestion.

The fusion is done here the way cairn.retrieve.hybrid does it (BM25 + dense lists, the graph list
as a third input with its own weight), on lists computed once per query, so every variant sees
the very same candidates. Run one at a time, with OMP_NUM_THREADS=1 on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cairn.assistant import Cairn
from cairn.index.access import access_for
from cairn.index.graph import build_graph, graph_stats
from cairn.index.search import bm25_search, vector_search
from cairn.index.store import kb_ids
from cairn.ingest.entities import ENTITY_EXTRACTORS, EntityExtractor
from cairn.ingest.sync import Ingestor
from cairn.retrieve.fusion import convex, ranked, rrf
from cairn.retrieve.graph import GraphConfig, expand
from cairn.retrieve.hybrid import RetrievalConfig
from cairn.settings import get_settings
from cairn.types import SYSTEM

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "bench" / "data" / "multihop.jsonl"
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"
Ranked = list[tuple[int, float]]


@dataclass(frozen=True, slots=True)
class Lists:
    bm25: Ranked
    dense: Ranked
    graph: dict[int, Ranked]  # per number of hops


def fuse(lists: Lists, cfg: RetrievalConfig, weight: float, hops: int, rank_scores: bool = False) -> Ranked:
    """cairn.retrieve.hybrid's fusion with the graph list as one more input (weight 0: hybrid alone).

    ``rank_scores`` replaces the graph scores by 1 / (rrf_k + rank) before a convex fusion (its
    min-max scaling otherwise squashes the expansion's long tail to nothing).
    """
    inputs: dict[str, Ranked] = {"bm25": lists.bm25, "dense": lists.dense}
    if weight > 0 and lists.graph.get(hops):
        graph = lists.graph[hops]
        if rank_scores:
            graph = [(i, 1.0 / (cfg.rrf_k + r)) for r, (i, _) in enumerate(graph, start=1)]
        inputs["graph"] = graph
    if cfg.fusion == "rrf":
        return ranked(rrf(inputs, k=cfg.rrf_k, weights={"graph": weight}))
    return ranked(convex(inputs, {"dense": cfg.alpha, "bm25": 1.0 - cfg.alpha, "graph": weight}))


def candidate_lists(
    cairn: Cairn, kb: str, query: str, cfg: RetrievalConfig, hops: Sequence[int], extractor: EntityExtractor | None
) -> tuple[Lists, dict[int, float]]:
    qvec = cairn.embedder.embed_query(query)
    graph_ms: dict[int, float] = {}
    with cairn.db.connection(SYSTEM) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        access = access_for(conn, SYSTEM)
        ids = kb_ids(conn, [kb], access)
        bm25 = bm25_search(conn, ids, cairn.analyzer.terms(query), cfg.candidates, cfg.bm25, access=access)
        dense = vector_search(
            conn, ids, qvec, cfg.candidates, dim=int(qvec.shape[-1]), ef_search=cfg.ef_search, access=access
        )
        graph: dict[int, Ranked] = {}
        for n in hops:
            t = time.perf_counter()
            config = GraphConfig(limit=cfg.candidates, hops=n)
            graph[n] = expand(conn, query, ids, access=access, extractor=extractor, config=config).chunks
            graph_ms[n] = (time.perf_counter() - t) * 1000
    return Lists(bm25, dense, graph), graph_ms


def sources_of(cairn: Cairn, chunk_ids: Sequence[int]) -> dict[int, str]:
    with cairn.db.connection(SYSTEM) as conn:
        rows = conn.execute(
            "SELECT c.id, d.source FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ANY(%s)",
            (list(chunk_ids),),
        ).fetchall()
    return {int(r[0]): str(r[1]) for r in rows}


def variants(weights: Sequence[float], hops: Sequence[int]) -> list[tuple[str, float, int]]:
    out = [("hybrid (no graph)", 0.0, 0)]
    out += [(f"+ graph w={w:g} hops={h}", w, h) for h in hops for w in weights if w > 0]
    return out


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def make_extractor(location: str) -> EntityExtractor | None:
    extractor = ENTITY_EXTRACTORS.create(location)
    if extractor.name == "off":
        return None
    extractor.warm_up()
    return extractor


# -- multihop ------------------------------------------------------------------------------------


def cmd_multihop(args: argparse.Namespace) -> None:
    questions = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    home = Path(args.home)
    if home.exists() and args.fresh:
        shutil.rmtree(home)
    cairn = Cairn(get_settings(home=home, chunk_size=args.chunk_size))
    extractor = make_extractor(args.extractor)
    ingestor = Ingestor(cairn.store, cairn.embedder, cairn.chunker, entities=extractor)
    kb = "samples"
    for folder in ("handbook", "sources"):
        report = ingestor.sync_folder(ROOT / "samples" / folder, kb)
        assert report.ok, report.to_json()
    with cairn.db.connection(SYSTEM) as conn:
        access = access_for(conn, SYSTEM)
        stats = graph_stats(conn, kb_ids(conn, [kb], access), access=access)
    print(f"- corpus: {stats.chunks} chunks, graph: {stats.to_json()}", file=sys.stderr)
    cfg = RetrievalConfig.from_settings(cairn.settings).with_(fusion=args.fusion)
    weights = [float(w) for w in args.weights.split(",")]
    hops = [int(h) for h in args.hops.split(",")]
    per_question: list[tuple[dict[str, Any], Lists]] = []
    for q in questions:
        lists, _ = candidate_lists(cairn, kb, q["question"], cfg, hops, extractor)
        per_question.append((q, lists))
    all_ids = {
        i
        for _, lists in per_question
        for ranked_ in (lists.bm25, lists.dense, *lists.graph.values())
        for i, _ in ranked_
    }
    source = {i: Path(s).name for i, s in sources_of(cairn, sorted(all_ids)).items()}
    rows = []
    for label, weight, n in variants(weights, hops):
        scores: dict[str, list[float]] = {}
        worst: list[str] = []
        for q, lists in per_question:
            order = [source[i] for i, _ in fuse(lists, cfg, weight, n, args.graph_scores == "rank")]
            # Rank of the passage that brings in the last needed document (the second hop).
            last = max(order.index(s) + 1 if s in order else MISSING for s in q["sources"])
            worst.append(f"{q['id']}:{last}")
            for group in ("all", q["type"]):
                scores.setdefault(f"{group} last rank", []).append(float(last))
            for k in (3, 5, 10):
                found = set(order[:k])
                share = sum(1 for s in q["sources"] if s in found) / len(q["sources"])
                for group in ("all", q["type"]):
                    scores.setdefault(f"{group} r@{k}", []).append(share)
                    scores.setdefault(f"{group} all@{k}", []).append(float(share == 1.0))
        rows.append([label, *(statistics.mean(scores[c]) for c in COLUMNS)])
        if args.show:
            print(f"- {label}: last needed document at rank " + " ".join(worst), file=sys.stderr)
    print(f"\nMulti-hop recall on the sample corpus ({len(questions)} questions, extractor {args.extractor},")
    print(f"fusion {cfg.fusion}, graph scores {args.graph_scores}, chunk size {args.chunk_size};")
    print("bridge = 11, composite = 9 questions)\n")
    print(table(["variant", *COLUMNS], rows))
    print("\nr@k: share of the needed documents among the sources of the top k passages; all@k: both found;")
    print("last rank: mean rank of the passage that brings in the last needed document (lower is better).")
    if args.show:
        for q, _ in per_question:
            linked = {e.key: e.hop for e in expand_entities(cairn, kb, q["question"], extractor)}
            print(f"- {q['id']} linked {linked}")
    cairn.close()


COLUMNS = [
    "all r@3",
    "all r@5",
    "all r@10",
    "all all@5",
    "all all@10",
    "all last rank",
    "bridge r@5",
    "bridge last rank",
    "composite r@5",
    "composite last rank",
]
MISSING = 1000  # rank given to a needed document that no list retrieved


def expand_entities(cairn: Cairn, kb: str, query: str, extractor: EntityExtractor | None) -> list[Any]:
    with cairn.db.connection(SYSTEM) as conn:
        access = access_for(conn, SYSTEM)
        return list(expand(conn, query, kb_ids(conn, [kb], access), access=access, extractor=extractor).entities)


# -- scifact -------------------------------------------------------------------------------------


def cmd_scifact(args: argparse.Namespace) -> None:
    from cairn.eval.beir import load_beir, score

    home = Path(args.home)
    if home.resolve() == Path("/tmp/ce"):
        raise SystemExit("refusing to write into /tmp/ce: copy it first (cp -a /tmp/ce /tmp/sci-graph)")
    cairn = Cairn(get_settings(home=home))
    kb = "beir-scifact"
    extractor = make_extractor(args.extractor)
    if args.build and extractor is not None:
        last = [time.perf_counter()]

        def progress(done: int, total: int) -> None:
            if time.perf_counter() - last[0] > 30:
                last[0] = time.perf_counter()
                print(f"  graph build: {done}/{total} chunks", file=sys.stderr)

        report = build_graph(cairn.db, kb, extractor, rebuild=args.rebuild, progress=progress)
        print(f"- graph build: {report.to_json()}", file=sys.stderr)
        print(f"\nGraph build ({args.extractor}): {json.dumps(report.to_json())}")
    with cairn.db.connection(SYSTEM) as conn:
        access = access_for(conn, SYSTEM)
        stats = graph_stats(conn, kb_ids(conn, [kb], access), access=access)
    print(f"Graph: {json.dumps(stats.to_json())}")
    dataset = load_beir(SCIFACT, args.split)
    cfg = RetrievalConfig.from_settings(cairn.settings).with_(candidates=args.candidates)
    weights = [float(w) for w in args.weights.split(",")]
    hops = [int(h) for h in args.hops.split(",")]
    per_query: dict[str, Lists] = {}
    graph_ms: dict[int, list[float]] = {h: [] for h in hops}
    linked = 0
    queries = list(dataset.queries.items())[: args.limit]
    for n, (qid, text) in enumerate(queries, start=1):
        lists, ms = candidate_lists(cairn, kb, text, cfg, hops, extractor)
        per_query[qid] = lists
        linked += bool(lists.graph.get(hops[0]))
        for h, value in ms.items():
            graph_ms[h].append(value)
        if n % 100 == 0:
            print(f"  {n}/{len(queries)} queries", file=sys.stderr)
    all_ids = {
        i for lists in per_query.values() for r in (lists.bm25, lists.dense, *lists.graph.values()) for i, _ in r
    }
    source = sources_of(cairn, sorted(all_ids))
    rows = []
    for fusion in args.fusion.split(","):
        fcfg = cfg.with_(fusion=fusion)
        for label, weight, h in variants(weights, hops):
            run: dict[str, dict[str, float]] = {}
            for qid, lists in per_query.items():
                ranking: dict[str, float] = {}
                fused = fuse(lists, fcfg, weight, h, args.graph_scores == "rank")
                for rank, (chunk_id, _) in enumerate(fused):
                    ranking.setdefault(source[chunk_id], float(len(fused) - rank))  # best chunk per document
                run[qid] = ranking
            metrics = score(dataset, run)
            rows.append([fusion, label, metrics["ndcg@10"], metrics["recall@10"], metrics["recall@100"]])
    print(
        f"\nSciFact {args.split} ({len(per_query)} queries; {linked} link at least one entity), "
        f"extractor {args.extractor}, graph scores {args.graph_scores}, {cfg.candidates} candidates per list\n"
    )
    print(table(["fusion", "variant", "nDCG@10", "recall@10", "recall@100"], rows))
    for h, values in graph_ms.items():
        print(f"\ngraph list, hops={h}: p50 {statistics.median(values):.1f} ms per query (shared, noisy machine)")
    cairn.close()


# -- overhead ------------------------------------------------------------------------------------


def cmd_overhead(args: argparse.Namespace) -> None:
    """Extraction time per chunk next to chunking + embedding time per chunk, on the sample corpus."""
    from cairn.ingest.parse import parse_bytes

    home = Path(args.home)
    cairn = Cairn(get_settings(home=home, chunk_size=args.chunk_size))
    texts: list[str] = []
    for path in sorted((ROOT / "samples").rglob("*")):
        if path.is_file() and path.parent.name in ("handbook", "sources"):
            texts += [c.text for c in cairn.chunker.chunk(parse_bytes(path.read_bytes(), path.name))]
    texts = texts * args.repeat
    cairn.embedder.warm_up()
    rows = []
    embed_s = _timed(lambda: cairn.embedder.embed_documents(texts))
    rows.append(["embedding (" + cairn.embedder.name + ")", embed_s * 1000 / len(texts)])
    for location in args.extractor.split(","):
        extractor = make_extractor(location)
        if extractor is None:
            continue
        seconds = _timed(lambda e=extractor: e.extract_many(texts))  # type: ignore[misc]
        rows.append([f"entity extraction ({location})", seconds * 1000 / len(texts)])
    print(f"\nPer-chunk cost on the sample corpus ({len(texts)} chunks of <= {args.chunk_size} chars, 1 thread)\n")
    print(table(["stage", "ms per chunk"], rows))
    cairn.close()


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    mh = sub.add_parser("multihop", help="recall@k of the needed documents on bench/data/multihop.jsonl")
    mh.add_argument("--home", default="/tmp/graph-mh")
    mh.add_argument("--fresh", action="store_true", help="delete --home first")
    mh.add_argument("--extractor", default="heuristic:")
    mh.add_argument("--chunk-size", type=int, default=1200)
    mh.add_argument("--fusion", choices=["convex", "rrf"], default="convex")
    mh.add_argument("--weights", default="0.1,0.2,0.3,0.5")
    mh.add_argument("--hops", default="0,1")
    mh.add_argument("--show", action="store_true", help="print the entities each question links to")
    mh.add_argument("--graph-scores", choices=["raw", "rank"], default="raw")
    mh.set_defaults(run=cmd_multihop)
    sf = sub.add_parser("scifact", help="nDCG@10 with the graph list fused (home: a copy of an indexed SciFact)")
    sf.add_argument("--home", required=True)
    sf.add_argument("--extractor", default="heuristic:")
    sf.add_argument("--build", action="store_true", help="run the backfill first (timed)")
    sf.add_argument("--rebuild", action="store_true", help="re-extract every chunk")
    sf.add_argument("--split", default="test")
    sf.add_argument("--limit", type=int, default=None)
    sf.add_argument("--candidates", type=int, default=200)
    sf.add_argument("--fusion", default="convex,rrf", help="comma-separated: convex, rrf")
    sf.add_argument("--weights", default="0.05,0.1,0.2,0.3")
    sf.add_argument("--hops", default="0,1")
    sf.add_argument("--graph-scores", choices=["raw", "rank"], default="raw")
    sf.set_defaults(run=cmd_scifact)
    ov = sub.add_parser("overhead", help="extraction time per chunk vs embedding time per chunk")
    ov.add_argument("--home", default="/tmp/graph-ov")
    ov.add_argument("--extractor", default="heuristic:,spacy:")
    ov.add_argument("--chunk-size", type=int, default=1200)
    ov.add_argument("--repeat", type=int, default=5)
    ov.set_defaults(run=cmd_overhead)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
