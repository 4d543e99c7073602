"""``cairn experiments``: the lifecycle, the JSON shapes of report and offline, and the answers' variant."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from cairn.errors import InputError, NotFound

Run = Callable[..., tuple[int, str]]

DOCS = {
    "leave.txt": "Staff get 25 days of annual leave. Unused leave expires at the end of March.",
    "it.txt": "Report suspicious emails immediately to the security team. Passwords rotate every 90 days.",
    "travel.txt": "Train travel is preferred for trips under 500 km. Book flights through the travel desk.",
}
EXPERIMENT_KEYS = {
    "name",
    "description",
    "status",
    "scope",
    "rollout",
    "groups",
    "salt",
    "control",
    "variants",
    "created_by",
    "created_at",
    "started_at",
    "stopped_at",
    "updated_at",
}


@pytest.fixture
def handbook(run: Run, tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    assert run("ingest", str(docs), "--kb", "handbook", "--groups", "staff")[0] == 0
    for i in range(8):
        assert run("users", "add", f"user{i}", "--groups", "staff,pilot" if i < 6 else "staff")[0] == 0
    return docs


def test_lifecycle_and_json_shapes(run: Run, handbook: Path) -> None:
    code, out = run(
        "experiments", "create", "tone", "--variant", "control", "--variant", "fast:profile=fast,weight=1",
        "--scope", "handbook", "--groups", "pilot", "--rollout", "100", "--description", "the fast pipeline",
        "--json",
    )  # fmt: skip
    created = json.loads(out)
    assert code == 0 and set(created) == EXPERIMENT_KEYS | {"changes"}
    assert (created["status"], created["control"], created["groups"], created["rollout"]) == (
        "draft",
        "control",
        ["pilot"],
        100.0,
    )
    assert created["variants"][1] == {"name": "fast", "weight": 1.0, "template": None, "profile": "fast", "tier": None}

    code, out = run("experiments", "start", "tone", "--json")
    assert code == 0 and json.loads(out)["status"] == "running"

    variants = {}
    for i in range(8):
        code, out = run("ask", "How many days of annual leave?", "--kb", "handbook", "--as-user", f"user{i}", "--json")
        answer = json.loads(out)
        assert code == 0 and not answer["refused"]
        variants[f"user{i}"] = answer.get("variant")
    assert {variants[f"user{i}"] for i in range(6)} <= {"tone:control", "tone:fast"}
    assert variants["user6"] is None and variants["user7"] is None, "outside the pilot group: not in it"
    code, out = run("ask", "How many days of annual leave?", "--kb", "handbook", "--json")
    assert "variant" not in json.loads(out), "the local operator is never in an experiment"

    code, out = run("experiments", "report", "tone", "--json")
    report = json.loads(out)
    assert code == 0 and report["answers"] == 6 and report["control"] == "control"
    assert set(report) == {
        "experiment", "status", "scope", "rollout", "groups", "control", "answers", "min_samples", "alpha",
        "alpha_per_comparison", "sample_ratio_p", "sample_ratio_mismatch", "variants",
    }  # fmt: skip
    by_name = {v["variant"]: v for v in report["variants"]}
    counted = {name: sum(v == f"tone:{name}" for v in variants.values()) for name in ("control", "fast")}
    assert {name: by_name[name]["n"] for name in by_name} == counted
    fast = by_name["fast"]
    assert set(fast) == {
        "variant", "control", "overrides", "weight", "n", "users", "feedback_rate", "upvote_rate", "refusal_rate",
        "grounding_failure_rate", "supported_ratio", "latency_ms",
    }  # fmt: skip
    assert fast["overrides"] == {"profile": "fast"}
    assert fast["refusal_rate"]["vs_control"]["note"].startswith("not enough data")
    code, out = run("experiments", "report", "tone")
    assert code == 0 and "not enough data" in out and "control" in out

    code, out = run("experiments", "rollout", "tone", "40", "--all-groups", "--json")
    assert code == 0 and (json.loads(out)["rollout"], json.loads(out)["groups"]) == (40.0, [])
    assert json.loads(run("experiments", "pause", "tone", "--json")[1])["status"] == "paused"
    code, out = run("ask", "How many days of annual leave?", "--kb", "handbook", "--as-user", "user0", "--json")
    assert "variant" not in json.loads(out), "a paused experiment gives everyone the default"
    assert json.loads(run("experiments", "stop", "tone", "--json")[1])["status"] == "stopped"

    code, out = run("experiments", "list", "--json")
    (listed,) = json.loads(out)["experiments"]
    assert set(listed) == EXPERIMENT_KEYS and listed["status"] == "stopped"
    code, out = run("experiments", "show", "tone", "--json")
    actions = [c["action"] for c in json.loads(out)["changes"]]
    assert actions == ["create", "start", "rollout", "pause", "stop"]
    code, out = run("experiments", "show", "tone")
    assert code == 0 and "fast" in out and "draft -> running" in out and "100% -> 40%, groups pilot -> everyone" in out


def test_templates_and_errors(run: Run, handbook: Path) -> None:
    code, out = run("experiments", "templates", "--json")
    assert code == 0 and {t["version"] for t in json.loads(out)["templates"]} >= {"grounded-v3", "concise-v1"}
    with pytest.raises(InputError, match="unknown retrieval profile"):
        run("experiments", "create", "x", "--variant", "control", "--variant", "b:profile=slow")
    with pytest.raises(InputError, match="2 to 10 variants"):
        run("experiments", "create", "x", "--variant", "control")
    with pytest.raises(NotFound):
        run("experiments", "start", "missing")
    code, _ = run("experiments", "list", "--status", "sleeping")
    assert code == 2
    run("experiments", "create", "draft-one", "--variant", "a", "--variant", "b:template=concise")
    code, out = run("experiments", "delete", "draft-one")
    assert code == 0 and "deleted" in out
    assert json.loads(run("experiments", "list", "--json")[1]) == {"experiments": []}


def _beir(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    corpus = [{"_id": name, "title": name.split(".")[0], "text": text} for name, text in DOCS.items()]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in corpus), encoding="utf-8")
    queries = {"q1": "annual leave days", "q2": "suspicious emails", "q3": "train travel trips"}
    (root / "queries.jsonl").write_text(
        "\n".join(json.dumps({"_id": q, "text": t}) for q, t in queries.items()), encoding="utf-8"
    )
    qrels = "query-id\tcorpus-id\tscore\nq1\tleave.txt\t1\nq2\tit.txt\t1\nq3\ttravel.txt\t1\n"
    (root / "qrels" / "test.tsv").write_text(qrels, encoding="utf-8")
    return root


def test_offline_comparison_json(run: Run, handbook: Path, tmp_path: Path) -> None:
    run("experiments", "create", "pipes", "--variant", "control", "--variant", "fast:profile=fast",
        "--variant", "terse:template=concise")  # fmt: skip
    qa = tmp_path / "qa.jsonl"
    cases = [
        {"question": "How many days of annual leave do staff get?", "answers": ["25 days"], "kb": "handbook",
         "support_sources": ["leave.txt"]},
        {"question": "How often do passwords rotate?", "answers": ["every 90 days"], "kb": "handbook"},
        {"question": "Who won the 1998 World Cup?", "unanswerable": True, "kb": "handbook"},
    ]  # fmt: skip
    qa.write_text("\n".join(json.dumps(c) for c in cases), encoding="utf-8")
    code, out = run(
        "experiments", "offline", "pipes", "--beir", str(_beir(tmp_path / "beir")), "--qa", str(qa), "--json"
    )
    result = json.loads(out)
    assert code == 0 and set(result) == {"experiment", "beir", "qa"}
    beir = result["beir"]
    assert beir["queries"] == 3 and [v["variant"] for v in beir["variants"]] == ["control", "fast", "terse"]
    control, fast, terse = beir["variants"]
    assert control["ndcg@10"] == 1.0 and "vs_control" not in control
    assert terse["same_retrieval_as"] == "control", "a template does not change a ranking"
    assert terse["vs_control"]["ndcg@10"] == {
        "pairs": 3,
        "difference": 0.0,
        "ci": [0.0, 0.0],
        "p": 1.0,
        "verdict": "not significant",
    }
    assert fast["profile"] == "fast" and set(fast["vs_control"]) == {"ndcg@10", "recall@100", "mrr@10"}
    qa_result = result["qa"]
    assert qa_result["cases"] == 3 and qa_result["policy"] == "remove"
    row = qa_result["variants"][2]
    assert row["template"] == "concise-v1" and row["metrics"]["cases"] == 3
    assert set(row["vs_control"]) == {"refusal_correct", "f1", "support", "grounding_failure", "ask_ms"}
    assert row["vs_control"]["support"] == {"pairs": 1, "note": "not enough data"}
    code, out = run("experiments", "offline", "pipes", "--qa", str(qa))
    assert code == 0 and "Δ" in out
