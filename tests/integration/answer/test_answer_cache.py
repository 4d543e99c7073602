"""The answer cache never serves an answer built from documents the caller cannot read, nor one whose
documents changed; identically permissioned callers share entries. Each protection is also shown to
hold on its own (row-level security on the cache, validation against the documents, triggers)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cairn.answer import cache as cache_module
from cairn.answer.cache import AnswerCache, CacheProbe
from cairn.assistant import Cairn
from cairn.errors import NotFound
from cairn.settings import get_settings
from cairn.testing.postgres import with_database
from cairn.types import SYSTEM, Answer, ChatMessage, Principal

KEY = "pipeline-v1"


def _write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def org(make_cairn: Callable[..., Cairn], tmp_path: Path) -> Cairn:
    """HR, IT and open folders with sidecar ACLs (as in tests/integration/index/test_access.py)."""
    cairn = make_cairn(generator="extractive:", min_relevance=0.2)
    docs = tmp_path / "docs"
    _write(docs, "hr/.cairn-acl", "groups: hr\n")
    _write(docs, "hr/salaries.txt", "Salary bands for 2026: engineers earn CANARYHR01 per year.")
    _write(docs, "hr/leave.txt", "Annual leave is 30 days per year. Parental leave policy CANARYHR02.")
    _write(docs, "it/.cairn-acl", "groups: it")
    _write(docs, "it/vpn.txt", "The VPN gateway is vpn.example.com, token CANARYIT01.")
    _write(docs, "open/.cairn-acl", "groups: everyone")
    _write(docs, "open/handbook.txt", "Everyone may read the handbook: office hours are 9 to 5, CANARYALL1.")
    report = cairn.ingestor.sync_folder(docs, "kb")
    assert report.ok and report.count("added") == 4
    cairn.principals.add_user("alice", ["hr"])
    cairn.principals.add_user("erin", ["hr"])  # the same readable documents as alice
    cairn.principals.add_user("bob", ["it"])
    cairn.principals.add_user("carol")
    cairn.principals.add_user("root", admin=True)
    return cairn


def _cache(cairn: Cairn, **options: object) -> AnswerCache:
    return AnswerCache(cairn.db, cairn.embedder, **options)  # type: ignore[arg-type]


def _ask(cairn: Cairn, cache: AnswerCache, who: str | Principal, question: str, key: str = KEY) -> CacheProbe:
    """What Cairn.stream does with a cache: look up, else answer and store. Returns the probe, with the answer."""
    principal = cairn.principals.resolve(who) if isinstance(who, str) else who
    probe = cache.lookup(principal, question, ["kb"], key)
    if probe.answer is not None:
        return probe
    answer = cairn.engine.ask(question, ["kb"], principal=principal)
    cache.store(probe, answer)
    return replace(probe, answer=answer)


def _text(answer: Answer | None) -> str:
    assert answer is not None
    parts = [answer.answer, *(c.text for c in answer.citations), *(h.text for h in answer.searched)]
    return "\n".join(parts)


def _source(cairn: Cairn, name: str) -> str:
    return next(d.source for d in cairn.store.list_documents(SYSTEM, "kb") if Path(d.source).name == name)


def _entries(cairn: Cairn) -> int:
    with cairn.db.connection(SYSTEM) as conn:
        row = conn.execute("SELECT count(*) FROM answer_cache").fetchone()
    return int(row[0]) if row else 0


def _entry_id(cairn: Cairn, probe: CacheProbe) -> int:
    with cairn.db.connection(SYSTEM) as conn:
        row = conn.execute(
            "SELECT id FROM answer_cache WHERE perm = %s AND key = %s", (probe.perm, probe.key)
        ).fetchone()
    assert row is not None
    return int(row[0])


SALARY = "What are the salary bands for engineers?"


def test_same_question_from_an_identically_permissioned_user_hits(org: Cairn) -> None:
    cache = _cache(org)
    first = _ask(org, cache, "alice", "How many days of annual leave do we get?")
    assert first.kind == "miss" and first.answer is not None and not first.answer.refused
    assert "30 days" in first.answer.answer
    again = _ask(org, cache, "erin", "  how many DAYS of annual leave do we get ")
    assert again.kind == "exact" and again.answer is not None
    assert again.answer.answer == first.answer.answer and again.answer.citations == first.answer.citations
    assert again.answer.trace["cache"]["kind"] == "exact" and again.answer.audit_id is None
    assert again.answer.query == "how many DAYS of annual leave do we get"
    # bob reads other documents: his permission set differs, so he gets his own answer
    assert _ask(org, cache, "bob", "How many days of annual leave do we get?").kind == "miss"
    # another pipeline (model, prompt, retrieval config) never shares an answer
    assert _ask(org, cache, "alice", "How many days of annual leave do we get?", key="other").kind == "miss"
    stats = cache.stats()
    assert (stats["exact_hits"], stats["misses"], stats["stored"]) == (1, 3, 3)
    assert stats["hit_rate"] == 0.25 and stats["entries"] == 3


def test_a_paraphrase_hits_semantically_within_one_permission_set(org: Cairn) -> None:
    cache = _cache(org, semantic_threshold=0.95)
    first = _ask(org, cache, "alice", "what is the annual leave policy")
    close = _ask(org, cache, "erin", "The annual leave policy is what?")  # the hash embedder: same bag of words
    assert close.kind == "semantic" and close.similarity is not None and close.similarity >= 0.95
    assert close.answer is not None and first.answer is not None
    assert close.answer.answer == first.answer.answer
    assert close.answer.query == "The annual leave policy is what?"
    assert set(close.answer.trace) == {"cache"}  # none of the other question's retrieval trace
    assert _ask(org, cache, "erin", "what is the vpn gateway address").kind == "miss"
    assert _ask(org, cache, "bob", "the annual leave policy is what").kind == "miss"


def test_an_admins_answer_is_never_served_to_a_user_who_cannot_read_its_documents(org: Cairn) -> None:
    cache = _cache(org)
    admin = _ask(org, cache, "root", SALARY)
    assert admin.answer is not None and "CANARYHR01" in _text(admin.answer)
    for question in ("The salary bands for engineers are what?", SALARY, SALARY.lower()):
        probe = _ask(org, cache, "carol", question)
        assert probe.perm != admin.perm and "CANARYHR01" not in _text(probe.answer), question
        if probe.kind != "miss":  # carol's own entry from the question before, never root's
            assert probe.answer is not None and probe.answer.trace["cache"]["entry"] != _entry_id(org, admin)
    with org.db.connection(org.principals.resolve("carol")) as conn:
        seen = conn.execute("SELECT count(*) FROM answer_cache WHERE perm = %s", (admin.perm,)).fetchone()
    assert seen == (0,)


def test_row_level_security_alone_hides_other_permission_sets(org: Cairn, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the application computed the wrong permission key, the database still shows carol nothing of root's."""
    cache = _cache(org)
    admin = _ask(org, cache, "root", SALARY)
    assert admin.perm is not None
    monkeypatch.setattr(AnswerCache, "_permission", lambda self, conn: (admin.perm, 5))
    monkeypatch.setattr(cache_module, "_validity", lambda access: ("TRUE", {}))  # no check of the documents
    probe = _ask(org, cache, "carol", SALARY)
    assert probe.kind == "miss" and "CANARYHR01" not in _text(probe.answer)
    assert _entries(org) == 1  # carol's own answer could not be written under root's key either


def test_validation_alone_refuses_unreadable_documents(org: Cairn, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the cache's RLS off and the wrong key, checking the documents in carol's snapshot still refuses."""
    cache = _cache(org)
    admin = _ask(org, cache, "root", SALARY)
    with psycopg.connect(org.db.url, autocommit=True) as conn:
        for table in ("answer_cache", "answer_cache_documents"):
            conn.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    monkeypatch.setattr(AnswerCache, "_permission", lambda self, conn: (admin.perm, 5))
    probe = _ask(org, cache, "carol", SALARY)
    assert probe.kind == "miss" and "CANARYHR01" not in _text(probe.answer)
    assert cache.stats()["stale"] == 1  # found, refused, deleted


def test_control_with_both_layers_off_the_leak_would_happen(org: Cairn, monkeypatch: pytest.MonkeyPatch) -> None:
    """The two tests above are meaningful: with neither protection, carol would get root's answer."""
    cache = _cache(org)
    admin = _ask(org, cache, "root", SALARY)
    with psycopg.connect(org.db.url, autocommit=True) as conn:
        for table in ("answer_cache", "answer_cache_documents"):
            conn.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    monkeypatch.setattr(AnswerCache, "_permission", lambda self, conn: (admin.perm, 5))
    monkeypatch.setattr(cache_module, "_validity", lambda access: ("TRUE", {}))
    probe = _ask(org, cache, "carol", SALARY)
    assert probe.kind == "exact" and "CANARYHR01" in _text(probe.answer)


def test_a_new_version_of_a_document_is_not_served_from_the_old_one(org: Cairn, tmp_path: Path) -> None:
    cache = _cache(org)
    question = "How many days of annual leave do we get?"
    assert "30 days" in _text(_ask(org, cache, "alice", question).answer)
    _write(tmp_path / "docs", "hr/leave.txt", "Annual leave is 25 days per year. Parental leave policy CANARYHR02.")
    assert org.ingestor.sync_folder(tmp_path / "docs", "kb").count("updated") == 1
    assert _entries(org) == 0  # dropped by the trigger at once
    probe = _ask(org, cache, "alice", question)
    assert probe.kind == "miss" and probe.answer is not None
    assert "25 days" in probe.answer.answer and "30 days" not in _text(probe.answer)


def test_validation_alone_catches_a_new_version(org: Cairn, tmp_path: Path) -> None:
    """With the triggers disabled, the version check at lookup still refuses the old answer."""
    cache = _cache(org)
    question = "How many days of annual leave do we get?"
    _ask(org, cache, "alice", question)
    with psycopg.connect(org.db.url, autocommit=True) as conn:
        conn.execute("ALTER TABLE documents DISABLE TRIGGER documents_answer_cache_changed")
    _write(tmp_path / "docs", "hr/leave.txt", "Annual leave is 25 days per year. Parental leave policy CANARYHR02.")
    org.ingestor.sync_folder(tmp_path / "docs", "kb")
    assert _entries(org) == 1
    probe = _ask(org, cache, "erin", question)
    assert probe.kind == "miss" and probe.answer is not None and "25 days" in probe.answer.answer
    assert cache.stats()["stale"] == 1


def test_a_deleted_document_drops_its_entries(org: Cairn) -> None:
    cache = _cache(org)
    question = "How many days of annual leave do we get?"
    _ask(org, cache, "alice", question)
    assert org.store.delete_documents("kb", [_source(org, "leave.txt")]) == 1
    assert _entries(org) == 0
    probe = _ask(org, cache, "alice", question)
    assert probe.kind == "miss" and "CANARYHR02" not in _text(probe.answer)


def test_losing_access_to_a_document_stops_its_answers(org: Cairn) -> None:
    cache = _cache(org)
    first = _ask(org, cache, "alice", SALARY)
    assert "CANARYHR01" in _text(first.answer)
    org.store.set_readers("kb", _source(org, "salaries.txt"), ("group:it",))
    probe = _ask(org, cache, "alice", SALARY)
    assert probe.kind == "miss" and "CANARYHR01" not in _text(probe.answer)
    probe = _ask(org, cache, "erin", SALARY)  # alice's new answer, without the salaries
    assert probe.kind == "exact" and "CANARYHR01" not in _text(probe.answer)
    # and a revoked membership changes the permission set at once
    _ask(org, cache, "bob", SALARY)
    assert _ask(org, cache, "bob", SALARY).kind == "exact"
    org.principals.remove_member("it", "bob")
    probe = _ask(org, cache, "bob", SALARY)
    assert probe.kind == "miss" and "CANARYHR01" not in _text(probe.answer)


def test_refusals_are_cached_until_the_knowledge_base_changes(org: Cairn, tmp_path: Path) -> None:
    cache = _cache(org)
    question = "Where is the zebra xylophone quokka stored?"
    first = _ask(org, cache, "carol", question)
    assert first.answer is not None and first.answer.refused
    again = _ask(org, cache, "carol", question.upper())
    assert again.kind == "exact" and again.answer is not None and again.answer.refused
    assert repr(question.upper()) in again.answer.answer  # it names the question that was asked
    assert _ask(org, cache, "carol", "zebra xylophone quokka stored where").kind == "miss"  # never semantic
    # a document another group may read does not change carol's view ...
    _write(tmp_path / "docs", "it/zebra.txt", "The zebra xylophone quokka is stored in the IT cellar.")
    org.ingestor.sync_folder(tmp_path / "docs", "kb")
    assert _ask(org, cache, "carol", question).kind == "exact"
    # ... one she may read does
    _write(tmp_path / "docs", "open/zebra.txt", "The zebra xylophone quokka is stored in room 12.")
    org.ingestor.sync_folder(tmp_path / "docs", "kb")
    probe = _ask(org, cache, "carol", question)
    assert probe.kind == "miss" and probe.answer is not None and not probe.answer.refused
    assert "room 12" in probe.answer.answer and "IT cellar" not in _text(probe.answer)


def test_refusals_can_be_left_out(org: Cairn) -> None:
    cache = _cache(org, cache_refusals=False)
    question = "Where is the zebra xylophone quokka stored?"
    _ask(org, cache, "carol", question)
    assert _ask(org, cache, "carol", question).kind == "miss" and _entries(org) == 0


def test_an_answer_whose_passages_changed_while_it_was_generated_is_not_stored(org: Cairn, tmp_path: Path) -> None:
    cache = _cache(org)
    question = "How many days of annual leave do we get?"
    alice = org.principals.resolve("alice")
    probe = cache.lookup(alice, question, ["kb"], KEY)
    answer = org.engine.ask(question, ["kb"], principal=alice)
    _write(tmp_path / "docs", "hr/leave.txt", "Annual leave is 25 days per year.")
    org.ingestor.sync_folder(tmp_path / "docs", "kb")
    assert not cache.store(probe, answer) and _entries(org) == 0


def test_expiry_purge_and_invalidation(org: Cairn) -> None:
    cache = _cache(org)
    question = "How many days of annual leave do we get?"
    first = _ask(org, cache, "alice", question)
    _ask(org, cache, "bob", "What is the VPN gateway?")
    assert _entries(org) == 2
    with org.db.connection(SYSTEM) as conn:
        conn.execute("UPDATE answer_cache SET expires_at = now() - interval '1 second' WHERE perm = %s", (first.perm,))
    assert _ask(org, cache, "alice", question).kind == "miss"  # expired, and replaced by the new answer
    assert _ask(org, cache, "alice", question).kind == "exact"
    leave = next(d.id for d in org.store.list_documents(SYSTEM, "kb") if d.source.endswith("leave.txt"))
    assert cache.invalidate_documents([leave]) == 1  # alice's entry; bob's never saw the document
    assert _ask(org, cache, "alice", question).kind == "miss"
    with org.db.connection(SYSTEM) as conn:
        conn.execute("UPDATE answer_cache SET expires_at = now() - interval '1 second'")
    assert cache.purge() == 2 and _entries(org) == 0
    _ask(org, cache, "alice", question)
    assert cache.purge(everything=True) == 1


def test_max_entries_keeps_the_most_recently_used(org: Cairn) -> None:
    cache = _cache(org, max_entries=2)
    for question in ("What is the VPN gateway?", "When are office hours?", "How many days of annual leave?"):
        _ask(org, cache, "root", question)
    _ask(org, cache, "root", "What is the VPN gateway?")  # used again: kept
    assert cache.purge() == 1
    assert _ask(org, cache, "root", "What is the VPN gateway?").kind == "exact"
    assert _ask(org, cache, "root", "When are office hours?").kind == "miss"


def test_anonymous_callers_are_not_cached(org: Cairn) -> None:
    cache = _cache(org)
    nobody = Principal("nobody")
    assert cache.lookup(nobody, "What is the VPN gateway?", ["kb"], KEY).kind == "skip"
    assert cache.lookup(SYSTEM, "   ?  ", ["kb"], KEY).kind == "skip"
    with org.db._pool.connection() as conn:  # a connection nobody was named on sees no entry
        _ask(org, cache, "root", "What is the VPN gateway?")
        assert conn.execute("SELECT count(*) FROM answer_cache").fetchone() == (0,)


def test_works_when_the_schema_owner_is_not_a_superuser(database_url: str, tmp_path: Path) -> None:
    """Production databases are owned by a plain role: the triggers must still drop entries under FORCE RLS."""
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
    settings = get_settings(
        home=tmp_path / "home",
        database_url=make_conninfo("", **params),
        embedder="fake:hash?dim=64",
        generator="extractive:",
        min_relevance=0.2,
    )
    cairn = Cairn(settings)
    try:
        docs = tmp_path / "docs"
        _write(docs, "hr/.cairn-acl", "groups: hr\n")
        _write(docs, "hr/leave.txt", "Annual leave is 30 days per year.")
        cairn.ingestor.sync_folder(docs, "kb")
        cairn.principals.add_user("alice", ["hr"])
        cache = _cache(cairn)
        question = "How many days of annual leave do we get?"
        _ask(cairn, cache, "alice", question)
        assert _ask(cairn, cache, "alice", question).kind == "exact"
        _write(docs, "hr/leave.txt", "Annual leave is 25 days per year.")
        cairn.ingestor.sync_folder(docs, "kb")
        assert _entries(cairn) == 0
        _ask(cairn, cache, "alice", question)
        cairn.store.delete_documents("kb", [_source(cairn, "leave.txt")])
        assert _entries(cairn) == 0
    finally:
        cairn.close()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"DROP ROLE IF EXISTS {owner}")


def test_cairn_ask_serves_its_cache_only_to_the_same_rights(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    """Through the facade: the second identical ask is a hit (audited like any answer); other rights miss."""
    cairn = make_cairn(generator="extractive:", min_relevance=0.2, answer_cache="semantic")
    docs = tmp_path / "docs"
    _write(docs, "hr/.cairn-acl", "groups: hr\n")
    _write(docs, "hr/leave.txt", "Annual leave is 30 days per year. Parental leave policy CANARYHR02.")
    assert cairn.ingestor.sync_folder(docs, "kb").ok
    cairn.principals.add_user("alice", ["hr"])
    cairn.principals.add_user("erin", ["hr"])
    cairn.principals.add_user("bob", ["it"])
    question = "How many days of annual leave do we get?"
    first = cairn.ask(question, ["kb"], principal=cairn.principals.resolve("alice"))
    again = cairn.ask(question, ["kb"], principal=cairn.principals.resolve("erin"))
    assert not first.refused and "cache" not in first.trace
    assert again.trace["cache"]["kind"] == "exact" and again.answer == first.answer
    assert again.audit_id is not None and again.audit_id != first.audit_id
    with pytest.raises(NotFound):  # bob reads nothing in 'kb': for him it does not exist, cached or not
        cairn.ask(question, ["kb"], principal=cairn.principals.resolve("bob"))
    follow_up = cairn.ask(
        question,
        ["kb"],
        principal=cairn.principals.resolve("alice"),
        history=[ChatMessage("user", "hello"), ChatMessage("assistant", "hi")],
    )
    assert "cache" not in follow_up.trace
