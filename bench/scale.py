"""How cairn's index and retrieval cost grow with the corpus, up to a million chunks.

The corpus grows from SciFact's real passages (the *seed*): chunked and embedded once by cairn's own
chunker and embedder (cached under --out), then replicated with unique ids:

- text: replica r >= 1 of a passage replaces each word (a space-separated token) with probability
  --replace (default 0.1) by a word drawn from the seed corpus's own word frequencies, so postings
  keep the real token statistics (Zipf head and tail, document lengths) without being exact copies;
  the postings are computed from that text by the store's analyzer, as for any document;
- vector: e' = normalise(e + sigma * z / sqrt(d)), z ~ N(0, I_d), sigma = --noise (default 0.5),
  d = 384: cos(e', e) is about 1 / sqrt(1 + sigma^2) (0.89) and two replicas of one passage about
  1 / (1 + sigma^2) (0.80); the report prints the seed's own nearest-neighbour cosine next to it.
  Re-embedding a million perturbed texts would take days on two cores; the vectors are not the
  embedding of the perturbed text, only close to the original's;
- documents of --chunks-per-doc (default 8) consecutive passages, each chunk an exact slice of its
  document's body; readers (--shares): 0.1% of documents are readable by a group ``scale-0_1pct``,
  1% (that 0.1% included) by ``scale-1pct``, 10% by ``scale-10pct``, the rest by ``scale-staff``,
  drawn per document from a seeded RNG; a user of each name is a member of its group.

Everything is written through :meth:`IndexStore.write_documents` (the ingest path's own writes:
documents, chunks, postings, statistics triggers, ACL sets), so ``cairn index check`` holds; only
parsing and embedding are skipped. Each size is grown from the previous one in the same database
(--home, kept: a later run resumes where it stopped), and measured there:

- size of the chunk table (with TOAST), the HNSW index, the postings (with their indexes), documents;
- ingest rate of the growth step (chunks/s of the write path, HNSW maintained as it goes);
- retrieval p50/p95 without re-ranking: hybrid (BM25 + HNSW + fusion + hydration, the query's
  embedding excluded and shown apart), BM25 alone, dense alone; for an administrator and for users
  who may read 10% and 1% of the corpus;
- recall@10 and recall@100 of the product's vector search against an exact scan, unfiltered and for
  those users (the ACL-filtered HNSW case).

    python bench/scale.py --sizes 10000 100000              # develop / the 100k target
    nice -n 19 python bench/scale.py --sizes 1000000 --max-minutes 60   # last: resumes from 100k

Writes scale.md, scale.json and scale.png to --out (default build/scale).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from cairn.assistant import Cairn
from cairn.errors import NotFound
from cairn.eval.beir import latency_summary, load_beir
from cairn.index.access import access_for
from cairn.index.check import check_index
from cairn.index.search import vector_search
from cairn.index.store import DocumentWrite
from cairn.ingest.sync import embedding_text
from cairn.retrieve.hybrid import RetrievalConfig
from cairn.retrieve.profiles import STAGES_OFF
from cairn.settings import get_settings
from cairn.types import SYSTEM, ChunkDraft, ParsedDocument, Principal

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"
KB = "scale"
DEPTH = 100  # candidates per retriever (the `candidates` setting's default): what the vector search is asked for


def share_name(share: float) -> str:
    """``0.01`` -> ``1pct``: the reader (user and group ``scale-1pct``) who may read that share."""
    return f"{share * 100:g}pct".replace(".", "_")


def shown(name: str) -> str:
    """``0_1pct`` -> ``0.1%``."""
    return name.replace("_", ".").replace("pct", "%")


Vectors = npt.NDArray[np.float32]


# -- the seed ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Seed:
    titles: list[str]
    texts: list[str]
    vectors: Vectors
    queries: list[str]
    query_vectors: Vectors

    @property
    def size(self) -> int:
        return len(self.texts)


def build_seed(cairn: Cairn, dataset_dir: Path, docs: int, cache: Path) -> Seed:
    """SciFact's passages as cairn chunks and embeds them (cached: embedding is the slow part)."""
    key = hashlib.sha256(f"{dataset_dir.resolve()}|{docs}|{cairn.embedder.name}".encode()).hexdigest()[:12]
    meta_path, vec_path = cache / f"seed-{key}.json", cache / f"seed-{key}.npz"
    if meta_path.is_file() and vec_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        arrays = np.load(vec_path)
        return Seed(meta["titles"], meta["texts"], arrays["vectors"], meta["queries"], arrays["queries"])
    dataset = load_beir(dataset_dir, "test")
    corpus = list(dataset.corpus())[: docs or None]
    titles, texts, embed = [], [], []
    for _, parsed in corpus:
        for chunk in cairn.chunker.chunk(parsed):
            titles.append(parsed.title)
            texts.append(chunk.text)
            embed.append(embedding_text(parsed, chunk))
    print(f"- seed: embedding {len(texts)} passages of {len(corpus)} documents (cached afterwards)", file=sys.stderr)
    t = time.perf_counter()
    vectors = cairn.embedder.embed_documents(embed)
    print(f"  {len(texts) / (time.perf_counter() - t):.1f} passages/s", file=sys.stderr)
    queries = list(dataset.queries.values())
    query_vectors = np.stack([cairn.embedder.embed_query(q) for q in queries])
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(vec_path, vectors=vectors, queries=query_vectors)
    meta_path.write_text(json.dumps({"titles": titles, "texts": texts, "queries": queries}), encoding="utf-8")
    return Seed(titles, texts, vectors, queries, query_vectors)


def nearest_neighbour_cosine(vectors: Vectors, sample: int = 1000) -> float:
    """Median cosine between a seed passage and its nearest other passage (the scale of real similarity)."""
    rows = vectors[: min(sample, len(vectors))]
    sims = rows @ vectors.T
    for i in range(len(rows)):
        sims[i, i] = -1.0
    return float(np.median(sims.max(axis=1)))


# -- the synthetic corpus --------------------------------------------------------------------------------
class Synthesizer:
    """Document ``k`` of the grown corpus, the same on every run (each document has its own RNG stream)."""

    def __init__(
        self,
        seed: Seed,
        *,
        noise: float,
        replace: float,
        chunks_per_doc: int,
        shares: Sequence[float] = (0.01, 0.1),
        rng_seed: int = 7,
    ) -> None:
        if not 0 <= replace < 1 or noise < 0 or chunks_per_doc < 1 or not all(0 < s < 1 for s in shares):
            raise SystemExit("--replace must be in [0, 1), --noise >= 0, --chunks-per-doc >= 1, --shares in (0, 1)")
        self.shares = tuple(sorted(shares))
        self.seed = seed
        self.noise = noise
        self.replace = replace
        self.per_doc = chunks_per_doc
        self.rng_seed = rng_seed
        counts = Counter(word for text in seed.texts for word in text.split())
        self.words = np.array(list(counts), dtype=object)
        freq = np.array(list(counts.values()), dtype=np.float64)
        self.cumulative = np.cumsum(freq / freq.sum())

    def readers(self, k: int) -> tuple[str, ...]:
        """Nested shares: a document the 1% reader may read is also readable by the 10% reader."""
        draw = np.random.default_rng([self.rng_seed, k, 1]).random()
        groups = [f"group:scale-{share_name(s)}" for s in self.shares if draw < s]
        return tuple(sorted(groups)) or ("group:scale-staff",)

    def document(self, k: int) -> DocumentWrite:
        rng = np.random.default_rng([self.rng_seed, k])
        first = k * self.per_doc
        texts, vectors = [], []
        for j in range(first, first + self.per_doc):
            index, replica = j % self.seed.size, j // self.seed.size
            text, vector = self.seed.texts[index], self.seed.vectors[index]
            if replica:
                text = self._perturb_text(text, rng)
                vector = vector + rng.standard_normal(vector.shape[0]).astype(np.float32) * (
                    self.noise / np.sqrt(vector.shape[0])
                )
                vector = vector / np.linalg.norm(vector)
            texts.append(text)
            vectors.append(vector)
        body, chunks, start = "", [], 0
        for ordinal, text in enumerate(texts):
            if ordinal:
                body += "\n\n"
                start += 2
            body += text
            chunks.append(ChunkDraft(ordinal, text, start, start + len(text)))
            start += len(text)
        title = f"{self.seed.titles[first % self.seed.size]} (synthetic {k})"
        return DocumentWrite(
            source=f"synthetic/{k:08d}",
            parsed=ParsedDocument(text=body, title=title, mime="text/plain"),
            chunks=chunks,
            embeddings=np.asarray(vectors, dtype=np.float32),
            content_hash=hashlib.sha256(body.encode("utf-8")).hexdigest(),
            size_bytes=len(body.encode("utf-8")),
            readers=self.readers(k),
        )

    def _perturb_text(self, text: str, rng: np.random.Generator) -> str:
        words = text.split(" ")
        chosen = np.flatnonzero(rng.random(len(words)) < self.replace)
        if len(chosen):
            picks = np.searchsorted(self.cumulative, rng.random(len(chosen)))
            for position, pick in zip(chosen, picks, strict=True):
                words[position] = str(self.words[min(pick, len(self.words) - 1)])
        return " ".join(words)


def grow(cairn: Cairn, synth: Synthesizer, target: int, deadline: float, batch_docs: int) -> dict[str, Any]:
    """Add documents until ``target`` chunks (or the deadline); the rate is of the write path alone."""
    store = cairn.store
    store.ensure_kb(KB)
    store.bind_embedder(cairn.embedder.name, cairn.embedder.dim)
    have = stored_chunks(cairn)
    k = have // synth.per_doc
    written, write_s, made_s = 0, 0.0, 0.0
    started = time.perf_counter()
    while have + written < target and time.time() < deadline:
        t = time.perf_counter()
        left = -(-(target - have - written) // synth.per_doc)
        batch = [synth.document(i) for i in range(k, k + min(batch_docs, left))]
        made_s += time.perf_counter() - t
        t = time.perf_counter()
        store.write_documents(KB, batch)
        write_s += time.perf_counter() - t
        k += len(batch)
        written += sum(len(d.chunks) for d in batch)
        if written and written % (batch_docs * synth.per_doc * 20) == 0:
            rate = written / write_s
            print(f"  {have + written} chunks, {rate:.0f} chunks/s written", file=sys.stderr)
    return {
        "grown_chunks": written,
        "write_s": round(write_s, 1),
        "generate_s": round(made_s, 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "chunks_per_s": round(written / write_s, 1) if write_s else None,
        "reached_target": have + written >= target,
    }


def tune_for_bulk_load(cairn: Cairn, max_wal_size: str) -> str | None:
    """Raise ``max_wal_size`` on the embedded server, where the bench owns the configuration.

    With the default 1 GB, growing by a million chunks checkpoints every ~10 seconds and the full-page
    writes after each one dominate the write path (PostgreSQL logs "checkpoints are occurring too
    frequently"): what any operator changes before a bulk load. A server's configuration is its
    operator's; it is left alone. Returns what was set, for the report.
    """
    if cairn.settings.database_url is not None or not max_wal_size:
        return None
    with psycopg.connect(cairn.db.url, autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET max_wal_size = '{max_wal_size}'")
        conn.execute("SELECT pg_reload_conf()")
    return f"max_wal_size = {max_wal_size}"


def stored_chunks(cairn: Cairn) -> int:
    with cairn.db.connection(SYSTEM) as conn:
        row = conn.execute(
            "SELECT coalesce(s.chunk_count, 0) FROM knowledge_bases kb LEFT JOIN kb_stats s ON s.kb_id = kb.id"
            " WHERE kb.name = %s",
            (KB,),
        ).fetchone()
    return int(row[0]) if row else 0


# -- measurements ------------------------------------------------------------------------------------------
def sizes(cairn: Cairn) -> dict[str, int]:
    with cairn.db.connection(SYSTEM) as conn:
        row = conn.execute(
            "SELECT pg_total_relation_size('chunks') - pg_indexes_size('chunks'),"
            " coalesce((SELECT sum(pg_relation_size(indexrelid)) FROM pg_index i"
            "  JOIN pg_class c ON c.oid = i.indexrelid"
            "  WHERE i.indrelid = 'chunks'::regclass AND c.relname LIKE 'chunks_embedding_hnsw_%%'), 0),"
            " pg_indexes_size('chunks'), pg_total_relation_size('postings'), pg_total_relation_size('documents'),"
            " pg_database_size(current_database()), (SELECT count(*) FROM documents)"
        ).fetchone()
    assert row is not None
    keys = ("chunks_table", "hnsw", "chunk_indexes", "postings", "documents", "database", "document_count")
    out = dict(zip(keys, (int(x) for x in row), strict=True))
    out["chunk_btree"] = out.pop("chunk_indexes") - out["hnsw"]
    with cairn.db.connection(SYSTEM) as conn:
        estimate = conn.execute("SELECT reltuples FROM pg_class WHERE relname = 'postings'").fetchone()
    out["postings_rows"] = int(estimate[0]) if estimate else 0
    return out


def users(cairn: Cairn, shares: Sequence[float]) -> dict[str, Principal]:
    known = {u.name for u in cairn.principals.list_users()}
    found = {}
    for name in map(share_name, shares):
        user = f"scale-{name}"
        if user not in known:
            cairn.principals.add_user(user, groups=[user])
        found[name] = cairn.principals.resolve(user)
    return found


def latencies(cairn: Cairn, seed: Seed, queries: int, principal: Principal) -> dict[str, Any]:
    """p50/p95 per retrieval mode, in ms, from the retriever's own stage timings."""
    base = replace(RetrievalConfig.from_settings(cairn.settings, "default"), **STAGES_OFF, top_k=10)
    out: dict[str, Any] = {}
    texts = seed.queries[:queries]
    for mode in ("hybrid", "bm25", "dense"):
        config = replace(base, mode=mode)
        for text in texts[:3]:  # plans and caches
            cairn.retriever.search(text, [KB], config, principal=principal)
        database, embed = [], []
        for text in texts:
            timings = cairn.retriever.search(text, [KB], config, principal=principal).timings_ms
            embed.append(timings["embed_query"])
            database.append(timings["retrieve_total"] - timings["embed_query"])
        summary = latency_summary(database)
        out[mode] = {"p50_ms": round(summary["p50_ms"], 2), "p95_ms": round(summary["p95_ms"], 2)}
        if mode == "hybrid":
            out["embed_query_p50_ms"] = round(statistics.median(embed), 2)
    return out


def recall(cairn: Cairn, seed: Seed, queries: int, principal: Principal, ef_search: int) -> dict[str, Any]:
    """Vector search against an exact scan with the same filters: the HNSW index alone, and as served.

    "HNSW alone" forces the index's plan (no sort allowed, no exact fallback): what a caller gets
    whenever the planner takes the index for a filtered query. "Served" is the product as it runs:
    the planner's choice, and the exact scan when the index comes up short. ``short`` is the share
    of queries given fewer than 100 rows while the caller can read more, the signature of a filtered
    HNSW scan that gave up (pgvector's ``hnsw.max_scan_tuples``).
    """
    dim = cairn.embedder.dim
    found: dict[str, list[float]] = {}
    with cairn.db.connection(principal) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        access = access_for(conn, principal)
        kb_id = cairn.store.kb_ids([KB], principal)[0]
        acl, params = access.clause("acl_id")
        for vector in seed.query_vectors[:queries]:
            # No index orders by the bare column's distance: this is an exact scan of the readable rows.
            exact = [
                int(r[0])
                for r in conn.execute(
                    f"SELECT id FROM chunks WHERE kb_id = %(kb)s{acl}"
                    " ORDER BY embedding <=> %(q)s::vector, id LIMIT 100",
                    params | {"kb": kb_id, "q": np.asarray(vector, dtype=np.float32)},
                ).fetchall()
            ]
            for label, fallback in (("hnsw", False), ("served", True)):
                if label == "hnsw":  # the index's own answer, even where the planner would rather sort the rows
                    conn.execute("SET LOCAL enable_sort = off")
                # One call for `candidates` rows, as the retriever makes it; its head is the top 10.
                approx = [
                    i
                    for i, _ in vector_search(
                        conn,
                        [kb_id],
                        vector,
                        DEPTH,
                        dim=dim,
                        ef_search=ef_search,
                        access=access,
                        exact_fallback=fallback,
                    )
                ]
                conn.execute("RESET enable_sort")
                for k in (10, DEPTH):
                    truth = set(exact[:k])
                    if truth:
                        found.setdefault(f"{label}_recall@{k}", []).append(len(truth & set(approx[:k])) / len(truth))
                short = float(len(approx) < min(DEPTH, len(exact)))
                found.setdefault(f"{label}_short", []).append(short)
    return {k: round(statistics.mean(v), 4) for k, v in found.items()}


def measure(cairn: Cairn, seed: Seed, args: argparse.Namespace, readers: dict[str, Principal]) -> dict[str, Any]:
    print(f"- measuring at {stored_chunks(cairn)} chunks", file=sys.stderr)
    # What autovacuum does a little later; the tables' owner (the URL's user), not cairn_app, may do it.
    with psycopg.connect(cairn.db.url, autocommit=True) as conn:
        conn.execute("ANALYZE chunks")
        conn.execute("ANALYZE postings")
        conn.execute("ANALYZE documents")
    row: dict[str, Any] = {"chunks": stored_chunks(cairn), **sizes(cairn)}
    row["admin"] = latencies(cairn, seed, args.queries, SYSTEM)
    row["admin"]["recall"] = recall(cairn, seed, args.recall_queries, SYSTEM, cairn.settings.hnsw_ef_search)
    for name, principal in readers.items():
        try:
            row[name] = latencies(cairn, seed, args.queries, principal)
        except NotFound:  # a small corpus may give this reader no document at all
            row[name] = None
            continue
        row[name]["recall"] = recall(cairn, seed, args.recall_queries, principal, cairn.settings.hnsw_ef_search)
    if args.check:
        t = time.perf_counter()
        report = check_index(cairn.db)
        row["check"] = {"ok": report.ok, "problems": report.problems, "seconds": round(time.perf_counter() - t, 1)}
    row["load"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return row


# -- report -------------------------------------------------------------------------------------------------
def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f}"


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"Seed: {meta['seed_passages']} SciFact passages; seed nearest-neighbour cosine (median)"
        f" {meta['seed_nn_cosine']:.3f}; replica noise sigma {meta['noise']} (expected cos to the original"
        f" {1 / (1 + meta['noise'] ** 2) ** 0.5:.3f}), word replacement {meta['replace']}.",
        "",
        "| chunks | chunk table MB | HNSW MB | postings MB (rows) | documents MB | database MB | ingest chunks/s"
        " | hybrid p50 / p95 ms | BM25 p50 / p95 | dense p50 / p95 | query embedding p50 | HNSW recall@10 / @100 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a = r["admin"]
        lines.append(
            f"| {r['chunks']:,} | {_mb(r['chunks_table'])} | {_mb(r['hnsw'])} | {_mb(r['postings'])}"
            f" ({r['postings_rows']:,}) | {_mb(r['documents'])} | {_mb(r['database'])} | {r.get('chunks_per_s', '')}"
            f" | {a['hybrid']['p50_ms']} / {a['hybrid']['p95_ms']} | {a['bm25']['p50_ms']} / {a['bm25']['p95_ms']}"
            f" | {a['dense']['p50_ms']} / {a['dense']['p95_ms']} | {a['embed_query_p50_ms']}"
            f" | {a['recall']['hnsw_recall@10']} / {a['recall']['hnsw_recall@100']} |"
        )
    lines += [
        "",
        "ACL-filtered (a user who may read a share of the corpus; the same queries):",
        "",
        "| chunks | reader | hybrid p50 / p95 ms | dense p50 / p95 ms | HNSW alone: recall@10 / @100,"
        " queries short of 100 rows | as served (exact fallback): recall@10 / @100, short |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        for name in meta["readers"]:
            u = r[name]
            if u is None:
                lines.append(f"| {r['chunks']:,} | {shown(name)} | reads no document at this size | | | |")
                continue
            rc = u["recall"]
            lines.append(
                f"| {r['chunks']:,} | {shown(name)} | {u['hybrid']['p50_ms']} / {u['hybrid']['p95_ms']}"
                f" | {u['dense']['p50_ms']} / {u['dense']['p95_ms']}"
                f" | {rc.get('hnsw_recall@10')} / {rc.get('hnsw_recall@100')}, {rc['hnsw_short']:.0%}"
                f" | {rc.get('served_recall@10')} / {rc.get('served_recall@100')}, {rc['served_short']:.0%} |"
            )
    checks = [f"{r['chunks']:,}: {'ok' if r['check']['ok'] else r['check']['problems']}" for r in rows if "check" in r]
    if checks:
        lines += ["", "`cairn index check` at " + "; ".join(checks) + "."]
    lines += [
        "",
        "Load average (`uptime`) after each measurement: "
        + "; ".join(f"{r['chunks']:,}: {r['load']}" for r in rows)
        + ".",
    ]
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], readers: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["chunks"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    for label, key in (("hybrid", "hybrid"), ("BM25", "bm25"), ("dense (HNSW)", "dense")):
        left.plot(n, [r["admin"][key]["p50_ms"] for r in rows], marker="o", label=f"{label} p50")
        left.plot(n, [r["admin"][key]["p95_ms"] for r in rows], marker=".", linestyle="--", label=f"{label} p95")
    for name in readers:
        seen = [r for r in rows if r[name] is not None]
        left.plot(
            [r["chunks"] for r in seen],
            [r[name]["hybrid"]["p50_ms"] for r in seen],
            marker="s",
            label=f"hybrid p50, reader of {shown(name)}",
        )
    left.scatter([1e5, 1e6], [10, 25], marker="x", color="red", zorder=5, label="targets (hybrid)")
    left.set(xscale="log", yscale="log", xlabel="chunks", ylabel="ms (query embedding excluded)")
    left.set_title("Retrieval latency vs corpus size")
    left.legend(fontsize=7)
    left.grid(True, which="both", alpha=0.3)
    for label, key in (
        ("chunk table", "chunks_table"),
        ("HNSW", "hnsw"),
        ("postings", "postings"),
        ("documents", "documents"),
        ("database", "database"),
    ):
        right.plot(n, [r[key] / 2**20 for r in rows], marker="o", label=label)
    right.set(xscale="log", yscale="log", xlabel="chunks", ylabel="MB")
    right.set_title("Index size vs corpus size")
    right.legend(fontsize=8)
    right.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dataset", type=Path, default=SCIFACT, help="the seed (a BEIR folder)")
    parser.add_argument("--seed-docs", type=int, default=2000, help="seed documents (0: the whole corpus)")
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--replace", type=float, default=0.1)
    parser.add_argument("--chunks-per-doc", type=int, default=8)
    parser.add_argument(
        "--shares", type=float, nargs="+", default=[0.001, 0.01, 0.1], help="readers' shares of the corpus"
    )
    parser.add_argument("--batch-docs", type=int, default=64, help="documents per write transaction")
    parser.add_argument("--queries", type=int, default=100, help="queries timed per mode and reader")
    parser.add_argument("--recall-queries", type=int, default=50)
    parser.add_argument("--max-minutes", type=float, default=60.0, help="stop growing after this long")
    parser.add_argument(
        "--max-wal-size", default="8GB", help="set on the embedded server before growing ('' keeps its own)"
    )
    parser.add_argument("--no-check", dest="check", action="store_false", help="skip `cairn index check`")
    parser.add_argument("--home", type=Path, default=None, help="CAIRN_HOME of the grown index (default OUT/home)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "scale")
    args = parser.parse_args()
    if not (args.dataset / "corpus.jsonl").is_file():
        raise SystemExit(f"no seed corpus: {args.dataset / 'corpus.jsonl'} not found (SciFact, ../shared/datasets)")

    args.out.mkdir(parents=True, exist_ok=True)
    cairn = Cairn(get_settings(home=args.home or args.out / "home", answer_cache="off"))
    deadline = time.time() + args.max_minutes * 60
    results_path = args.out / "scale.json"
    try:
        seed = build_seed(cairn, args.dataset, args.seed_docs, args.out)
        synth = Synthesizer(
            seed, noise=args.noise, replace=args.replace, chunks_per_doc=args.chunks_per_doc, shares=args.shares
        )
        previous = json.loads(results_path.read_text(encoding="utf-8")) if results_path.is_file() else {}
        meta = {
            "seed_passages": seed.size,
            "seed_nn_cosine": nearest_neighbour_cosine(seed.vectors),
            "noise": args.noise,
            "replace": args.replace,
            "chunks_per_doc": args.chunks_per_doc,
            "readers": [share_name(s) for s in sorted(args.shares)],
        }
        if previous and previous.get("meta", {}) | {"seed_nn_cosine": 0} != meta | {"seed_nn_cosine": 0}:
            raise SystemExit(f"{results_path} was grown with other parameters; use another --out or --home")
        rows = {r["chunks"]: r for r in previous.get("rows", [])}
        readers = users(cairn, args.shares)
        tuned = tune_for_bulk_load(cairn, args.max_wal_size)
        for target in sorted(args.sizes):
            if stored_chunks(cairn) > target:
                print(f"- {target}: the index already holds more; skipped", file=sys.stderr)
                continue
            print(f"- growing to {target} chunks", file=sys.stderr)
            growth = grow(cairn, synth, target, deadline, args.batch_docs)
            row = measure(cairn, seed, args, readers) | growth | {"server_config": tuned or "as configured"}
            rows[row["chunks"]] = row
            ordered = [rows[k] for k in sorted(rows)]
            results_path.write_text(json.dumps({"meta": meta, "rows": ordered}, indent=2), encoding="utf-8")
            if not growth["reached_target"]:
                print(f"- stopped at {row['chunks']} chunks: --max-minutes reached", file=sys.stderr)
                break
        ordered = [rows[k] for k in sorted(rows)]
    finally:
        cairn.close()
    table = markdown(ordered, meta)
    (args.out / "scale.md").write_text(table + "\n", encoding="utf-8")
    plot(ordered, meta["readers"], args.out / "scale.png")
    print(table)
    print(f"\nwritten: {args.out / 'scale.md'}, {args.out / 'scale.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
