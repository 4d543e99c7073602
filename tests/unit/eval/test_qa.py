"""QA scoring: SQuAD metrics, citation correctness, per-policy summaries and the SciFact-derived builder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cairn.answer.citations import build_citations
from cairn.answer.grounding import POLICIES, GroundingReport, HeuristicGroundingChecker
from cairn.errors import InputError
from cairn.eval.qa import (
    CaseResult,
    QACase,
    QAReport,
    _outcome,
    answer_recall,
    build_scifact_qa,
    citation_supports,
    exact_match,
    load_qa,
    normalize_answer,
    summarise,
    token_f1,
)
from cairn.types import Answer, Citation, Hit


def test_normalisation_is_squads() -> None:
    assert normalize_answer("The  Q3, 2026 [1]!") == "q3 2026"
    assert normalize_answer("An apple a day.") == "apple day"


def test_exact_match_and_f1_against_the_best_gold() -> None:
    assert exact_match("Q3 2026 [2].", ["by Q3 2026", "Q3 2026"]) == 1.0
    assert exact_match("in Q3 2026", ["Q3 2026"]) == 0.0
    # pred {in, q3, 2026} vs gold {q3, 2026}: precision 2/3, recall 1 -> 0.8
    assert token_f1("in Q3 2026", ["Q3 2026"]) == pytest.approx(0.8)
    # repeated tokens count once per occurrence: pred {a1 x x} vs gold {x}: p 1/3, r 1 -> 0.5
    assert token_f1("a1 x x", ["x", "nothing"]) == pytest.approx(0.5)
    assert token_f1("", ["x"]) == 0.0 and token_f1("", [""]) == 1.0
    assert token_f1("anything", []) == 0.0


def test_answer_recall_matches_whole_tokens() -> None:
    assert answer_recall("Training is due by Q3 2026 [1].", ["Q3 2026"]) == 1.0
    assert answer_recall("Training is due by Q3 20261.", ["Q3 2026"]) == 0.0


def _citation(i: int, source: str, text: str) -> Citation:
    return Citation(id=i, source=source, page=None, start=0, end=len(text), text=text)


def test_citation_supports_by_text_or_source() -> None:
    case = QACase("q", support=("Q3  2026",), support_sources=("hr_policy.pdf", "kb/*.md"))
    assert citation_supports(_citation(1, "/x/other.txt", "due by q3 2026."), case)
    assert citation_supports(_citation(1, "/data/hr_policy.pdf", "unrelated"), case)
    assert citation_supports(_citation(1, "kb/a.md", "unrelated"), case)
    assert not citation_supports(_citation(1, "/data/it.txt", "unrelated"), case)
    assert citation_supports(_citation(1, "12345", "abstract"), QACase("q", support_sources=("12345",)))


def test_load_qa_reads_the_documented_format(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    rows = [
        {"id": "a", "question": " When? ", "answers": ["Q3 2026"], "support": ["Q3 2026"], "kb": "hr"},
        {"question": "Capital of France?", "unanswerable": True},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    first, second = load_qa(path)
    assert first == QACase("When?", id="a", answers=("Q3 2026",), support=("Q3 2026",), kb="hr")
    assert second == QACase("Capital of France?", id="2", unanswerable=True)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not JSON"),
        ('{"answers": ["x"]}', "'question'"),
        ('{"question": "q", "answers": "x"}', "list of strings"),
        ('{"question": "q", "unanswerable": true, "answers": ["x"]}', "unanswerable"),
        ('{"question": "q", "extra": 1}', "unknown fields"),
    ],
)
def test_load_qa_names_the_bad_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "fine"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"qa.jsonl:2: .*{message}"):
        load_qa(path)


PASSAGES = [
    "Employees are required to complete AI ethics training by Q3 2026.",
    "The cafeteria opens at 8 and closes at 15.",
]
HITS = [
    Hit(chunk_id=i, document_id=i, source=f"doc{i}.txt", text=t, start=0, end=len(t), score=1.0)
    for i, t in enumerate(PASSAGES, start=1)
]


def _result(case: QACase, text: str, ids: list[int], refused: bool = False, evidence: float = 0.5) -> CaseResult:
    answer = Answer(answer=text, refused=refused, citations=() if refused else build_citations(ids, HITS), query="q")
    report = (
        GroundingReport.from_sentences([])
        if refused
        else HeuristicGroundingChecker().check(answer.answer, HITS, answer.citations)
    )
    outcomes = {p: _outcome(answer, report, p, 0.75) for p in POLICIES}
    return CaseResult(case, answer, report, outcomes, evidence, ask_ms=10.0, check_ms=1.0)


RESULTS = [
    # answerable, correct, one supported sentence + one invented number citing the wrong passage
    _result(
        QACase("When is training due?", id="a", answers=("Q3 2026",), support=("Q3 2026",)),
        "Training is due by Q3 2026 [1]. The cafeteria opens at 9 [2].",
        [1, 2],
        evidence=0.8,
    ),
    # answerable but refused by the engine
    _result(
        QACase("When does the cafeteria open?", id="b", answers=("8",), support_sources=("doc2.txt",)),
        "",
        [],
        refused=True,
        evidence=0.3,
    ),
    # unanswerable, answered anyway with a faithful sentence
    _result(
        QACase("Capital of France?", id="c", unanswerable=True), "The cafeteria opens at 8 [2].", [2], evidence=0.45
    ),
    # unanswerable, refused
    _result(QACase("Who won in 1998?", id="d", unanswerable=True), "", [], refused=True, evidence=0.2),
]


def test_summary_off_counts_what_the_engine_did() -> None:
    m = summarise(RESULTS, "off")
    assert (m.cases, m.answerable, m.unanswerable) == (4, 2, 2)
    assert m.correct_refusal_rate == 0.5 and m.false_refusal_rate == 0.5
    assert m.exact_match == 0.0
    # case a: pred "training is due by q3 2026 cafeteria opens at 9" (10 tokens) vs "q3 2026": p 1/5, r 1,
    # F1 1/3; case b was refused (0); the mean is 1/6
    assert m.f1 == pytest.approx(1 / 6)
    assert m.answer_recall == 0.5
    assert m.citations_scored == 2 and m.citation_precision == 0.5  # [1] contains "Q3 2026", [2] does not
    assert m.support_recall == 0.5  # a cites support, b was refused
    assert m.claims == 3 and m.unsupported_claim_rate == pytest.approx(1 / 3)  # "opens at 9" is flagged
    # gold: a's first claim cites support; a's second cites doc2; c is unanswerable -> 2 of 3 unsupported
    assert m.gold_unsupported_claim_rate == pytest.approx(2 / 3)


def test_summary_remove_drops_the_flagged_claim_and_its_citation() -> None:
    m = summarise(RESULTS, "remove")
    assert m.claims == 2 and m.unsupported_claim_rate == 0.0
    assert m.citations_scored == 1 and m.citation_precision == 1.0
    assert m.gold_unsupported_claim_rate == 0.5  # c's faithful but unanswerable sentence remains
    assert m.correct_refusal_rate == 0.5 and m.false_refusal_rate == 0.5
    assert RESULTS[0].outcomes["remove"].answer == "Training is due by Q3 2026 [1]."


def test_summary_refuse_turns_partial_answers_into_refusals() -> None:
    m = summarise(RESULTS, "refuse")  # min_supported 0.75 > case a's 0.5
    assert m.false_refusal_rate == 1.0 and m.correct_refusal_rate == 0.5
    assert m.claims == 1 and m.citation_precision is None and m.support_recall == 0.0
    assert m.exact_match == 0.0 and m.f1 == 0.0


def test_report_json_and_gate_sweep() -> None:
    report = QAReport("t", "kb", "extractive", "heuristic", "remove", 0.75, 0.35, list(RESULTS))
    payload = report.to_json(cases=True)
    assert payload["before"]["policy"] == "off" and payload["after"]["policy"] == "remove"
    assert set(payload["by_policy"]) == {"off", "remove", "refuse"}
    assert payload["latency"] == {
        "ask_p50_ms": 10.0,
        "ask_p95_ms": 10.0,
        "check_p50_ms": 1.0,
        "check_p95_ms": 1.0,
        "context_words_mean": 0.0,
    }
    sweep = {g["min_relevance"]: g for g in payload["gate_sweep"]}
    # unanswerable evidence 0.45 and 0.2; answerable 0.8 and 0.3
    assert sweep[0.35] == {"min_relevance": 0.35, "correct_refusal_rate": 0.5, "false_refusal_rate": 0.5}
    assert sweep[0.5] == {"min_relevance": 0.5, "correct_refusal_rate": 1.0, "false_refusal_rate": 0.5}
    assert sweep[0.3]["false_refusal_rate"] == 0.0
    case_a = payload["cases"][0]
    assert case_a["final_answer"] == "Training is due by Q3 2026 [1]."
    assert case_a["citations"] == [{"id": 1, "source": "doc1.txt", "supports": True}]
    assert case_a["grounding"]["verdict"] == "partial"


def _beir(root: Path) -> Path:
    """A miniature BEIR folder: claims 1-6, abstract d3 shared by claims 3 and 4."""
    (root / "qrels").mkdir(parents=True)
    docs = [f"d{i}" for i in range(1, 11)]
    root.joinpath("corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": d, "title": f"Title {d}", "text": f"Abstract {d}."}) for d in docs),
        encoding="utf-8",
    )
    claims = {str(i): f"Claim number {i} holds." for i in range(1, 7)}
    root.joinpath("queries.jsonl").write_text(
        "\n".join(json.dumps({"_id": q, "text": t}) for q, t in claims.items()), encoding="utf-8"
    )
    qrels = ["query-id\tcorpus-id\tscore", "1\td1\t1", "2\td2\t1", "3\td3\t1", "4\td3\t1", "5\td5\t1", "6\td6\t1"]
    root.joinpath("qrels", "test.tsv").write_text("\n".join(qrels) + "\n", encoding="utf-8")
    return root


def test_scifact_builder_holds_out_the_unanswerable_abstracts(tmp_path: Path) -> None:
    root = _beir(tmp_path / "mini")
    documents, cases = build_scifact_qa(root, n_answerable=3, n_unanswerable=2, n_distractors=3, seed=1)
    indexed = {source for source, _ in documents}
    yes = [c for c in cases if not c.unanswerable]
    no = [c for c in cases if c.unanswerable]
    assert len(yes) == 3 and len(no) == 2
    assert [c.unanswerable for c in cases] == [False, True, False, True, False]
    for case in yes:
        assert set(case.support_sources) <= indexed
        assert case.question.startswith("Is it true that claim number ") and case.question.endswith("holds?")
    gold = {"1": "d1", "2": "d2", "3": "d3", "4": "d3", "5": "d5", "6": "d6"}
    answerable_docs = {s for c in yes for s in c.support_sources}
    for case in no:
        withheld = gold[case.id.split("-")[1]]
        assert withheld not in indexed and withheld not in answerable_docs
    assert len(indexed) == len(answerable_docs) + 3
    title, body = documents[0][1].title, documents[0][1].text
    assert body.startswith(title + "\n\n")
    again, cases_again = build_scifact_qa(root, n_answerable=3, n_unanswerable=2, n_distractors=3, seed=1)
    assert [s for s, _ in again] == [s for s, _ in documents] and cases_again == cases


def test_scifact_builder_refuses_impossible_sizes(tmp_path: Path) -> None:
    root = _beir(tmp_path / "mini")
    with pytest.raises(InputError):
        build_scifact_qa(root, n_answerable=5, n_unanswerable=3, n_distractors=0)
