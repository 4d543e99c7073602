"""The pure parts of the audit trail: canonical JSON, the jsonb-safe form, events and chain checking."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from cairn.errors import InputError
from cairn.ops.audit import (
    GENESIS,
    AuditEntry,
    AuditEvent,
    canonical_json,
    chain_hash,
    envelope,
    plain,
    verify_entries,
)
from cairn.types import Answer, Citation, Hit

T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": [True, None, "é"]}) == '{"a":[true,null,"é"],"b":1}'.encode()
    assert canonical_json({"a": 1, "b": 2}) == canonical_json({"b": 2, "a": 1})


@dataclass
class _Verdict:
    name: str
    passed: bool


def test_plain_keeps_only_what_jsonb_gives_back() -> None:
    assert plain(float("nan")) is None and plain(math.inf) is None
    assert str(plain(-0.0)) == "0.0"
    assert plain(1e300) == int(1e300) and isinstance(plain(1e300), int)
    assert plain(1e15 + 0.5) == 1e15 + 0.5 and plain(0.1 + 0.2) == 0.1 + 0.2
    assert plain("a\x00b\ud800") == "a\ufffdb?"
    assert plain({1: (1, 2), "s": {3}}) == {"1": [1, 2], "s": [3]}
    assert plain(_Verdict("pii", True)) == {"name": "pii", "passed": True}
    assert plain(T0) == "2025-03-01T09:30:00+00:00"
    assert plain(Citation(1, "a.md", None, 0, 3, "abc"))["source"] == "a.md"


def test_envelope_time_is_utc_to_the_microsecond() -> None:
    local = T0.astimezone(timezone(timedelta(hours=2)))
    assert envelope(local, None, "system", "ask", {})["at"] == "2025-03-01T09:30:00.000000+00:00"
    assert envelope(local, 1, "a", "ask", {}) == envelope(T0, 1, "a", "ask", {})


def test_event_from_answer_keeps_the_lineage() -> None:
    hit = Hit(7, 2, "hr/leave.pdf", "text", 0, 4, 0.5, page=3, kb="hr", scores={"version": 4.0})
    answer = Answer(
        answer="Twenty days [1].",
        refused=False,
        citations=(Citation(1, "hr/leave.pdf", 3, 0, 4, "text", chunk_id=7),),
        timings_ms={"total": 10.0},
        searched=(hit,),
        query="how many leave days do employees get",
        model="local:qwen",
        grounding={"supported": 1.0},
    )
    event = AuditEvent.from_answer(answer, question="and how many for me?", kbs=["hr"], kind="chat", session_id="s1")
    assert event.rewritten_queries == ["how many leave days do employees get"]
    assert event.retrieved == [
        {"chunk_id": 7, "document_id": 2, "version": 4, "source": "hr/leave.pdf", "kb": "hr", "score": 0.5}
    ]
    assert event.citations[0]["chunk_id"] == 7 and event.citations[0]["page"] == 3
    assert event.grounding == {"supported": 1.0} and event.model == "local:qwen"
    assert event.tokens == {"prompt": 0, "completion": 0}
    same = AuditEvent.from_answer(replace(answer, query="q"), question="q", kbs=["hr"])
    assert same.rewritten_queries == []
    assert canonical_json(event.to_record()) == canonical_json(plain(event.to_record()))
    with pytest.raises(InputError):
        AuditEvent(kind="purge", question="")


def _chain(n: int) -> list[AuditEntry]:
    entries, prev = [], GENESIS
    for i in range(1, n + 1):
        at = T0 + timedelta(seconds=i)
        record = {"question": f"q{i}"}
        digest = chain_hash(prev, envelope(at, None, "system", "ask", record))
        entries.append(AuditEntry(i, at, None, "system", "ask", record, prev, digest))
        prev = digest
    return entries


def test_chain_hash_is_sha256_over_the_link_and_the_envelope() -> None:
    first = _chain(1)[0]
    body = canonical_json(envelope(first.at, None, "system", "ask", {"question": "q1"}))
    assert first.hash == hashlib.sha256(GENESIS + body).digest()
    assert first.computed_hash() == first.hash


def test_verify_entries_names_each_fault() -> None:
    chain = _chain(5)
    head = chain[-1].hash
    assert verify_entries(chain, head_hash=head).ok

    edited = [*chain[:2], replace(chain[2], record={"question": "forged"}), *chain[3:]]
    report = verify_entries(edited, head_hash=head)
    assert report.problems == ["record 3 was modified: its contents do not match its hash"]
    assert report.first_bad_id == 3

    report = verify_entries([e for e in chain if e.id != 3], head_hash=head)
    assert len(report.problems) == 1 and report.problems[0].startswith("record(s) deleted before record 4")

    swapped = [chain[0], replace(chain[2], id=2), replace(chain[1], id=3), *chain[3:]]
    report = verify_entries(swapped, head_hash=head)
    assert report.problems and all("out of order" in p for p in report.problems)
    assert report.first_bad_id == 2

    report = verify_entries(chain[:4], head_hash=head)
    assert report.problems == [
        "newest record(s) deleted: the log ends at record 4 but the head anchor is a later record"
    ]

    report = verify_entries(chain[2:], start_hash=chain[1].hash, head_hash=head)
    assert report.ok and report.records == 3


def test_export_lines_round_trip() -> None:
    entry = _chain(2)[1]
    again = AuditEntry.from_json(entry.to_json())
    assert again == entry and again.computed_hash() == entry.hash
