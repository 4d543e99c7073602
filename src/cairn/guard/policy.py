"""What a deployment does with what the guards find: one policy per stage, one place that applies it.

The detectors only judge; this module turns a verdict into an action so that the answer engine,
ingestion and the audit log ask one object (a :class:`GuardSet`) instead of each re-deciding::

    policy  question (injection)   passage (injection)      answer / audit (PII)   answer (links, images)
    block   refused: GuardBlocked   dropped from the prompt  redacted: [EMAIL]      removed
    warn    answered, warn          quoted as data, warn     masked: j***@x.com     removed, warn
    log     answered                used as is               kept                   kept
    off     not checked             not checked              not checked            not checked

Under every policy but ``off`` a flagged verdict is logged (guard, score, reasons; never the text,
which may be the personal data being protected) and returned, for the audit record. ``warn``
sets the decision to ``"warn"`` so the caller can tell the user; ``block`` on a question or a
passage sets it to ``"block"``: withhold it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from cairn.errors import ConfigError, GuardBlocked
from cairn.guard.base import POLICIES, Guard, GuardVerdict, Policy
from cairn.guard.injection import InjectionDetector, neutralise
from cairn.guard.output import sanitize_markdown
from cairn.guard.pii import PII_KINDS, PiiDetector, redact_findings

Decision = Literal["allow", "warn", "block"]
Stage = Literal["question", "document", "answer", "audit"]
STAGES: tuple[Stage, ...] = ("question", "document", "answer", "audit")
EXCERPT_CHARS = 80
INJECTION_FLAG = "injection"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GuardPolicies:
    """One policy per stage; the defaults protect without refusing anything on a heuristic's word."""

    question_injection: Policy = "warn"
    document_injection: Policy = "warn"
    answer_pii: Policy = "log"
    audit_pii: Policy = "block"
    output: Policy = "block"

    def __post_init__(self) -> None:
        for name in ("question_injection", "document_injection", "answer_pii", "audit_pii", "output"):
            value = getattr(self, name)
            if value not in POLICIES:
                raise ConfigError(f"guard policy {name}={value!r} is not one of {', '.join(POLICIES)}")


@dataclass(frozen=True, slots=True)
class GuardOutcome:
    """The text to use from here on, what to do with it, and the verdicts behind that."""

    decision: Decision
    text: str
    verdicts: tuple[GuardVerdict, ...] = ()

    @property
    def flagged(self) -> bool:
        return any(v.flagged for v in self.verdicts)

    def to_json(self) -> dict[str, object]:
        """For the audit record: decisions and verdicts, not the text."""
        return {"decision": self.decision, "verdicts": [v.to_json() for v in self.verdicts]}


def excerpt(text: str, span: tuple[int, int] | None = None, limit: int = EXCERPT_CHARS) -> str:
    """At most ``limit`` printable characters of ``text`` (around ``span``), for messages about it."""
    start, end = span if span else (0, len(text))
    piece = " ".join("".join(c if c.isprintable() else " " for c in text[start:end]).split())
    return piece if len(piece) <= limit else piece[: limit - 1] + "…"


class GuardSet:
    """The guards of one deployment and their policies; cheap to build, safe to share across threads."""

    def __init__(
        self,
        policies: GuardPolicies | None = None,
        *,
        injection: Guard | None = None,
        pii: PiiDetector | None = None,
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        self.policies = policies or GuardPolicies()
        self.injection: Guard = injection or InjectionDetector()
        self.pii = pii or PiiDetector(PII_KINDS)
        self.allowed_hosts = tuple(allowed_hosts)

    def scan_chunk(self, text: str) -> GuardVerdict | None:
        """The injection verdict to store with a chunk at ingestion (None when the policy is off)."""
        if self.policies.document_injection == "off":
            return None
        return self.injection.check(text)

    def chunk_flags(self, text: str) -> tuple[str, ...]:
        """What to store with a chunk (``chunks.flags``): ``("injection",)`` or ``()``."""
        verdict = self.scan_chunk(text)
        return (INJECTION_FLAG,) if verdict is not None and verdict.flagged else ()

    def check_question(self, question: str, *, raise_on_block: bool = True) -> GuardOutcome:
        policy = self.policies.question_injection
        if policy == "off":
            return GuardOutcome("allow", question)
        verdict = self.injection.check(question)
        if not verdict.flagged:
            return GuardOutcome("allow", question, (verdict,))
        _log("question", policy, verdict)
        if policy == "block":
            if raise_on_block:
                raise _blocked(question, verdict)
            return GuardOutcome("block", "", (verdict,))
        return GuardOutcome("warn" if policy == "warn" else "allow", question, (verdict,))

    def check_passage(
        self, text: str, *, verdict: GuardVerdict | None = None, flags: Sequence[str] | None = None
    ) -> GuardOutcome:
        """Apply the passage policy, trusting what ingestion found when the caller has it.

        ``verdict`` (a stored verdict) or ``flags`` (the chunk's stored flags, from
        :meth:`chunk_flags`) skip the check; with neither, the passage is checked now. Flags are
        only as good as the ingestion that wrote them: with the guard off at ingestion, pass none.
        """
        policy = self.policies.document_injection
        if policy == "off":
            return GuardOutcome("allow", text)
        if verdict is None and flags is not None:
            stored = INJECTION_FLAG in flags
            verdict = GuardVerdict(self.injection.name, stored, 1.0 if stored else 0.0, ("stored",) if stored else ())
        verdict = verdict or self.injection.check(text)
        if not verdict.flagged:
            return GuardOutcome("allow", text, (verdict,))
        _log("document", policy, verdict)
        if policy == "block":
            return GuardOutcome("block", "", (verdict,))
        if policy == "warn":
            return GuardOutcome("warn", neutralise(text), (verdict,))
        return GuardOutcome("allow", text, (verdict,))

    def check_passages(
        self, texts: Sequence[str], verdicts: Sequence[GuardVerdict | None] | None = None
    ) -> list[GuardOutcome]:
        stored = list(verdicts) if verdicts is not None else [None] * len(texts)
        if len(stored) != len(texts):
            raise ValueError("verdicts must be one per passage")
        return [self.check_passage(t, verdict=v) for t, v in zip(texts, stored, strict=True)]

    def check_answer(self, answer: str) -> GuardOutcome:
        """Output handling first (links, images, HTML), then personal data in what is left."""
        text = answer
        verdicts: list[GuardVerdict] = []
        decision: Decision = "allow"
        if self.policies.output != "off":
            result = sanitize_markdown(text, self.allowed_hosts)
            verdict = GuardVerdict(
                "output", bool(result.removed), 1.0 if result.removed else 0.0, tuple(sorted(set(result.removed)))
            )
            verdicts.append(verdict)
            if verdict.flagged:
                _log("answer", self.policies.output, verdict)
                if self.policies.output in ("block", "warn"):
                    text = result.text
                if self.policies.output == "warn":
                    decision = "warn"
        outcome = self._pii("answer", text, self.policies.answer_pii)
        if outcome.decision == "warn":
            decision = "warn"
        return GuardOutcome(decision, outcome.text, (*verdicts, *outcome.verdicts))

    def redact_audit(self, text: str) -> GuardOutcome:
        """The form of ``text`` (a question, an answer) that may be written to the audit log."""
        return self._pii("audit", text, self.policies.audit_pii)

    def apply(self, stage: Stage, text: str) -> GuardOutcome:
        if stage == "question":
            return self.check_question(text)
        if stage == "document":
            return self.check_passage(text)
        if stage == "answer":
            return self.check_answer(text)
        if stage == "audit":
            return self.redact_audit(text)
        raise ConfigError(f"unknown guard stage {stage!r}", hint=f"known: {', '.join(STAGES)}")

    def _pii(self, stage: str, text: str, policy: Policy) -> GuardOutcome:
        if policy == "off":
            return GuardOutcome("allow", text)
        findings = self.pii.find(text)
        verdict = GuardVerdict(
            self.pii.name,
            bool(findings),
            1.0 if findings else 0.0,
            tuple(sorted({f.kind for f in findings})),
            tuple((f.start, f.end) for f in findings),
        )
        if not findings:
            return GuardOutcome("allow", text, (verdict,))
        _log(stage, policy, verdict)
        if policy == "block":
            return GuardOutcome("allow", redact_findings(text, findings, "label"), (verdict,))
        if policy == "warn":
            return GuardOutcome("warn", redact_findings(text, findings, "mask"), (verdict,))
        return GuardOutcome("allow", text, (verdict,))


def apply_policy(
    stage: Stage,
    text: str,
    policies: GuardPolicies | None = None,
    *,
    allowed_hosts: Iterable[str] = (),
) -> GuardOutcome:
    """One-off use; a long-lived caller keeps a :class:`GuardSet` instead."""
    return GuardSet(policies, allowed_hosts=allowed_hosts).apply(stage, text)


def _log(stage: str, policy: Policy, verdict: GuardVerdict) -> None:
    """Injection attempts are warnings; personal data in answers and audit records is routine (info)."""
    log.log(
        logging.WARNING if stage in ("question", "document") else logging.INFO,
        "guard %s flagged the %s (score %.2f; %s); policy %s",
        verdict.guard,
        stage,
        verdict.score,
        ", ".join(verdict.reasons) or "-",
        policy,
    )


def _blocked(question: str, verdict: GuardVerdict) -> GuardBlocked:
    near = excerpt(question, verdict.spans[0] if verdict.spans else None)
    reasons = ", ".join(verdict.reasons) or "injection"
    return GuardBlocked(
        f'the question was refused: it reads as an attempt to instruct the assistant ({reasons}) near "{near}"',
        hint="ask the question without instructions to the assistant; an administrator can relax the policy",
    )
