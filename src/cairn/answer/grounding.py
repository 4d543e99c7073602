"""Self-correction after generation: is each sentence of the answer stated by the passages it cites?

Retrieval and the refusal gate decide *whether* to answer; they cannot see what the model then
writes. A small local model copies most of its answer from the passages but sometimes adds a
number, flips a negation or appends general knowledge, and those sentences still get a marker.
The check runs per sentence against the passages that sentence cites, because a claim supported
only by some other passage is a wrong citation, not a grounded claim.

No packaged NLI or cross-encoder model can be installed offline here, so the default checker is
heuristic, built from signals whose failures are easy to explain:

- content-word coverage: the share of the sentence's stemmed content words found in its passages;
- exact facts: every number (dates, amounts, percentages; digits or number words) must occur there;
- negation: a "not/no/never" in the sentence must be matched by a negated clause about the same
  words in a passage, and a negated passage clause must not be restated without its negation;
- meaning (when an embedder is given): the best cosine between the sentence and a passage sentence,
  which lets a paraphrase with lower word coverage pass.

Checkers are chosen by location string (``heuristic:``) from :data:`GROUNDING_CHECKERS`, so an NLI
model or an LLM judge plugs in without touching the engine.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import parse_qs

import numpy as np
import numpy.typing as npt

from cairn.answer import prompts
from cairn.answer.citations import MARKER, clean_markers, split_sentences
from cairn.errors import ConfigError
from cairn.index.analyzer import Analyzer
from cairn.models.base import Embedder
from cairn.registry import Registry
from cairn.types import Answer, Citation, Hit

_VECTOR_CACHE = 4096  # passage sentences whose vectors are kept between checks
Verdict = Literal["grounded", "partial", "unsupported"]
Policy = Literal["off", "annotate", "remove", "refuse"]
POLICIES: tuple[Policy, ...] = ("off", "annotate", "remove", "refuse")

# Words that frame a claim rather than make it ("according to the passage, you should ..."): a
# faithful answer uses them freely, so they must not count against its coverage.
META_WORDS = (
    "according passage passages document documents source sources text context information mention mentions "
    "mentioned state states stated say says said provide provides provided based answer question find found "
    "refer refers outline outlined describe described specify specified note cite cited page section "
    "also however yes true false correct incorrect indeed following given above below "
    "you your we our us he she his her its which who whom what when where why how "
    "do does did has have had been being were am can could should would may might must shall need needs "
    "so very just only there here within about from over under between per each every all any some than"
)
NEGATION_CUES = frozenset("not no never none nobody nothing neither nor without cannot".split())
# Comparatives and fixed phrases that contain a cue but negate nothing ("no later than 5 May").
NOT_NEGATIONS = frozenset("only more less later earlier fewer sooner doubt".split())
# A negation inside a condition ("if the primary does not acknowledge ...") asserts nothing negative.
CONDITION = re.compile(r"\b(?:if|unless|whether|when|once|until)\b", re.IGNORECASE)
CLAUSE_END = re.compile(r"[,;:.!?()]|\b(?:but|however|although|whereas|while|except)\b", re.IGNORECASE)
WORD = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)?")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero _ two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
    if w != "_"  # "one" is too often a pronoun ("one of the teams") to be read as a number
} | {"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80", "ninety": "90"}
BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
BOILERPLATE = re.compile(
    r"^\s*(?:\**\s*)?(?:sources?|references?|citations?|passages? used)\s*\**\s*[:：]", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class SentenceCheck:
    """The verdict on one answer sentence; ``start``/``end`` index the checked answer text."""

    text: str
    start: int
    end: int
    cited: tuple[int, ...]
    supported: bool
    score: float
    reason: str
    coverage: float
    cosine: float | None = None
    missing_numbers: tuple[str, ...] = ()

    @property
    def uncited(self) -> bool:
        return not self.cited

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "text": self.text,
            "cited": list(self.cited),
            "supported": self.supported,
            "score": round(self.score, 3),
            "reason": self.reason,
            "coverage": round(self.coverage, 3),
        }
        if self.cosine is not None:
            out["cosine"] = round(self.cosine, 3)
        if self.missing_numbers:
            out["missing_numbers"] = list(self.missing_numbers)
        return out


@dataclass(frozen=True, slots=True)
class GroundingReport:
    """Per-sentence verdicts on the claims of one answer (framing and source lists are not claims)."""

    sentences: tuple[SentenceCheck, ...]
    supported_ratio: float
    verdict: Verdict
    checker: str = "heuristic"

    @classmethod
    def from_sentences(cls, sentences: Sequence[SentenceCheck], checker: str = "heuristic") -> GroundingReport:
        """An answer without claims (a refusal, a bare "see [1]") is vacuously grounded."""
        total = len(sentences)
        supported = sum(1 for s in sentences if s.supported)
        ratio = supported / total if total else 1.0
        verdict: Verdict = "grounded" if supported == total else "unsupported" if supported == 0 else "partial"
        return cls(tuple(sentences), ratio, verdict, checker)

    @property
    def unsupported(self) -> tuple[SentenceCheck, ...]:
        return tuple(s for s in self.sentences if not s.supported)

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "supported_ratio": round(self.supported_ratio, 4),
            "checker": self.checker,
            "sentences": [s.to_json() for s in self.sentences],
        }


@runtime_checkable
class GroundingChecker(Protocol):
    """Judges an answer against passages; ``[n]`` in the text refers to citation ``n`` / ``passages[n-1]``."""

    name: str

    def check(
        self, answer_text: str, passages: Sequence[Hit], citations: Sequence[Citation] = ()
    ) -> GroundingReport: ...


GROUNDING_CHECKERS: Registry[GroundingChecker] = Registry("grounding checker")


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of answer text: a ``claim`` to check or ``framing`` (source lists, "I could not find")."""

    start: int
    end: int
    kind: Literal["claim", "framing"]


def segments(text: str, analyzer: Analyzer, meta: frozenset[str] = frozenset()) -> list[Segment]:
    """Split an answer into sentences, line by line so that list items are separate claims."""
    out: list[Segment] = []
    offset = 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        bullet = BULLET.match(body)
        lead = bullet.end() if bullet else 0
        framing_line = bool(BOILERPLATE.match(body))
        for start, end in split_sentences(body[lead:]):
            a, b = offset + lead + start, offset + lead + end
            sentence = text[a:b]
            bare = MARKER.sub(" ", sentence)
            content = [t for t in analyzer.terms(bare) if t not in meta]
            is_framing = framing_line or not content or _is_not_found(bare)
            out.append(Segment(a, b, "framing" if is_framing else "claim"))
        offset += len(line)
    return out


def _is_not_found(sentence: str) -> bool:
    """The refusal sentence and the engine's "I searched for ..." that follows it frame, not claim."""
    lowered = " ".join(sentence.lower().split())
    return lowered.startswith((prompts.NOT_FOUND.lower().rstrip("."), "i searched for "))


def cited_ids(sentence: str) -> tuple[int, ...]:
    ids = (int(x) for m in MARKER.finditer(sentence) for x in re.split(r"\s*,\s*", m[1]))
    return tuple(dict.fromkeys(ids))


def numbers(text: str) -> set[str]:
    """Numbers in a canonical form, so "1,000", "1000", "06" vs "6" and "five" vs "5" compare equal."""
    found = {_canonical(n) for n in NUMBER.findall(text)}
    found |= {NUMBER_WORDS[w] for w in WORD.findall(text.lower()) if w in NUMBER_WORDS}
    return found


def _canonical(number: str) -> str:
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+", number):
        number = number.replace(",", "")
    number = number.replace(",", ".")
    if number.count(".") == 1:
        whole, frac = number.split(".")
        frac = frac.rstrip("0")
        whole = whole.lstrip("0") or "0"
        return f"{whole}.{frac}" if frac else whole
    if "." not in number:
        return number.lstrip("0") or "0"
    return number


@dataclass(frozen=True, slots=True)
class _Passage:
    """A passage analysed once per check: its terms, numbers and sentences with their negation scopes."""

    terms: frozenset[str]
    numbers: frozenset[str]
    sentences: tuple[str, ...]
    sentence_terms: tuple[frozenset[str], ...]
    negated: tuple[tuple[frozenset[str], ...], ...]


class HeuristicGroundingChecker:
    """Lexical, numeric and negation checks, plus sentence-embedding similarity when an embedder is given.

    Thresholds were set so that the seed corpus answers of the extractive answerer and of the local
    Qwen 1.5B model pass, and invented numbers, negated facts and off-topic sentences fail
    (``tests/unit/answer/test_grounding.py``; figures in ``docs/grounding.md``).
    """

    name = "heuristic"

    def __init__(
        self,
        analyzer: Analyzer | None = None,
        embedder: Embedder | None = None,
        *,
        min_coverage: float = 0.6,
        min_cosine: float = 0.7,
        min_coverage_semantic: float = 0.35,
    ) -> None:
        for label, value in (
            ("min_coverage", min_coverage),
            ("min_cosine", min_cosine),
            ("min_coverage_semantic", min_coverage_semantic),
        ):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"grounding {label} must be between 0 and 1, got {value}")
        self.analyzer = analyzer or Analyzer()
        self.embedder = embedder
        self.min_coverage = min_coverage
        self.min_cosine = min_cosine
        self.min_coverage_semantic = min_coverage_semantic
        # The answer engine checks an answer sentence by sentence against the same few passages:
        # their analysis and sentence vectors are kept (bounded) instead of recomputed per sentence.
        self._analysed = lru_cache(maxsize=256)(self._analyse)
        self._vectors: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()
        self._vectors_lock = threading.Lock()

    @cached_property
    def meta(self) -> frozenset[str]:
        return frozenset(self.analyzer.terms(META_WORDS))

    def content_terms(self, text: str) -> list[str]:
        return [t for t in self.analyzer.terms(MARKER.sub(" ", text)) if t not in self.meta]

    def check(self, answer_text: str, passages: Sequence[Hit], citations: Sequence[Citation] = ()) -> GroundingReport:
        texts = _passage_texts(passages, citations)
        analysed: dict[int, _Passage] = {}

        def passage(i: int) -> _Passage:
            if i not in analysed:
                analysed[i] = self._analysed(texts[i])
            return analysed[i]

        claims = [s for s in segments(answer_text, self.analyzer, self.meta) if s.kind == "claim"]
        plans = []
        for seg in claims:
            sentence = answer_text[seg.start : seg.end]
            ids = cited_ids(sentence)
            sources = [i for i in ids if i in texts] or sorted(texts)
            plans.append((seg, sentence, ids, sources))
        cosines = self._cosines([(sentence, [passage(i) for i in src]) for _, sentence, _, src in plans])
        checks = [
            self._judge(seg, sentence, ids, [passage(i) for i in sources], cosine)
            for (seg, sentence, ids, sources), cosine in zip(plans, cosines, strict=True)
        ]
        return GroundingReport.from_sentences(checks, self.name)

    def _analyse(self, text: str) -> _Passage:
        sentences = tuple(_passage_sentences(text))
        return _Passage(
            terms=frozenset(self.analyzer.terms(text)),
            numbers=frozenset(numbers(text)),
            sentences=sentences,
            sentence_terms=tuple(frozenset(self.analyzer.terms(s)) for s in sentences),
            negated=tuple(tuple(self._negated_scopes(s)) for s in sentences),
        )

    def _negated_scopes(self, sentence: str) -> Iterator[frozenset[str]]:
        """The content words each negation cue governs: up to three, up to the end of its clause."""
        for match in WORD.finditer(sentence):
            word = match[0].lower().replace("’", "'")
            if word not in NEGATION_CUES and not word.endswith("n't"):
                continue
            before = sentence[: match.start()]
            opened = max((m.end() for m in CLAUSE_END.finditer(before)), default=0)
            if CONDITION.search(before[opened:]):
                continue
            rest = sentence[match.end() :]
            following = WORD.search(rest)
            if following is not None and following[0].lower() in NOT_NEGATIONS:
                continue
            end = CLAUSE_END.search(rest)
            clause = rest[: end.start()] if end else rest
            yield frozenset(self.content_terms(clause)[:3])

    def _cosines(self, items: Sequence[tuple[str, Sequence[_Passage]]]) -> list[float | None]:
        if self.embedder is None or not items:
            return [None] * len(items)
        pool = list(dict.fromkeys(s for _, ps in items for p in ps for s in p.sentences))
        if not pool:
            return [None] * len(items)
        index = {s: i for i, s in enumerate(pool)}
        sentence_vectors = self.embedder.embed_documents([MARKER.sub(" ", s) for s, _ in items])
        pool_vectors = self._passage_vectors(self.embedder, pool)
        sims = sentence_vectors @ pool_vectors.T
        out: list[float | None] = []
        for row, (_, ps) in enumerate(items):
            cols = [index[s] for p in ps for s in p.sentences]
            out.append(float(sims[row, cols].max()) if cols else None)
        return out

    def _passage_vectors(self, embedder: Embedder, sentences: Sequence[str]) -> npt.NDArray[np.float32]:
        with self._vectors_lock:
            known = {s: self._vectors[s] for s in sentences if s in self._vectors}
        missing = [s for s in sentences if s not in known]
        if missing:
            known.update(zip(missing, embedder.embed_documents(missing), strict=True))
            with self._vectors_lock:
                for sentence in missing:
                    self._vectors[sentence] = known[sentence]
                while len(self._vectors) > _VECTOR_CACHE:
                    self._vectors.popitem(last=False)
        return np.stack([known[s] for s in sentences])

    def _judge(
        self, seg: Segment, sentence: str, ids: tuple[int, ...], sources: Sequence[_Passage], cosine: float | None
    ) -> SentenceCheck:
        terms = set(self.content_terms(sentence))
        union = frozenset().union(*(p.terms for p in sources)) if sources else frozenset()
        coverage = len(terms & union) / len(terms) if terms else 1.0
        score = coverage if cosine is None else 0.5 * coverage + 0.5 * max(cosine, 0.0)
        known = frozenset().union(*(p.numbers for p in sources)) if sources else frozenset()
        missing = tuple(sorted(numbers(MARKER.sub(" ", sentence)) - known))
        negation = self._negation_problem(sentence, terms, sources)
        lexical = coverage >= self.min_coverage
        semantic = cosine is not None and cosine >= self.min_cosine and coverage >= self.min_coverage_semantic
        where = "its cited passages" if ids else "any passage (uncited)"
        if not sources:
            supported, reason = False, "no passage to check against"
        elif missing:
            supported, reason = False, f"numbers not in {where}: {', '.join(missing)}"
        elif negation:
            supported, reason = False, negation
        elif lexical or semantic:
            supported = True
            reason = "supported" if ids else "supported by an uncited passage"
        else:
            supported = False
            detail = f"coverage {coverage:.2f}" + ("" if cosine is None else f", cosine {cosine:.2f}")
            reason = f"not stated in {where} ({detail})"
        return SentenceCheck(
            text=" ".join(sentence.split()),
            start=seg.start,
            end=seg.end,
            cited=ids,
            supported=supported,
            score=score,
            reason=reason,
            coverage=coverage,
            cosine=cosine,
            missing_numbers=missing,
        )

    def _negation_problem(self, sentence: str, terms: set[str], sources: Sequence[_Passage]) -> str:
        """Why the sentence's polarity disagrees with its passages, or "" when it does not.

        A negated clause of the answer needs a passage sentence that is also negated and shares
        words with that clause; a negated passage clause whose words the answer restates without
        any negation is a flipped fact.
        """
        scopes = [s for s in self._negated_scopes(MARKER.sub(" ", sentence)) if s]
        for scope in scopes:
            need = max(1, (len(scope) + 1) // 2)
            if not any(
                negs and len(scope & st) >= need and scope & frozenset().union(*negs)
                for p in sources
                for st, negs in zip(p.sentence_terms, p.negated, strict=True)
            ):
                return "negation not in the passages: " + " ".join(sorted(scope))
        for p in sources:
            for st, negs in zip(p.sentence_terms, p.negated, strict=True):
                if not terms or len(terms & st) < 0.5 * len(terms):
                    continue
                for scope in negs:
                    if scope and scope <= terms and not any(scope & mine for mine in scopes):
                        return "the passage negates this: not " + " ".join(sorted(scope))
        return ""


def _passage_texts(passages: Sequence[Hit], citations: Sequence[Citation]) -> dict[int, str]:
    """Text per marker number: citation ``n`` when present, else ``passages[n-1]``."""
    texts = {i: h.text for i, h in enumerate(passages, start=1)}
    texts.update({c.id: c.text for c in citations})
    return texts


def _passage_sentences(text: str) -> Iterator[str]:
    """Sentences of a passage, also cut at line breaks and table cells (where chunks keep structure)."""
    for line in text.splitlines():
        for cell in line.split("|"):
            cell = cell.strip()
            for start, end in split_sentences(cell):
                if cell[start:end].strip():
                    yield cell[start:end]


def apply_grounding_policy(
    answer: Answer, report: GroundingReport, policy: Policy = "annotate", min_supported: float = 0.5
) -> Answer:
    """The answer the user gets under ``policy``, carrying the verdict in ``Answer.grounding``.

    ``remove`` drops unsupported sentences and the citations no one uses any more (marker ids are
    kept, so ``[n]`` still names citation ``n``), and refuses when no claim is left; ``refuse``
    refuses when fewer than ``min_supported`` of the claims are supported. A refusal reads like the
    engine's own, so clients need not tell the two apart.
    """
    if policy not in POLICIES:
        raise ConfigError(f"unknown grounding policy {policy!r}", hint=f"one of: {', '.join(POLICIES)}")
    if policy == "off" or answer.refused:
        return answer
    record = report.to_json() | {"policy": policy, "action": "kept", "removed": 0}
    if policy == "refuse" and report.supported_ratio < min_supported:
        return refusal(answer, record | {"action": "refused"})
    if policy == "remove" and report.unsupported:
        if not any(s.supported for s in report.sentences):
            return refusal(answer, record | {"action": "refused"})
        text = remove_spans(answer.answer, [(s.start, s.end) for s in report.unsupported])
        n = max([c.id for c in answer.citations] + [0])
        text, used = clean_markers(text, n)
        by_id = {c.id: c for c in answer.citations}
        citations = tuple(by_id[i] for i in used if i in by_id)
        return replace(
            answer,
            answer=text,
            citations=citations,
            grounding=record | {"action": "removed", "removed": len(report.unsupported)},
        )
    return replace(answer, grounding=record)


def refusal(answer: Answer, grounding: dict[str, Any] | None = None) -> Answer:
    """The engine's refusal for ``answer.query``, listing where the closest passages were."""
    sources = list(dict.fromkeys(prompts.source_label(h) for h in answer.searched))[:3]
    searched = f" I searched for {answer.query!r}"
    searched += f"; the closest passages were in {', '.join(sources)}." if sources else "; nothing matched."
    return replace(answer, answer=prompts.NOT_FOUND + searched, refused=True, citations=(), grounding=grounding)


def remove_spans(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """Cut ``spans`` out of ``text``, dropping list items and lines left with nothing to say."""
    ordered = sorted(spans)
    lines: list[str] = []
    offset = 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        end = offset + len(body)
        inside = [(a, b) for a, b in ordered if offset <= a < end or (a == end == b)]
        if not inside:
            lines.append(body)
        else:
            pieces, cursor = [], offset
            for a, b in inside:
                pieces.append(text[cursor:a])
                cursor = max(cursor, min(b, end))
            pieces.append(text[cursor:end])
            kept = re.sub(r"[ \t]{2,}", " ", "".join(pieces)).rstrip()
            if not re.fullmatch(r"\s*(?:(?:[-*•]|\d+[.)])\s*)?(?:\[\d+\]\s*)*[.,;:]?\s*", kept):
                lines.append(kept)
        offset += len(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _options(location: str) -> dict[str, float]:
    _, _, query = location.partition(":")[2].partition("?")
    known = {"min_coverage", "min_cosine", "min_coverage_semantic"}
    out: dict[str, float] = {}
    for key, values in parse_qs(query).items():
        if key not in known:
            raise ConfigError(f"unknown option {key!r} in {location!r}", hint=f"known: {', '.join(sorted(known))}")
        try:
            out[key] = float(values[-1])
        except ValueError as exc:
            raise ConfigError(f"{key} in {location!r} is not a number") from exc
    return out


@GROUNDING_CHECKERS.register("heuristic")
def _heuristic(
    location: str, *, analyzer: Analyzer | None = None, embedder: Embedder | None = None, **_: object
) -> GroundingChecker:
    """``heuristic:`` (with sentence embeddings when an embedder is passed) or ``heuristic:lexical``."""
    kind = location.partition(":")[2].partition("?")[0]
    if kind not in ("", "lexical"):
        raise ConfigError(f"unknown heuristic checker {location!r}", hint="use 'heuristic:' or 'heuristic:lexical'")
    return HeuristicGroundingChecker(analyzer, None if kind == "lexical" else embedder, **_options(location))


def create_grounding_checker(location: str = "heuristic:", **kwargs: object) -> GroundingChecker:
    return GROUNDING_CHECKERS.create(location, **kwargs)


__all__ = [
    "GROUNDING_CHECKERS",
    "POLICIES",
    "GroundingChecker",
    "GroundingReport",
    "HeuristicGroundingChecker",
    "Policy",
    "SentenceCheck",
    "apply_grounding_policy",
    "create_grounding_checker",
    "refusal",
    "remove_spans",
]
