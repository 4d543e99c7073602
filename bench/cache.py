"""The answer cache on the sample corpus: hit rate (exact, semantic), false semantic hits, latency saved.

    python bench/cache.py                                    # extractive answerer, packaged ONNX embedder
    python bench/cache.py --thresholds 0.9 0.95 --json       # fewer passes, JSON figures too
    python bench/cache.py --generator local:qwen2.5-1.5b-instruct --limit 30   # with the local LLM

The corpus is the sample corpus (``scripts/build_samples.py``, as ``make run``), readable by group
``everyone``; two users of that group, ann and ben, ask in turn, so their entries are shared.

The stream: the 10 questions of samples/questions.txt asked 3 times each; 31 paraphrases of them
(written by hand for this benchmark, each labelled with the intent of the question it rephrases); and
10 "near misses", also hand-written, that share most words with a sample question but ask something
else (domestic instead of international hotels, SEV2 instead of SEV1, a phone instead of a laptop),
each asked twice. Shuffled with a fixed seed. A semantic hit is *false* when the cached question it
was served from has another intent label.

Per pass: the stream without the cache (the answer engine every time), then with the cache for each
semantic threshold (emptied in between), reporting exact and semantic hits, false semantic hits,
paraphrase recall (paraphrases served from an entry of their intent, of those asked after such an
entry existed) and p50 latency: without the cache, with it (all requests), of hits and of misses
(lookup + answer + store). The cosines of every paraphrase and near miss to the nearest sample
question are printed too, to see where a threshold separates them.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cairn.answer import prompts
from cairn.answer.cache import AnswerCache, config_key, normalise_question
from cairn.assistant import Cairn
from cairn.settings import get_settings
from cairn.types import SYSTEM, Principal

ROOT = Path(__file__).resolve().parents[1]
KB = "handbook"

# intent -> paraphrases (hand-written); the intents are the sample questions, in file order.
PARAPHRASES: dict[int, list[str]] = {
    0: [
        "When is the AI ethics training due?",
        "By when do I have to finish the AI ethics training?",
        "what's the deadline for ai ethics training",
        "AI ethics training deadline?",
    ],
    1: [
        "How should I report a suspicious email?",
        "Where do I report suspicious emails?",
        "How can I report a phishing email?",
    ],
    2: [
        "When does the GenAI analytics dashboard launch?",
        "What is the release date of the new GenAI-powered analytics dashboard?",
        "When will the new analytics dashboard be released?",
    ],
    3: [
        "What does the corporate travel policy say?",
        "Explain the corporate travel policy.",
        "Can you describe the company travel policy?",
    ],
    4: [
        "What are the remote work guidelines?",
        "What are the new guidelines for remote work?",
        "What is the new remote working policy?",
    ],
    5: [
        "What's the capital city of France?",
        "Which city is the capital of France?",
    ],
    6: [
        "What is the hotel limit per night for international business trips?",
        "How much can I spend per night on a hotel when travelling internationally?",
        "What is the nightly hotel cap for international business travel?",
    ],
    7: [
        "What do I do if my company laptop is stolen?",
        "My work laptop was lost, what should I do?",
        "What should I do if I lose my company laptop?",
    ],
    8: [
        "Who should I contact if my badge doesn't work in my first week?",
        "My badge is not working during my first week, who do I call?",
    ],
    9: [
        "How fast does the on-call engineer have to acknowledge a SEV1 page?",
        "Within how many minutes must a SEV1 page be acknowledged?",
        "What is the acknowledgement time for a SEV1 page?",
    ],
}
# hand-written questions close in wording to a sample question that ask something else
NEAR_MISSES: dict[str, str] = {
    "hotel-domestic": "What is the nightly hotel limit for domestic business travel?",
    "sev2-ack": "How quickly must the on-call engineer acknowledge a SEV2 page?",
    "capital-germany": "What is the capital of Germany?",
    "laptop-first-week": "Who do I contact if my laptop does not work during my first week?",
    "badge-lost": "Who do I contact if my badge is lost?",
    "codegen-beta": "When is the new CodeGen assistant beta launching?",
    "pir-deadline": "What is the deadline for the post-incident review draft?",
    "phone-lost": "What should I do if my company phone is lost or stolen?",
    "expense-policy": "Tell me about the corporate expense policy.",
    "sev1-updates": "How often must stakeholders be updated during a SEV1?",
}


@dataclass(frozen=True)
class Request:
    question: str
    intent: str
    kind: str  # original | paraphrase | near-miss


def stream(seed: int) -> list[Request]:
    originals = [q.strip() for q in (ROOT / "samples" / "questions.txt").read_text().splitlines() if q.strip()]
    requests = [Request(q, f"q{i}", "original") for i, q in enumerate(originals) for _ in range(3)]
    requests += [Request(p, f"q{i}", "paraphrase") for i, ps in PARAPHRASES.items() for p in ps]
    requests += [Request(q, label, "near-miss") for label, q in NEAR_MISSES.items() for _ in range(2)]
    random.Random(seed).shuffle(requests)
    return requests


def setup(args: argparse.Namespace) -> tuple[Cairn, list[Principal]]:
    samples = ROOT / "build" / "samples"
    if not samples.exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "build_samples.py"), str(samples)], check=True)
    overrides: dict[str, Any] = {"home": args.home, "generator": args.generator}
    if args.embedder:
        overrides["embedder"] = args.embedder
    cairn = Cairn(get_settings(**overrides))
    report = cairn.ingestor.sync_folder(samples, KB, readers=("group:everyone",))
    print(f"corpus: {len(cairn.store.list_documents(SYSTEM, KB))} documents ({report.count('added')} added)")
    users = []
    for name in ("ann", "ben"):
        if name not in {u.name for u in cairn.principals.list_users()}:
            cairn.principals.add_user(name)
        users.append(cairn.principals.resolve(name))
    return cairn, users


def pct(values: list[float], p: float = 0.5) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)


def run_pass(
    cairn: Cairn, users: list[Principal], requests: list[Request], cache: AnswerCache | None, key: str
) -> dict[str, Any]:
    by_question = {normalise_question(r.question): r.intent for r in requests}
    seen_intents: set[str] = set()
    rows: list[dict[str, Any]] = []
    for n, request in enumerate(requests):
        principal = users[n % len(users)]
        started = time.perf_counter()
        kind, served_from = "miss", None
        probe = cache.lookup(principal, request.question, [KB], key) if cache else None
        if probe is not None and probe.answer is not None:
            kind = probe.kind
            entry = probe.answer.trace["cache"]["entry"]
            with cairn.db.connection(SYSTEM) as conn:
                row = conn.execute("SELECT question FROM answer_cache WHERE id = %s", (entry,)).fetchone()
            served_from = by_question.get(str(row[0])) if row else None
        else:
            answer = cairn.engine.ask(request.question, [KB], principal=principal)
            if cache is not None and probe is not None:
                cache.store(probe, answer)
        ms = (time.perf_counter() - started) * 1000.0
        rows.append(
            {
                "kind": kind,
                "ms": ms,
                "request": request,
                "false": kind == "semantic" and served_from != request.intent,
                "had_entry": request.intent in seen_intents,
            }
        )
        seen_intents.add(request.intent)
    paraphrases = [r for r in rows if r["request"].kind == "paraphrase" and r["had_entry"]]
    hits = [r for r in rows if r["kind"] != "miss"]
    return {
        "requests": len(rows),
        "exact_hits": sum(r["kind"] == "exact" for r in rows),
        "semantic_hits": sum(r["kind"] == "semantic" for r in rows),
        "false_semantic_hits": sum(r["false"] for r in rows),
        "false_examples": [r["request"].question for r in rows if r["false"]][:5],
        "hit_rate": round(len(hits) / len(rows), 3),
        "paraphrase_recall": f"{sum(r['kind'] != 'miss' for r in paraphrases)}/{len(paraphrases)}",
        "p50_ms": pct([r["ms"] for r in rows]),
        "p50_hit_ms": pct([r["ms"] for r in hits]),
        "p50_miss_ms": pct([r["ms"] for r in rows if r["kind"] == "miss"]),
        "mean_ms": round(statistics.fmean(r["ms"] for r in rows), 1),
        "stats": cache.stats() if cache else None,
    }


def similarities(cairn: Cairn) -> list[tuple[str, str, float]]:
    """Cosine of each paraphrase and near miss to its nearest sample question (normalised forms)."""
    originals = [q.strip() for q in (ROOT / "samples" / "questions.txt").read_text().splitlines() if q.strip()]
    base = np.stack([cairn.embedder.embed_query(normalise_question(q)) for q in originals])
    out = []
    for kind, texts in (
        ("paraphrase", [p for ps in PARAPHRASES.values() for p in ps]),
        ("near-miss", list(NEAR_MISSES.values())),
    ):
        for text in texts:
            cos = base @ cairn.embedder.embed_query(normalise_question(text))
            out.append((kind, text, float(cos.max())))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=ROOT / "build" / "bench-cache", help="CAIRN_HOME")
    parser.add_argument("--generator", default="extractive:", help="answer generator location")
    parser.add_argument("--embedder", default=None, help="embedder location (default: the settings')")
    parser.add_argument("--thresholds", type=float, nargs="*", default=[0.85, 0.9, 0.93, 0.95, 0.97])
    parser.add_argument("--limit", type=int, default=None, help="only the first N requests of the stream")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()

    cairn, users = setup(args)
    requests = stream(args.seed)[: args.limit]
    key = config_key(cairn._answer_params(cairn.retrieval_config), prompts.TEMPLATE_VERSION)
    cairn.engine.ask("warm up", [KB], principal=users[0])  # load models outside the timings
    counts = {k: sum(r.kind == k for r in requests) for k in ("original", "paraphrase", "near-miss")}
    print(f"stream: {len(requests)} requests {counts}, generator {args.generator}, embedder {cairn.embedder.name}")

    sims = similarities(cairn)
    para = sorted(s for k, _, s in sims if k == "paraphrase")
    near = sorted(s for k, _, s in sims if k == "near-miss")
    print(
        f"cosine to the nearest sample question: paraphrases min {para[0]:.3f} p50 {statistics.median(para):.3f};"
        f" near misses max {near[-1]:.3f} p50 {statistics.median(near):.3f}"
    )

    results: dict[str, Any] = {"no cache": run_pass(cairn, users, requests, None, key)}
    passes: list[tuple[str, float | None]] = [("exact only", None)]
    passes += [(f"semantic {t:.2f}", t) for t in args.thresholds]
    for label, threshold in passes:
        cache = AnswerCache(cairn.db, cairn.embedder, semantic_threshold=threshold)
        cache.purge(everything=True)
        results[label] = run_pass(cairn, users, requests, cache, key)
        cache.purge(everything=True)

    base = results["no cache"]["p50_ms"]
    header = f"{'pass':<16}{'hit rate':>9}{'exact':>7}{'sem.':>6}{'false':>7}{'para.':>8}"
    header += f"{'p50 ms':>9}{'hit p50':>9}{'miss p50':>10}{'mean ms':>9}"
    print("\n" + header)
    for label, r in results.items():
        print(
            f"{label:<16}{r['hit_rate']:>9.3f}{r['exact_hits']:>7}{r['semantic_hits']:>6}"
            f"{r['false_semantic_hits']:>7}{r['paraphrase_recall'] if label != 'no cache' else '-':>8}"
            f"{r['p50_ms']:>9}{r['p50_hit_ms']:>9}{r['p50_miss_ms']:>10}{r['mean_ms']:>9}"
        )
    for label, r in results.items():
        if r["false_examples"]:
            print(f"false semantic hits at {label}: {r['false_examples']}")
    best = results.get("semantic 0.95") or results["exact only"]
    print(
        f"\nlatency p50 without the cache {base} ms; a hit {best['p50_hit_ms']} ms;"
        f" a miss {best['p50_miss_ms']} ms (lookup + answer + store)"
    )
    if args.json:
        print(json.dumps({k: {**v, "stats": v["stats"]} for k, v in results.items()}, indent=2, default=str))
    cairn.close()


if __name__ == "__main__":
    main()
