"""Document-level access control: each layer (the application's filter, row-level security) alone
keeps documents from callers who may not read them; revocation applies at once; fail closed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from cairn.assistant import Cairn
from cairn.errors import AuthError, InputError, NotFound
from cairn.index.access import Access
from cairn.index.check import check_index
from cairn.types import SYSTEM, Principal

TABLES = ("documents", "chunks", "postings", "knowledge_bases", "chat_sessions", "chat_messages")


def _write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def org(make_cairn: Callable[..., Cairn], tmp_path: Path) -> Cairn:
    """HR and IT folders with sidecar ACLs, a per-file sidecar, and one file nobody was given."""
    cairn = make_cairn()
    docs = tmp_path / "docs"
    _write(docs, "hr/.cairn-acl", "# HR only\ngroups: hr\n")
    _write(docs, "hr/salaries.txt", "Salary bands for 2026: engineers earn CANARYHR01 per year.")
    _write(docs, "hr/leave.txt", "Annual leave is 30 days. Parental leave policy CANARYHR02.")
    _write(docs, "hr/leave.txt.cairn-acl", "groups: hr, it\nusers: carol\n")
    _write(docs, "it/.cairn-acl", "groups: it")
    _write(docs, "it/vpn.txt", "The VPN gateway is vpn.example.com, token CANARYIT01.")
    _write(docs, "open/handbook.txt", "Everyone may read the handbook: office hours CANARYALL1.")
    _write(docs, "open/.cairn-acl", "groups: everyone")
    _write(docs, "secret.txt", "Board minutes CANARYNONE about the merger.")
    report = cairn.ingestor.sync_folder(docs, "kb")
    assert report.ok and report.count("added") == 5 and report.admin_only == 1
    cairn.principals.add_user("alice", ["hr"])
    cairn.principals.add_user("bob", ["it"])
    cairn.principals.add_user("carol")
    cairn.principals.add_user("root", admin=True)
    return cairn


def _seen(cairn: Cairn, principal: Principal, query: str = "salary leave vpn handbook board merger") -> set[str]:
    hits = cairn.retriever.search(query, ["kb"], cairn.retrieval_config.with_(top_k=50), principal=principal).hits
    return {Path(h.source).name for h in hits}


EXPECTED = {
    "alice": {"salaries.txt", "leave.txt", "handbook.txt"},
    "bob": {"leave.txt", "vpn.txt", "handbook.txt"},
    "carol": {"leave.txt", "handbook.txt"},
    "root": {"salaries.txt", "leave.txt", "vpn.txt", "handbook.txt", "secret.txt"},
}


def test_each_user_sees_exactly_their_documents(org: Cairn) -> None:
    for name, expected in EXPECTED.items():
        principal = org.principals.resolve(name)
        assert _seen(org, principal) == expected, name
        assert {Path(d.source).name for d in org.store.list_documents(principal, "kb")} == expected
        (kb,) = org.store.list_kbs(principal)
        assert kb["documents"] == len(expected)
    assert _seen(org, SYSTEM) == EXPECTED["root"]
    assert check_index(org.db).ok


def test_row_level_security_alone_filters(org: Cairn, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the application's ACL clause switched off, the database still refuses to show rows."""
    monkeypatch.setattr(Access, "clause", lambda self, column, param="acl_ids": ("", {}))
    for name, expected in EXPECTED.items():
        principal = org.principals.resolve(name)
        assert _seen(org, principal) == expected, name
        assert {Path(d.source).name for d in org.store.list_documents(principal, "kb")} == expected


def test_application_filter_alone_filters(org: Cairn) -> None:
    """With row-level security disabled by the owner, the application's own clause still filters."""
    with psycopg.connect(org.db.url, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    for name, expected in EXPECTED.items():
        assert _seen(org, org.principals.resolve(name)) == expected, name


def test_the_application_role_cannot_bypass_security(org: Cairn) -> None:
    with org.db.connection(SYSTEM) as conn:
        user, bypass, superuser = conn.execute(
            "SELECT current_user, rolbypassrls, rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone() or (None, None, None)
        owners = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner"
            " WHERE c.relname = ANY(%s) AND r.rolname = current_user",
            (list(TABLES),),
        ).fetchone()
        forced = conn.execute(
            "SELECT bool_and(relrowsecurity AND relforcerowsecurity) FROM pg_class WHERE relname = ANY(%s)",
            (list(TABLES),),
        ).fetchone()
    assert (user, bypass, superuser) == ("cairn_app", False, False)
    assert owners == (0,) and forced == (True,)


def test_a_connection_that_was_not_told_who_asks_sees_nothing(org: Cairn) -> None:
    with org.db._pool.connection() as conn:
        conn.execute("SELECT set_config('cairn.user_id', '', false), set_config('cairn.system', '', false)")
        counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone() for t in ("documents", "chunks", "postings")]
        assert counts == [(0,), (0,), (0,)]
        assert conn.execute("DELETE FROM documents").rowcount == 0


def test_a_returned_connection_forgets_its_borrower(org: Cairn) -> None:
    with org.db.connection(org.principals.resolve("alice")) as conn:
        assert conn.execute("SELECT current_setting('cairn.user_id')").fetchone() != ("",)
    for _ in range(org.db.max_connections):
        with org.db._pool.connection() as conn:
            assert conn.execute("SELECT count(*) FROM documents").fetchone() == (0,)


def test_users_cannot_write_the_index(org: Cairn) -> None:
    alice = org.principals.resolve("alice")
    with org.db.connection(alice) as conn:
        assert conn.execute("DELETE FROM documents").rowcount == 0
        assert conn.execute("UPDATE chunks SET acl_id = 1").rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO acl_sets (principals) VALUES ('{user:alice}')")
    assert len(org.store.list_documents(SYSTEM, "kb")) == 5


def test_revoking_a_group_applies_to_the_next_request(org: Cairn) -> None:
    assert "salaries.txt" in _seen(org, org.principals.resolve("alice"))
    org.principals.remove_member("hr", "alice")
    assert _seen(org, org.principals.resolve("alice")) == {"handbook.txt"}
    org.principals.add_member("hr", "alice")
    org.principals.delete_group("hr")
    assert _seen(org, org.principals.resolve("alice")) == {"handbook.txt"}


def test_a_principal_resolved_before_revocation_is_still_filtered_by_the_database(org: Cairn) -> None:
    """A stale Principal object (groups resolved earlier) cannot outlive a revocation: RLS resolves again."""
    stale = org.principals.resolve("alice")
    org.principals.remove_member("hr", "alice")
    assert _seen(org, stale) == {"handbook.txt"}


def test_disabled_and_unknown_users_are_refused_alike(org: Cairn) -> None:
    org.principals.update_user("bob", disabled=True)
    with pytest.raises(AuthError) as disabled:
        org.principals.resolve("bob")
    with pytest.raises(AuthError) as unknown:
        org.principals.resolve("mallory")
    assert disabled.value.message.replace("bob", "X") == unknown.value.message.replace("mallory", "X")


def test_admin_flag_can_be_granted_and_revoked(org: Cairn) -> None:
    org.principals.update_user("carol", admin=True)
    assert _seen(org, org.principals.resolve("carol")) == EXPECTED["root"]
    org.principals.update_user("carol", admin=False)
    assert _seen(org, org.principals.resolve("carol")) == EXPECTED["carol"]


def test_a_forbidden_passage_reads_like_a_missing_one(org: Cairn) -> None:
    bob = org.principals.resolve("bob")
    docs = {Path(d.source).name: d for d in org.store.list_documents(SYSTEM, "kb")}
    hit = org.retriever.search("salary bands", ["kb"], principal=SYSTEM).hits[0]
    assert hit.document_id == docs["salaries.txt"].id
    with pytest.raises(NotFound) as forbidden:
        org.store.passage(bob, hit.chunk_id)
    with pytest.raises(NotFound) as missing:
        org.store.passage(bob, 10**9)
    assert str(forbidden.value).replace(str(hit.chunk_id), "N") == str(missing.value).replace(str(10**9), "N")
    shown, body = org.store.passage(org.principals.resolve("alice"), hit.chunk_id)
    assert body[shown.start : shown.end] == shown.text and "CANARYHR01" in body


def test_a_knowledge_base_without_readable_documents_does_not_exist_for_the_caller(org: Cairn, tmp_path: Path) -> None:
    _write(tmp_path / "board", "minutes.txt", "Board only.")
    org.ingestor.sync_folder(tmp_path / "board", "board", readers=("group:board",))
    carol = org.principals.resolve("carol")
    with pytest.raises(NotFound) as hidden:
        org.retriever.search("board", ["board"], principal=carol)
    with pytest.raises(NotFound) as absent:
        org.retriever.search("board", ["nope"], principal=carol)
    assert str(hidden.value).replace("board", "X") == str(absent.value).replace("nope", "X")
    assert [k["name"] for k in org.store.list_kbs(carol)] == ["kb"]
    assert [k["name"] for k in org.store.list_kbs(SYSTEM)] == ["board", "kb"]


def test_chat_sessions_belong_to_their_user(org: Cairn) -> None:
    alice, bob = org.principals.resolve("alice"), org.principals.resolve("bob")
    session = org.chats.create(alice, ["kb"])
    with pytest.raises(NotFound) as foreign:
        org.chats.history(bob, session)
    with pytest.raises(NotFound) as missing:
        org.chats.history(bob, "00000000-0000-0000-0000-000000000000")
    assert str(foreign.value).replace(session, "S") == str(missing.value).replace(
        "00000000-0000-0000-0000-000000000000", "S"
    )
    with pytest.raises(NotFound):
        org.chats.append(bob, session)
    assert org.chats.kbs(alice, session) == ["kb"]


def test_changed_readers_are_applied_without_reindexing(org: Cairn, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    before = {h.chunk_id for h in org.retriever.search("vpn gateway", ["kb"], principal=SYSTEM).hits}
    (docs / "it" / ".cairn-acl").write_text("groups: it, hr\n", encoding="utf-8")
    report = org.ingestor.sync_folder(docs, "kb")
    (changed,) = [f for f in report.files if f.status == "updated"]
    assert changed.source.endswith("vpn.txt") and "group:hr" in changed.message
    assert "vpn.txt" in _seen(org, org.principals.resolve("alice"))
    after = {h.chunk_id for h in org.retriever.search("vpn gateway", ["kb"], principal=SYSTEM).hits}
    assert before == after, "same chunks: nothing was re-embedded"
    assert check_index(org.db).ok


def test_a_malformed_sidecar_fails_closed_and_keeps_the_previous_readers(org: Cairn, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "it" / ".cairn-acl").write_text("groups it hr\n", encoding="utf-8")
    report = org.ingestor.sync_folder(docs, "kb")
    (failed,) = [f for f in report.files if f.status == "error"]
    assert failed.source.endswith("vpn.txt") and "expected 'groups: a, b'" in failed.message
    assert _seen(org, org.principals.resolve("bob")) == EXPECTED["bob"]
    assert "vpn.txt" not in _seen(org, org.principals.resolve("alice"))


def test_ingest_flags_apply_where_no_sidecar_does(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn = make_cairn()
    _write(tmp_path / "d", "a.txt", "Alpha policy text.")
    _write(tmp_path / "d", "sub/b.txt", "Beta policy text.")
    _write(tmp_path / "d", "sub/.cairn-acl", "users: dave")
    cairn.ingestor.sync_folder(tmp_path / "d", "kb", readers=("group:sales",))
    docs = {Path(d.source).name: d.readers for d in cairn.store.list_documents(SYSTEM, "kb")}
    assert docs == {"a.txt": ("group:sales",), "b.txt": ("user:dave",)}


@pytest.mark.parametrize("bad", ["groups: hr; drop", "owners: x", "groups: a b"])
def test_sidecar_syntax_errors_are_reported(bad: str) -> None:
    from cairn.ingest.acl import parse_sidecar

    with pytest.raises(InputError):
        parse_sidecar(bad, "x/.cairn-acl")


def test_api_keys_authenticate_until_revoked(org: Cairn) -> None:
    key = org.principals.create_key("alice", "laptop")
    assert org.principals.authenticate(key).name == "alice"
    (info,) = org.principals.list_keys("alice")
    assert info.last_used_at is not None and key.split("_")[1] == info.prefix
    tampered = key[:-2] + ("AA" if not key.endswith("AA") else "BB")
    for bad in (tampered, "cairn_nope_x", "", key + "x"):
        with pytest.raises(AuthError) as refused:
            org.principals.authenticate(bad)
        assert refused.value.message == "invalid API key"
    org.principals.revoke_key(info.prefix)
    with pytest.raises(AuthError):
        org.principals.authenticate(key)
    with org.db.connection(SYSTEM) as conn:
        stored = conn.execute("SELECT digest FROM api_keys").fetchone()
    assert stored is not None and key.encode() not in bytes(stored[0])


@pytest.mark.parametrize("database_url", ["tcp"], indirect=True)
def test_a_login_role_that_only_holds_cairn_app_can_serve(org: Cairn) -> None:
    """The recommended server setup: the owner migrates once; cairn then logs in as a non-owner member."""
    from cairn.testing.postgres import with_role

    with psycopg.connect(org.db.url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS cairn_web")
        conn.execute("CREATE ROLE cairn_web LOGIN")
        conn.execute("GRANT cairn_app TO cairn_web")
    web = Cairn(org.settings.model_copy(update={"database_url": with_role(org.db.url, "cairn_web")}))
    try:
        assert _seen(web, web.principals.resolve("alice")) == EXPECTED["alice"]
        with web.db.connection(SYSTEM) as conn:
            assert conn.execute("SELECT session_user, current_user").fetchone() == ("cairn_web", "cairn_app")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("ALTER TABLE documents DISABLE ROW LEVEL SECURITY")
    finally:
        web.close()
