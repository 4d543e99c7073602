"""The audit chain against real PostgreSQL (embedded and TCP): lineage, tampering, access, races, retention."""

from __future__ import annotations

import io
import json
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cairn.errors import AuthError, Forbidden, InputError, NotFound, StoreError
from cairn.index.db import Database
from cairn.index.principals import PrincipalStore
from cairn.ops.audit import AuditEntry, AuditEvent, AuditLog, verify_entries
from cairn.ops.feedback import FeedbackStore
from cairn.settings import get_settings
from cairn.testing.postgres import with_database
from cairn.types import SYSTEM, Principal

EventFactory = Callable[..., AuditEvent]


def _fill(log: AuditLog, principal: Principal, ask_event: EventFactory, n: int) -> list[int]:
    return [log.record(principal, ask_event(f"question {i}?")).id for i in range(n)]


def _tamper(database_url: str, *statements: str) -> None:
    """As the database superuser, with triggers off: what an attacker with the owner's rights can do."""
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        for statement in statements:
            conn.execute(statement)


def test_records_lineage_and_verifies(db: Database, people, ask_event: EventFactory) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(db)
    ref = log.record(people.alice, ask_event())
    search = log.record(SYSTEM, AuditEvent(kind="search", question="remote work", kbs=["handbook"]))
    assert search.id > ref.id

    entries = log.list(SYSTEM, limit=10)
    assert [e.id for e in entries] == [search.id, ref.id]
    asked = entries[1]
    assert (asked.principal, asked.user_id, asked.kind) == ("alice", people.alice.user_id, "ask")
    assert entries[0].user_id is None and entries[0].principal == "system"
    record = asked.record
    assert record["question"] == "Can I work remotely on Fridays?"
    assert record["retrieved"] == [
        {
            "chunk_id": 11,
            "document_id": 3,
            "version": 2,
            "source": "policies/remote.md",
            "kb": "handbook",
            "score": 0.8125,
            "cosine": 0.71,
        }
    ]
    assert record["citations"][0]["chunk_id"] == 11 and record["citations"][0]["text"].startswith("Remote work")
    assert (record["prompt_template"], record["model"]) == ("grounded-v1", "fake:scripted")
    assert record["params"] == {"temperature": 0.0, "max_tokens": 300}
    assert record["guards"] == [{"name": "injection", "verdict": "pass"}]
    assert record["tokens"] == {"prompt": 420, "completion": 17}
    assert record["timings_ms"]["total"] == 95.25
    assert asked.hash.hex() == ref.hash

    assert [e.id for e in log.list(SYSTEM, user="alice")] == [ref.id]
    report = log.verify(SYSTEM)
    assert report.ok and report.records == 2 and report.problems == []
    assert (report.head_id, report.head_hash) == (search.id, search.hash)


def test_values_survive_the_jsonb_round_trip(db: Database) -> None:
    """jsonb has no NaN, no -0.0, no NUL and prints big integral floats as integers: all still verify."""
    log = AuditLog(db)
    odd = {
        "huge": 1e300,
        "tiny": 1e-7,
        "sum": 0.1 + 0.2,
        "nan": float("nan"),
        "inf": float("-inf"),
        "negzero": -0.0,
        "big": 2**70,
        "nested": ({"t": (1, 2.5)},),
    }
    log.record(SYSTEM, AuditEvent(kind="ask", question="nul\x00 and \ud800 and ünïcødé 🚀", answer="a", params=odd))
    assert log.verify(SYSTEM).ok
    (entry,) = log.list(SYSTEM)
    assert entry.record["params"]["nan"] is None and entry.record["params"]["huge"] == int(1e300)
    assert entry.record["question"] == "nul\ufffd and ? and ünïcødé 🚀"


def test_redaction_happens_before_hashing(db: Database, ask_event: EventFactory) -> None:
    log = AuditLog(db, redact=lambda text: text.replace("ann@example.com", "[EMAIL]"))
    event = ask_event("Is ann@example.com on leave?", "ann@example.com is on leave [1].")
    log.record(SYSTEM, event)
    (entry,) = log.list(SYSTEM)
    stored = json.dumps(entry.record)
    assert "ann@example.com" not in stored
    assert entry.record["question"] == "Is [EMAIL] on leave?" and entry.record["answer"].startswith("[EMAIL]")
    assert log.verify(SYSTEM).ok


@pytest.mark.parametrize(
    ("tampering", "expected", "bad_id"),
    [
        (
            "UPDATE audit_log SET record = jsonb_set(record, '{answer}', '\"No.\"') WHERE id = 3",
            "record 3 was modified",
            3,
        ),
        ("DELETE FROM audit_log WHERE id = 3", "record(s) deleted before record 4", 4),
        (
            "UPDATE audit_log SET id = -id WHERE id IN (2, 3); UPDATE audit_log SET id = 5 + id WHERE id < 0",
            "out of order",
            2,
        ),
        ("DELETE FROM audit_log WHERE id = 5", "newest record(s) deleted", 4),
        ("DELETE FROM audit_log WHERE id = 1", "record(s) deleted before record 2", 2),
    ],
    ids=["modified", "deleted", "reordered", "truncated", "first-deleted"],
)
def test_verify_names_each_tampering(  # type: ignore[no-untyped-def]
    db: Database, database_url: str, people, ask_event: EventFactory, tampering: str, expected: str, bad_id: int
) -> None:
    log = AuditLog(db)
    assert _fill(log, people.alice, ask_event, 5) == [1, 2, 3, 4, 5]
    assert log.verify(SYSTEM).ok
    _tamper(database_url, *tampering.split("; "))
    report = log.verify(SYSTEM)
    assert not report.ok
    assert any(expected in p for p in report.problems), report.problems
    assert report.first_bad_id == bad_id
    kinds = ("was modified", "deleted before", "out of order", "newest record")
    assert {k for k in kinds for p in report.problems if k in p} == {k for k in kinds if k in expected}


def test_rewriting_a_record_with_its_hash_still_breaks_the_link(
    db: Database, database_url: str, ask_event: EventFactory
) -> None:
    log = AuditLog(db)
    _fill(log, SYSTEM, ask_event, 3)
    _tamper(database_url, "UPDATE audit_log SET hash = sha256(hash) WHERE id = 2")
    report = log.verify(SYSTEM)
    assert report.problems[0] == "record 2 was modified: its contents do not match its hash"
    assert "record(s) deleted before record 3" in report.problems[1]


def test_records_are_immutable_even_for_the_owner(db: Database, database_url: str, ask_event: EventFactory) -> None:
    AuditLog(db).record(SYSTEM, ask_event())
    with (
        psycopg.connect(database_url, autocommit=True) as conn,
        pytest.raises(psycopg.Error, match="cannot be changed"),
    ):
        conn.execute("UPDATE audit_log SET principal = 'mallory'")


def test_reads_are_for_admins_in_python_and_in_postgres(db: Database, people, ask_event: EventFactory) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(db)
    ref = log.record(people.alice, ask_event())
    for call in (
        lambda: log.verify(people.alice),
        lambda: log.list(people.alice),
        lambda: log.export(people.alice, io.StringIO()),
    ):
        with pytest.raises(Forbidden):
            call()
    assert [e.id for e in log.list(people.carol)] == [ref.id]
    assert log.verify(people.carol).ok
    with pytest.raises(Forbidden):
        log.purge(people.carol, 0)

    with db.connection(people.alice) as conn:
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM audit_head").fetchone() == (0,)
        assert conn.execute("DELETE FROM audit_log").rowcount == 0
    with db.connection(people.carol) as conn:
        assert conn.execute("DELETE FROM audit_log").rowcount == 0, "deleting is for the system scope only"
    with pytest.raises(StoreError, match="permission denied"), db.connection(SYSTEM) as conn:
        conn.execute("UPDATE audit_log SET principal = 'mallory'")
    with pytest.raises(StoreError, match="permission denied"), db.connection(SYSTEM) as conn:
        conn.execute("UPDATE audit_head SET last_id = 0")


def test_writes_only_in_ones_own_name(db: Database, people, ask_event: EventFactory) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(db)
    with pytest.raises(AuthError):
        log.record(Principal("nobody"), ask_event())
    with pytest.raises(StoreError, match="unidentified"), db.connection(Principal("nobody")) as conn:
        conn.execute("SELECT * FROM cairn_audit_begin()")

    def raw_append(principal: Principal, user_id: int | None, kind: str) -> None:
        """A well-linked record, so that only the security policy can refuse it."""
        with db.connection(principal) as conn, conn.transaction():
            row = conn.execute("SELECT id, at, prev_hash FROM cairn_audit_begin()").fetchone()
            assert row is not None
            conn.execute(
                "INSERT INTO audit_log (id, at, user_id, principal, kind, record, prev_hash, hash)"
                " VALUES (%s, %s, %s, 'x', %s, '{}', %s, %s)",
                (row[0], row[1], user_id, kind, row[2], uuid.uuid4().bytes * 2),
            )

    with pytest.raises(StoreError, match="row-level security"):
        raw_append(people.alice, people.bob.user_id, "ask")
    with pytest.raises(StoreError, match="row-level security"):
        raw_append(people.alice, people.alice.user_id, "purge")
    raw_append(people.alice, people.alice.user_id, "ask")
    with db.connection(SYSTEM) as conn:
        assert conn.execute("SELECT principal, user_id FROM audit_log").fetchall() == [("x", people.alice.user_id)]


def test_inserts_must_extend_the_head(db: Database) -> None:
    with pytest.raises(StoreError, match="does not extend the chain head"), db.connection(SYSTEM) as conn:
        conn.execute(
            "INSERT INTO audit_log (id, at, user_id, principal, kind, record, prev_hash, hash)"
            " VALUES (100, now(), NULL, 'system', 'ask', '{}', %s, %s)",
            (bytes([1] * 32), bytes(range(32))),
        )


def test_concurrent_writers_form_one_chain(tmp_path: Path, database_url: str, ask_event: EventFactory) -> None:
    """Separate pools, like separate processes: the advisory lock makes their appends one chain."""
    settings = get_settings(home=tmp_path / "home", database_url=database_url)
    first = Database(settings)
    first.warm_up()
    first.close()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        database = Database(settings, max_connections=2)
        try:
            log = AuditLog(database)
            for i in range(12):
                log.record(SYSTEM, ask_event(f"writer {n} question {i}"))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)
        finally:
            database.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    database = Database(settings)
    try:
        report = AuditLog(database).verify(SYSTEM)
    finally:
        database.close()
    assert report.ok, report.problems
    assert report.records == 48


def test_purge_leaves_a_verifiable_chain(db: Database, people, ask_event: EventFactory) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(db, retention_days=30)
    _fill(log, people.alice, ask_event, 3)
    assert log.purge(SYSTEM) == 0, "nothing is 30 days old"
    with pytest.raises(InputError, match="no retention period"):
        AuditLog(db).purge(SYSTEM)

    assert log.purge(SYSTEM, 0) == 3
    report = log.verify(SYSTEM)
    assert report.ok and report.records == 1 and report.checkpoint_id is not None
    (purge,) = log.list(SYSTEM)
    assert purge.kind == "purge" and purge.record["upto_id"] == 3 and purge.record["purged"] == 3

    _fill(log, people.bob, ask_event, 2)
    assert log.verify(SYSTEM).ok
    assert log.purge(SYSTEM, 0) == 3
    report = log.verify(SYSTEM)
    assert report.ok and report.records == 1


def test_a_forged_checkpoint_is_detected(db: Database, database_url: str, ask_event: EventFactory) -> None:
    log = AuditLog(db)
    _fill(log, SYSTEM, ask_event, 4)
    with psycopg.connect(database_url, autocommit=True) as conn:
        (hash2,) = conn.execute("SELECT hash FROM audit_log WHERE id = 2").fetchone()  # type: ignore[misc]
        conn.execute("DELETE FROM audit_log WHERE id <= 2")
        conn.execute(
            "INSERT INTO audit_checkpoints (upto_id, upto_hash, purged, cutoff, audit_id) VALUES (2, %s, 2, now(), 4)",
            (hash2,),
        )
    report = log.verify(SYSTEM)
    assert not report.ok
    assert report.problems == ["retention checkpoint 1 is not confirmed by a purge record in the chain"]


def test_export_is_jsonl_that_verifies_offline(db: Database, people, ask_event: EventFactory) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(db)
    refs = [log.record(people.alice, ask_event(f"q{i}")) for i in range(3)]
    buffer = io.StringIO()
    assert log.export(SYSTEM, buffer) == 3
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert [line["id"] for line in lines] == [r.id for r in refs]
    assert {"id", "at", "principal", "hash", "prev_hash", "record"} <= set(lines[0])
    assert lines[0]["principal"] == "alice" and lines[2]["record"]["question"] == "q2"
    entries = [AuditEntry.from_json(line) for line in lines]
    assert verify_entries(entries, head_hash=bytes.fromhex(refs[-1].hash)).ok

    lines[1]["record"]["answer"] = "edited in the archive"
    assert not verify_entries([AuditEntry.from_json(line) for line in lines]).ok

    future = datetime.now(UTC) + timedelta(days=1)
    assert log.export(SYSTEM, io.StringIO(), since=future) == 0
    assert log.export(SYSTEM, io.StringIO(), until=future) == 3


def test_works_when_the_schema_owner_is_not_a_superuser(
    database_url: str, tmp_path: Path, ask_event: EventFactory
) -> None:
    """Production databases are owned by a plain role: the SECURITY DEFINER functions must still work."""
    admin = with_database(database_url, "postgres")
    owner, name = f"owner_{uuid.uuid4().hex[:8]}", f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {owner} LOGIN")
        conn.execute(f"CREATE DATABASE {name} OWNER {owner}")
        conn.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cairn_app') THEN"
            " CREATE ROLE cairn_app NOLOGIN; END IF; END $$"
        )
        conn.execute(f"GRANT cairn_app TO {owner}")
    with psycopg.connect(with_database(database_url, name), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    params = {k: str(v) for k, v in conninfo_to_dict(with_database(database_url, name)).items() if v is not None}
    params["user"] = owner
    owner_url = make_conninfo("", **params)
    with psycopg.connect(owner_url) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
    database = Database(get_settings(home=tmp_path / "home", database_url=owner_url))
    try:
        store = PrincipalStore(database)
        store.add_user("dave")
        dave = store.resolve("dave")
        log = AuditLog(database)
        ref = log.record(dave, ask_event())
        FeedbackStore(database, audit=log).add(dave, ref.id, vote=1, correction="Only on Fridays.")
        with pytest.raises(NotFound):
            FeedbackStore(database, audit=log).add(dave, ref.id + 100, vote=1)
        with database.connection(dave) as conn:
            assert conn.execute("SELECT count(*) FROM audit_log").fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM feedback").fetchone() == (1,)
        assert log.verify(SYSTEM).ok
        assert log.purge(SYSTEM, 0) == 2
        report = log.verify(SYSTEM)
        assert report.ok and report.records == 1
    finally:
        database.close()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"DROP ROLE IF EXISTS {owner}")
