"""Grounded answering: rewrite (chat) -> retrieve -> refusal gate -> passage guard -> generate
-> per-sentence citations, groundedness check and output guard -> answer.

Refusal does not rely on the prompt: when no passage clears the relevance gate the LLM is not
called at all. Markers are filtered while streaming and checked again on the final text. Each
sentence is checked against the passages it cites before it is shown: under the ``remove`` and
``refuse`` policies an unsupported sentence never reaches the user.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cairn.answer import prompts
from cairn.answer.answerers import Answerer
from cairn.answer.citations import build_citations, cite_sentences, clean_markers
from cairn.answer.grounding import GroundingChecker, GroundingReport, SentenceCheck
from cairn.answer.relevance import relevant_hits
from cairn.answer.stream_filter import filter_markers
from cairn.answer.templates import PromptTemplate
from cairn.answer.tiers import Route, Tier, TierSet
from cairn.guard.policy import GuardSet
from cairn.index.search import Filters
from cairn.retrieve.hybrid import HybridRetriever, RetrievalConfig
from cairn.types import Answer, ChatMessage, Hit, Principal


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
        guards: GuardSet | None = None,
        grounding: GroundingChecker | None = None,
        grounding_policy: str = "off",
        min_supported: float = 0.5,
        tiers: TierSet | None = None,
    ) -> None:
        self.retriever = retriever
        self.answerer = answerer
        # Without configured tiers the answerer is the one tier: same code path, nothing to route.
        self.tiers = tiers or TierSet(
            [Tier("default", answerer.name, "local")], lambda _: answerer, analyzer=retriever.analyzer
        )
        self.min_relevance = min_relevance
        self.context_chars = context_chars
        self.history_turns = history_turns
        self.guards = guards
        self.grounding = grounding if grounding_policy != "off" else None
        self.grounding_policy = grounding_policy
        self.min_supported = min_supported

    def warm_up(self) -> None:
        self.retriever.warm_up()
        self.answerer.warm_up()

    def ask(
        self,
        question: str,
        kbs: Sequence[str],
        *,
        principal: Principal,
        history: Sequence[ChatMessage] = (),
        config: RetrievalConfig | None = None,
        filters: Filters | None = None,
        tier: str | None = None,
        template: PromptTemplate | None = None,
    ) -> Answer:
        return final_answer(
            self.stream(
                question,
                kbs,
                principal=principal,
                history=history,
                config=config,
                filters=filters,
                tier=tier,
                template=template,
            )
        )

    def stream(
        self,
        question: str,
        kbs: Sequence[str],
        *,
        principal: Principal,
        history: Sequence[ChatMessage] = (),
        config: RetrievalConfig | None = None,
        filters: Filters | None = None,
        tier: str | None = None,
        template: PromptTemplate | None = None,
    ) -> Iterator[AnswerEvent]:
        """``tier`` forces a model tier, within what the context's sensitivity allows; ``template`` is the
        prompt template of this request (an experiment's variant), else the answerer's own."""
        started = time.perf_counter()
        timings: dict[str, float] = {}
        query = question.strip()
        if history and self.history_turns:
            t = time.perf_counter()
            query = self.answerer.rewrite(query, list(history)[-2 * self.history_turns :])
            timings["condense"] = _ms(t)
        retrieval = self.retriever.search(query, kbs, config, principal=principal, filters=filters)
        timings.update(retrieval.timings_ms)
        relevant = relevant_hits(query, retrieval.hits, self.retriever.analyzer, self.min_relevance)
        if not relevant:
            timings["total"] = _ms(started)
            answer = self._refusal(query, retrieval.hits, timings)
            yield AnswerEvent("token", answer.answer)
            yield AnswerEvent("done", answer=replace(answer, trace=retrieval.trace))
            return
        relevant, prompt_passages, guards = self._guard_passages(relevant)
        if not relevant:
            timings["total"] = _ms(started)
            answer = replace(self._refusal(query, retrieval.hits, timings), guards=tuple(guards))
            yield AnswerEvent("token", answer.answer)
            yield AnswerEvent("done", answer=replace(answer, trace=retrieval.trace))
            return
        _, fitted = prompts.format_passages(prompt_passages, self.context_chars)
        passages = relevant[:fitted]  # the answerer is given exactly these, so [n] always has a passage
        t = time.perf_counter()
        route = self._route(query, passages, principal, retrieval.trace, tier)
        timings["route_model"] = _ms(t)
        if route is not None and not route.order:
            timings["total"] = _ms(started)
            refusal = replace(self._refusal(query, retrieval.hits, timings), guards=tuple(guards))
            refusal = replace(refusal, answer=prompts.SENSITIVE_NO_TIER, route=route.record(), trace=retrieval.trace)
            yield AnswerEvent("token", refusal.answer)
            yield AnswerEvent("done", answer=refusal)
            return
        t = time.perf_counter()
        pieces: list[str] = []
        checks: list[SentenceCheck] = []
        generated, withheld = 0, False
        # Passed only when a request chose one, so answerers without a prompt need not take it.
        prompt = {} if template is None else {"template": template}
        generation = (
            self.tiers.stream_answer(route, query, prompt_passages[:fitted], **prompt)
            if route is not None
            else self.answerer.stream_answer(query, prompt_passages[:fitted], **prompt)
        )
        raw = filter_markers(generation, len(passages))
        for piece in cite_sentences(raw, passages, self.retriever.analyzer):
            offset, generated = generated, generated + len(piece)
            if self.grounding is not None:
                report = self.grounding.check(piece, passages)
                checks += [replace(c, start=c.start + offset, end=c.end + offset) for c in report.sentences]
                if self.grounding_policy in ("remove", "refuse") and report.unsupported:
                    withheld = True
                    continue
            if self.guards is not None:
                outcome = self.guards.check_answer(piece)
                guards += [v.to_json() for v in outcome.verdicts if v.flagged]
                piece = outcome.text
            pieces.append(piece)
            yield AnswerEvent("token", piece)
        timings["generate"] = _ms(t)
        model, usage, routed = self._model_of(route)
        text, used = clean_markers("".join(pieces), len(passages))
        grounding = self._grounding_record(checks, withheld)
        failed = grounding is not None and grounding["action"] == "refused"
        if _is_refusal(text, used) or failed:
            timings["total"] = _ms(started)
            refusal = self._refusal(query, retrieval.hits, timings, model=model)
            refusal = replace(refusal, grounding=grounding, guards=tuple(guards), tokens=usage, route=routed)
            streamed = "".join(pieces)
            # Finish the streamed text so that it reads as the final refusal (with what was searched).
            tail = refusal.answer[len(streamed) :] if refusal.answer.startswith(streamed) else "\n" + refusal.answer
            yield AnswerEvent("token", tail)
            yield AnswerEvent("done", answer=replace(refusal, trace=retrieval.trace))
            return
        timings["total"] = _ms(started)
        answer = Answer(
            answer=text,
            refused=False,
            citations=build_citations(used, passages),
            timings_ms=timings,
            searched=tuple(retrieval.hits),
            query=query,
            model=model,
            grounding=grounding,
            guards=tuple(guards),
            tokens=usage,
            route=routed,
        )
        yield AnswerEvent("done", answer=replace(answer, trace=retrieval.trace))

    def _route(
        self, query: str, passages: Sequence[Hit], principal: Principal, trace: dict[str, Any], tier: str | None
    ) -> Route | None:
        """The model route of this answer; None when there is one tier, nothing to assess and nothing forced."""
        if self.tiers.single and tier is None:
            return None
        subs = len(trace.get("sub_questions", ()))
        return self.tiers.route(query, passages, principal, sub_questions=subs, force=tier)

    def _model_of(self, route: Route | None) -> tuple[str, dict[str, int], dict[str, Any] | None]:
        """Which model answered, its token counts, and the route record for the answer and the audit."""
        if route is None or route.used is None:
            return self.answerer.name, dict(getattr(self.answerer, "usage", {}) or {}), None
        return self.tiers.answerer(route.used).name, dict(route.tokens), route.record()

    def _guard_passages(self, hits: Sequence[Hit]) -> tuple[list[Hit], list[Hit], list[dict[str, Any]]]:
        """Passages flagged at ingestion as instructions are left out or quoted as data, per policy.

        Returns the passages kept (for citations, with their exact text), the same passages as the
        answerer sees them, and the verdicts of those that were flagged.
        """
        if self.guards is None:
            return list(hits), list(hits), []
        kept, shown, verdicts = [], [], []
        for hit in hits:
            outcome = self.guards.check_passage(hit.text, flags=hit.flags)
            verdicts += [v.to_json() | {"chunk_id": hit.chunk_id} for v in outcome.verdicts if v.flagged]
            if outcome.decision == "block":
                continue
            kept.append(hit)
            shown.append(replace(hit, text=outcome.text) if outcome.text != hit.text else hit)
        return kept, shown, verdicts

    def _grounding_record(self, checks: Sequence[SentenceCheck], removed: bool) -> dict[str, Any] | None:
        """The verdict for the audit record and the JSON answer, with what the policy did about it."""
        if self.grounding is None:
            return None
        report = GroundingReport.from_sentences(checks, self.grounding.name)
        action = "removed" if removed else "kept"
        too_few = report.supported_ratio < self.min_supported
        nothing_left = bool(checks) and not any(c.supported for c in checks)
        if (self.grounding_policy == "refuse" and too_few) or (self.grounding_policy == "remove" and nothing_left):
            action = "refused"
        return report.to_json() | {
            "policy": self.grounding_policy,
            "action": action,
            "removed": len(report.unsupported) if self.grounding_policy in ("remove", "refuse") else 0,
        }

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


def final_answer(events: Iterable[AnswerEvent]) -> Answer:
    """Drain a stream of answer events and return its final answer."""
    for event in events:
        if event.answer is not None:
            return event.answer
    raise AssertionError("stream ended without an answer")  # pragma: no cover


def _is_refusal(text: str, used: Sequence[int]) -> bool:
    """The model declined: an empty reply, or the not-found sentence with nothing cited.

    "I could not find the exact date, but the policy says X [1]." is an answer, not a refusal.
    """
    lowered = " ".join(text.lower().split()).strip(" .\"'")
    return not lowered or (not used and lowered.startswith(prompts.NOT_FOUND.lower().rstrip(".")))


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
