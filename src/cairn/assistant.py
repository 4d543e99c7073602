"""One object that wires the stages from settings; the CLI and the server only talk to this.

Every component is built on first access, so ``Cairn(settings)`` is free and a command that only
lists knowledge bases never loads a model. :meth:`Cairn.search`, :meth:`Cairn.stream` and
:meth:`Cairn.ask` are the interactions users have: they apply the guards, the groundedness check
and the audit trail, so no front end can forget one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from functools import cached_property
from typing import Any

from pydantic import SecretStr

from cairn.answer import prompts
from cairn.answer.answerers import ANSWERERS, Answerer, LLMAnswerer
from cairn.answer.cache import AnswerCache, config_key
from cairn.answer.engine import AnswerEngine, AnswerEvent, final_answer
from cairn.answer.grounding import create_grounding_checker
from cairn.answer.memory import ChatStore
from cairn.answer.templates import PromptTemplate, get_template
from cairn.answer.templates import versions as template_versions
from cairn.answer.tiers import Tier, TierSet, resolve_tiers
from cairn.errors import ConfigError
from cairn.guard.injection import InjectionDetector
from cairn.guard.pii import PiiDetector
from cairn.guard.policy import GuardPolicies, GuardSet
from cairn.index.access import passage_readers
from cairn.index.analyzer import Analyzer
from cairn.index.db import Database
from cairn.index.principals import PrincipalStore
from cairn.index.search import Filters
from cairn.index.store import IndexStore
from cairn.ingest.base import Chunker
from cairn.ingest.entities import create_entity_extractor
from cairn.ingest.parse import Parser, create_parser
from cairn.ingest.sync import Ingestor
from cairn.models.base import Embedder, Generator, create_embedder, create_generator
from cairn.ops.audit import AuditEvent, AuditLog
from cairn.ops.drift import DriftConfig, DriftDetector
from cairn.ops.experiments import Assignment, ExperimentStore
from cairn.ops.feedback import FeedbackStore
from cairn.ops.telemetry import Telemetry
from cairn.registry import scheme_of
from cairn.retrieve.hybrid import HybridRetriever, Retrieval, RetrievalConfig
from cairn.settings import Settings, get_settings
from cairn.types import Answer, ChatMessage, Principal

log = logging.getLogger(__name__)


class Cairn:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._unapplicable: set[str] = set()  # experiment variants already warned about

    @cached_property
    def db(self) -> Database:
        return Database(self.settings)

    @cached_property
    def analyzer(self) -> Analyzer:
        return Analyzer()

    @cached_property
    def store(self) -> IndexStore:
        return IndexStore(self.db, self.analyzer)

    @cached_property
    def principals(self) -> PrincipalStore:
        return PrincipalStore(self.db)

    @cached_property
    def guards(self) -> GuardSet:
        s = self.settings
        policies = GuardPolicies(
            question_injection=s.guard_question_injection,
            document_injection=s.guard_document_injection,
            answer_pii=s.guard_answer_pii,
            audit_pii=s.guard_audit_pii,
            output=s.guard_output,
        )
        return GuardSet(
            policies,
            injection=InjectionDetector(threshold=s.guard_injection_threshold),
            pii=PiiDetector(s.guard_pii_kinds, regions=s.guard_phone_regions),
            allowed_hosts=s.guard_allowed_hosts,
        )

    @cached_property
    def audit(self) -> AuditLog:
        return AuditLog(
            self.db,
            redact=lambda text: self.guards.redact_audit(text).text,
            retention_days=self.settings.audit_retention_days,
        )

    @cached_property
    def feedback(self) -> FeedbackStore:
        return FeedbackStore(self.db, audit=self.audit)

    @cached_property
    def experiments(self) -> ExperimentStore:
        """A/B experiments: managed by administrators, read by every answer (docs/experiments.md)."""
        s = self.settings
        return ExperimentStore(
            self.db,
            tiers=[t.name for t in s.tiers],
            min_samples=s.experiment_min_samples,
            alpha=s.experiment_alpha,
        )

    @cached_property
    def telemetry(self) -> Telemetry:
        """Pipeline metrics and traces of this process (the server exposes them at /metrics)."""
        return Telemetry()

    @cached_property
    def drift(self) -> DriftDetector:
        """Drift between two windows of the audit trail, for administrators (docs/drift.md)."""
        return DriftDetector(self.db, self.embedder, DriftConfig.from_settings(self.settings))

    @cached_property
    def embedder(self) -> Embedder:
        return create_embedder(self.settings.embedder, settings=self.settings)

    @cached_property
    def chunker(self) -> Chunker:
        from cairn.ingest.chunking import RecursiveChunker

        return RecursiveChunker(chunk_size=self.settings.chunk_size, overlap=self.settings.chunk_overlap)

    @cached_property
    def parser(self) -> Parser:
        """Turns files into documents under the parse limits; isolated in worker processes unless turned off."""
        return create_parser(self.settings)

    @cached_property
    def ingestor(self) -> Ingestor:
        return Ingestor(
            self.store,
            self.embedder,
            self.chunker,
            max_bytes=int(self.settings.max_file_mb * 1024 * 1024),
            parser=self.parser,
            chunk_flags=self.guards.chunk_flags,
            entities=create_entity_extractor(
                self.settings.graph_extractor, generator=self.generator, settings=self.settings
            ),
        )

    @cached_property
    def retrieval_config(self) -> RetrievalConfig:
        return RetrievalConfig.from_settings(self.settings)

    def config_for(self, kbs: Sequence[str], profile: str | None = None) -> RetrievalConfig:
        """The retrieval config of a request: the named profile, else the knowledge base's own, else the default."""
        name = profile or (self.settings.kb_profiles.get(kbs[0]) if len(kbs) == 1 else None)
        if name is None or name == self.retrieval_config.profile:
            return self.retrieval_config
        return RetrievalConfig.from_settings(self.settings, name)

    @cached_property
    def retriever(self) -> HybridRetriever:
        return HybridRetriever(
            self.db,
            self.embedder,
            config=self.retrieval_config,
            analyzer=self.analyzer,
            generator=self.generator,
            settings=self.settings,
        )

    @cached_property
    def generator(self) -> Generator | None:
        """The first tier's LLM, shared by the answer and retrieval stages; None with an extractive answerer.

        Retrieval stages and chat rewrites see document text too, which is why the first tier must be
        local or on-prem when the context can be sensitive (checked in :attr:`tiers`).
        """
        location = _with_scheme(self.tier_list[0].location)
        if scheme_of(location) in ANSWERERS.schemes():
            return None
        return create_generator(location, settings=self.settings)

    @cached_property
    def answerer(self) -> Answerer:
        """The first tier's answerer."""
        if self.generator is None:
            location = _with_scheme(self.tier_list[0].location)
            return ANSWERERS.create(location, embedder=self.embedder, settings=self.settings)
        return LLMAnswerer(self.generator, max_tokens=self.settings.max_answer_tokens)

    @cached_property
    def tier_list(self) -> tuple[Tier, ...]:
        return resolve_tiers(self.settings.tiers, self.settings.generator)

    @cached_property
    def tiers(self) -> TierSet:
        """Model routing over the configured tiers (one tier, the generator, when none are configured)."""
        s = self.settings
        first = self.tier_list[0]
        if s.sensitivity_signals and not first.on_premises:
            log.warning(
                "the first model tier %r is %s: retrieval stages and chat rewrites may send it document text;"
                " answers from sensitive context are refused unless a local or on-prem tier exists",
                first.name,
                first.locality,
            )
        return TierSet(
            self.tier_list,
            lambda tier: self.answerer if tier.name == first.name else self._tier_answerer(tier),
            analyzer=self.analyzer,
            signals=s.sensitivity_signals,
            classification=s.kb_classification,
            readers=self._passage_readers,
            find_pii=lambda text: [finding.kind for finding in self.guards.pii.find(text)],
        )

    def _tier_answerer(self, tier: Tier) -> Answerer:
        location = _with_scheme(tier.location)
        spec = next(t for t in self.settings.tiers if t.name == tier.name)
        update: dict[str, Any] = {"request_timeout_s": spec.timeout_s or self.settings.request_timeout_s}
        if spec.api_key_env:
            key = os.environ.get(spec.api_key_env)
            if not key:
                raise ConfigError(f"tier {tier.name!r}: environment variable {spec.api_key_env} is not set")
            update["openai_api_key"] = SecretStr(key)
        settings = self.settings.model_copy(update=update)
        if scheme_of(location) in ANSWERERS.schemes():
            return ANSWERERS.create(location, embedder=self.embedder, settings=settings)
        generator = create_generator(location, settings=settings)
        return LLMAnswerer(generator, max_tokens=self.settings.max_answer_tokens)

    def _passage_readers(self, principal: Principal, chunk_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
        with self.db.connection(principal) as conn:
            return passage_readers(conn, principal, chunk_ids)

    @cached_property
    def engine(self) -> AnswerEngine:
        return AnswerEngine(
            self.retriever,
            self.answerer,
            min_relevance=self.settings.min_relevance,
            context_chars=self.settings.max_context_chars,
            history_turns=self.settings.history_turns,
            guards=self.guards,
            grounding=create_grounding_checker(self.settings.grounding, analyzer=self.analyzer, embedder=self.embedder),
            grounding_policy=self.settings.grounding_policy,
            min_supported=self.settings.grounding_min_supported,
            tiers=self.tiers,
        )

    @cached_property
    def answer_cache(self) -> AnswerCache | None:
        s = self.settings
        if s.answer_cache == "off":
            return None
        return AnswerCache(
            self.db,
            self.embedder,
            ttl_s=s.answer_cache_ttl_s,
            semantic_threshold=s.answer_cache_semantic_threshold if s.answer_cache == "semantic" else None,
            cache_refusals=s.answer_cache_refusals,
            max_entries=s.answer_cache_max_entries,
        )

    @cached_property
    def chats(self) -> ChatStore:
        return ChatStore(self.db)

    # -- interactions ---------------------------------------------------------------------------
    def search(
        self,
        query: str,
        kbs: Sequence[str],
        *,
        principal: Principal,
        config: RetrievalConfig | None = None,
        filters: Filters | None = None,
        client: str = "cli",
    ) -> Retrieval:
        """Ranked passages ``principal`` may read; the search is guarded and audited."""
        cfg = config or self.config_for(kbs)
        verdicts = self._check_question(query, kbs, principal, "search", client)
        retrieval = self.retriever.search(query, kbs, cfg, principal=principal, filters=filters)
        event = AuditEvent.from_hits(
            query,
            retrieval.hits,
            kbs=kbs,
            timings_ms=retrieval.timings_ms,
            params=asdict(cfg) | ({"trace": retrieval.trace} if retrieval.trace else {}),
            client=client,
        )
        ref = self.audit.record(principal, replace(event, guards=list(verdicts)))
        result = replace(retrieval, audit_id=ref.id)
        self.telemetry.observe_retrieval(result, kind="search", attributes={"cairn.client": client})
        return result

    def stream(
        self,
        question: str,
        kbs: Sequence[str],
        *,
        principal: Principal,
        history: Sequence[ChatMessage] = (),
        session_id: str | None = None,
        config: RetrievalConfig | None = None,
        filters: Filters | None = None,
        client: str = "cli",
        tier: str | None = None,
    ) -> Iterator[AnswerEvent]:
        """Answer tokens as they are generated, then the final :class:`Answer` (``kind == "done"``).

        The final answer carries the id of its audit record, which feedback refers to. ``tier``
        forces a model tier (never beyond what the context's sensitivity allows). A caller in a running
        experiment gets the variant's profile, template and tier, and the variant is recorded.
        """
        kind = "chat" if session_id else "ask"
        verdicts = self._check_question(question, kbs, principal, kind, client)
        assignment = self._assignment(principal, kbs, config, tier)
        cfg = config or self.config_for(kbs)
        template = get_template()
        if assignment is not None:
            variant = assignment.variant
            cfg = self.config_for(kbs, variant.profile) if variant.profile else cfg
            template = get_template(variant.template) if variant.template else template
            tier = variant.tier or tier
        # A follow-up depends on its conversation, a filtered request on its filters: neither is cached.
        cache = self.answer_cache if not history and filters is None else None
        probe = None
        if cache is not None:
            probe = cache.lookup(principal, question, kbs, self._cache_key(cfg, tier, template))
            if probe.kind != "skip":
                self.telemetry.observe_cache(f"hit_{probe.kind}" if probe.hit else "miss", _saved_ms(probe.answer))
        if probe is not None and probe.answer is not None:
            events: Iterator[AnswerEvent] = iter(
                [AnswerEvent("token", probe.answer.answer), AnswerEvent("done", answer=probe.answer)]
            )
        else:
            events = self.engine.stream(
                question,
                kbs,
                principal=principal,
                history=history,
                config=cfg,
                filters=filters,
                tier=tier,
                template=template if assignment is not None and assignment.variant.template else None,
            )
        for event in events:
            if event.answer is None:
                yield event
                continue
            if cache is not None and probe is not None and probe.answer is None:
                cache.store(probe, event.answer)
            label = assignment.label if assignment is not None else None
            answer = replace(event.answer, guards=(*verdicts, *event.answer.guards), variant=label)
            audited = AuditEvent.from_answer(
                answer,
                question=question,
                kbs=kbs,
                kind=kind,
                prompt_template=template.version,
                params=self._answer_params(cfg, tier) | ({"trace": answer.trace} if answer.trace else {}),
                rewritten_queries=_rewritten(question, answer),
                session_id=session_id,
                variant=label,
                client=client,
            )
            ref = self.audit.record(principal, audited)
            final = replace(answer, audit_id=ref.id)
            self.telemetry.observe_answer(final, kind=kind, attributes={"cairn.client": client})
            yield AnswerEvent("done", answer=final)

    def ask(
        self,
        question: str,
        kbs: Sequence[str],
        *,
        principal: Principal,
        history: Sequence[ChatMessage] = (),
        session_id: str | None = None,
        config: RetrievalConfig | None = None,
        filters: Filters | None = None,
        client: str = "cli",
        tier: str | None = None,
    ) -> Answer:
        return final_answer(
            self.stream(
                question,
                kbs,
                principal=principal,
                history=history,
                session_id=session_id,
                config=config,
                filters=filters,
                client=client,
                tier=tier,
            )
        )

    def _check_question(
        self, question: str, kbs: Sequence[str], principal: Principal, kind: str, client: str
    ) -> tuple[dict[str, Any], ...]:
        """The question guard's flagged verdicts; a blocked question is audited, then refused."""
        outcome = self.guards.check_question(question, raise_on_block=False)
        verdicts = tuple(v.to_json() for v in outcome.verdicts if v.flagged)
        if outcome.decision == "block":
            refused = AuditEvent(kind=kind, question=question, kbs=list(kbs), refused=True, client=client)
            self.audit.record(principal, replace(refused, guards=list(verdicts)))
            self.telemetry.observe_blocked(kind, verdicts)
            self.guards.check_question(question)  # raises GuardBlocked with the user-facing message
        return verdicts

    def _assignment(
        self, principal: Principal, kbs: Sequence[str], config: RetrievalConfig | None, tier: str | None
    ) -> Assignment | None:
        """The caller's experiment variant, unless the request itself pinned what the experiment varies."""
        if not self.settings.experiments or principal.user_id is None or principal.is_system:
            return None
        pinned = {"tier"} if tier is not None else set()
        if config is not None and config != self.config_for(kbs):
            pinned.add("profile")
        assignment = self.experiments.assign(principal, kbs, pinned=pinned)
        if assignment is None:
            return None
        variant = assignment.variant
        tiers = {t.name for t in self.tier_list}
        if (variant.template is not None and variant.template not in template_versions()) or (
            variant.tier is not None and variant.tier not in tiers
        ):
            # The configuration changed under a running experiment: serve the default, count nothing.
            if assignment.label not in self._unapplicable:
                self._unapplicable.add(assignment.label)
                log.warning("experiment variant %s names a template or tier not configured here", assignment.label)
            return None
        return assignment

    def _cache_key(
        self, config: RetrievalConfig, tier: str | None = None, template: PromptTemplate | None = None
    ) -> str:
        """What an answer depends on besides the question and the caller's rights: pipeline, model, prompt, guards."""
        guards = {k: v for k, v in self.settings.model_dump(mode="json").items() if k.startswith("guard_")}
        version = template.version if template is not None else prompts.TEMPLATE_VERSION
        return config_key(self._answer_params(config, tier), version, guards)

    def _answer_params(self, config: RetrievalConfig, tier: str | None = None) -> dict[str, Any]:
        s = self.settings
        routing = {
            "tiers": [t.to_json() for t in self.tier_list],
            "sensitivity_signals": list(s.sensitivity_signals),
            "kb_classification": dict(s.kb_classification),
            "forced_tier": tier,
        }
        return routing | {
            "retrieval": asdict(config),
            "generator": s.generator,
            "embedder": s.embedder,
            "max_answer_tokens": s.max_answer_tokens,
            "min_relevance": s.min_relevance,
            "max_context_chars": s.max_context_chars,
            "grounding": s.grounding,
            "grounding_policy": s.grounding_policy,
        }

    def close(self) -> None:
        if "parser" in self.__dict__:
            self.parser.close()
        if "db" in self.__dict__:
            self.db.close()


def _rewritten(question: str, answer: Answer) -> list[str]:
    """Every query retrieval ran besides the question: the chat rewrite, sub-questions, rewrites."""
    queries = [answer.query] if answer.query and answer.query != question else []
    queries += answer.trace.get("sub_questions", [])
    queries += [str(r.get("text", "")) for r in answer.trace.get("rewrites", [])]
    return list(dict.fromkeys(q for q in queries if q and q != question))


def _with_scheme(location: str) -> str:
    """Bare answerer names (``extractive``) are accepted where a location is expected."""
    return location if ":" in location else location + ":"


def _saved_ms(answer: Answer | None) -> float:
    return float(answer.trace.get("cache", {}).get("saved_ms", 0.0)) if answer is not None else 0.0
