"""End-to-end question answering evaluation: answers, citations, refusals and grounding.

Retrieval metrics (:mod:`cairn.eval.beir`) say whether the right passage was found; this says what
the user got. Each question is asked through the answer engine, the grounding check runs on the
answer, and every grounding policy is applied to the same answer (the policies are pure functions of
the answer and the check), so one pass of a slow model measures all of them.

QA files are JSON Lines, one case per line::

    {"id": "q1", "question": "...", "answers": ["..."], "support": ["text a cited passage must contain"],
     "support_sources": ["handbook/hr_policy.pdf"], "unanswerable": false, "kb": "handbook"}

Only ``question`` is required. ``answers`` are scored with SQuAD's exact match and token F1;
``support`` strings and ``support_sources`` (a source path, its file name or a glob) decide whether a
citation is correct; ``unanswerable`` cases are correct when refused.

The SciFact-derived set (:func:`build_scifact_qa`) turns claims into yes/no questions: a claim is
answerable when its relevant abstracts are in the knowledge base and unanswerable when they are held
out. It has no gold answers (BEIR's SciFact keeps no SUPPORT/CONTRADICT labels), so it measures
refusals, citations and grounding, not answer accuracy; it is derived, not an independent benchmark.
"""

from __future__ import annotations

import copy
import json
import random
import re
import string
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from cairn.answer import prompts
from cairn.answer.citations import MARKER
from cairn.answer.grounding import (
    POLICIES,
    GroundingChecker,
    GroundingReport,
    Policy,
    SentenceCheck,
    apply_grounding_policy,
    create_grounding_checker,
)
from cairn.answer.relevance import evidence, relevant_hits
from cairn.answer.templates import get_template
from cairn.errors import InputError
from cairn.eval.beir import latency_summary, load_beir
from cairn.types import SYSTEM, Answer, Citation, Hit, ParsedDocument, Principal

if TYPE_CHECKING:
    from cairn.assistant import Cairn
    from cairn.retrieve.hybrid import RetrievalConfig

GATE_THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)


@dataclass(frozen=True, slots=True)
class QACase:
    question: str
    id: str = ""
    answers: tuple[str, ...] = ()
    support: tuple[str, ...] = ()
    support_sources: tuple[str, ...] = ()
    unanswerable: bool = False
    kb: str | None = None

    @property
    def has_support(self) -> bool:
        return bool(self.support or self.support_sources)


def load_qa(path: Path) -> list[QACase]:
    """Read a QA file (JSON Lines, see the module docstring); errors name the line."""
    cases: list[QACase] = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read QA file {path}: {exc.strerror or exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        cases.append(_case(row, f"{path}:{number}", default_id=str(number)))
    if not cases:
        raise InputError(f"{path} holds no QA cases")
    return cases


def _case(row: Any, where: str, default_id: str) -> QACase:
    if not isinstance(row, dict):
        raise InputError(f"{where}: a case must be a JSON object")
    unknown = set(row) - {"id", "question", "answers", "support", "support_sources", "unanswerable", "kb"}
    if unknown:
        raise InputError(f"{where}: unknown fields {sorted(unknown)}")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise InputError(f"{where}: 'question' must be a non-empty string")
    lists: dict[str, tuple[str, ...]] = {}
    for name in ("answers", "support", "support_sources"):
        value = row.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InputError(f"{where}: {name!r} must be a list of strings")
        lists[name] = tuple(v for v in value if v.strip())
    unanswerable = row.get("unanswerable", False)
    kb = row.get("kb")
    if not isinstance(unanswerable, bool) or (kb is not None and not isinstance(kb, str)):
        raise InputError(f"{where}: 'unanswerable' must be true/false and 'kb' a string")
    if unanswerable and any(lists.values()):
        raise InputError(f"{where}: an unanswerable case cannot have answers or support")
    return QACase(
        question=question.strip(),
        id=str(row.get("id", default_id)),
        answers=lists["answers"],
        support=lists["support"],
        support_sources=lists["support_sources"],
        unanswerable=unanswerable,
        kb=kb,
    )


def build_scifact_qa(
    dataset_dir: Path,
    n_answerable: int = 60,
    n_unanswerable: int = 60,
    n_distractors: int = 400,
    seed: int = 13,
    split: str = "test",
) -> tuple[list[tuple[str, ParsedDocument]], list[QACase]]:
    """The documents to index and the cases of a SciFact-derived QA set.

    Claims are drawn at random (``seed``); an unanswerable claim shares no relevant abstract with
    an answerable one, and its abstracts are withheld from the documents. Random other abstracts
    are added as distractors, so that a question never finds only its own abstract. Cases
    alternate answerable / unanswerable, so any prefix (``--limit``) has both kinds.
    """
    dataset = load_beir(dataset_dir, split)
    claims = sorted(dataset.queries, key=lambda q: (len(q), q))
    rng = random.Random(seed)
    rng.shuffle(claims)
    answerable = claims[:n_answerable]
    if len(answerable) < n_answerable:
        raise InputError(f"{dataset.name} has {len(claims)} judged claims, fewer than {n_answerable} answerable")
    in_kb = {d for q in answerable for d, rel in dataset.qrels[q].items() if rel > 0}
    unanswerable: list[str] = []
    withheld: set[str] = set()
    for q in claims[n_answerable:]:
        if len(unanswerable) == n_unanswerable:
            break
        docs = {d for d, rel in dataset.qrels[q].items() if rel > 0}
        if docs and not docs & in_kb:
            unanswerable.append(q)
            withheld |= docs
    if len(unanswerable) < n_unanswerable:
        raise InputError(f"only {len(unanswerable)} claims of {dataset.name} can be held out, not {n_unanswerable}")
    corpus = dict(dataset.corpus())
    missing = in_kb - corpus.keys()
    if missing:
        raise InputError(f"qrels name abstracts missing from the corpus: {sorted(missing)[:5]}")
    others = sorted(corpus.keys() - in_kb - withheld, key=lambda d: (len(d), d))
    distractors = rng.sample(others, min(n_distractors, len(others)))
    documents = [(d, corpus[d]) for d in sorted(in_kb | set(distractors), key=lambda d: (len(d), d))]
    yes = [
        QACase(
            question=_as_question(dataset.queries[q]),
            id=f"scifact-{q}",
            support_sources=tuple(sorted(d for d, rel in dataset.qrels[q].items() if rel > 0)),
        )
        for q in answerable
    ]
    no = [
        QACase(question=_as_question(dataset.queries[q]), id=f"scifact-{q}-heldout", unanswerable=True)
        for q in unanswerable
    ]
    cases = [c for pair in zip(yes, no, strict=False) for c in pair]
    cases += yes[len(no) :] + no[len(yes) :]
    return documents, cases


def _as_question(claim: str) -> str:
    """SciFact claims are statements; an assistant is asked questions."""
    claim = claim.strip().rstrip(".")
    if len(claim) > 1 and claim[0].isupper() and claim[1].islower():
        claim = claim[0].lower() + claim[1:]
    return f"Is it true that {claim}?"


def sync_documents(
    cairn: Cairn,
    kb: str,
    documents: Sequence[tuple[str, ParsedDocument]],
    progress: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Make ``kb`` hold exactly ``documents`` (unchanged ones are not re-embedded)."""
    report = cairn.ingestor.ingest_documents(kb, documents, progress=None if progress is None else lambda _: progress())
    keep = {source for source, _ in documents}
    stale = sorted(set(cairn.store.stored_state(kb)) - keep)
    deleted = cairn.store.delete_documents(kb, stale)
    return {"added": report.count("added") + report.count("updated"), "deleted": deleted, "documents": len(keep)}


# -- scoring ----------------------------------------------------------------------------------------


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation (lower case, no punctuation, no articles, single spaces), markers removed."""
    text = MARKER.sub(" ", text).lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    return max((float(normalize_answer(prediction) == normalize_answer(g)) for g in golds), default=0.0)


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """SQuAD's token F1, the best over the gold answers."""
    return max((_f1(normalize_answer(prediction).split(), normalize_answer(g).split()) for g in golds), default=0.0)


def _f1(pred: list[str], gold: list[str]) -> float:
    if not pred or not gold:
        return float(pred == gold)
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def answer_recall(prediction: str, golds: Sequence[str]) -> float:
    """1 when a gold answer appears in the answer: what EM misses when a model answers in full sentences."""
    norm = f" {normalize_answer(prediction)} "
    return max((float(f" {normalize_answer(g)} " in norm) for g in golds if normalize_answer(g)), default=0.0)


def _squash(text: str) -> str:
    return " ".join(text.lower().split())


def citation_supports(citation: Citation, case: QACase) -> bool:
    """A citation is correct when its passage contains a support string or comes from a support source."""
    text = _squash(citation.text)
    if any(_squash(s) in text for s in case.support):
        return True
    name = PurePath(citation.source).name
    return any(
        citation.source == s or name == s or fnmatchcase(citation.source, s) or citation.source.endswith("/" + s)
        for s in case.support_sources
    )


# -- running ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the user got for one case under one grounding policy."""

    refused: bool
    answer: str
    citations: tuple[Citation, ...]
    claims: tuple[SentenceCheck, ...]


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: QACase
    answer: Answer
    report: GroundingReport
    outcomes: dict[str, Outcome]
    max_evidence: float
    ask_ms: float
    check_ms: float
    context_words: int = 0  # words of the passages put in the prompt (what compression saves)

    def to_json(self, policy: str) -> dict[str, Any]:
        final = self.outcomes[policy]
        return {
            "id": self.case.id,
            "question": self.case.question,
            "unanswerable": self.case.unanswerable,
            "answer": self.answer.answer,
            "engine_refused": self.answer.refused,
            "refused": final.refused,
            "final_answer": final.answer,
            "citations": [
                {"id": c.id, "source": c.source, "supports": citation_supports(c, self.case)} for c in final.citations
            ],
            "grounding": self.report.to_json(),
            "max_evidence": round(self.max_evidence, 4),
            "ask_ms": round(self.ask_ms, 1),
            "check_ms": round(self.check_ms, 1),
        }


def _outcome(answer: Answer, report: GroundingReport, policy: Policy, min_supported: float) -> Outcome:
    final = apply_grounding_policy(answer, report, policy, min_supported)
    if final.refused:
        return Outcome(True, final.answer, (), ())
    # Policies only ever drop unsupported sentences, so the checks of what is left are the report's.
    kept = report.sentences if final.answer == answer.answer else tuple(s for s in report.sentences if s.supported)
    return Outcome(False, final.answer, final.citations, kept)


def given_passages(cairn: Cairn, answer: Answer) -> list[Hit]:
    """The passages the engine put in the prompt: those clearing the relevance gate, within the budget."""
    relevant = relevant_hits(answer.query, answer.searched, cairn.analyzer, cairn.settings.min_relevance)
    _, fitted = prompts.format_passages(relevant, cairn.settings.max_context_chars)
    return relevant[:fitted]


def run_qa(
    cairn: Cairn,
    cases: Iterable[QACase],
    kb: str = "default",
    *,
    grounding: Policy = "remove",
    min_supported: float = 0.5,
    checker: GroundingChecker | None = None,
    principal: Principal = SYSTEM,
    name: str = "qa",
    progress: Callable[[int], None] | None = None,
    config: RetrievalConfig | None = None,
    template: str | None = None,
    tier: str | None = None,
) -> QAReport:
    """Ask every case (in its own ``kb`` or in ``kb``), check the answers, and score every policy.

    ``template`` (a prompt template name or version) and ``tier`` (a model tier) replace the
    defaults, as an experiment's variant does.
    """
    prompt = get_template(template) if template is not None else None
    if checker is None:
        checker = create_grounding_checker("heuristic:", analyzer=cairn.analyzer, embedder=cairn.embedder)
    # The raw answer, before the engine's own check, so that every policy is scored on one generation.
    engine = copy.copy(cairn.engine)
    engine.grounding = None
    results: list[CaseResult] = []
    for n, case in enumerate(cases, start=1):
        started = time.perf_counter()
        answer = engine.ask(
            case.question, [case.kb or kb], principal=principal, config=config, tier=tier, template=prompt
        )
        ask_ms = (time.perf_counter() - started) * 1000.0
        started = time.perf_counter()
        if answer.refused:
            report = GroundingReport.from_sentences([], checker.name)
        else:
            report = checker.check(answer.answer, given_passages(cairn, answer), answer.citations)
        check_ms = (time.perf_counter() - started) * 1000.0
        q_terms = set(cairn.analyzer.terms(answer.query or case.question))
        max_evidence = max((evidence(q_terms, h, cairn.analyzer).score for h in answer.searched), default=0.0)
        outcomes: dict[str, Outcome] = {p: _outcome(answer, report, p, min_supported) for p in POLICIES}
        words = sum(len(h.text.split()) for h in given_passages(cairn, answer))
        results.append(CaseResult(case, answer, report, outcomes, max_evidence, ask_ms, check_ms, words))
        if progress is not None:
            progress(n)
    model = next((r.answer.model for r in results if r.answer.model), cairn.settings.generator)
    return QAReport(
        name=name,
        kb=kb,
        generator=model,
        checker=checker.name,
        policy=grounding,
        min_supported=min_supported,
        min_relevance=cairn.settings.min_relevance,
        results=results,
    )


# -- reporting --------------------------------------------------------------------------------------


def _rate(num: float, den: int) -> float | None:
    return num / den if den else None


@dataclass(frozen=True, slots=True)
class QAMetrics:
    """The figures of one policy; a rate is ``None`` when the set has nothing to compute it on."""

    policy: str
    cases: int
    answerable: int
    unanswerable: int
    correct_refusal_rate: float | None
    false_refusal_rate: float | None
    exact_match: float | None
    f1: float | None
    answer_recall: float | None
    citation_precision: float | None
    citations_scored: int
    support_recall: float | None
    claims: int
    unsupported_claim_rate: float | None
    gold_unsupported_claim_rate: float | None

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in _fields(self).items()}


def _fields(metrics: QAMetrics) -> dict[str, Any]:
    return {name: getattr(metrics, name) for name in QAMetrics.__dataclass_fields__}


def summarise(results: Sequence[CaseResult], policy: str) -> QAMetrics:
    answerable = [r for r in results if not r.case.unanswerable]
    unanswerable = [r for r in results if r.case.unanswerable]
    with_answers = [r for r in answerable if r.case.answers]
    with_support = [r for r in answerable if r.case.has_support]

    def final(r: CaseResult) -> Outcome:
        return r.outcomes[policy]

    def text(r: CaseResult) -> str:
        return "" if final(r).refused else final(r).answer

    scored = [citation_supports(c, r.case) for r in with_support for c in final(r).citations]
    claims = [(r, s) for r in results for s in final(r).claims]
    gold_claims = [(r, s) for r, s in claims if r.case.unanswerable or r.case.has_support]
    return QAMetrics(
        policy=policy,
        cases=len(results),
        answerable=len(answerable),
        unanswerable=len(unanswerable),
        correct_refusal_rate=_rate(sum(final(r).refused for r in unanswerable), len(unanswerable)),
        false_refusal_rate=_rate(sum(final(r).refused for r in answerable), len(answerable)),
        exact_match=_rate(sum(exact_match(text(r), r.case.answers) for r in with_answers), len(with_answers)),
        f1=_rate(sum(token_f1(text(r), r.case.answers) for r in with_answers), len(with_answers)),
        answer_recall=_rate(sum(answer_recall(text(r), r.case.answers) for r in with_answers), len(with_answers)),
        citation_precision=_rate(sum(scored), len(scored)),
        citations_scored=len(scored),
        support_recall=_rate(
            sum(any(citation_supports(c, r.case) for c in final(r).citations) for r in with_support),
            len(with_support),
        ),
        claims=len(claims),
        unsupported_claim_rate=_rate(sum(not s.supported for _, s in claims), len(claims)),
        gold_unsupported_claim_rate=_rate(
            sum(not _gold_supported(r, s) for r, s in gold_claims),
            len(gold_claims),
        ),
    )


def _gold_supported(result: CaseResult, sentence: SentenceCheck) -> bool:
    """Independent of the checker: does the sentence cite a passage the gold support names?"""
    if result.case.unanswerable:
        return False
    by_id = {c.id: c for c in result.answer.citations}
    return any(i in by_id and citation_supports(by_id[i], result.case) for i in sentence.cited)


@dataclass(slots=True)
class QAReport:
    name: str
    kb: str
    generator: str
    checker: str
    policy: str
    min_supported: float
    min_relevance: float
    results: list[CaseResult] = field(default_factory=list)

    @property
    def before(self) -> QAMetrics:
        return summarise(self.results, "off")

    @property
    def after(self) -> QAMetrics:
        return summarise(self.results, self.policy)

    def by_policy(self) -> dict[str, QAMetrics]:
        return {p: summarise(self.results, p) for p in POLICIES if p != "annotate"}

    def latency(self) -> dict[str, float]:
        ask = {f"ask_{k}": v for k, v in latency_summary([r.ask_ms for r in self.results]).items()}
        check = {f"check_{k}": v for k, v in latency_summary([r.check_ms for r in self.results]).items()}
        words = [r.context_words for r in self.results]
        context = {"context_words_mean": sum(words) / len(words)} if words else {}
        return {k: round(v, 1) for k, v in (ask | check | context).items()}

    def gate_sweep(self) -> list[dict[str, float | None]]:
        """Refusal rates if the relevance gate alone decided, at other ``min_relevance`` thresholds.

        Exact for the gate's decision (it compares the best passage's evidence with the threshold);
        what the answerer would then write for a question the gate lets through is not re-run.
        """
        yes = [r.max_evidence for r in self.results if not r.case.unanswerable]
        no = [r.max_evidence for r in self.results if r.case.unanswerable]
        return [
            {
                "min_relevance": t,
                "correct_refusal_rate": _rate(sum(e < t for e in no), len(no)),
                "false_refusal_rate": _rate(sum(e < t for e in yes), len(yes)),
            }
            for t in GATE_THRESHOLDS
        ]

    def to_json(self, *, cases: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dataset": self.name,
            "kb": self.kb,
            "generator": self.generator,
            "checker": self.checker,
            "policy": self.policy,
            "min_supported": self.min_supported,
            "min_relevance": self.min_relevance,
            "before": self.before.to_json(),
            "after": self.after.to_json(),
            "by_policy": {p: m.to_json() for p, m in self.by_policy().items()},
            "latency": self.latency(),
            "gate_sweep": [
                {k: (round(v, 4) if v is not None else None) for k, v in g.items()} for g in self.gate_sweep()
            ],
        }
        if cases:
            out["cases"] = [r.to_json(self.policy) for r in self.results]
        return out


__all__ = [
    "CaseResult",
    "QACase",
    "QAMetrics",
    "QAReport",
    "answer_recall",
    "build_scifact_qa",
    "citation_supports",
    "exact_match",
    "load_qa",
    "normalize_answer",
    "run_qa",
    "summarise",
    "sync_documents",
    "token_f1",
]
