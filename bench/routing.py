"""Knowledge-base routing accuracy on a labelled set; printed as markdown.

    .venv/bin/python bench/routing.py --home /tmp/cairn-routing                  # test split
    .venv/bin/python bench/routing.py --home /tmp/cairn-routing --split dev      # choose parameters here
    .venv/bin/python bench/routing.py --home /tmp/cairn-routing --llm local:qwen2.5-1.5b-instruct --llm-limit 40

Knowledge bases: one per BEIR dataset under ../shared/datasets (SciFact today; a dataset not yet
indexed in ``--home`` is skipped unless ``--ingest-beir``, since embedding a corpus takes a while:
copy an indexed home, e.g. ``cp -a /tmp/ce /tmp/cairn-routing``), plus the project's sample corpus
split by department: hr (HR policy, onboarding guide), it (IT security guidelines, laptop and VPN
manual), engineering (on-call handbook), finance (expense and procurement policy), product
(roadmap). The department descriptions below were written from the documents, as an operator
would, before the questions were scored.

Labelled questions: a BEIR dataset's queries are labelled with its knowledge base (test split:
qrels/test; dev: qrels/train). bench/data/routing_questions.jsonl holds the sample questions
(samples/questions.txt, minus "What is the capital of France?", which no knowledge base answers)
and questions the cairn developers wrote from the sample documents, each labelled with every
knowledge base that holds an answer and put in the dev or test half; its ``needs: all`` questions
ask two things from two knowledge bases and are scored apart (coverage), with and without
question decomposition. The models are the default settings' (the real embedder).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cairn.assistant import Cairn  # noqa: E402
from cairn.eval.beir import kb_name_for, load_beir  # noqa: E402
from cairn.eval.routing import (  # noqa: E402
    RoutingExample,
    RoutingReport,
    confusion_table,
    embed_questions,
    evaluate_routing,
    load_examples,
    markdown_table,
    per_kb_table,
    score_routing,
)
from cairn.index.kb_cards import KbCatalog  # noqa: E402
from cairn.retrieve.base import KbCard, KbRouter  # noqa: E402
from cairn.retrieve.decompose import split_question  # noqa: E402
from cairn.retrieve.router import CentroidRouter, FederatedRouter, LLMRouter  # noqa: E402
from cairn.settings import get_settings  # noqa: E402
from cairn.types import SYSTEM  # noqa: E402

SAMPLES = ROOT / "samples"
QUESTIONS = ROOT / "bench" / "data" / "routing_questions.jsonl"
DATASETS = ROOT.parent / "shared" / "datasets"

DEPARTMENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "hr": (
        ("handbook/hr_policy_2026.pdf", "handbook/onboarding_guide.html"),
        "People Operations: the HR policy for all employees and the onboarding guide for new hires.",
    ),
    "it": (
        ("handbook/it_security_guidelines.txt", "sources/laptop_vpn_user_manual.md"),
        "IT Services: IT security guidelines and the user manual for company laptops and the VPN.",
    ),
    "engineering": (
        ("handbook/engineering_oncall_handbook.md",),
        "Engineering: the on-call handbook of Site Reliability Engineering for production services.",
    ),
    "finance": (
        ("sources/expense_procurement_policy.md",),
        "Finance: the expense and procurement policy.",
    ),
    "product": (
        ("handbook/product_roadmap_q2_2026.txt",),
        "Product management: the product roadmap and upcoming releases.",
    ),
}
BEIR_DESCRIPTIONS = {
    "scifact": "Scientific literature: abstracts of biomedical and life-science research papers.",
}
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
MARGINS = (0.0, 0.02, 0.05)


def ingest_departments(cairn: Cairn, home: Path) -> list[str]:
    corpus = home / "routing-corpus"
    for kb, (files, description) in DEPARTMENTS.items():
        folder = corpus / kb
        folder.mkdir(parents=True, exist_ok=True)
        for rel in files:
            shutil.copy2(SAMPLES / rel, folder / Path(rel).name)
        cairn.store.ensure_kb(kb, description)
        report = cairn.ingestor.sync_folder(folder, kb)
        if not report.ok:
            raise SystemExit(f"ingesting {kb} failed: {report.to_json()}")
        set_description(cairn, kb, description)
    return list(DEPARTMENTS)


def set_description(cairn: Cairn, kb: str, description: str) -> None:
    # ensure_kb keeps an existing description; the benchmark's own knowledge bases get the one above.
    with cairn.db.connection(SYSTEM) as conn:
        conn.execute("UPDATE knowledge_bases SET description = %s WHERE name = %s", (description, kb))


def beir_sets(
    cairn: Cairn, datasets: Path, split: str, *, ingest: bool, limit: int | None
) -> tuple[list[str], list[RoutingExample]]:
    """One knowledge base per BEIR dataset found, and its queries labelled with it."""
    existing = {kb["name"] for kb in cairn.store.list_kbs(SYSTEM)}
    kbs: list[str] = []
    examples: list[RoutingExample] = []
    folders = sorted(p for p in datasets.iterdir() if (p / "corpus.jsonl").is_file()) if datasets.is_dir() else []
    for folder in folders:
        qrels_split = "train" if split == "dev" else "test"
        if not (folder / "qrels" / f"{qrels_split}.tsv").is_file():
            qrels_split = "test"
        dataset = load_beir(folder, qrels_split)
        kb = kb_name_for(dataset)
        if kb not in existing:
            if not ingest:
                print(f"> {folder.name}: knowledge base {kb} is not indexed in this home; skipped (--ingest-beir)")
                continue
            cairn.ingestor.ingest_documents(kb, dataset.corpus())
        set_description(cairn, kb, BEIR_DESCRIPTIONS.get(folder.name, f"The {folder.name} collection."))
        kbs.append(kb)
        queries = sorted(dataset.queries.items())[: limit or None]
        examples += [RoutingExample(text, (kb,), f"{kb}/{qrels_split}", split) for _, text in queries]
    return kbs, examples


def stratified(examples: Sequence[RoutingExample], limit: int) -> list[RoutingExample]:
    """About ``limit`` examples, the same number per gold knowledge base (deterministic)."""
    groups: dict[str, list[RoutingExample]] = {}
    for e in examples:
        groups.setdefault(e.kbs[0], []).append(e)
    per = max(1, limit // max(1, len(groups)))
    return [e for kb in sorted(groups) for e in groups[kb][:per]]


def compound_table(
    cairn: Cairn, router: CentroidRouter, examples: Sequence[RoutingExample], cards: Sequence[KbCard]
) -> str:
    """Coverage of two-KB questions: the whole question routed once vs each heuristic sub-question routed."""
    whole, parts_routed, splits = [], [], 0
    for e in examples:
        qvec = cairn.embedder.embed_query(e.question)
        whole.append(router.route(e.question, qvec, cards))
        parts = split_question(e.question)
        splits += len(parts) > 1
        names: list[str] = []
        for part in [e.question, *parts] if len(parts) > 1 else [e.question]:
            for name in router.route(part, cairn.embedder.embed_query(part), cards):
                if name not in names:
                    names.append(name)
        parts_routed.append(names)
    a = score_routing(examples, whole, name="whole question")
    b = score_routing(examples, parts_routed, name="decomposed (heuristic), each part routed")
    lines = [
        f"Compound questions (each needs two KBs): {len(examples)}, split by the heuristic decomposer: {splits}",
        "",
        "| routing | covered (both KBs routed) | top-1 in gold | mean KBs searched |",
        "|---|---:|---:|---:|",
    ]
    for r in (a, b):
        lines.append(f"| {r.router} | {r.covered:.3f} | {r.top1:.3f} | {r.mean_kbs:.2f} |")
    return "\n".join(lines)


def compound_retrieval_table(cairn: Cairn, examples: Sequence[RoutingExample], kbs: Sequence[str]) -> str:
    """Hybrid search over ``kbs`` (top 5): do the hits come from both knowledge bases a compound question needs?"""
    base = cairn.retrieval_config.with_(top_k=5)
    configs = {"whole question": base}
    if "decompose" in getattr(type(base), "__dataclass_fields__", {}):
        configs["decompose=heuristic: (sub-questions interleaved)"] = base.with_(decompose="heuristic:")
    lines = ["| retrieval (top 5) | both KBs among the hits |", "|---|---:|"]
    for label, config in configs.items():
        both = 0
        for e in examples:
            hits = cairn.retriever.search(e.question, list(kbs), config, principal=SYSTEM).hits
            both += set(e.kbs) <= {h.kb for h in hits}
        lines.append(f"| {label} | {both}/{len(examples)} |")
    return "\n".join(lines)


def decomposition_table(datasets: Path, department: Sequence[RoutingExample]) -> str:
    """How often the heuristic decomposer splits questions that should stay whole (false splits)."""
    rows = []
    folders = sorted(p for p in datasets.iterdir() if (p / "queries.jsonl").is_file()) if datasets.is_dir() else []
    for folder in folders:
        texts = [json.loads(line)["text"] for line in (folder / "queries.jsonl").open(encoding="utf-8") if line.strip()]
        rows.append((f"{folder.name} queries (claims)", texts))
    rows.append(("department questions (single-intent)", [e.question for e in department if e.needs == "any"]))
    lines = ["| questions | n | split by the heuristic | mean µs per question |", "|---|---:|---:|---:|"]
    for label, texts in rows:
        start = time.perf_counter()
        n_split = sum(len(split_question(t)) > 1 for t in texts)
        per = (time.perf_counter() - start) / max(1, len(texts)) * 1e6
        lines.append(f"| {label} | {len(texts)} | {n_split} | {per:.0f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True, help="CAIRN_HOME to use (a copy you own, under /tmp).")
    parser.add_argument("--datasets", type=Path, default=DATASETS, help="Folder of BEIR datasets.")
    parser.add_argument("--questions", type=Path, default=QUESTIONS, help="Labelled department questions (JSONL).")
    parser.add_argument("--split", choices=("dev", "test"), default="test", help="Which half to score.")
    parser.add_argument("--beir-limit", type=int, default=None, help="At most N queries per BEIR dataset.")
    parser.add_argument("--ingest-beir", action="store_true", help="Index BEIR corpora missing from --home.")
    parser.add_argument("--margin", type=float, default=0.05, help="Margin of the centroid routers in the main table.")
    parser.add_argument("--weight", type=float, default=0.25, help="Description weight of 'centroid+description'.")
    parser.add_argument("--max-kbs", type=int, default=3, help="max_kbs of the centroid routers.")
    parser.add_argument("--centroids", type=int, default=16, help="Centroids per knowledge base (k-means).")
    parser.add_argument("--llm", default=None, help="Generator location for the llm router (omitted: not run).")
    parser.add_argument("--llm-limit", type=int, default=40, help="Stratified subset size for the llm router.")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    cairn = Cairn(get_settings(home=args.home))
    dept_kbs = ingest_departments(cairn, args.home)
    beir_kbs, beir_examples = beir_sets(
        cairn, args.datasets, args.split, ingest=args.ingest_beir, limit=args.beir_limit
    )
    kbs = dept_kbs + beir_kbs
    labelled = [e for e in load_examples(args.questions) if e.split == args.split]
    single = [e for e in labelled if e.needs == "any"]
    compound = [e for e in labelled if e.needs == "all"]
    examples = single + beir_examples
    catalog = KbCatalog(cairn.db, k=args.centroids)
    start = time.perf_counter()
    cards = catalog.cards(SYSTEM, kbs)
    cold_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    catalog.cards(SYSTEM, kbs)
    warm_ms = (time.perf_counter() - start) * 1000
    mean_cards = KbCatalog(cairn.db, k=1).cards(SYSTEM, kbs)
    no_desc = [replace(c, description="") for c in cards]
    vectors = embed_questions(cairn.embedder, examples)

    print(f"## Knowledge-base routing ({args.split} split)\n")
    print(f"Knowledge bases: {', '.join(f'{c.name} ({c.chunks} chunks)' for c in cards)}")
    print(
        f"Questions: {len(single)} department ({len(compound)} compound apart), "
        f"{len(beir_examples)} BEIR; embedder {cairn.embedder.name}"
    )
    print(f"kb_cards with k={args.centroids}: {cold_ms:.0f} ms cold (centroids computed), {warm_ms:.1f} ms cached\n")

    m, k, w, c = args.margin, args.max_kbs, args.weight, args.centroids
    reports: dict[str, RoutingReport] = {}
    routers: list[tuple[str, KbRouter, list[KbCard]]] = [
        (f"mean centroid (margin {m:g})", CentroidRouter(None, description=0.0, margin=m, max_kbs=k), mean_cards),
        (
            f"mean centroid+description (w {w:g}, margin {m:g})",
            CentroidRouter(cairn.embedder, description=w, margin=m, max_kbs=k),
            mean_cards,
        ),
        (f"{c} centroids (margin {m:g})", CentroidRouter(None, description=0.0, margin=m, max_kbs=k), cards),
        (
            f"{c} centroids+description (w {w:g}, margin {m:g})",
            CentroidRouter(cairn.embedder, description=w, margin=m, max_kbs=k),
            cards,
        ),
        (
            f"{c} centroids+name, no descriptions (w {w:g}, margin {m:g})",
            CentroidRouter(cairn.embedder, description=w, margin=m, max_kbs=k),
            no_desc,
        ),
        ("description only (margin 0)", CentroidRouter(cairn.embedder, description=1.0, margin=0.0), cards),
        ("all (federate)", FederatedRouter(), cards),
    ]
    for label, router, use_cards in routers:
        reports[label] = evaluate_routing(router, examples, use_cards, vectors, name=label)
    print(markdown_table(reports))
    print("\n(top-1 / any-correct per gold KB)\n")
    print(per_kb_table({k2: v for k2, v in reports.items() if not k2.startswith("all")}))

    if args.llm:
        from cairn.models.base import create_generator

        generator = create_generator(args.llm, settings=cairn.settings)
        subset = stratified(examples, args.llm_limit)
        sub_vectors = embed_questions(cairn.embedder, subset)
        fallback = CentroidRouter(cairn.embedder, description=w, margin=m, max_kbs=k)
        llm = LLMRouter(generator, fallback, max_kbs=2)
        generator.warm_up()
        sub: dict[str, RoutingReport] = {}
        sub[f"llm ({generator.name})"] = evaluate_routing(llm, subset, cards, sub_vectors, name="llm")
        sub[f"{c} centroids+description (w {w:g}, margin {m:g})"] = evaluate_routing(
            fallback, subset, cards, sub_vectors
        )
        sub[f"mean centroid (margin {m:g})"] = evaluate_routing(
            CentroidRouter(None, description=0.0, margin=m, max_kbs=k), subset, mean_cards, sub_vectors
        )
        print(f"\n### LLM router on a stratified subset ({len(subset)} questions; {llm.fallbacks} fell back)\n")
        print(markdown_table(sub))

    if args.split == "dev":
        sweep: dict[str, RoutingReport] = {}
        for n_centroids in (1, 4, 16, 32):
            sweep_cards = cards if n_centroids == c else KbCatalog(cairn.db, k=n_centroids).cards(SYSTEM, kbs)
            for weight in WEIGHTS:
                for margin in MARGINS:
                    r = CentroidRouter(cairn.embedder, description=weight, margin=margin, max_kbs=k)
                    label = f"k {n_centroids}, w {weight:g}, margin {margin:g}"
                    sweep[label] = evaluate_routing(r, examples, sweep_cards, vectors)
        print("\n### Sweep of the centroid router (dev)\n")
        print(markdown_table(sweep))

    best_label = f"{c} centroids+description (w {w:g}, margin {m:g})"
    print(f"\n### Confusion, {best_label} (rows gold, columns top-1)\n")
    print(confusion_table(reports[best_label]))
    misses = reports[best_label].misses
    if misses:
        print("\nSome top-1 misses:\n")
        for question, gold, routed in misses[:12]:
            print(f"- {question!r}: gold {', '.join(gold)}; routed {', '.join(routed)}")
    if compound:
        print("\n### Compound questions\n")
        print(
            compound_table(cairn, CentroidRouter(cairn.embedder, description=w, margin=m, max_kbs=k), compound, cards)
        )
        print()
        print(compound_retrieval_table(cairn, compound, dept_kbs))
    print("\n### Heuristic decomposer: splits of questions that should stay whole\n")
    print(decomposition_table(args.datasets, single))
    cairn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
