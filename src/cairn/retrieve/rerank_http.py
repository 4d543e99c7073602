"""Served cross-encoders through the ``/rerank`` APIs of TEI, Infinity, vLLM and Cohere.

Locations (the scheme says which wire format and which default path)::

    tei://host:8080                               POST http://host:8080/rerank       TEI body
    infinity://host:7997?model=BAAI/bge-reranker-base
                                                  POST http://host:7997/rerank       Cohere-style body
    vllm://host:8000?model=BAAI/bge-reranker-v2-m3
                                                  POST http://host:8000/v1/rerank    Cohere-style body
    cohere://api.cohere.com/v2?model=rerank-v3.5  POST https://api.cohere.com/v2/rerank
    http://host:port/path?model=M                 POST http://host:port/path/rerank  Cohere-style body
    https://host/path?api=tei                     POST https://host/path/rerank      TEI body

``http://`` and ``https://`` take the path as given (``/rerank`` is appended) and speak the
Cohere-style body that Infinity, vLLM, Jina, llama.cpp's server and LocalAI all accept; ``?api=tei``
switches them to TEI's, which is also the way to reach a TEI behind TLS. There is no guessing of the
server kind: a wrong guess would silently send the wrong body.

Wire formats:

- TEI: ``{"query", "texts", "truncate": true}`` -> ``[{"index", "score"}, ...]``
- Cohere-style: ``{"model", "query", "documents", "top_n"}`` -> ``{"results": [{"index", "relevance_score"}]}``

Options: ``model``, ``batch`` (passages per request; TEI's default ``--max-client-batch-size`` is 32),
``timeout`` (seconds, default 30: a re-ranker sits in the query path), ``weight`` (blend with the
fused score, default 1 = the cross-encoder alone), ``api`` (``http(s)`` only). A cross-encoder scores
each passage on its own, so scores from several batches are comparable.

The key never appears in a location: it is the ``api_key`` argument (the integrator's setting),
else ``CAIRN_RERANK_API_KEY``, else for ``cohere://`` the Cohere SDK's ``CO_API_KEY``. The
generator's OpenAI key is deliberately not used: it would be sent to another host. Transport and
server errors, retries (connection refused, 429, 5xx) and key redaction are those of the
OpenAI-compatible clients (:mod:`cairn.models.openai_compat`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx

from cairn.errors import ConfigError, ModelError
from cairn.models.openai_compat import _HTTP, _ServerError
from cairn.retrieve.base import RERANKERS
from cairn.retrieve.rerank import BaseReranker, float_option, int_option, passage_text
from cairn.settings import Settings, get_settings
from cairn.types import Hit

Api = Literal["tei", "cohere"]
KEY_ENV = "CAIRN_RERANK_API_KEY"
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class _Scheme:
    transport: str  # http or https
    api: Api
    path: str  # default path when the location has none
    needs_model: bool


_SCHEMES: dict[str, _Scheme] = {
    "tei": _Scheme("http", "tei", "", needs_model=False),
    "infinity": _Scheme("http", "cohere", "", needs_model=False),
    "vllm": _Scheme("http", "cohere", "/v1", needs_model=False),
    "cohere": _Scheme("https", "cohere", "/v2", needs_model=True),
    "http": _Scheme("http", "cohere", "", needs_model=False),
    "https": _Scheme("https", "cohere", "", needs_model=False),
}
_OPTIONS = frozenset({"model", "batch", "timeout", "weight"})


@dataclass(frozen=True, slots=True)
class RerankEndpoint:
    base_url: str
    api: Api
    model: str
    options: Mapping[str, str]


def parse_rerank_location(location: str) -> RerankEndpoint:
    """Split a ``/rerank`` location into base URL, wire format, model and options (unknown ones refused)."""
    parts = urlsplit(location)
    scheme_name = parts.scheme.lower()
    scheme = _SCHEMES.get(scheme_name)
    if scheme is None:
        raise ConfigError(f"{location!r} is not a /rerank location", hint="e.g. 'tei://host:8080'")
    if not parts.hostname:
        raise ConfigError(f"no host in {location!r}", hint="e.g. 'tei://localhost:8080'")
    if parts.username or parts.password:
        raise ConfigError(
            f"credentials in the location {parts.hostname!r} would be logged", hint=f"put the key in {KEY_ENV}"
        )
    options = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
    allowed = _OPTIONS | ({"api"} if scheme_name in ("http", "https") else frozenset())
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} in {location!r}", hint=f"allowed: {', '.join(sorted(allowed))}"
        )
    api = scheme.api
    if "api" in options:
        if options["api"] not in ("tei", "cohere"):
            raise ConfigError(f"api={options['api']!r} in {location!r}", hint="api=tei or api=cohere")
        api = options["api"]  # type: ignore[assignment]
    model = options.pop("model", "").strip()
    if scheme.needs_model and not model:
        raise ConfigError(f"no model in {location!r}", hint="add '?model=NAME', e.g. ?model=rerank-v3.5")
    path = parts.path.rstrip("/") or scheme.path
    return RerankEndpoint(urlunsplit((scheme.transport, parts.netloc, path, "", "")), api, model, options)


class HTTPReranker(BaseReranker):
    """A cross-encoder behind ``POST …/rerank``; passages are sent in batches of ``batch_size``."""

    score_key = "cross_encoder"

    def __init__(
        self,
        base_url: str,
        *,
        api: Api = "cohere",
        model: str = "",
        api_key: str | None = None,
        batch_size: int = 32,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = 2,
        weight: float = 1.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(weight=weight)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        if api not in ("tei", "cohere"):
            raise ConfigError(f"unknown /rerank API {api!r}", hint="tei or cohere")
        self.api: Api = api
        self.model = model
        self.batch_size = batch_size
        self.name = f"{api}:{model or base_url}"
        self._http = _HTTP(
            base_url, api_key=api_key, timeout_s=timeout_s, transport=transport, max_retries=max_retries, sleep=sleep
        )

    def close(self) -> None:
        self._http.close()

    def _score(self, query: str, hits: Sequence[Hit]) -> list[float]:
        texts = [passage_text(h) for h in hits]
        scores: list[float] = []
        for lo in range(0, len(texts), self.batch_size):
            scores.extend(self._batch(query, texts[lo : lo + self.batch_size]))
        return scores

    def _batch(self, query: str, texts: list[str]) -> list[float]:
        body: dict[str, Any]
        if self.api == "tei":
            body = {"query": query, "texts": texts, "truncate": True}
        else:
            body = {"query": query, "documents": texts, "top_n": len(texts)}
            if self.model:
                body["model"] = self.model
        try:
            payload = self._http.post_json("rerank", body)
        except ModelError as exc:
            raise self._explained(exc) from exc
        rows = payload if self.api == "tei" else (payload.get("results") if isinstance(payload, dict) else None)
        key = "score" if self.api == "tei" else "relevance_score"
        return self._parse(rows, key, len(texts))

    def _parse(self, rows: object, key: str, n: int) -> list[float]:
        where = f"{self._http.base_url}/rerank"
        if not isinstance(rows, list):
            expected = "a list" if self.api == "tei" else "{'results': [...]}"
            raise ModelError(f"{where} answered something other than {expected}", hint=self._api_hint())
        scores: dict[int, float] = {}
        for row in rows:
            index = row.get("index") if isinstance(row, dict) else None
            value = row.get(key) if isinstance(row, dict) else None
            if (
                not isinstance(index, int)
                or isinstance(index, bool)
                or not 0 <= index < n
                or not isinstance(value, int | float)
                or isinstance(value, bool)
            ):
                raise ModelError(f"{where} answered a malformed result {str(row)[:200]!r}", hint=self._api_hint())
            scores[index] = float(value)
        if len(scores) != n:
            raise ModelError(f"{where} scored {len(scores)} of {n} passages")
        return [scores[i] for i in range(n)]

    def _api_hint(self) -> str:
        other = "cohere" if self.api == "tei" else "tei"
        return f"is the server's API {self.api!r}? use the matching scheme or ?api={other}"

    def _explained(self, exc: ModelError) -> ModelError:
        """The same error, with a hint about re-ranker keys and paths instead of the generator's."""
        server = exc.__context__ if isinstance(exc.__context__, _ServerError) else None
        status = server.status if server is not None else None
        hint = exc.hint
        if status in (401, 403):
            hint = f"check {KEY_ENV} (or CO_API_KEY for cohere://)"
        elif status == 404:
            hint = "check the location's scheme and path: the request goes to <path>/rerank"
        elif status in (400, 413, 422):
            hint = f"{self._api_hint()}; a smaller ?batch= helps if the server limits batch size"
        return type(exc)(f"re-ranker: {exc.message}", hint=hint)


def _api_key(scheme: str, explicit: str | None) -> str | None:
    if explicit:
        return explicit
    key = os.environ.get(KEY_ENV)
    if not key and scheme == "cohere":
        key = os.environ.get("CO_API_KEY") or os.environ.get("COHERE_API_KEY")
    return key or None


@RERANKERS.register(*_SCHEMES)
def create_http_reranker(
    location: str,
    *,
    settings: Settings | None = None,
    api_key: str | None = None,
    transport: httpx.BaseTransport | None = None,
    **_: object,
) -> HTTPReranker:
    endpoint = parse_rerank_location(location)
    limit = (settings if settings is not None else get_settings()).request_timeout_s
    return HTTPReranker(
        endpoint.base_url,
        api=endpoint.api,
        model=endpoint.model,
        api_key=_api_key(urlsplit(location).scheme.lower(), api_key),
        batch_size=int_option(endpoint.options, "batch", 32, 1, 4096),
        timeout_s=float_option(endpoint.options, "timeout", min(DEFAULT_TIMEOUT_S, limit), 0.1, 3600.0),
        weight=float_option(endpoint.options, "weight", 1.0, 0.0, 1.0),
        transport=transport,
    )


__all__ = ["HTTPReranker", "RerankEndpoint", "create_http_reranker", "parse_rerank_location"]
