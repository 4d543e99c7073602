"""Behaviour every Embedder and Generator must share, checked the same way for every backend.

Callers (cairn's own tests, and plugin authors' tests) hand a backend to :func:`check_embedder` or
:func:`check_generator`; a violated property raises :class:`ConformanceError` naming it. The
checks are explicit raises rather than ``assert`` so that they still run under ``python -O``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from cairn.models.base import Completion, Embedder, Generator
from cairn.types import ChatMessage

SAMPLE_TEXTS = (
    "Employees must complete AI ethics training by the end of Q3 2026.",
    "The cafeteria serves vegetarian lunch every Friday.",
    "Expense reports are reimbursed within thirty days of submission.",
    "AI ethics training is mandatory for all employees.",
    "Quarterly revenue grew by eight percent.",
)
RELATED = ("AI ethics training for employees is required.", SAMPLE_TEXTS[0], SAMPLE_TEXTS[1])
SAMPLE_MESSAGES = (
    ChatMessage("system", "You are a helpful assistant. Answer in one short sentence."),
    ChatMessage("user", "Say hello to the new team member."),
)


class ConformanceError(AssertionError):
    """A backend broke a property of its protocol."""


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ConformanceError(message)


def check_embedder(
    embedder: Embedder,
    *,
    texts: Sequence[str] = SAMPLE_TEXTS,
    semantic: bool = True,
    tolerance: float = 1e-3,
) -> None:
    """Shape, dtype, unit norm, determinism, batch/single agreement and empty input.

    ``tolerance`` is on cosine distance: quantised models compute activations per batch, so a text
    embedded alone may differ from the same text padded inside a batch in the fourth decimal.
    ``semantic`` checks that a paraphrase scores above an unrelated sentence; turn it off for
    backends whose vectors carry no meaning (a mocked server).
    """
    embedder.warm_up()
    _expect(bool(embedder.name), "embedder.name is empty")
    _expect(
        isinstance(embedder.dim, int) and embedder.dim > 0,
        f"dim must be a positive int, got {embedder.dim!r}",
    )
    dim = embedder.dim

    docs = embedder.embed_documents(list(texts))
    _expect(docs.shape == (len(texts), dim), f"embed_documents shape {docs.shape}, expected {(len(texts), dim)}")
    _expect(docs.dtype == np.float32, f"embed_documents dtype {docs.dtype}, expected float32")
    _expect(bool(np.isfinite(docs).all()), "embed_documents returned non-finite values")
    norms = np.linalg.norm(docs, axis=1)
    _expect(bool(np.allclose(norms, 1.0, atol=1e-4)), f"document vectors are not unit length: {norms}")

    again = embedder.embed_documents(list(texts))
    _expect(bool(np.allclose(docs, again, atol=1e-6)), "embedding the same texts twice gave different vectors")

    for i, text in enumerate(texts):
        alone = embedder.embed_documents([text])
        _expect(alone.shape == (1, dim), f"single-text batch has shape {alone.shape}")
        cosine = float(alone[0] @ docs[i])
        _expect(
            cosine >= 1.0 - tolerance,
            f"text {i} embedded alone differs from its batch row (cosine {cosine:.5f})",
        )

    query = embedder.embed_query(texts[0])
    _expect(query.shape == (dim,), f"embed_query shape {query.shape}, expected {(dim,)}")
    _expect(query.dtype == np.float32, f"embed_query dtype {query.dtype}, expected float32")
    _expect(abs(float(np.linalg.norm(query)) - 1.0) < 1e-4, "query vector is not unit length")

    empty = embedder.embed_documents([])
    _expect(empty.shape == (0, dim), f"no texts should give shape (0, {dim}), got {empty.shape}")
    blank = embedder.embed_documents(["", "   \n\t"])
    _expect(blank.shape == (2, dim), f"blank texts should still give vectors, got shape {blank.shape}")
    _expect(bool(np.isfinite(blank).all()), "blank texts gave non-finite values")
    _expect(bool(np.allclose(np.linalg.norm(blank, axis=1), 1.0, atol=1e-4)), "blank texts gave non-unit vectors")

    if semantic:
        probe, related, unrelated = embedder.embed_documents(list(RELATED))
        near, far = float(probe @ related), float(probe @ unrelated)
        _expect(near > far, f"a paraphrase scored {near:.3f}, not above an unrelated text ({far:.3f})")


def check_generator(
    generator: Generator,
    *,
    max_tokens: int = 16,
    deterministic: bool = True,
    messages: Sequence[ChatMessage] = SAMPLE_MESSAGES,
) -> Completion:
    """Streaming yields strings, ``generate`` equals the joined stream, limits and usage hold.

    ``deterministic`` compares ``generate`` with the stream at temperature 0; turn it off for
    servers that do not promise reproducible greedy decoding (batched GPU inference). Returns the
    completion so callers can check content on top.
    """
    generator.warm_up()
    _expect(bool(generator.name), "generator.name is empty")

    pieces = list(generator.stream(messages, max_tokens=max_tokens, temperature=0.0))
    _expect(all(isinstance(p, str) for p in pieces), "stream yielded something other than str")
    streamed = "".join(pieces)
    _expect(bool(streamed.strip()), "stream produced no text")

    completion = generator.generate(messages, max_tokens=max_tokens, temperature=0.0)
    _expect(isinstance(completion, Completion), f"generate returned {type(completion).__name__}")
    _expect(completion.model == generator.name, f"completion.model {completion.model!r} != {generator.name!r}")
    if deterministic:
        _expect(completion.text == streamed, f"generate gave {completion.text!r}, the stream {streamed!r}")
    _expect(completion.tokens_in > 0, "usage: tokens_in not recorded")
    _expect(completion.tokens_out > 0, "usage: tokens_out not recorded")
    # Servers may count a stop token or a detokenisation boundary as one extra token.
    _expect(
        completion.tokens_out <= max_tokens + 1,
        f"max_tokens={max_tokens} but {completion.tokens_out} tokens were generated",
    )

    # A caller that stops reading (a client hung up) must leave the backend usable.
    stream = generator.stream(messages, max_tokens=max_tokens, temperature=0.0)
    first = list(itertools.islice(stream, 1))
    _expect(len(first) == 1, "stream yielded nothing before being abandoned")
    close = getattr(stream, "close", None)
    if callable(close):
        close()
    after = generator.generate(messages, max_tokens=max_tokens, temperature=0.0)
    _expect(bool(after.text.strip()), "generator produced nothing after an abandoned stream")
    if deterministic:
        _expect(after.text == completion.text, "an abandoned stream changed the next answer")
    return completion


__all__ = ["SAMPLE_MESSAGES", "SAMPLE_TEXTS", "ConformanceError", "check_embedder", "check_generator"]
