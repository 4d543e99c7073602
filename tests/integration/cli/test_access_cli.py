"""The access-control commands through the real CLI: users, groups, keys, --groups, --as-user, passage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cairn.errors import CairnError


def test_users_groups_and_as_user(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    (docs / "hr").mkdir(parents=True)
    (docs / "hr" / "pay.txt").write_text("Payroll runs on the 25th of each month.", encoding="utf-8")
    (docs / "hr" / ".cairn-acl").write_text("groups: hr\n", encoding="utf-8")
    (docs / "travel.txt").write_text("Payroll questions about travel go to the travel desk.", encoding="utf-8")

    code, out = run("ingest", str(docs), "--kb", "h", "--groups", "staff", "--json")
    assert code == 0 and json.loads(out)["admin_only"] == 0
    assert run("users", "add", "alice", "--groups", "hr,staff", "--json")[0] == 0
    assert run("users", "add", "bob", "--groups", "staff")[0] == 0

    code, out = run("users", "list", "--json")
    users = {u["name"]: u["groups"] for u in json.loads(out)["users"]}
    assert users == {"alice": ["hr", "staff"], "bob": ["staff"]}
    code, out = run("kb", "docs", "h", "--json")
    readers = {Path(d["source"]).name: d["readers"] for d in json.loads(out)["documents"]}
    assert readers == {"pay.txt": ["group:hr"], "travel.txt": ["group:staff"]}

    code, out = run("search", "payroll", "--kb", "h", "--as-user", "bob", "--json")
    assert code == 0 and {Path(h["source"]).name for h in json.loads(out)["hits"]} == {"travel.txt"}
    code, out = run("search", "payroll", "--kb", "h", "--as-user", "alice", "--json")
    hits = json.loads(out)["hits"]
    assert {Path(h["source"]).name for h in hits} == {"pay.txt", "travel.txt"}
    pay = next(h for h in hits if h["source"].endswith("pay.txt"))

    code, out = run("passage", str(pay["chunk_id"]), "--as-user", "alice", "--json")
    assert code == 0 and json.loads(out)["text"] == pay["text"]
    with pytest.raises(CairnError) as denied:
        run("passage", str(pay["chunk_id"]), "--as-user", "bob", "--json")
    with pytest.raises(CairnError) as missing:
        run("passage", "999999", "--as-user", "bob", "--json")
    assert denied.value.status == missing.value.status == 404
    assert denied.value.message.replace(str(pay["chunk_id"]), "N") == missing.value.message.replace("999999", "N")

    code, out = run("ask", "When does payroll run?", "--kb", "h", "--as-user", "bob", "--json")
    assert "25th" not in out

    assert run("groups", "remove-member", "hr", "alice")[0] == 0
    code, out = run("search", "payroll", "--kb", "h", "--as-user", "alice", "--json")
    assert {Path(h["source"]).name for h in json.loads(out)["hits"]} == {"travel.txt"}

    code, out = run("kb", "list", "--as-user", "bob", "--json")
    assert json.loads(out)["knowledge_bases"][0]["documents"] == 1

    code, out = run("keys", "create", "--user", "bob", "--json")
    key = json.loads(out)
    assert key["key"].startswith("cairn_") and key["user"] == "bob"
    code, out = run("keys", "list", "--json")
    (listed,) = json.loads(out)["keys"]
    assert listed["prefix"] == key["prefix"] and key["key"] not in out
    assert run("keys", "revoke", key["prefix"])[0] == 0

    travel = str((docs / "travel.txt").resolve())
    assert run("acl", "set", travel, "--kb", "h", "--groups", "hr")[0] == 0
    with pytest.raises(CairnError) as gone:  # bob can read nothing in h any more: h does not exist for him
        run("search", "payroll", "--kb", "h", "--as-user", "bob", "--json")
    assert gone.value.status == 404


def test_unknown_user_is_an_error(run) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CairnError) as refused:
        run("search", "x", "--as-user", "mallory")
    assert refused.value.status == 401
