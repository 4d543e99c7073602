"""The grounding check: faithful answers (copied or paraphrased) pass, invented sentences are caught."""

from __future__ import annotations

import pytest

from cairn.answer.citations import build_citations
from cairn.answer.grounding import (
    GROUNDING_CHECKERS,
    GroundingChecker,
    GroundingReport,
    HeuristicGroundingChecker,
    apply_grounding_policy,
    create_grounding_checker,
    numbers,
    remove_spans,
    segments,
)
from cairn.errors import ConfigError
from cairn.index.analyzer import Analyzer
from cairn.testing.fakes import HashEmbedder
from cairn.types import Answer, Hit

TRAVEL = (
    "The corporate travel policy was updated in 2026 to favour sustainable options. Trains are required for "
    "journeys that take less than five hours by rail. Business class is allowed only for flights longer than "
    "eight hours and needs director approval."
)
LIMITS = (
    "Category | Limit | Notes\nHotel, domestic | 180 EUR per night | Breakfast included where possible\n"
    "Hotel, international | 250 EUR per night | Higher-cost cities list published by Finance"
)
CARDS = (
    "Company cards are issued to employees who travel at least four times a year. Personal expenses must never "
    "be charged to a company card; if it happens by mistake, tell Finance within five working days."
)
SECURITY = (
    "IT Security Guidelines 2026: Multi-factor authentication is now mandatory for all internal systems. "
    "Report suspicious emails immediately to security@example.com."
)
ONCALL = (
    "| SEV1 | Customer-facing outage or data loss | 5 minutes | 30 minutes |\n"
    "If the primary does not acknowledge a SEV1 page within 5 minutes, PagerBell pages the secondary."
)
TREG = (
    "Deletion of integrin in Treg cells did not result in spontaneous inflammation, suggesting that this pathway "
    "is not important for homeostasis."
)
PASSAGES = [TRAVEL, LIMITS, CARDS, SECURITY, ONCALL, TREG]


def _hit(i: int, text: str) -> Hit:
    return Hit(chunk_id=i, document_id=i, source=f"doc{i}.txt", text=text, start=0, end=len(text), score=1.0)


HITS = [_hit(i, t) for i, t in enumerate(PASSAGES, start=1)]


@pytest.fixture(params=["lexical", "embedding"])
def checker(request: pytest.FixtureRequest) -> HeuristicGroundingChecker:
    embedder = HashEmbedder(256) if request.param == "embedding" else None
    return HeuristicGroundingChecker(Analyzer(), embedder)


# Answers the extractive answerer and the local Qwen model gave on the seed corpus (docs/grounding.md),
# and close paraphrases of the same kind.
FAITHFUL = [
    "The corporate travel policy was updated in 2026 to favour sustainable options [1].",
    "Trains are required for journeys that take less than five hours by rail [1].",
    "Business class is allowed only for flights longer than eight hours and needs director approval [1].",
    "The nightly hotel limit for international business travel is 250 EUR per night [2].",
    "Hotel, international | 250 EUR per night | Higher-cost cities list published by Finance [2].",
    "Personal expenses must never be charged to a company card [3].",
    "If a personal expense is charged by mistake, you should tell Finance within 5 working days [3].",
    "To report a suspicious email, you should immediately contact security@example.com [4].",
    "Multi-factor authentication is mandatory for all internal systems as of 2026 [4].",
    "The on-call engineer must acknowledge a SEV1 page within 5 minutes [5].",
    "If the primary does not acknowledge a SEV1 page within 5 minutes, PagerBell pages the secondary [5].",
    "This is stated in the corporate travel policy [1].",
    "Deleting integrin in Treg cells did not cause spontaneous inflammation [6].",
]


@pytest.mark.parametrize("sentence", FAITHFUL)
def test_faithful_sentences_are_supported(checker: HeuristicGroundingChecker, sentence: str) -> None:
    report = checker.check(sentence, HITS)
    assert report.verdict == "grounded", report.to_json()


INVENTED = [
    ("The hotel limit for international travel is 300 EUR per night [2].", "numbers not in"),
    ("The corporate travel policy was updated in 2024 to favour sustainable options [1].", "numbers not in"),
    ("Trains are required for journeys that take less than six hours by rail [1].", "numbers not in"),
    ("Business class needs director approval for flights longer than 8.5 hours [1].", "numbers not in"),
    ("Multi-factor authentication is not mandatory for internal systems [4].", "negation"),
    ("Personal expenses can be charged to a company card [3].", "negates"),
    ("Sustainable options are never favoured by the corporate travel policy [1].", "negation"),
    (
        "Deletion of integrin in Treg cells did result in spontaneous inflammation, suggesting that this pathway"
        " is not important for homeostasis [6].",
        "negates",
    ),
    ("The capital of France is Paris [1].", "not stated"),
    ("Employees also receive a free gym membership and a yearly bonus [3].", "not stated"),
]


@pytest.mark.parametrize(("sentence", "why"), INVENTED)
def test_invented_sentences_are_flagged(checker: HeuristicGroundingChecker, sentence: str, why: str) -> None:
    report = checker.check(sentence, HITS)
    (verdict,) = report.sentences
    assert not verdict.supported and why in verdict.reason, verdict.to_json()
    assert report.verdict == "unsupported" and report.supported_ratio == 0.0


def test_a_sentence_is_checked_against_the_passage_it_cites_only() -> None:
    checker = HeuristicGroundingChecker()
    right = checker.check("Report suspicious emails immediately to security@example.com [4].", HITS)
    wrong = checker.check("Report suspicious emails immediately to security@example.com [1].", HITS)
    assert right.verdict == "grounded" and wrong.verdict == "unsupported"


def test_uncited_sentences_fall_back_to_all_passages_and_say_so() -> None:
    report = HeuristicGroundingChecker().check(
        "Report suspicious emails immediately to security@example.com. Bananas are yellow.", HITS
    )
    first, second = report.sentences
    assert first.uncited and first.supported and first.reason == "supported by an uncited passage"
    assert second.uncited and not second.supported and "any passage (uncited)" in second.reason
    assert report.verdict == "partial" and report.supported_ratio == 0.5


def test_framing_and_source_lists_are_not_claims() -> None:
    text = (
        "According to the passages:\n"
        "- Trains are required for journeys under five hours [1].\n"
        "- The hotel limit is 999 EUR [2].\n"
        "\nSources: [1] doc1.txt, [2] doc2.txt"
    )
    report = HeuristicGroundingChecker().check(text, HITS)
    assert [s.supported for s in report.sentences] == [True, False]
    assert report.sentences[1].missing_numbers == ("999",)
    assert report.verdict == "partial"


def test_a_refusal_has_no_claims() -> None:
    text = "I could not find the answer in the documents. I searched for 'x'; the closest passages were in a.txt."
    assert [s.kind for s in segments(text, Analyzer())] == ["framing", "framing"]
    report = HeuristicGroundingChecker().check(text, HITS)
    assert report.sentences == () and report.verdict == "grounded" and report.supported_ratio == 1.0


def test_numbers_are_compared_in_canonical_form() -> None:
    assert numbers("1,000 staff, 06 May, 2.50 EUR, fifteen days, Q3") == {"1000", "6", "2.5", "15", "3"}
    assert numbers("one of the teams") == set()


def test_report_json() -> None:
    report = HeuristicGroundingChecker().check("The hotel limit is 300 EUR [2].", HITS)
    payload = report.to_json()
    assert payload["verdict"] == "unsupported" and payload["supported_ratio"] == 0.0
    assert payload["checker"] == "heuristic"
    (sentence,) = payload["sentences"]
    assert sentence["cited"] == [2] and sentence["supported"] is False
    assert sentence["missing_numbers"] == ["300"] and "cosine" not in sentence


def _answer(text: str, ids: list[int]) -> Answer:
    return Answer(
        answer=text,
        refused=False,
        citations=build_citations(ids, HITS),
        searched=tuple(HITS),
        query="What does the travel policy say?",
        model="m",
    )


MIXED = (
    "Trains are required for journeys that take less than five hours by rail [1]. "
    "The hotel limit is 999 EUR per night [2]. "
    "Report suspicious emails immediately to security@example.com [4]."
)


def test_remove_drops_unsupported_sentences_and_their_citations() -> None:
    answer = _answer(MIXED, [1, 2, 4])
    report = HeuristicGroundingChecker().check(answer.answer, HITS, answer.citations)
    out = apply_grounding_policy(answer, report, "remove")
    assert out.answer == (
        "Trains are required for journeys that take less than five hours by rail [1]. "
        "Report suspicious emails immediately to security@example.com [4]."
    )
    assert [c.id for c in out.citations] == [1, 4]  # ids keep naming the same passages
    assert out.grounding is not None and out.grounding["action"] == "removed" and out.grounding["removed"] == 1
    assert out.to_json()["grounding"]["verdict"] == "partial"
    assert answer.grounding is None and answer.to_json()["grounding"] is None


def test_refuse_below_min_supported_reads_like_the_engine_refusal() -> None:
    answer = _answer(MIXED, [1, 2, 4])
    report = HeuristicGroundingChecker().check(answer.answer, HITS, answer.citations)
    kept = apply_grounding_policy(answer, report, "refuse", min_supported=0.5)
    assert kept.answer == answer.answer and kept.grounding is not None and kept.grounding["action"] == "kept"
    refused = apply_grounding_policy(answer, report, "refuse", min_supported=0.9)
    assert refused.refused and refused.citations == ()
    assert refused.answer == (
        "I could not find the answer in the documents. I searched for 'What does the travel policy say?';"
        " the closest passages were in doc1.txt, doc2.txt, doc3.txt."
    )
    assert refused.grounding is not None and refused.grounding["action"] == "refused"


def test_remove_refuses_when_no_claim_is_left() -> None:
    answer = _answer("The hotel limit is 999 EUR per night [2].", [2])
    report = HeuristicGroundingChecker().check(answer.answer, HITS, answer.citations)
    assert apply_grounding_policy(answer, report, "remove").refused


def test_annotate_and_off_keep_the_text() -> None:
    answer = _answer(MIXED, [1, 2, 4])
    report = HeuristicGroundingChecker().check(answer.answer, HITS, answer.citations)
    annotated = apply_grounding_policy(answer, report, "annotate")
    assert annotated.answer == answer.answer and annotated.citations == answer.citations
    assert annotated.grounding is not None and annotated.grounding["policy"] == "annotate"
    assert apply_grounding_policy(answer, report, "off") is answer
    with pytest.raises(ConfigError):
        apply_grounding_policy(answer, report, "drop")  # type: ignore[arg-type]


def test_refused_answers_pass_through() -> None:
    answer = Answer(answer="I could not find the answer in the documents.", refused=True)
    report = GroundingReport.from_sentences([])
    assert apply_grounding_policy(answer, report, "remove") is answer


def test_remove_spans_drops_emptied_list_items() -> None:
    text = "Rules:\n- Keep this [1].\n- Drop this [2].\n\nLast line."
    start = text.index("Drop")
    end = text.index("[2].") + len("[2].")
    assert remove_spans(text, [(start, end)]) == "Rules:\n- Keep this [1].\n\nLast line."


def test_checkers_are_chosen_by_location() -> None:
    embedder = HashEmbedder(32)
    default = create_grounding_checker("heuristic:", embedder=embedder)
    lexical = create_grounding_checker("heuristic:lexical?min_coverage=0.8", embedder=embedder)
    assert isinstance(default, GroundingChecker) and isinstance(default, HeuristicGroundingChecker)
    assert default.embedder is embedder
    assert isinstance(lexical, HeuristicGroundingChecker) and lexical.embedder is None
    assert lexical.min_coverage == 0.8
    assert "heuristic" in GROUNDING_CHECKERS.schemes()
    with pytest.raises(ConfigError):
        create_grounding_checker("heuristic:?bogus=1")
    with pytest.raises(ConfigError):
        create_grounding_checker("nli:")
    with pytest.raises(ConfigError):
        HeuristicGroundingChecker(min_coverage=1.5)
