"""The knowledge graph against real PostgreSQL: written with the chunks, replaced and deleted with them,
visible only through chunks the caller may read (each security layer alone), rebuilt by the backfill,
checked by ``index check``, and used at query time to reach the second document of a two-hop question."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from cairn.assistant import Cairn
from cairn.index.access import Access, access_for
from cairn.index.check import check_index
from cairn.index.graph import Extraction, build_graph, entities, graph_stats, related
from cairn.index.store import kb_ids
from cairn.ingest.entities import BaseExtractor, EntityExtractor, HeuristicExtractor, LLMExtractor
from cairn.ingest.sync import Ingestor
from cairn.retrieve.graph import GraphConfig, expand, graph_candidates
from cairn.testing.fakes import ScriptedGenerator
from cairn.types import SYSTEM, Principal

T = TypeVar("T")
GRAPH_TABLES = ("chunk_entities", "entity_relations", "graph_extractions")

FILES = {
    "it/.cairn-acl": "groups: it\n",
    "it/oncall.txt": "The SRE team runs the on-call rota in PagerBell. Alerts without a runbook become tickets.",
    "it/tools.txt": "PagerBell invoices are approved by the Head of Financial Control. The renewal is due in May.",
    "hr/.cairn-acl": "groups: hr\n",
    "hr/nightjar.txt": "Project Nightjar is led by Maria Lopez. Nightjar pages its engineers through PagerBell.",
    "open/.cairn-acl": "groups: everyone\n",
    "open/handbook.txt": "Everyone may read the handbook. Expense claims are submitted in LedgerLine.",
}


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def _ingestor(cairn: Cairn, extractor: EntityExtractor | None = None) -> Ingestor:
    return Ingestor(cairn.store, cairn.embedder, cairn.chunker, entities=extractor or HeuristicExtractor())


@pytest.fixture
def org(make_cairn: Callable[..., Cairn], tmp_path: Path) -> Cairn:
    cairn = make_cairn()
    report = _ingestor(cairn).sync_folder(_write(tmp_path / "docs", FILES), "kb")
    assert report.ok and report.count("added") == 4
    cairn.principals.add_user("alice", ["hr"])
    cairn.principals.add_user("bob", ["it"])
    cairn.principals.add_user("root", admin=True)
    return cairn


def _as(cairn: Cairn, principal: Principal, fn: Callable[[psycopg.Connection, list[int], Access], T]) -> T:
    with cairn.db.connection(principal) as conn, conn.transaction():
        access = access_for(conn, principal)
        return fn(conn, kb_ids(conn, ["kb"], access), access)


def _keys(cairn: Cairn, principal: Principal) -> set[str]:
    return {e.key for e in _as(cairn, principal, lambda c, k, a: entities(c, k, access=a, limit=1000))}


def _sources(cairn: Cairn, chunk_ids: list[int]) -> set[str]:
    with cairn.db.connection(SYSTEM) as conn:
        rows = conn.execute(
            "SELECT d.source FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ANY(%s)", (chunk_ids,)
        ).fetchall()
    return {Path(r[0]).name for r in rows}


def _count(cairn: Cairn, sql: str, *params: Any) -> int:
    with cairn.db.connection(SYSTEM) as conn:
        row = conn.execute(sql, params or None).fetchone()
    assert row is not None
    return int(row[0])


def test_ingestion_stores_the_graph_with_the_chunks(org: Cairn) -> None:
    keys = _keys(org, SYSTEM)
    assert {"pagerbel", "sre", "head of financi control", "project nightjar", "maria lopez", "ledgerlin"} <= keys
    stats = _as(org, SYSTEM, lambda c, k, a: graph_stats(c, k, access=a))
    assert stats.chunks == stats.extracted == 4 and stats.extractors == {"heuristic": 4}
    assert stats.relations > 0 and stats.mentions >= stats.entities
    edges = _as(org, SYSTEM, lambda c, k, a: related(c, k, ["pagerbel"], access=a))
    assert ("pagerbel", "sre", 1) in edges
    assert check_index(org.db).ok


def test_graph_rows_of_unreadable_documents_are_invisible(org: Cairn) -> None:
    alice, bob = org.principals.resolve("alice"), org.principals.resolve("bob")
    assert "project nightjar" in _keys(org, alice) and "sre" not in _keys(org, alice)
    assert "sre" in _keys(org, bob) and not {"project nightjar", "maria lopez"} & _keys(org, bob)
    assert _as(org, bob, lambda c, k, a: graph_candidates(c, "Who leads Project Nightjar?", k, access=a)) == []
    neighbours = _as(org, bob, lambda c, k, a: related(c, k, ["pagerbel"], access=a))
    assert {other for _, other, _ in neighbours} == {"sre", "head of financi control"}
    stats = _as(org, bob, lambda c, k, a: graph_stats(c, k, access=a))
    assert stats.extracted == 3  # the handbook and the two IT documents


def test_row_level_security_alone_hides_graph_rows(org: Cairn, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the application's ACL clause switched off, the database still refuses to show graph rows."""
    monkeypatch.setattr(Access, "clause", lambda self, column, param="acl_ids": ("", {}))
    bob = org.principals.resolve("bob")
    assert not {"project nightjar", "maria lopez"} & _keys(org, bob)
    expansion = _as(org, bob, lambda c, k, a: expand(c, "What pages through PagerBell?", k, access=a))
    assert "nightjar.txt" not in _sources(org, [i for i, _ in expansion.chunks])
    with org.db.connection(bob) as conn:
        seen = [
            conn.execute("SELECT count(*) FROM chunk_entities WHERE key = 'project nightjar'").fetchone(),
            conn.execute(
                "SELECT count(*) FROM entity_relations WHERE 'maria lopez' IN (source_key, target_key)"
            ).fetchone(),
            conn.execute("SELECT count(*) FROM graph_extractions").fetchone(),
        ]
        assert conn.execute("DELETE FROM chunk_entities").rowcount == 0  # and no writes either
    assert seen == [(0,), (0,), (3,)]


def test_application_filter_alone_hides_graph_rows(org: Cairn) -> None:
    with psycopg.connect(org.db.url, autocommit=True) as conn:
        for table in ("documents", "chunks", "postings", "knowledge_bases", *GRAPH_TABLES):
            conn.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    bob = org.principals.resolve("bob")
    assert not {"project nightjar", "maria lopez"} & _keys(org, bob)
    expansion = _as(org, bob, lambda c, k, a: expand(c, "What pages through PagerBell?", k, access=a))
    assert "nightjar.txt" not in _sources(org, [i for i, _ in expansion.chunks])
    assert "project nightjar" not in {e.key for e in expansion.entities}


def test_expansion_reaches_the_document_linked_by_an_entity(org: Cairn) -> None:
    question = "Who approves the bills of the tool that the SRE team uses?"
    bob, root = org.principals.resolve("bob"), org.principals.resolve("root")

    direct = _as(org, bob, lambda c, k, a: expand(c, question, k, access=a, config=GraphConfig(hops=0)))
    assert [e.key for e in direct.entities] == ["sre"]
    assert _sources(org, [i for i, _ in direct.chunks]) == {"oncall.txt"}

    one_hop = _as(org, bob, lambda c, k, a: expand(c, question, k, access=a))
    by_key = {e.key: e for e in one_hop.entities}
    assert by_key["pagerbel"].hop == 1 and by_key["pagerbel"].via == "sre"
    assert by_key["pagerbel"].weight < by_key["sre"].weight
    ranked = [i for i, _ in one_hop.chunks]
    assert _sources(org, ranked[:1]) == {"oncall.txt"} and "tools.txt" in _sources(org, ranked)
    assert "nightjar.txt" not in _sources(org, ranked)  # bob may not read it, although it names PagerBell

    admin = _as(org, root, lambda c, k, a: graph_candidates(c, question, k, access=a))
    assert "nightjar.txt" in _sources(org, [i for i, _ in admin])
    assert _as(org, bob, lambda c, k, a: graph_candidates(c, "What is the weather like?", k, access=a)) == []


def test_common_words_do_not_link_and_shared_chunks_relate(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn = make_cairn()
    files = {
        ".cairn-acl": "groups: everyone\n",
        "portal.txt": "Open the portal and select Connect. You connect once a day.",
        "dock.txt": "Plug in the power before you connect the dock.",
        "wifi.txt": "Hotel networks may connect slowly.",
        "response.txt": "Incident Response Team\n\nWrite to security@example.com at once.",
        "guide.txt": "Report phishing to security@example.com immediately.",
    }
    assert _ingestor(cairn).sync_folder(_write(tmp_path / "docs", files), "kb").ok
    # "Connect" is an entity of one chunk, but three chunks use the word: a question's "connect" is a verb.
    assert _as(cairn, SYSTEM, lambda c, k, a: expand(c, "How do I connect?", k, access=a)).entities == ()
    assert _as(cairn, SYSTEM, lambda c, k, a: expand(c, "What does Connect do?", k, access=a)).entities == ()

    question = "How do I reach the Incident Response Team?"
    with_shared = _as(cairn, SYSTEM, lambda c, k, a: expand(c, question, k, access=a))
    assert {e.key: e.hop for e in with_shared.entities} == {"incid respons team": 0, "secur exampl com": 1}
    assert _sources(cairn, [i for i, _ in with_shared.chunks]) == {"response.txt", "guide.txt"}
    no_shared = GraphConfig(co_mention=0)  # the heading and the address share a chunk, never a sentence
    relations_only = _as(cairn, SYSTEM, lambda c, k, a: expand(c, question, k, access=a, config=no_shared))
    assert _sources(cairn, [i for i, _ in relations_only.chunks]) == {"response.txt"}


def test_reingesting_a_changed_document_replaces_its_graph(org: Cairn, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    before = _count(org, "SELECT count(*) FROM chunk_entities WHERE key = 'pagerbel'")
    (docs / "it/tools.txt").write_text("LedgerLine invoices are approved by Finance Operations.", encoding="utf-8")
    report = _ingestor(org).sync_folder(docs, "kb")
    assert report.count("updated") == 1
    keys = _keys(org, SYSTEM)
    assert "head of financi control" not in keys and "financ oper" in keys
    assert _count(org, "SELECT count(*) FROM graph_extractions") == _count(org, "SELECT count(*) FROM chunks")
    per_chunk = _count(org, "SELECT max(n) FROM (SELECT count(*) AS n FROM chunk_entities GROUP BY chunk_id, key) x")
    assert per_chunk == 1
    assert _count(org, "SELECT count(*) FROM chunk_entities WHERE key = 'pagerbel'") == before - 1
    assert check_index(org.db).ok


def test_deleting_a_document_removes_its_graph(org: Cairn, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "hr/nightjar.txt").unlink()
    assert _ingestor(org).sync_folder(docs, "kb").count("deleted") == 1
    assert not {"project nightjar", "maria lopez"} & _keys(org, SYSTEM)
    for table in GRAPH_TABLES:
        orphans = _count(
            org, f"SELECT count(*) FROM {table} t WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = t.chunk_id)"
        )
        assert orphans == 0
    assert check_index(org.db).ok
    org.store.drop_kb("kb")
    assert sum(_count(org, f"SELECT count(*) FROM {t}") for t in GRAPH_TABLES) == 0


def test_new_readers_apply_to_the_graph(org: Cairn, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "it/.cairn-acl").write_text("groups: it, hr\n", encoding="utf-8")
    report = _ingestor(org).sync_folder(docs, "kb")
    assert report.count("updated") == 2  # readers only: no re-extraction
    alice = org.principals.resolve("alice")
    assert {"sre", "pagerbel", "project nightjar"} <= _keys(org, alice)
    assert check_index(org.db).ok


def test_a_failing_write_leaves_neither_chunks_nor_graph(
    make_cairn: Callable[..., Cairn], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cairn = make_cairn()

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("crash while writing the graph")

    monkeypatch.setattr("cairn.index.store.write_graphs", broken)
    with pytest.raises(RuntimeError, match="crash"):
        _ingestor(cairn).sync_folder(_write(tmp_path / "docs", FILES), "kb")
    assert _count(cairn, "SELECT count(*) FROM chunks") == _count(cairn, "SELECT count(*) FROM documents") == 0
    assert check_index(cairn.db).ok


class _Fragile(BaseExtractor):
    name = "fragile"

    def _extract_one(self, text: str) -> Extraction:
        if "Nightjar" in text:
            raise ValueError("cannot handle this chunk")
        return HeuristicExtractor().extract(text)


def test_a_failing_extraction_keeps_the_document_and_the_backfill_retries(
    make_cairn: Callable[..., Cairn], tmp_path: Path
) -> None:
    cairn = make_cairn()
    report = _ingestor(cairn, _Fragile()).sync_folder(_write(tmp_path / "docs", FILES), "kb")
    assert report.ok and report.count("added") == 4
    assert _count(cairn, "SELECT count(*) FROM graph_extractions") == 3
    assert "project nightjar" not in _keys(cairn, SYSTEM)
    assert check_index(cairn.db).ok

    retry = build_graph(cairn.db, "kb", _Fragile())
    assert (retry.chunks, retry.failed) == (1, 1)
    fixed = build_graph(cairn.db, "kb", HeuristicExtractor())
    assert fixed.chunks == 4 and fixed.failed == 0  # another extractor: every chunk is redone
    assert "project nightjar" in _keys(cairn, SYSTEM) and check_index(cairn.db).ok


def test_backfill_builds_resumes_and_rebuilds(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn = make_cairn()
    plain = Ingestor(cairn.store, cairn.embedder, cairn.chunker)
    assert plain.sync_folder(_write(tmp_path / "docs", FILES), "kb").ok
    assert _count(cairn, "SELECT count(*) FROM chunk_entities") == 0

    seen: list[tuple[int, int]] = []
    first = build_graph(cairn.db, "kb", HeuristicExtractor(), batch_size=3, progress=lambda d, t: seen.append((d, t)))
    assert first.chunks == 4 and first.failed == 0 and first.entities > 0
    assert seen == [(3, 4), (4, 4)]
    mentions = _count(cairn, "SELECT count(*) FROM chunk_entities")
    assert build_graph(cairn.db, "kb", HeuristicExtractor()).chunks == 0  # nothing left to do
    again = build_graph(cairn.db, "kb", HeuristicExtractor(), rebuild=True)
    assert again.chunks == 4 and _count(cairn, "SELECT count(*) FROM chunk_entities") == mentions
    assert check_index(cairn.db).ok
    assert again.to_json()["ms_per_chunk"] is not None


def test_llm_relations_are_directed_and_expanded_both_ways(make_cairn: Callable[..., Cairn], tmp_path: Path) -> None:
    cairn = make_cairn()
    generator = ScriptedGenerator()
    generator.enqueue(
        "ENTITY|Team Falcon|TEAM\nENTITY|Kestrel|SYSTEM\nRELATION|Team Falcon|owns|Kestrel",
        "RELATION|Kestrel|stores data in|Osprey",
    )
    docs = _write(
        tmp_path / "docs",
        {
            ".cairn-acl": "groups: everyone\n",
            "a.txt": "Team Falcon owns the Kestrel service.",
            "b.txt": "Kestrel stores its data in the Postgres cluster Osprey.",
        },
    )
    assert _ingestor(cairn, LLMExtractor(generator)).sync_folder(docs, "kb").ok
    with cairn.db.connection(SYSTEM) as conn:
        triples = set(conn.execute("SELECT source_key, predicate, target_key FROM entity_relations").fetchall())
    assert triples == {("team falcon", "owns", "kestrel"), ("kestrel", "stores data in", "osprey")}
    expansion = _as(
        cairn,
        SYSTEM,
        lambda c, k, a: expand(c, "Where does Osprey keep things?", k, access=a, config=GraphConfig(hops=2)),
    )
    assert {e.key: e.hop for e in expansion.entities} == {"osprey": 0, "kestrel": 1, "team falcon": 2}
    assert _sources(cairn, [i for i, _ in expansion.chunks]) == {"a.txt", "b.txt"}
    assert check_index(cairn.db).ok


def _owner_sql(cairn: Cairn, *statements: str) -> None:
    with psycopg.connect(cairn.db.url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


_TOOLS_CHUNK = "(SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.source LIKE '%tools.txt')"


@pytest.mark.parametrize("database_url", ["embedded"], indirect=True)
def test_index_check_names_each_kind_of_graph_damage(org: Cairn) -> None:
    mentions = _count(org, f"SELECT count(*) FROM chunk_entities WHERE chunk_id = {_TOOLS_CHUNK}")
    assert mentions > 0
    _owner_sql(
        org,
        "ALTER TABLE chunk_entities DROP CONSTRAINT chunk_entities_chunk_id_fkey",
        "DELETE FROM documents WHERE source LIKE '%tools.txt'",
    )
    report = check_index(org.db)
    assert {k: v for k, v in report.violations.items() if v} == {"orphan_graph": mentions}
    assert report.orphans == mentions and "point at no chunk" in report.problems[0]


@pytest.mark.parametrize("database_url", ["embedded"], indirect=True)
@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        (
            "UPDATE chunk_entities SET acl_id = 1 WHERE key = 'pagerbel' AND chunk_id = " + _TOOLS_CHUNK,
            "graph_mismatch",
        ),
        ("DELETE FROM chunk_entities WHERE key = 'head of financi control'", "dangling_relations"),
        ("DELETE FROM graph_extractions WHERE chunk_id = " + _TOOLS_CHUNK, "unrecorded_graph"),
    ],
)
def test_index_check_detects_graph_rows_that_disagree(org: Cairn, statement: str, expected: str) -> None:
    _owner_sql(org, statement)
    report = check_index(org.db)
    assert not report.ok and {k for k, v in report.violations.items() if v} == {expected}
