"""How an answer text is produced from passages: by an LLM, or extractively without one.

Both speak the same contract, so the engine (refusal gate, citations, memory, streaming) is
written once. The extractive answerer is for machines where even the local model is too slow.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from cairn.answer import prompts
from cairn.answer.citations import split_sentences
from cairn.answer.templates import PromptTemplate, get_template
from cairn.index.analyzer import Analyzer
from cairn.models.base import Embedder, Generator
from cairn.registry import Registry
from cairn.types import ChatMessage, Hit


@runtime_checkable
class Answerer(Protocol):
    name: str

    def warm_up(self) -> None: ...

    def stream_answer(
        self, question: str, hits: Sequence[Hit], template: PromptTemplate | None = None
    ) -> Iterator[str]:
        """Yield the answer text; ``[n]`` markers refer to ``hits[n-1]``.

        ``template``: the prompt template of this request (an experiment's variant), else the
        answerer's own; answerers without a prompt ignore it.
        """
        ...

    def rewrite(self, question: str, history: Sequence[ChatMessage]) -> str:
        """Turn a follow-up into a standalone question using the conversation."""
        ...


ANSWERERS: Registry[Answerer] = Registry("answerer")

_PRONOUNS = frozenset("it its this that these those they them their there he she his her such same".split())


class LLMAnswerer:
    def __init__(self, generator: Generator, *, max_tokens: int = 300, template: PromptTemplate | None = None) -> None:
        self.generator = generator
        self.name = generator.name
        self.max_tokens = max_tokens
        self.template = template or get_template()

    def warm_up(self) -> None:
        self.generator.warm_up()

    @property
    def usage(self) -> dict[str, int]:
        """Tokens of the last generation (prompt, completion), for the audit trail."""
        last = getattr(self.generator, "last_usage", None)
        if last is None:
            return {}
        return {"prompt": int(last.tokens_in), "completion": int(last.tokens_out)}

    def stream_answer(
        self, question: str, hits: Sequence[Hit], template: PromptTemplate | None = None
    ) -> Iterator[str]:
        # The engine has already cut ``hits`` to its context budget: every one is numbered in the prompt.
        messages = (template or self.template).answer_messages(question, hits)
        yield from self.generator.stream(messages, max_tokens=self.max_tokens, temperature=0.0)

    def rewrite(self, question: str, history: Sequence[ChatMessage]) -> str:
        if not history:
            return question
        reply = self.generator.generate(prompts.rewrite_messages(question, history), max_tokens=64).text
        line = next((ln.strip() for ln in reply.splitlines() if ln.strip()), "")
        return line.strip('"') if 3 <= len(line) <= 400 else question


class ExtractiveAnswerer:
    """Answers with the passage sentences that best match the question, each cited."""

    name = "extractive"

    def __init__(self, embedder: Embedder, analyzer: Analyzer | None = None, *, max_sentences: int = 2) -> None:
        self.embedder = embedder
        self.analyzer = analyzer or Analyzer()
        self.max_sentences = max_sentences

    def warm_up(self) -> None:
        self.embedder.warm_up()

    def stream_answer(
        self, question: str, hits: Sequence[Hit], template: PromptTemplate | None = None
    ) -> Iterator[str]:
        # No prompt: the template of an experiment's variant changes nothing here.
        candidates = [(i, sentence) for i, hit in enumerate(hits[:5], start=1) for sentence in _sentences(hit.text)]
        if not candidates:
            yield prompts.NOT_FOUND
            return
        q_terms = set(self.analyzer.terms(question))
        qvec = self.embedder.embed_query(question)
        vectors = self.embedder.embed_documents([s for _, s in candidates])
        cos = vectors @ qvec
        coverage = np.array([len(q_terms & set(self.analyzer.terms(s))) / max(1, len(q_terms)) for _, s in candidates])
        score = 0.6 * cos + 0.4 * coverage
        order = [int(j) for j in np.argsort(-score, kind="stable")]
        best = float(score[order[0]])
        chosen = [j for j in order[: self.max_sentences] if score[j] >= 0.8 * best]
        chosen.sort(key=lambda j: (candidates[j][0], j))
        parts = []
        for j in chosen:
            passage, sentence = candidates[j]
            parts.append(f"{sentence.rstrip('.!?;:, ')} [{passage}].")
        yield " ".join(parts)

    def rewrite(self, question: str, history: Sequence[ChatMessage]) -> str:
        """Without an LLM: if the follow-up leans on the conversation, add the previous question to it."""
        previous = next((m.content for m in reversed(history) if m.role == "user"), None)
        if previous is None:
            return question
        words = {w.lower().strip("?.,!") for w in question.split()}
        if words & _PRONOUNS or len(self.analyzer.terms(question)) <= 2:
            return f"{question} ({previous})"
        return question


def _sentences(text: str) -> list[str]:
    """Candidate answer sentences: line by line (tables, lists), then by sentence.

    Headings, rules and the fragments that chunk boundaries cut (a lowercase start from the overlap,
    an unfinished last sentence) are dropped: they read as nonsense on their own.
    """
    out: list[str] = []
    lines = _logical_lines(text)
    for n, raw in enumerate(lines):
        line = raw.strip().strip("|").strip()
        if len(line) < 20 or line.startswith("#") or set(line) <= set("-|: "):
            continue
        spans = split_sentences(line)
        for k, (start, end) in enumerate(spans):
            sentence = " ".join(line[start:end].split())
            open_ended = "|" not in raw and sentence[-1] not in ".!?:)"
            unfinished = open_ended and n == len(lines) - 1 and k == len(spans) - 1
            heading = open_ended and len(sentence.split()) < 6
            if len(sentence) >= 20 and not sentence[0].islower() and not unfinished and not heading:
                out.append(sentence)
    return out


def _logical_lines(text: str) -> list[str]:
    """Undo visual line wrapping (PDF text): a line continues when the next one starts in lowercase."""
    lines: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if lines and stripped[:1].islower() and lines[-1] and lines[-1][-1] not in ".!?:|":
            lines[-1] = f"{lines[-1]} {stripped}"
        else:
            lines.append(stripped)
    return lines


@ANSWERERS.register("extractive")
def _extractive(location: str, *, embedder: Embedder, **_: object) -> Answerer:
    return ExtractiveAnswerer(embedder)
