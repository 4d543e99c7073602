"""End-to-end QA benchmark on the SciFact-derived set: refusals, citations and the grounding check.

    python bench/qa.py --home /tmp/qa-bench-home                    # extractive answerer, all cases
    python bench/qa.py --home /tmp/qa-bench-home --local-llm 20     # and the local Qwen model on 20 cases

The set is derived from SciFact (claims as yes/no questions; held-out abstracts make a claim
unanswerable), see docs/grounding.md. It is indexed with the real ONNX embedder into the knowledge
base ``qa-scifact`` of ``--home`` (kept between runs: unchanged abstracts are not re-embedded).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from cairn.answer.citations import MARKER, split_sentences
from cairn.answer.grounding import HeuristicGroundingChecker, SentenceCheck
from cairn.assistant import Cairn
from cairn.eval.qa import QACase, QAReport, build_scifact_qa, given_passages, run_qa, sync_documents
from cairn.models.base import create_generator
from cairn.settings import get_settings
from cairn.types import Answer, ChatMessage

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"
LOCAL = "local:qwen2.5-1.5b-instruct"
COLUMNS = (
    ("correct refusal", "correct_refusal_rate"),
    ("false refusal", "false_refusal_rate"),
    ("citation precision", "citation_precision"),
    ("support recall", "support_recall"),
    ("claims", "claims"),
    ("unsupported (checker)", "unsupported_claim_rate"),
    ("citing no gold abstract", "gold_unsupported_claim_rate"),
)


def _fmt(value: object) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def table(label: str, report: QAReport) -> None:
    before = report.before
    print(f"\n### {label}: {before.cases} cases ({before.answerable} answerable, {before.unanswerable} unanswerable)\n")
    print("| policy | " + " | ".join(name for name, _ in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for policy, metrics in report.by_policy().items():
        print(f"| {policy} | " + " | ".join(_fmt(getattr(metrics, key)) for _, key in COLUMNS) + " |")
    lat = report.latency()
    print(
        f"\nlatency: ask p50 {lat.get('ask_p50_ms', 0):.0f} ms / p95 {lat.get('ask_p95_ms', 0):.0f} ms;"
        f" check p50 {lat.get('check_p50_ms', 0):.0f} ms / p95 {lat.get('check_p95_ms', 0):.0f} ms"
    )
    print("\n| min_relevance (gate alone) | correct refusal | false refusal |\n|---|---|---|")
    for g in report.gate_sweep():
        print(f"| {g['min_relevance']} | {_fmt(g['correct_refusal_rate'])} | {_fmt(g['false_refusal_rate'])} |")


AUX = re.compile(r"\b(is|are|was|were|can|could|does|do|did|has|have|had|may|might|will|would|should|must)\b")
NEGATED = re.compile(r"\b(?:not|never)\s+|\bno\s+", re.IGNORECASE)
NUMBER = re.compile(r"(?<![\[\d.])\d+(?:\.\d+)?(?![\]\d])")


def flip_negation(sentence: str) -> str | None:
    """Remove the first negation, or add one after the first auxiliary verb."""
    if NEGATED.search(sentence):
        return NEGATED.sub("", sentence, count=1)
    match = AUX.search(sentence)
    return None if match is None else f"{sentence[: match.end()]} not{sentence[match.end() :]}"


def change_number(sentence: str) -> str | None:
    match = NUMBER.search(sentence)
    if match is None:
        return None
    value = match[0]
    changed = f"{float(value) + 1.5:g}" if "." in value else str(int(value) * 2 + 3)
    return f"{sentence[: match.start()]}{changed}{sentence[match.end() :]}"


def nearest_foreign_sentence(cairn: Cairn, sentence: SentenceCheck, answer: Answer) -> str | None:
    """The sentence of another retrieved document that shares most words with ``sentence``: a same-topic
    claim that the cited passage does not make."""
    cited = {c.source for c in answer.citations if c.id in sentence.cited}
    terms = set(cairn.analyzer.terms(MARKER.sub("", sentence.text)))
    best, best_overlap = None, -1
    for hit in answer.searched:
        if hit.source in cited:
            continue
        for start, end in split_sentences(" ".join(hit.text.split())):
            candidate = " ".join(hit.text.split())[start:end]
            if len(candidate.split()) < 8:
                continue
            overlap = len(terms & set(cairn.analyzer.terms(candidate)))
            if overlap > best_overlap:
                best, best_overlap = candidate, overlap
    if best is None:
        return None
    marker = "".join(f"[{i}]" for i in sentence.cited)
    return best.rstrip(" .") + f" {marker}."


def perturbation_table(home: Path, report: QAReport, show_misses: int = 0) -> None:
    """How often the checker flags answer sentences corrupted on purpose, and how often it flags the originals.

    The originals are the extractive answers' sentences (copied from the passages they cite); each
    is corrupted four ways and checked against the same passages.
    """
    cairn = Cairn(get_settings(home=home, generator="extractive:"))
    checkers = {
        "embedding": HeuristicGroundingChecker(cairn.analyzer, cairn.embedder),
        "lexical": HeuristicGroundingChecker(cairn.analyzer),
    }
    items = []
    answered = [r for r in report.results if not r.answer.refused]
    for k, result in enumerate(answered):
        passages = given_passages(cairn, result.answer)
        other = answered[(k + len(answered) // 2) % len(answered)].report.sentences
        for sentence in result.report.sentences:
            marker = "".join(f"[{i}]" for i in sentence.cited)
            off_topic = MARKER.sub("", other[0].text).rstrip(" .") + f" {marker}." if other else None
            variants = {
                "original (faithful)": sentence.text,
                "number changed": change_number(sentence.text),
                "negation flipped": flip_negation(sentence.text),
                "same-topic sentence of another document": nearest_foreign_sentence(cairn, sentence, result.answer),
                "off-topic sentence": off_topic,
            }
            items.append((variants, passages, result.answer.citations))
    counts: dict[str, dict[str, list[int]]] = {}
    misses: dict[str, list[str]] = {}
    for variants, passages, citations in items:
        for label, text in variants.items():
            if text is None:
                continue
            for name, checker in checkers.items():
                verdict = checker.check(text, passages, citations)
                flagged = verdict.verdict != "grounded"
                counts.setdefault(label, {}).setdefault(name, []).append(int(flagged))
                wrong = flagged if label.startswith("original") else not flagged
                if wrong and name == "embedding":
                    misses.setdefault(label, []).append(text)
    cairn.close()
    print("\n### grounding check on corrupted extractive sentences\n")
    print("| sentences | n | flagged (with embeddings, default) | flagged (lexical only) |\n|---|---|---|---|")
    for label, by in counts.items():
        n = len(by["embedding"])
        print(f"| {label} | {n} | {sum(by['embedding']) / n:.3f} | {sum(by['lexical']) / n:.3f} |")
    for label, texts in misses.items():
        for text in texts[:show_misses]:
            print(f"- wrong on {label}: {text}", file=sys.stderr)


PARAPHRASE = (
    "Paraphrase the sentence the user gives: use other words and another word order, but keep every fact, "
    "number and negation, and add nothing. Reply with the new sentence only."
)


def paraphrase_table(home: Path, report: QAReport, n: int, show_misses: int = 0) -> None:
    """False flags on faithful paraphrases: the local model rewrites extractive sentences, the checker judges them.

    A small model's paraphrase is not always faithful, so the flagged ones are printed for reading.
    """
    cairn = Cairn(get_settings(home=home, generator=LOCAL))
    generator = create_generator(LOCAL, settings=cairn.settings)
    checkers = {
        "embedding": HeuristicGroundingChecker(cairn.analyzer, cairn.embedder),
        "lexical": HeuristicGroundingChecker(cairn.analyzer),
    }
    pool = [
        (r, s)
        for r in report.results
        if not r.answer.refused
        for s in r.report.sentences
        if 8 <= len(s.text.split()) <= 40 and "\\n" not in s.text
    ][:n]
    flagged: dict[str, list[int]] = {name: [] for name in checkers}
    shown = 0
    for result, sentence in pool:
        messages = [ChatMessage("system", PARAPHRASE), ChatMessage("user", MARKER.sub("", sentence.text).strip())]
        reply = generator.generate(messages, max_tokens=120).text.strip().splitlines()[0].strip('" ')
        text = reply.rstrip(" .") + " " + "".join(f"[{i}]" for i in sentence.cited) + "."
        passages = given_passages(cairn, result.answer)
        verdicts = {name: c.check(text, passages, result.answer.citations) for name, c in checkers.items()}
        for name, verdict in verdicts.items():
            flagged[name].append(int(verdict.verdict != "grounded"))
        if verdicts["embedding"].verdict != "grounded" and shown < show_misses:
            shown += 1
            why = verdicts["embedding"].sentences[0].reason
            print(f"- flagged paraphrase ({why}):\n    {sentence.text}\n    {text}", file=sys.stderr)
    cairn.close()
    total = len(pool)
    print(f"\n### grounding check on {total} paraphrases of extractive sentences by {LOCAL}\n")
    print("| checker | flagged |\n|---|---|")
    for name, values in flagged.items():
        print(f"| {name} | {sum(values) / max(1, total):.3f} |")


def run(home: Path, generator: str, cases: list[QACase], policy: str, min_supported: float) -> QAReport:
    cairn = Cairn(get_settings(home=home, generator=generator, grounding_policy="off"))
    t = time.perf_counter()
    report = run_qa(
        cairn,
        cases,
        "qa-scifact",
        grounding=policy,  # type: ignore[arg-type]
        min_supported=min_supported,
        name="scifact-derived",
        progress=lambda n: print(f"\r  {generator}: {n}/{len(cases)}", end="", file=sys.stderr),
    )
    print(f"\r  {generator}: {len(cases)} cases in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    cairn.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=SCIFACT)
    parser.add_argument("--home", type=Path, default=ROOT / "build" / "qa-bench-home")
    parser.add_argument("--answerable", type=int, default=60)
    parser.add_argument("--unanswerable", type=int, default=60)
    parser.add_argument("--distractors", type=int, default=400)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--policy", default="remove", help="the policy reported as 'after'")
    parser.add_argument("--min-supported", type=float, default=0.5)
    parser.add_argument("--local-llm", type=int, default=0, metavar="N", help="also run the local model on N cases")
    parser.add_argument("--skip-extractive", action="store_true")
    parser.add_argument("--skip-perturb", action="store_true", help="skip the corrupted-sentence check")
    parser.add_argument("--paraphrases", type=int, default=0, metavar="N", help="check N local-model paraphrases")
    parser.add_argument("--show-misses", type=int, default=0, metavar="N", help="print N checker errors per kind")
    parser.add_argument("--json", type=Path, default=None, help="write the reports (with every case) here")
    args = parser.parse_args()

    if not (args.dataset / "corpus.jsonl").is_file():
        sys.exit(f"{args.dataset} is not a BEIR folder (corpus.jsonl missing)")
    documents, cases = build_scifact_qa(args.dataset, args.answerable, args.unanswerable, args.distractors, args.seed)
    cairn = Cairn(get_settings(home=args.home, generator="extractive:"))
    t = time.perf_counter()
    synced = sync_documents(cairn, "qa-scifact", documents)
    cairn.close()
    print(f"- indexed {synced} in {time.perf_counter() - t:.0f} s", file=sys.stderr)

    reports: dict[str, QAReport] = {}
    if not args.skip_extractive:
        reports["extractive"] = run(args.home, "extractive:", cases, args.policy, args.min_supported)
    if args.local_llm:
        reports["local"] = run(args.home, LOCAL, cases[: args.local_llm], args.policy, args.min_supported)
    print(
        f"SciFact-derived QA: {len(documents)} abstracts indexed ({args.answerable} answerable claims,"
        f" {args.unanswerable} held out, {args.distractors} distractors, seed {args.seed})"
    )
    for label, report in reports.items():
        table(f"{label} ({report.generator})", report)
    if "extractive" in reports and not args.skip_perturb:
        perturbation_table(args.home, reports["extractive"], args.show_misses)
    if "extractive" in reports and args.paraphrases:
        paraphrase_table(args.home, reports["extractive"], args.paraphrases, args.show_misses)
    if args.json:
        args.json.write_text(json.dumps({k: r.to_json(cases=True) for k, r in reports.items()}, indent=2))


if __name__ == "__main__":
    main()
