"""A BEIR folder small enough for the bench scripts to run end to end in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TOPICS = [
    "vitamin D deficiency and bone fractures in older adults",
    "statins lower cholesterol and cardiovascular events",
    "sleep deprivation impairs memory consolidation",
    "gut microbiome composition shapes immune responses",
    "antibiotic resistance spreads through plasmid transfer",
    "exercise improves insulin sensitivity in diabetes",
]


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    root = tmp_path / "beir"
    (root / "qrels").mkdir(parents=True)
    docs = []
    for i in range(24):
        topic = TOPICS[i % len(TOPICS)]
        text = f"Study {i} examined how {topic}. " * (3 + i % 4) + f"Cohort {i} had {100 + i} participants."
        docs.append({"_id": f"d{i}", "title": f"{topic.capitalize()} ({i})", "text": text})
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs), encoding="utf-8")
    queries = [{"_id": f"q{i}", "text": topic} for i, topic in enumerate(TOPICS)]
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries), encoding="utf-8")
    qrels = [f"q{i}\td{i}\t1" for i in range(len(TOPICS))]
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels), encoding="utf-8")
    return root
