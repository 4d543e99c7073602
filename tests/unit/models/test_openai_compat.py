from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from cairn.errors import ConfigError, ModelError, ModelUnavailable
from cairn.models import create_embedder, create_generator
from cairn.models.openai_compat import (
    OpenAIChatGenerator,
    OpenAIEmbedder,
    SSEDecoder,
    parse_location,
)
from cairn.settings import get_settings
from cairn.testing import HashEmbedder, check_embedder, check_generator
from cairn.types import ChatMessage

KEY = "sk-test-secret-123"
BASE = "http://llm.test:8000/v1"
USER = [ChatMessage("user", "hello")]
Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that answers from a list and keeps every request."""

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


def sse(*events: object, done: bool = True) -> bytes:
    lines = [f"data: {json.dumps(e, ensure_ascii=False)}\n\n" for e in events]
    if done:
        lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


def delta(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def stream_response(body: bytes | httpx.SyncByteStream, status: int = 200) -> httpx.Response:
    headers = {"content-type": "text/event-stream"}
    if isinstance(body, bytes):
        return httpx.Response(status, headers=headers, content=body)
    return httpx.Response(status, headers=headers, stream=body)


class Chunks(httpx.SyncByteStream):
    """A response body delivered in given pieces, optionally failing part-way."""

    def __init__(self, chunks: list[bytes], fail_after: int | None = None) -> None:
        self.chunks = chunks
        self.fail_after = fail_after
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        for i, chunk in enumerate(self.chunks):
            if self.fail_after is not None and i >= self.fail_after:
                raise httpx.ReadError("connection reset")
            yield chunk

    def close(self) -> None:
        self.closed = True


def chat(recorder: Recorder, **kwargs: Any) -> OpenAIChatGenerator:
    return OpenAIChatGenerator(
        BASE,
        "qwen",
        api_key=KEY,
        transport=httpx.MockTransport(recorder),
        sleep=recorder.sleeps.append,
        **kwargs,
    )


def embedder(recorder: Recorder, **kwargs: Any) -> OpenAIEmbedder:
    return OpenAIEmbedder(
        BASE, "bge", api_key=KEY, transport=httpx.MockTransport(recorder), sleep=lambda _: None, **kwargs
    )


# --- locations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "base"),
    [
        ("openai://gpu-box:8000/v1?model=m", "http://gpu-box:8000/v1"),
        ("openais://api.openai.com/v1?model=m", "https://api.openai.com/v1"),
        ("http://localhost:11434/v1/?model=m", "http://localhost:11434/v1"),
        ("https://host/proxy/openai/v1?model=m", "https://host/proxy/openai/v1"),
        ("openai://localhost:8080?model=m", "http://localhost:8080/v1"),
    ],
)
def test_locations_map_to_base_urls(location: str, base: str) -> None:
    endpoint = parse_location(location)
    assert endpoint.base_url == base
    assert endpoint.model == "m"


def test_model_names_with_slashes_and_colons_survive() -> None:
    endpoint = parse_location("openai://h:1/v1?model=Qwen/Qwen2.5-7B-Instruct:q4")
    assert endpoint.model == "Qwen/Qwen2.5-7B-Instruct:q4"


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("openai://host:8000/v1", "no model"),
        ("openai://host/v1?model=m&modle=x", "unknown option"),
        ("openai://user:sk-1@host/v1?model=m", "credentials"),
        ("openai:///v1?model=m", "no host"),
        ("ftp://host/v1?model=m", "not an OpenAI-compatible"),
    ],
)
def test_bad_locations_are_refused(location: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_location(location)


def test_secret_never_appears_in_a_credentials_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse_location("openai://user:sk-1@host/v1?model=m")
    assert "sk-1" not in str(info.value)


@pytest.mark.parametrize("scheme", ["openai", "openais", "http", "https"])
def test_all_schemes_are_registered_for_both_roles(scheme: str, tmp_path: Path) -> None:
    settings = get_settings(home=tmp_path, openai_api_key=KEY, request_timeout_s=7)
    emb = create_embedder(f"{scheme}://h/v1?model=e&dim=8&batch=4", settings=settings)
    gen = create_generator(f"{scheme}://h/v1?model=g", settings=settings)
    assert isinstance(emb, OpenAIEmbedder)
    assert (emb.name, emb.dim, emb.batch_size) == ("openai:e", 8, 4)
    assert isinstance(gen, OpenAIChatGenerator)
    assert gen.name == "openai:g"


def test_generator_location_refuses_embedder_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dim"):
        create_generator("openai://h/v1?model=g&dim=3", settings=get_settings(home=tmp_path))


# --- SSE decoding ----------------------------------------------------------------------------


def decode_in_pieces(data: bytes, size: int) -> list[str]:
    decoder = SSEDecoder()
    events: list[str] = []
    for i in range(0, len(data), size):
        events.extend(decoder.feed(data[i : i + size]))
    return events + decoder.close()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_sse_survives_any_chunking(size: int) -> None:
    data = (
        b": keep-alive comment\r\n\r\n"
        b'data: {"a": "caf\xc3\xa9 \xf0\x9f\x98\x80"}\r\n\r\n'
        b"event: message\ndata: first line\ndata: second line\n\n"
        b"data:no-space\r\r"
        b"data: [DONE]\n\n"
    )
    assert decode_in_pieces(data, size) == [
        '{"a": "café 😀"}',
        "first line\nsecond line",
        "no-space",
        "[DONE]",
    ]


def test_sse_keeps_unicode_line_separators_inside_json() -> None:
    # str.splitlines() would cut this event in two; SSE lines end only at CR/LF.
    payload = json.dumps({"t": "a\u2028b\x85c"}, ensure_ascii=False)
    assert decode_in_pieces(f"data: {payload}\n\n".encode(), 5) == [payload]


def test_sse_flushes_a_final_event_without_blank_line() -> None:
    assert decode_in_pieces(b'\xef\xbb\xbfdata: {"x": 1}', 4) == ['{"x": 1}']


# --- chat streaming --------------------------------------------------------------------------


def test_stream_yields_deltas_and_sends_a_complete_request() -> None:
    usage = {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}}
    body = sse({"choices": [{"delta": {"role": "assistant"}}]}, delta("Hel"), delta("lo"), delta("!"), usage)
    recorder = Recorder(stream_response(body))
    gen = chat(recorder)
    pieces = list(gen.stream(USER, max_tokens=20, temperature=0.2, stop=["\n\n"]))
    assert pieces == ["Hel", "lo", "!"]
    assert (gen.last_usage.tokens_in, gen.last_usage.tokens_out) == (11, 3)
    request = recorder.requests[0]
    assert str(request.url) == f"{BASE}/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert recorder.bodies()[0] == {
        "model": "qwen",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 20,
        "temperature": 0.2,
        "stream": True,
        "stop": ["\n\n"],
        "stream_options": {"include_usage": True},
    }


def test_no_authorization_header_without_a_key() -> None:
    recorder = Recorder(stream_response(sse(delta("x"))))
    gen = OpenAIChatGenerator(BASE, "m", transport=httpx.MockTransport(recorder))
    gen.generate(USER)
    assert "authorization" not in recorder.requests[0].headers


def test_events_split_across_network_chunks() -> None:
    body = sse(delta("Grüße "), delta("😀"), delta(" done"))
    recorder = Recorder(stream_response(Chunks([body[i : i + 3] for i in range(0, len(body), 3)])))
    assert chat(recorder).generate(USER).text == "Grüße 😀 done"


def test_usage_is_estimated_when_the_server_sends_none() -> None:
    gen = chat(Recorder(stream_response(sse(delta("x" * 40)))))
    completion = gen.generate([ChatMessage("system", "s" * 16), ChatMessage("user", "u" * 8)])
    assert completion.tokens_out == 10
    assert completion.tokens_in == 4 + 4 + 2 + 4


def test_a_plain_json_answer_is_accepted() -> None:
    answer = {
        "choices": [{"message": {"content": "whole"}}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1},
    }
    completion = chat(Recorder(httpx.Response(200, json=answer))).generate(USER)
    assert (completion.text, completion.tokens_in, completion.tokens_out) == ("whole", 2, 1)


def test_stream_options_are_dropped_when_a_server_rejects_them() -> None:
    rejected = httpx.Response(400, json={"error": {"message": "Extra inputs are not permitted: stream_options"}})
    recorder = Recorder(rejected, stream_response(sse(delta("ok"))))
    gen = chat(recorder)
    assert gen.generate(USER).text == "ok"
    assert gen.generate(USER).text == "ok"
    assert ["stream_options" in b for b in recorder.bodies()] == [True, False, False]
    assert recorder.sleeps == []


def test_an_error_event_mid_stream_raises() -> None:
    body = sse({"error": {"message": "CUDA out of memory", "code": 500}}, done=False)
    with pytest.raises(ModelError, match="CUDA out of memory"):
        chat(Recorder(stream_response(body))).generate(USER)


def test_stopping_early_closes_the_response() -> None:
    body = Chunks([sse(delta("a"), done=False), sse(delta("b"), done=False), sse(delta("c"))])
    gen = chat(Recorder(stream_response(body)))
    stream = gen.stream(USER)
    assert isinstance(stream, Generator)
    assert next(stream) == "a"
    stream.close()
    assert body.closed
    assert gen.last_usage.text == "a"


# --- retries and errors ----------------------------------------------------------------------


def test_server_errors_are_retried_with_backoff() -> None:
    recorder = Recorder(
        httpx.Response(503, json={"error": "loading"}),
        httpx.Response(502, text="bad gateway"),
        stream_response(sse(delta("up"))),
    )
    gen = chat(recorder)
    assert gen.generate(USER).text == "up"
    assert len(recorder.requests) == 3
    assert len(recorder.sleeps) == 2
    assert recorder.sleeps[0] < recorder.sleeps[1]


def test_retry_after_is_honoured_on_429() -> None:
    recorder = Recorder(
        httpx.Response(429, headers={"retry-after": "2"}, json={"error": {"message": "slow down"}}),
        stream_response(sse(delta("ok"))),
    )
    gen = chat(recorder)
    gen.generate(USER)
    assert recorder.sleeps == [2.0]


def test_retries_stop_after_three() -> None:
    recorder = Recorder(httpx.Response(500, json={"error": {"message": "boom"}}))
    gen = chat(recorder)
    with pytest.raises(ModelError, match="answered 500: boom"):
        gen.generate(USER)
    assert len(recorder.requests) == 4


def test_connection_refused_becomes_model_unavailable() -> None:
    recorder = Recorder(httpx.ConnectError("refused"))
    with pytest.raises(ModelUnavailable, match=r"cannot reach http://llm\.test:8000/v1"):
        chat(recorder).generate(USER)
    assert len(recorder.requests) == 4


def test_client_errors_are_not_retried_and_carry_the_server_message() -> None:
    recorder = Recorder(httpx.Response(404, json={"error": {"message": "model 'qwen' not found"}}))
    with pytest.raises(ModelError, match="model 'qwen' not found") as info:
        chat(recorder).generate(USER)
    assert len(recorder.requests) == 1
    assert info.value.hint is not None and "?model=" in info.value.hint


def test_the_key_never_leaks_into_errors() -> None:
    echo = httpx.Response(401, json={"error": {"message": f"Incorrect API key provided: {KEY}"}})
    with pytest.raises(ModelError) as info:
        chat(Recorder(echo)).generate(USER)
    assert KEY not in str(info.value)
    assert KEY not in json.dumps(info.value.to_dict())
    assert "CAIRN_OPENAI_API_KEY" in (info.value.hint or "")


def test_a_drop_before_the_first_token_is_retried() -> None:
    broken = stream_response(Chunks([b": ping\n\n", b"never"], fail_after=1))
    recorder = Recorder(broken, stream_response(sse(delta("second try"))))
    assert chat(recorder).generate(USER).text == "second try"
    assert len(recorder.requests) == 2


def test_a_drop_after_the_first_token_is_not_retried() -> None:
    broken = stream_response(Chunks([sse(delta("partial"), done=False), b"x"], fail_after=1))
    recorder = Recorder(broken, stream_response(sse(delta("again"))))
    gen = chat(recorder)
    pieces: list[str] = []
    with pytest.raises(ModelError, match="stream broke after 1 pieces"):
        pieces.extend(gen.stream(USER))
    assert pieces == ["partial"]
    assert len(recorder.requests) == 1


def test_read_timeouts_are_not_retried() -> None:
    recorder = Recorder(httpx.ReadTimeout("slow"))
    with pytest.raises(ModelError, match="did not answer within 120 s"):
        chat(recorder).generate(USER)
    assert len(recorder.requests) == 1


# --- embeddings ------------------------------------------------------------------------------


def embedding_server(dim: int = 16, shuffle: bool = False) -> Handler:
    """Answers /embeddings with hash-embedder vectors, so similarity checks mean something."""
    reference = HashEmbedder(dim)

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        vectors = reference.embed_documents(body["input"])
        data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
        if shuffle:
            data.reverse()
        return httpx.Response(200, json={"object": "list", "data": data, "model": body["model"]})

    return handle


def test_openai_embedder_conforms() -> None:
    check_embedder(embedder(Recorder(embedding_server(64))))


def test_dimension_is_probed_once_at_warm_up() -> None:
    recorder = Recorder(embedding_server(16))
    emb = embedder(recorder)
    emb.warm_up()
    assert emb.dim == 16
    assert recorder.bodies() == [{"model": "bge", "input": ["dimension probe"]}]


def test_a_declared_dimension_needs_no_probe() -> None:
    recorder = Recorder(embedding_server(16))
    emb = embedder(recorder, dim=16)
    emb.warm_up()
    assert recorder.requests == []


def test_documents_are_sent_in_batches_and_reordered_by_index() -> None:
    recorder = Recorder(embedding_server(16, shuffle=True))
    emb = embedder(recorder, dim=16, batch_size=2)
    texts = ["alpha", "beta gamma", "delta", "epsilon zeta eta", "theta"]
    vectors = emb.embed_documents(texts)
    assert [len(b["input"]) for b in recorder.bodies()] == [2, 2, 1]
    assert np.allclose(vectors, HashEmbedder(16).embed_documents(texts), atol=1e-6)


def test_a_dimension_change_is_an_error() -> None:
    emb = embedder(Recorder(embedding_server(8)), dim=16)
    with pytest.raises(ModelError, match="8-d vectors, expected 16"):
        emb.embed_documents(["x"])


@pytest.mark.parametrize(
    "payload",
    [
        {"data": []},
        {"data": [{"index": 0, "embedding": "AAAA"}]},
        {"unexpected": True},
    ],
)
def test_unreadable_embedding_answers_are_errors(payload: dict[str, Any]) -> None:
    with pytest.raises(ModelError):
        embedder(Recorder(httpx.Response(200, json=payload)), dim=4).embed_documents(["x"])


def test_embedding_requests_are_retried() -> None:
    recorder = Recorder(httpx.Response(503), embedding_server(4))
    assert embedder(recorder, dim=4).embed_query("x").shape == (4,)
    assert len(recorder.requests) == 2


# --- the generator contract ------------------------------------------------------------------


def scripted_chat_server(reply: str = "Hello and welcome to the team, new colleague!") -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        words = reply.split(" ")[: body["max_tokens"]]
        pieces = [w + " " for w in words[:-1]] + words[-1:]
        usage = {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": len(pieces)}}
        return stream_response(sse(*(delta(p) for p in pieces), usage))

    return handle


def test_openai_generator_conforms() -> None:
    completion = check_generator(chat(Recorder(scripted_chat_server())), max_tokens=4)
    assert completion.text == "Hello and welcome to"
