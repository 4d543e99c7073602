"""``cairn audit`` and ``cairn feedback`` through the real entry point (main), errors mapped there."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from cairn.cli.app import main
from cairn.index.db import Database
from cairn.index.principals import PrincipalStore
from cairn.ops.audit import AuditEvent, AuditLog, AuditRef
from cairn.settings import get_settings

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    monkeypatch.setenv("CAIRN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CAIRN_DATABASE_URL", database_url)
    monkeypatch.setenv("CAIRN_EMBEDDER", "fake:hash?dim=64")
    monkeypatch.setenv("CAIRN_GENERATOR", "extractive:")

    def invoke(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["cairn", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


@pytest.fixture
def answers(tmp_path: Path, database_url: str) -> Iterator[list[AuditRef]]:
    """Two users and one answer each, recorded as the answer engine will record them."""
    db = Database(get_settings(home=tmp_path / "home", database_url=database_url))
    people = PrincipalStore(db)
    people.add_user("alice")
    people.add_user("bob")
    log = AuditLog(db)
    refs = [
        log.record(people.resolve("alice"), AuditEvent(kind="ask", question="Office hours?", kbs=["hb"], answer="9-5")),
        log.record(people.resolve("bob"), AuditEvent(kind="ask", question="Parking?", kbs=["hb"], answer="None.")),
    ]
    db.close()
    yield refs


def test_verify_list_export(run: Run, answers: list[AuditRef], tmp_path: Path) -> None:
    code, out, _ = run("audit", "verify", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and report["records"] == 2
    assert report["head_hash"] == answers[-1].hash, "the head to keep elsewhere"

    code, out, _ = run("audit", "verify")
    assert code == 0 and "audit trail ok" in out

    code, out, _ = run("audit", "list", "--json", "--user", "alice")
    (record,) = json.loads(out)["records"]
    assert code == 0 and record["id"] == answers[0].id and record["record"]["question"] == "Office hours?"
    code, out, _ = run("audit", "list", "--limit", "1")
    assert code == 0 and "Parking?" in out and "Office hours?" not in out

    target = tmp_path / "trail.jsonl"
    code, _, err = run("audit", "export", "--out", str(target), "--since", "2000-01-01")
    lines = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert code == 0 and "exported 2 audit records" in err
    assert [line["hash"] for line in lines] == [a.hash for a in answers]
    code, out, _ = run("audit", "export", "--until", "2000-01-01T00:00:00+00:00")
    assert code == 0 and out == ""
    code, _, err = run("audit", "export", "--since", "yesterday")
    assert code == 2 and "ISO 8601" in err


def test_verify_fails_on_tampering(run: Run, answers: list[AuditRef], database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute('UPDATE audit_log SET record = record || \'{"answer": "24/7"}\' WHERE id = %s', (answers[0].id,))
    code, out, _ = run("audit", "verify", "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and report["first_bad_id"] == answers[0].id
    code, out, _ = run("audit", "verify")
    assert code == 1 and f"record {answers[0].id} was modified" in out


def test_feedback_add_list_export(run: Run, answers: list[AuditRef]) -> None:
    alices, bobs = answers
    code, out, _ = run("feedback", "add", str(alices.id), "--down", "--correction", "8-6", "--as-user", "alice")
    assert code == 0 and f"on answer {alices.id}" in out

    code, _, err = run("feedback", "add", str(bobs.id), "--up", "--as-user", "alice")
    missing = err
    assert code == 1 and "Error: no answer" in err
    code, _, err = run("feedback", "add", "424242", "--up", "--as-user", "alice")
    assert code == 1 and err.replace("424242", str(bobs.id)) == missing, "someone else's answer reads as missing"

    code, _, _ = run("feedback", "add", str(bobs.id), "--up", "--down")
    assert code == 2
    code, _, err = run("feedback", "add", str(bobs.id))
    assert code == 1 and "needs a vote" in err
    code, _, _ = run("feedback", "add", str(bobs.id), "--flag", "--comment", "check this")
    assert code == 0

    code, out, _ = run("feedback", "list", "--json")
    listed = json.loads(out)["feedback"]
    assert code == 0 and [(f["audit_id"], f["principal"]) for f in listed] == [
        (bobs.id, "system"),
        (alices.id, "alice"),
    ]
    code, out, _ = run("feedback", "list")
    assert code == 0 and "8-6" in out

    code, out, err = run("feedback", "export", "--format", "dpo")
    (pair,) = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and "exported 1 dpo lines" in err
    assert pair == {
        "prompt": [{"role": "user", "content": "Office hours?"}],
        "chosen": [{"role": "assistant", "content": "8-6"}],
        "rejected": [{"role": "assistant", "content": "9-5"}],
    }
    code, out, _ = run("feedback", "export", "--format", "eval")
    assert code == 0 and json.loads(out)["answers"] == ["8-6"]
    code, _, _ = run("feedback", "export", "--format", "csv")
    assert code == 2

    code, out, _ = run("audit", "verify", "--json")
    assert code == 0 and json.loads(out)["records"] == 4, "two answers and two feedback records"


def test_purge(run: Run, answers: list[AuditRef]) -> None:
    code, _, err = run("audit", "purge")
    assert code == 1 and "no retention period" in err and "--older-than" in err
    code, out, _ = run("audit", "purge", "--older-than", "30")
    assert code == 0 and "purged 0" in out
    code, out, _ = run("audit", "purge", "--older-than", "0")
    assert code == 0 and "purged 2" in out
    code, out, _ = run("audit", "verify", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["records"] == 1 and report["checkpoint_id"] == 1


def test_unknown_user_is_an_error(run: Run, answers: list[AuditRef]) -> None:
    code, _, err = run("feedback", "add", str(answers[0].id), "--up", "--as-user", "mallory")
    assert code == 1 and "unknown or disabled user" in err
