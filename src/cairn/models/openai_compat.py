"""Clients for OpenAI-compatible servers: vLLM, Ollama, llama.cpp server, TGI, OpenAI itself.

Locations: ``openai://host:port/v1?model=NAME`` (plain HTTP, the usual self-hosted case),
``openais://host/v1?model=NAME`` (HTTPS), and the same with ``http://`` / ``https://``. An empty
path means ``/v1``. Keys never appear in a location: they come from ``settings.api_key()``, so a
location can be logged and shown in errors.

Failures a retry can cure (connection refused, 429, 5xx) are retried with exponential backoff;
a stream is retried only until its first piece has been handed to the caller, since nothing
yielded can be taken back.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import numpy as np

from cairn import __version__
from cairn.errors import ConfigError, ModelError, ModelUnavailable
from cairn.models.base import EMBEDDERS, GENERATORS, BaseEmbedder, BaseGenerator, Completion, Vectors
from cairn.settings import Settings, get_settings
from cairn.types import ChatMessage

log = logging.getLogger(__name__)

_SCHEMES = {"openai": "http", "openais": "https", "http": "http", "https": "https"}
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Read timeouts are not retried: a server that is slow once is slow again, and the caller would
# wait (retries + 1) x timeout for the same failure.
_RETRY_TRANSPORT: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.RemoteProtocolError,
)
_MAX_RETRY_AFTER_S = 30.0
_EOL = re.compile(r"\r\n|\n|\r")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A parsed location: where to send requests, which model to ask for, and extra options."""

    base_url: str
    model: str
    options: Mapping[str, str] = field(default_factory=dict)


def parse_location(location: str, *, options: frozenset[str] = frozenset()) -> Endpoint:
    """Split a location into base URL, model and the ``options`` a backend accepts.

    Unknown query parameters are refused rather than ignored, so ``?modle=`` fails at start-up
    instead of silently asking the server for its default model.
    """
    parts = urlsplit(location)
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise ConfigError(f"{location!r} is not an OpenAI-compatible location", hint="e.g. 'openai://host:8000/v1'")
    if not parts.hostname:
        raise ConfigError(f"no host in {location!r}", hint="e.g. 'openai://localhost:8000/v1?model=NAME'")
    if parts.username or parts.password:
        raise ConfigError(
            f"credentials in the location {parts.hostname!r} would be logged",
            hint="put the key in CAIRN_OPENAI_API_KEY instead",
        )
    query = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
    model = query.pop("model", "").strip()
    if not model:
        raise ConfigError(f"no model in {location!r}", hint="add '?model=NAME' (the server's model id)")
    unknown = sorted(set(query) - options)
    if unknown:
        allowed = ", ".join(["model", *sorted(options)])
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} in {location!r}", hint=f"allowed: {allowed}")
    path = parts.path.rstrip("/") or "/v1"
    return Endpoint(urlunsplit((scheme, parts.netloc, path, "", "")), model, query)


def _int_option(endpoint: Endpoint, key: str, default: int | None, low: int, high: int) -> int | None:
    raw = endpoint.options.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"option {key}={raw!r} is not an integer") from exc
    if not low <= value <= high:
        raise ConfigError(f"option {key}={value} is outside {low}..{high}")
    return value


class _ServerError(Exception):
    """A failed exchange before it reaches the caller; the retry loops decide on ``retryable``."""

    def __init__(
        self,
        error: ModelError,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


class _HTTP:
    """One server: the shared client, the auth header and the error and retry policy."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        timeout_s: float,
        transport: httpx.BaseTransport | None,
        max_retries: int,
        sleep: Callable[[float], None],
    ) -> None:
        self.base_url = base_url
        self._api_key = api_key
        self.timeout_s = timeout_s
        self._timeout = httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
        self._transport = transport
        self.max_retries = max_retries
        self._sleep = sleep
        self._client: httpx.Client | None = None

    def client(self) -> httpx.Client:
        if self._client is None:
            headers = {"User-Agent": f"cairn/{__version__}", "Accept": "application/json"}
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
            self._client = httpx.Client(
                base_url=self.base_url + "/",
                headers=headers,
                timeout=self._timeout,
                transport=self._transport,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def open(self, path: str, body: Mapping[str, Any], *, stream: bool) -> httpx.Response:
        """Send one request; return a 2xx response or raise :class:`_ServerError`."""
        client = self.client()
        request = client.build_request("POST", path, json=body)
        try:
            response = client.send(request, stream=stream)
        except _RETRY_TRANSPORT as exc:
            raise _ServerError(
                ModelUnavailable(
                    f"cannot reach {self.base_url}: {type(exc).__name__}: {exc}",
                    hint="is the model server running and the location right?",
                ),
                retryable=True,
            ) from exc
        except httpx.TimeoutException as exc:
            raise _ServerError(
                ModelError(
                    f"{self.base_url} did not answer within {self.timeout_s:g} s",
                    hint="raise CAIRN_REQUEST_TIMEOUT_S or use a faster model",
                ),
                retryable=False,
            ) from exc
        except httpx.HTTPError as exc:
            raise _ServerError(ModelError(f"request to {self.base_url} failed: {exc}"), retryable=False) from exc
        if response.is_success:
            return response
        try:
            response.read()
        finally:
            response.close()
        status = response.status_code
        raise _ServerError(
            ModelError(
                f"{self.base_url}/{path} answered {status}: {self._message(response)}",
                hint=_HINTS.get(status),
            ),
            retryable=status in _RETRY_STATUSES,
            status=status,
            retry_after=_retry_after(response),
        )

    def redact(self, text: str) -> str:
        # Some servers echo the credential they rejected; it must not reach logs or API clients.
        return text.replace(self._api_key, "***") if self._api_key else text

    def _message(self, response: httpx.Response) -> str:
        try:
            payload = response.json()
        except ValueError:
            payload = None
        message = _error_text(payload) if payload is not None else None
        if message is None:
            message = " ".join(response.text.split())[:500] or response.reason_phrase
        return self.redact(message)

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, _MAX_RETRY_AFTER_S)
        return 0.5 * (1 << attempt) + random.uniform(0, 0.25)

    def post_json(self, path: str, body: Mapping[str, Any]) -> Any:
        for attempt in range(self.max_retries + 1):
            try:
                response = self.open(path, body, stream=False)
                try:
                    return response.json()
                except ValueError as exc:
                    raise ModelError(f"{self.base_url} answered with something other than JSON") from exc
            except _ServerError as exc:
                if not exc.retryable or attempt == self.max_retries:
                    raise exc.error from exc.__cause__
                self.wait(attempt, exc)
        raise AssertionError("unreachable: the loop returns or raises")

    def wait(self, attempt: int, exc: _ServerError) -> None:
        delay = self.backoff(attempt, exc.retry_after)
        log.warning("%s (retry %d/%d in %.1f s)", exc.error.message, attempt + 1, self.max_retries, delay)
        self._sleep(delay)


_HINTS = {
    401: "check CAIRN_OPENAI_API_KEY (or OPENAI_API_KEY)",
    403: "check CAIRN_OPENAI_API_KEY (or OPENAI_API_KEY)",
    404: "check the location's path (usually ending in /v1) and ?model=",
    429: "the server is rate limiting: lower concurrency or retry later",
}


def _error_text(payload: object) -> str | None:
    """The human message in the error shapes servers use (OpenAI/vLLM, Ollama, TGI, FastAPI)."""
    if isinstance(payload, dict):
        for key in ("error", "detail", "message"):
            value = payload.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict | list):
                nested = _error_text(value)
                if nested:
                    return nested
    if isinstance(payload, list) and payload:
        return _error_text(payload[0])
    return None


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


class SSEDecoder:
    """Turns a byte stream into server-sent-event payloads.

    Lines end only at CR, LF or CRLF as the SSE specification says: ``str.splitlines`` (which
    httpx's ``iter_lines`` uses) also splits at U+2028 and friends, which servers may send raw
    inside JSON strings. Bytes are decoded incrementally, so a character split across network
    chunks survives.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._data: list[str] = []
        self._started = False

    def feed(self, chunk: bytes) -> list[str]:
        return self._lines(self._decoder.decode(chunk), final=False)

    def close(self) -> list[str]:
        events = self._lines(self._decoder.decode(b"", final=True), final=True)
        if self._buffer:
            events.extend(self._line(self._buffer))
            self._buffer = ""
        if self._data:
            events.append("\n".join(self._data))
            self._data = []
        return events

    def _lines(self, text: str, *, final: bool) -> list[str]:
        if not self._started and text:
            text = text.removeprefix("\ufeff")
            self._started = True
        self._buffer += text
        events: list[str] = []
        position = 0
        for match in _EOL.finditer(self._buffer):
            if match.group() == "\r" and match.end() == len(self._buffer) and not final:
                break  # may be the first half of a CRLF split across chunks
            events.extend(self._line(self._buffer[position : match.start()]))
            position = match.end()
        self._buffer = self._buffer[position:]
        return events

    def _line(self, line: str) -> list[str]:
        if not line:
            if not self._data:
                return []
            event, self._data = "\n".join(self._data), []
            return [event]
        if line.startswith(":"):
            return []
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value.removeprefix(" "))
        return []


def _json_events(payload: str) -> Iterator[dict[str, Any]]:
    """Parse one event's data; tolerate servers that omit the blank line between events."""
    try:
        chunks = [json.loads(payload)]
    except ValueError:
        try:
            chunks = [json.loads(line) for line in payload.split("\n") if line.strip()]
        except ValueError as exc:
            raise ModelError(f"unparseable stream event: {payload[:200]!r}") from exc
    for chunk in chunks:
        if isinstance(chunk, dict):
            yield chunk


def _estimate_tokens(text: str) -> int:
    # About four characters a token for English BPE vocabularies; only used when the server is silent.
    return math.ceil(len(text) / 4)


def _factory_settings(settings: Settings | None) -> Settings:
    return settings if settings is not None else get_settings()


class OpenAIEmbedder(BaseEmbedder):
    """``POST /embeddings`` in batches; the dimension comes from ``?dim=`` or a probe at warm-up."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        dim: int | None = None,
        batch_size: int = 32,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        self.name = f"openai:{model}"
        self.model = model
        self.dim = dim or 0
        self.batch_size = batch_size
        self._http = _HTTP(
            base_url,
            api_key=api_key,
            timeout_s=timeout_s,
            transport=transport,
            max_retries=max_retries,
            sleep=sleep,
        )

    def _load(self) -> None:
        if not self.dim:
            self._embed_batch(["dimension probe"])

    def close(self) -> None:
        self._http.close()

    def _embed_batch(self, texts: list[str]) -> Vectors:
        payload = self._http.post_json("embeddings", {"model": self.model, "input": texts})
        rows = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(rows, list) or len(rows) != len(texts):
            got = len(rows) if isinstance(rows, list) else "no"
            raise ModelError(f"{self._http.base_url} returned {got} embeddings for {len(texts)} inputs")
        ordered = sorted(rows, key=lambda r: r.get("index", 0) if isinstance(r, dict) else 0)
        try:
            vectors = np.asarray([row["embedding"] for row in ordered], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(
                f"{self._http.base_url} returned embeddings cairn cannot read",
                hint="the server must return float lists (encoding_format 'float')",
            ) from exc
        if vectors.ndim != 2 or vectors.shape[1] == 0:
            raise ModelError(f"{self._http.base_url} returned embeddings of shape {vectors.shape}")
        if not self.dim:
            self.dim = int(vectors.shape[1])
        elif vectors.shape[1] != self.dim:
            raise ModelError(
                f"{self.name} returned {vectors.shape[1]}-d vectors, expected {self.dim}",
                hint="fix ?dim= in the embedder location, or re-index if the model changed",
            )
        return vectors


@dataclass(slots=True)
class _StreamState:
    pieces: list[str] = field(default_factory=list)
    usage: dict[str, Any] | None = None


class OpenAIChatGenerator(BaseGenerator):
    """``POST /chat/completions`` with ``stream: true``, yielding content deltas as they arrive."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        self.name = f"openai:{model}"
        self.model = model
        self._http = _HTTP(
            base_url,
            api_key=api_key,
            timeout_s=timeout_s,
            transport=transport,
            max_retries=max_retries,
            sleep=sleep,
        )
        # Dropped for good after a server rejects it (older TGI and proxies validate strictly).
        self._ask_usage = True

    def close(self) -> None:
        self._http.close()

    def _body(
        self, messages: Sequence[ChatMessage], max_tokens: int, temperature: float, stop: Sequence[str] | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
        }
        if stop:
            body["stop"] = list(stop)
        if self._ask_usage:
            body["stream_options"] = {"include_usage": True}
        return body

    def _stream(
        self, messages: Sequence[ChatMessage], max_tokens: int, temperature: float, stop: Sequence[str] | None
    ) -> Iterator[str]:
        state = _StreamState()
        attempt = 0
        try:
            while True:
                body = self._body(messages, max_tokens, temperature, stop)
                exchange = self._exchange(body, state)
                try:
                    yield from exchange
                    return
                except _ServerError as exc:
                    if state.pieces:
                        raise ModelError(
                            f"{self.name} stream broke after {len(state.pieces)} pieces: {exc.error.message}"
                        ) from exc.__cause__
                    if exc.status in (400, 422) and self._ask_usage and "stream_options" in exc.error.message:
                        self._ask_usage = False
                        continue
                    if not exc.retryable or attempt >= self._http.max_retries:
                        raise exc.error from exc.__cause__
                    self._http.wait(attempt, exc)
                    attempt += 1
                finally:
                    exchange.close()
        finally:
            self.last_usage = self._usage(messages, state)

    def _exchange(self, body: Mapping[str, Any], state: _StreamState) -> Generator[str, None, None]:
        """One request: yields content pieces, records usage; failures leave as :class:`_ServerError`."""
        response = self._http.open("chat/completions", body, stream=True)
        try:
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                # Some servers ignore ``stream`` (or proxies buffer it): accept the whole answer at once.
                yield from self._whole(response, state)
                return
            decoder = SSEDecoder()
            try:
                for raw in response.iter_bytes():
                    for payload in decoder.feed(raw):
                        if payload.strip() == "[DONE]":
                            return
                        yield from self._deltas(payload, state)
                for payload in decoder.close():
                    if payload.strip() == "[DONE]":
                        return
                    yield from self._deltas(payload, state)
            except httpx.TimeoutException as exc:
                raise _ServerError(
                    ModelError(f"{self._http.base_url} sent nothing for {self._http.timeout_s:g} s mid-stream"),
                    retryable=False,
                ) from exc
            except httpx.TransportError as exc:
                raise _ServerError(
                    ModelError(f"{self._http.base_url} dropped the stream: {type(exc).__name__}"),
                    retryable=True,
                ) from exc
        finally:
            response.close()

    def _deltas(self, payload: str, state: _StreamState) -> Iterator[str]:
        for chunk in _json_events(payload):
            if "error" in chunk:
                message = self._http.redact(_error_text(chunk) or str(chunk["error"]))
                raise _ServerError(ModelError(f"{self.name} failed mid-stream: {message}"), retryable=False)
            if isinstance(chunk.get("usage"), dict):
                state.usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") if isinstance(choice, dict) else None
                content = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(content, str) and content:
                    state.pieces.append(content)
                    yield content

    def _whole(self, response: httpx.Response, state: _StreamState) -> Iterator[str]:
        try:
            payload = json.loads(response.read())
            content = payload["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise _ServerError(
                ModelError(f"{self._http.base_url} answered without a readable completion"), retryable=False
            ) from exc
        if isinstance(payload.get("usage"), dict):
            state.usage = payload["usage"]
        if content:
            state.pieces.append(content)
            yield content

    def _usage(self, messages: Sequence[ChatMessage], state: _StreamState) -> Completion:
        text = "".join(state.pieces)
        usage = state.usage or {}
        tokens_in = usage.get("prompt_tokens")
        tokens_out = usage.get("completion_tokens")
        if not isinstance(tokens_in, int):
            # Chat templates add a few tokens of role markup per message.
            tokens_in = sum(_estimate_tokens(m.content) + 4 for m in messages)
        if not isinstance(tokens_out, int):
            tokens_out = _estimate_tokens(text)
        return Completion(text=text, tokens_in=tokens_in, tokens_out=tokens_out, model=self.name)


@EMBEDDERS.register(*_SCHEMES)
def create_openai_embedder(
    location: str,
    *,
    settings: Settings | None = None,
    transport: httpx.BaseTransport | None = None,
    **_: object,
) -> OpenAIEmbedder:
    settings = _factory_settings(settings)
    endpoint = parse_location(location, options=frozenset({"dim", "batch"}))
    return OpenAIEmbedder(
        endpoint.base_url,
        endpoint.model,
        api_key=settings.api_key(),
        dim=_int_option(endpoint, "dim", None, 1, 65536),
        batch_size=_int_option(endpoint, "batch", 32, 1, 4096) or 32,
        timeout_s=settings.request_timeout_s,
        transport=transport,
    )


@GENERATORS.register(*_SCHEMES)
def create_openai_generator(
    location: str,
    *,
    settings: Settings | None = None,
    transport: httpx.BaseTransport | None = None,
    **_: object,
) -> OpenAIChatGenerator:
    settings = _factory_settings(settings)
    endpoint = parse_location(location)
    return OpenAIChatGenerator(
        endpoint.base_url,
        endpoint.model,
        api_key=settings.api_key(),
        timeout_s=settings.request_timeout_s,
        transport=transport,
    )


__all__ = [
    "Endpoint",
    "OpenAIChatGenerator",
    "OpenAIEmbedder",
    "SSEDecoder",
    "create_openai_embedder",
    "create_openai_generator",
    "parse_location",
]
