"""The contracts of the model stage and the shared machinery behind them.

A backend implements the smallest method (``_embed_batch`` or ``_stream``); batching, input
hygiene, normalisation and token accounting live here once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from cairn.registry import Registry
from cairn.types import ChatMessage

Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Turns text into L2-normalised float32 vectors of a fixed dimension."""

    name: str
    dim: int

    def warm_up(self) -> None: ...

    def embed_documents(self, texts: Sequence[str]) -> Vectors: ...

    def embed_query(self, text: str) -> Vectors: ...


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    model: str = ""


@runtime_checkable
class Generator(Protocol):
    """A chat model: streams the reply to a list of messages."""

    name: str

    def warm_up(self) -> None: ...

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 512,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> Iterator[str]: ...

    def generate(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 512,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> Completion: ...


class LazyModel:
    """Loads once, on first use, even when several threads ask at the same moment (a server's first requests)."""

    def __init__(self) -> None:
        self._ready = False
        self._load_lock = threading.Lock()

    def _load(self) -> None:
        """Load weights or open clients; called once, lazily."""

    def warm_up(self) -> None:
        if self._ready:
            return
        with self._load_lock:
            if not self._ready:
                self._load()
                self._ready = True


class BaseEmbedder(LazyModel):
    """Batches, cleans and normalises; subclasses write ``_embed_batch`` (and ``_load``)."""

    name: str = "embedder"
    dim: int = 0
    batch_size: int = 32
    query_prefix: str = ""
    document_prefix: str = ""

    def _embed_batch(self, texts: list[str]) -> Vectors:
        raise NotImplementedError

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        self.warm_up()
        cleaned = [self.document_prefix + (" ".join(t.split()) or ".") for t in texts]
        if not cleaned:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.zeros((len(cleaned), self.dim), dtype=np.float32)
        # Sorting by length keeps padding (and so wasted compute) small within each batch.
        order = sorted(range(len(cleaned)), key=lambda i: len(cleaned[i]))
        for lo in range(0, len(order), self.batch_size):
            idx = order[lo : lo + self.batch_size]
            out[idx] = self._embed_batch([cleaned[i] for i in idx])
        normalised: Vectors = _normalise(out)
        return normalised

    def embed_query(self, text: str) -> Vectors:
        self.warm_up()
        vec = self._embed_batch([self.query_prefix + (" ".join(text.split()) or ".")])
        single: Vectors = _normalise(np.asarray(vec, dtype=np.float32))[0]
        return single


_NO_USAGE = Completion(text="")


def _normalise(vectors: Vectors) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    scaled: Vectors = (vectors / norms).astype(np.float32)
    return scaled


class BaseGenerator(LazyModel):
    """Subclasses write ``_stream``; ``generate`` and accounting come from here.

    ``last_usage`` is kept per thread: a server generates for several requests at once on one
    generator, and each request's audit record and tier accounting must get its own token counts.
    """

    name: str = "generator"

    def __init__(self) -> None:
        super().__init__()
        self._usage_by_thread = threading.local()

    @property
    def last_usage(self) -> Completion:
        """The token counts of this thread's last generation."""
        usage: Completion = getattr(self._usage_by_thread, "value", _NO_USAGE)
        return usage

    @last_usage.setter
    def last_usage(self, value: Completion) -> None:
        self._usage_by_thread.value = value

    def _stream(
        self, messages: Sequence[ChatMessage], max_tokens: int, temperature: float, stop: Sequence[str] | None
    ) -> Iterator[str]:
        raise NotImplementedError

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 512,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> Iterator[str]:
        self.warm_up()
        yield from self._stream(messages, max_tokens, temperature, stop)

    def generate(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 512,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> Completion:
        text = "".join(self.stream(messages, max_tokens=max_tokens, temperature=temperature, stop=stop))
        usage = self.last_usage
        return Completion(text=text, tokens_in=usage.tokens_in, tokens_out=usage.tokens_out, model=self.name)


EMBEDDERS: Registry[Embedder] = Registry("embedder")
GENERATORS: Registry[Generator] = Registry("generator")


def create_embedder(location: str, **kwargs: object) -> Embedder:
    return EMBEDDERS.create(location, **kwargs)


def create_generator(location: str, **kwargs: object) -> Generator:
    return GENERATORS.create(location, **kwargs)
