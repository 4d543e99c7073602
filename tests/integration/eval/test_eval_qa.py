"""``cairn eval qa`` end to end: a tiny QA file over a tiny corpus, real Postgres, fake embedder."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from cairn.assistant import Cairn
from cairn.eval.qa import QACase, run_qa
from cairn.testing.fakes import ScriptedGenerator
from cairn.types import SYSTEM

pytestmark = pytest.mark.parametrize("database_url", ["embedded"], indirect=True)

IT = "Report suspicious emails immediately to security@example.com. Multi-factor authentication is mandatory."
ROADMAP = "Target release for the new analytics dashboard is June 1st, 2026. The beta starts in May."
CASES = [
    {"id": "email", "question": "How do I report a suspicious email?", "answers": ["security@example.com"],
     "support": ["security@example.com"]},
    {"id": "france", "question": "What is the capital of France?", "unanswerable": True},
    {"id": "dashboard", "question": "When is the new analytics dashboard launching?", "answers": ["June 1st, 2026"],
     "support_sources": ["roadmap.txt"]},
]  # fmt: skip


def _corpus(root: Path) -> Path:
    root.mkdir()
    (root / "it.txt").write_text(IT, encoding="utf-8")
    (root / "roadmap.txt").write_text(ROADMAP, encoding="utf-8")
    return root


def test_eval_qa_file_through_the_cli(run: Callable[..., tuple[int, str]], tmp_path: Path) -> None:
    docs = _corpus(tmp_path / "docs")
    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n".join(json.dumps(c) for c in CASES), encoding="utf-8")
    assert run("ingest", str(docs), "--kb", "handbook", "--json")[0] == 0

    code, out = run("eval", "qa", str(qa), "--kb", "handbook", "--json", "--cases")
    assert code == 0, out
    report = json.loads(out)
    assert (report["dataset"], report["kb"], report["policy"], report["checker"]) == (
        "qa.jsonl",
        "handbook",
        "remove",
        "heuristic",
    )
    for stage in ("before", "after"):
        m = report[stage]
        assert (m["cases"], m["answerable"], m["unanswerable"]) == (3, 2, 1)
        assert m["correct_refusal_rate"] == 1.0 and m["false_refusal_rate"] == 0.0
        assert m["answer_recall"] == 1.0 and m["exact_match"] == 0.0  # whole sentences, not spans
        assert m["citation_precision"] == 1.0 and m["support_recall"] == 1.0
        assert m["unsupported_claim_rate"] == 0.0 and m["gold_unsupported_claim_rate"] == 0.0
    by_id = {c["id"]: c for c in report["cases"]}
    assert by_id["france"]["refused"] and by_id["france"]["engine_refused"]
    assert "security@example.com" in by_id["email"]["final_answer"]
    assert by_id["dashboard"]["grounding"]["verdict"] == "grounded"
    assert set(report["latency"]) == {"ask_p50_ms", "ask_p95_ms", "check_p50_ms", "check_p95_ms", "context_words_mean"}

    code, out = run("eval", "qa", str(qa), "--kb", "handbook", "--limit", "1")
    assert code == 0 and "1 cases (1 answerable, 0 unanswerable)" in out

    code, out = run("eval", "qa", str(qa), "--grounding", "drop", "--json")
    assert code == 2
    code, out = run("eval", "qa", "--json")
    assert code == 2


def test_invented_sentences_are_removed_end_to_end(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn = make_cairn(min_relevance=0.2)
    cairn.ingestor.sync_folder(_corpus(tmp_path / "docs"), "handbook")
    generator = cairn.answerer.generator  # type: ignore[attr-defined]
    assert isinstance(generator, ScriptedGenerator)
    generator.enqueue(
        "Report suspicious emails immediately to security@example.com [1]. Offenders pay a fine of 500 EUR [1]."
    )
    case = QACase("How do I report a suspicious email?", support=("security@example.com",))
    report = run_qa(cairn, [case], "handbook", grounding="remove", principal=SYSTEM)
    (result,) = report.results
    assert result.report.verdict == "partial"
    (flagged,) = result.report.unsupported
    assert flagged.missing_numbers == ("500",)
    assert result.outcomes["remove"].answer == "Report suspicious emails immediately to security@example.com [1]."
    assert result.outcomes["refuse"].refused is False  # 1 of 2 supported meets min_supported 0.5
    assert report.before.unsupported_claim_rate == 0.5 and report.after.unsupported_claim_rate == 0.0


def _mini_beir(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    topics = ["influenza vaccine", "statin therapy", "gut microbiome", "malaria parasite", "insulin resistance"]
    rows = [
        {"_id": str(i), "title": f"Study of {t}", "text": f"We found that {t} changes outcomes in {10 + i} patients."}
        for i, t in enumerate(topics, start=1)
    ]
    root.joinpath("corpus.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    claims = [{"_id": str(i), "text": f"{t.capitalize()} changes outcomes."} for i, t in enumerate(topics, start=1)]
    root.joinpath("queries.jsonl").write_text("\n".join(json.dumps(c) for c in claims), encoding="utf-8")
    qrels = ["query-id\tcorpus-id\tscore"] + [f"{i}\t{i}\t1" for i in range(1, 6)]
    root.joinpath("qrels", "test.tsv").write_text("\n".join(qrels) + "\n", encoding="utf-8")
    return root


def test_eval_qa_scifact_mode_builds_a_fresh_kb(run: Callable[..., tuple[int, str]], tmp_path: Path) -> None:
    folder = _mini_beir(tmp_path / "scifact")
    args = ["eval", "qa", "--scifact", str(folder), "--answerable", "2", "--unanswerable", "2", "--json"]
    code, out = run(*args, "--distractors", "1", "--kb", "qa-mini")
    assert code == 0, out
    report = json.loads(out)
    assert report["dataset"] == "scifact-derived" and report["kb"] == "qa-mini"
    assert (report["before"]["answerable"], report["before"]["unanswerable"]) == (2, 2)
    assert report["before"]["exact_match"] is None  # the derived set has no gold answers
    code, out = run("kb", "docs", "qa-mini", "--json")
    assert len(json.loads(out)["documents"]) == 3  # 2 answerable abstracts + 1 distractor; 2 held out

    code, out = run(*args, "--distractors", "0", "--kb", "qa-mini")
    assert code == 0
    code, out = run("kb", "docs", "qa-mini", "--json")
    assert len(json.loads(out)["documents"]) == 2  # the distractor of the previous run was removed
