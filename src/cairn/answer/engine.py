"""Grounded answering: rewrite (chat) -> retrieve -> refusal gate -> generate -> citations.

Refusal does not rely on the prompt: when no passage clears the relevance gate the LLM is not
called at all. Markers are filtered while streaming and checked again on the final text.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from cairn.answer import prompts
from cairn.answer.answerers import Answerer
from cairn.answer.citations import build_citations, cite_sentences, clean_markers
from cairn.answer.relevance import relevant_hits
from cairn.answer.stream_filter import filter_markers
from cairn.index.search import Filters
from cairn.retrieve.hybrid import HybridRetriever, RetrievalConfig
from cairn.types import Answer, ChatMessage, Hit


@dataclass(frozen=True, slots=True)
class AnswerEvent:
    """A streamed piece of the answer (``token``), or the final :class:`Answer` (``done``)."""

    kind: str
    text: str = ""
    answer: Answer | None = None


class AnswerEngine:
    def __init__(
        self,
        retriever: HybridRetriever,
        answerer: Answerer,
        *,
        min_relevance: float = 0.35,
        context_chars: int = 3500,
        history_turns: int = 4,
    ) -> None:
        self.retriever = retriever
        self.answerer = answerer
        self.min_relevance = min_relevance
        self.context_chars = context_chars
        self.history_turns = history_turns

    def warm_up(self) -> None:
        self.retriever.warm_up()
        self.answerer.warm_up()

    def ask(
        self,
        question: str,
        kbs: Sequence[str],
        *,
        history: Sequence[ChatMessage] = (),
        config: RetrievalConfig | None = None,
        filters: Filters | None = None,
    ) -> Answer:
        for event in self.stream(question, kbs, history=history, config=config, filters=filters):
            if event.answer is not None:
                return event.answer
        raise AssertionError("stream ended without an answer")  # pragma: no cover

    def stream(
        self,
        question: str,
        kbs: Sequence[str],
        *,
        history: Sequence[ChatMessage] = (),
        config: RetrievalConfig | None = None,
        filters: Filters | None = None,
    ) -> Iterator[AnswerEvent]:
        started = time.perf_counter()
        timings: dict[str, float] = {}
        query = question.strip()
        if history and self.history_turns:
            t = time.perf_counter()
            query = self.answerer.rewrite(query, list(history)[-2 * self.history_turns :])
            timings["rewrite"] = _ms(t)
        retrieval = self.retriever.search(query, kbs, config, filters=filters)
        timings.update(retrieval.timings_ms)
        relevant = relevant_hits(query, retrieval.hits, self.retriever.analyzer, self.min_relevance)
        if not relevant:
            timings["total"] = _ms(started)
            answer = self._refusal(query, retrieval.hits, timings)
            yield AnswerEvent("token", answer.answer)
            yield AnswerEvent("done", answer=answer)
            return
        _, fitted = prompts.format_passages(relevant, self.context_chars)
        passages = relevant[:fitted]  # the answerer is given exactly these, so [n] always has a passage
        t = time.perf_counter()
        pieces: list[str] = []
        raw = filter_markers(self.answerer.stream_answer(query, passages), len(passages))
        for piece in cite_sentences(raw, passages, self.retriever.analyzer):
            pieces.append(piece)
            yield AnswerEvent("token", piece)
        timings["generate"] = _ms(t)
        text, used = clean_markers("".join(pieces), len(passages))
        if _is_refusal(text, used):
            timings["total"] = _ms(started)
            refusal = self._refusal(query, retrieval.hits, timings, model=self.answerer.name)
            streamed = "".join(pieces)
            # Finish the streamed text so that it reads as the final refusal (with what was searched).
            tail = refusal.answer[len(streamed) :] if refusal.answer.startswith(streamed) else "\n" + refusal.answer
            yield AnswerEvent("token", tail)
            yield AnswerEvent("done", answer=refusal)
            return
        timings["total"] = _ms(started)
        answer = Answer(
            answer=text,
            refused=False,
            citations=build_citations(used, passages),
            timings_ms=timings,
            searched=tuple(retrieval.hits),
            query=query,
            model=self.answerer.name,
        )
        yield AnswerEvent("done", answer=answer)

    def _refusal(self, query: str, hits: Sequence[Hit], timings: dict[str, float], model: str = "") -> Answer:
        sources = list(dict.fromkeys(prompts.source_label(h) for h in hits))[:3]
        searched = f" I searched for {query!r}"
        searched += f"; the closest passages were in {', '.join(sources)}." if sources else "; nothing matched."
        return Answer(
            answer=prompts.NOT_FOUND + searched,
            refused=True,
            citations=(),
            timings_ms=timings,
            searched=tuple(hits),
            query=query,
            model=model,
        )


def _is_refusal(text: str, used: Sequence[int]) -> bool:
    """The model declined: an empty reply, or the not-found sentence with nothing cited.

    "I could not find the exact date, but the policy says X [1]." is an answer, not a refusal.
    """
    lowered = " ".join(text.lower().split()).strip(" .\"'")
    return not lowered or (not used and lowered.startswith(prompts.NOT_FOUND.lower().rstrip(".")))


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
