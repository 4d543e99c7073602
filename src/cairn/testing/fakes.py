"""Deterministic stand-ins for the model stage, registered under the ``fake`` scheme.

They let every other stage be tested without weights or a server, and in any process: vectors
come from sha256 rather than ``hash()``, whose seed changes per interpreter run.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import deque
from collections.abc import Iterator, Sequence
from urllib.parse import parse_qs

import numpy as np

from cairn.errors import ConfigError
from cairn.models.base import EMBEDDERS, GENERATORS, BaseEmbedder, BaseGenerator, Completion, Vectors
from cairn.settings import Settings
from cairn.types import ChatMessage

_TOKEN = re.compile(r"\w+|[^\w\s]")
_PIECE = re.compile(r"(?<=\s)(?=\S)")


def _tokens(text: str) -> list[str]:
    # Punctuation counts as a token so that text without words (".") still gets a non-zero vector.
    return _TOKEN.findall(text.lower())


class HashEmbedder(BaseEmbedder):
    """A bag of words hashed into ``dim`` signed buckets: texts sharing words score higher.

    Good enough for retrieval tests to be meaningful (a query finds the passage that repeats its
    words) while costing microseconds and no files.
    """

    def __init__(self, dim: int = 64, *, delay_ms: float = 0.0) -> None:
        super().__init__()
        if not 1 <= dim <= 4096:
            raise ConfigError(f"fake embedder dim must be in 1..4096, got {dim}")
        if not 0 <= delay_ms <= 60_000:
            raise ConfigError(f"fake embedder delay_ms must be in 0..60000, got {delay_ms}")
        self.dim = dim
        self.delay_ms = delay_ms  # per text: makes ingestion slow enough to be interrupted mid-job in tests
        self.name = f"fake-hash-{dim}"  # the delay is not part of the name: the vectors are the same

    def _embed_batch(self, texts: list[str]) -> Vectors:
        if self.delay_ms:
            time.sleep(self.delay_ms * len(texts) / 1000)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in _tokens(text):
                digest = hashlib.sha256(token.encode("utf-8")).digest()
                bucket = int.from_bytes(digest[:8], "big") % self.dim
                # A sign bit spreads collisions around zero instead of inflating every similarity.
                out[row, bucket] += 1.0 if digest[8] & 1 else -1.0
        return out


class ScriptedGenerator(BaseGenerator):
    """Streams queued replies word by word, then echoes; records every conversation it was given.

    A queued exception is raised instead of streamed, so callers' error paths can be tested too.
    """

    name = "fake-scripted"

    def __init__(self) -> None:
        super().__init__()
        self._replies: deque[str | BaseException] = deque()
        self.calls: list[tuple[ChatMessage, ...]] = []

    def enqueue(self, *replies: str | BaseException) -> None:
        self._replies.extend(replies)

    def _next_reply(self, messages: Sequence[ChatMessage]) -> str:
        if self._replies:
            reply = self._replies.popleft()
            if isinstance(reply, BaseException):
                raise reply
            return reply
        last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
        return "Echo: " + (" ".join(last_user.split()) or "(nothing)")

    def _stream(
        self, messages: Sequence[ChatMessage], max_tokens: int, temperature: float, stop: Sequence[str] | None
    ) -> Iterator[str]:
        self.calls.append(tuple(messages))
        reply = self._next_reply(messages)
        for marker in stop or ():
            if marker and marker in reply:
                reply = reply[: reply.index(marker)]
        pieces = [p for p in _PIECE.split(reply) if p][: max(max_tokens, 0)]
        tokens_in = sum(len(m.content.split()) + 1 for m in messages)
        emitted: list[str] = []
        try:
            for piece in pieces:
                emitted.append(piece)
                yield piece
        finally:
            self.last_usage = Completion(
                text="".join(emitted), tokens_in=tokens_in, tokens_out=len(emitted), model=self.name
            )


def _split(location: str, default: str) -> tuple[str, dict[str, list[str]]]:
    # The registry passes bare names ("fake") through unchanged, so the scheme is optional here.
    kind, _, query = location.partition(":")[2].partition("?")
    return kind.strip() or default, parse_qs(query)


def _dim_of(location: str, options: dict[str, list[str]]) -> int:
    try:
        return int(options.get("dim", ["64"])[-1])
    except ValueError as exc:
        raise ConfigError(f"dim in {location!r} is not an integer") from exc


@EMBEDDERS.register("fake")
def create_fake_embedder(location: str, *, settings: Settings | None = None, **_: object) -> HashEmbedder:
    kind, options = _split(location, "hash")
    if kind != "hash" or set(options) - {"dim", "delay_ms"}:
        raise ConfigError(f"unknown fake embedder {location!r}", hint="use 'fake:hash?dim=64' (&delay_ms=N)")
    try:
        delay_ms = float(options.get("delay_ms", ["0"])[-1])
    except ValueError as exc:
        raise ConfigError(f"delay_ms in {location!r} is not a number") from exc
    return HashEmbedder(_dim_of(location, options), delay_ms=delay_ms)


@GENERATORS.register("fake")
def create_fake_generator(location: str, *, settings: Settings | None = None, **_: object) -> ScriptedGenerator:
    kind, options = _split(location, "scripted")
    if kind != "scripted" or options:
        raise ConfigError(f"unknown fake generator {location!r}", hint="use 'fake:scripted'")
    return ScriptedGenerator()


__all__ = ["HashEmbedder", "ScriptedGenerator", "create_fake_embedder", "create_fake_generator"]
