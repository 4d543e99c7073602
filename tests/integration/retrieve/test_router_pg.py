"""Knowledge-base cards on real PostgreSQL: only readable knowledge bases are offered, centroids are
computed over the whole knowledge base and cached until it changes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cairn.assistant import Cairn
from cairn.errors import NotFound
from cairn.index.access import access_for
from cairn.index.kb_cards import CentroidCache, KbCatalog, kb_cards
from cairn.retrieve import router as _router  # noqa: F401  (registers the routers, whatever plugins.py lists)
from cairn.retrieve.base import ROUTERS
from cairn.types import SYSTEM


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def org(make_cairn: Callable[..., Cairn], tmp_path: Path) -> Cairn:
    """Three knowledge bases: hr (group hr), it (group it) and handbook (everyone, plus one admin-only file)."""
    cairn = make_cairn()
    docs = tmp_path / "docs"
    _write(docs, "hr/.cairn-acl", "groups: hr\n")
    _write(docs, "hr/salaries.txt", "Salary bands and pay grades: payroll salary raises and bonus pay.")
    _write(docs, "hr/leave.txt", "Annual leave, parental leave and sick leave days for employees.")
    _write(docs, "it/.cairn-acl", "groups: it\n")
    _write(docs, "it/vpn.txt", "The VPN client needs a password and a laptop certificate to connect.")
    _write(docs, "handbook/.cairn-acl", "groups: everyone\n")
    _write(docs, "handbook/office.txt", "Office hours, the canteen menu and the car park.")
    _write(docs, "handbook/secret/board.txt", "Board minutes about the merger and acquisition.")
    _write(docs, "handbook/secret/.cairn-acl", "# admins only\n")
    cairn.store.ensure_kb("hr", "Human resources: salaries, pay and leave")
    cairn.store.ensure_kb("it", "IT: laptops, VPN and passwords")
    for kb in ("hr", "it", "handbook"):
        report = cairn.ingestor.sync_folder(docs / kb, kb)
        assert report.ok, report.to_json()
    cairn.principals.add_user("bob", ["it"])
    cairn.principals.add_user("alice", ["hr"])
    cairn.principals.add_user("root", admin=True)
    return cairn


def _names(cairn: Cairn, who: str) -> list[str]:
    principal = SYSTEM if who == "system" else cairn.principals.resolve(who)
    return [c.name for c in KbCatalog(cairn.db).cards(principal)]


def test_only_readable_knowledge_bases_get_cards(org: Cairn) -> None:
    assert _names(org, "bob") == ["handbook", "it"]
    assert _names(org, "alice") == ["handbook", "hr"]
    assert _names(org, "root") == ["handbook", "hr", "it"]
    assert _names(org, "system") == ["handbook", "hr", "it"]
    # the same knowledge bases the caller may list
    bob = org.principals.resolve("bob")
    assert [kb["name"] for kb in org.store.list_kbs(bob)] == _names(org, "bob")
    with org.db.connection(bob) as conn:
        access = access_for(conn, bob)
        with pytest.raises(NotFound) as info:
            kb_cards(conn, ["it", "hr"], access=access)
        assert "'hr' does not exist" in info.value.message  # worded like a knowledge base that does not exist
        hr_id = conn.execute("SELECT count(*) FROM knowledge_bases WHERE name = 'hr'").fetchone()
        assert hr_id is not None and hr_id[0] == 0  # row-level security hides it as well
        cards = kb_cards(conn, ["it", "handbook"], access=access)
        assert [c.name for c in cards] == ["it", "handbook"]  # in the order asked
        assert cards[0].description == "IT: laptops, VPN and passwords"
        assert cards[0].centroid is None  # no cache given: no centroids


def test_a_reader_is_never_routed_to_an_unreadable_knowledge_base(org: Cairn) -> None:
    catalog = KbCatalog(org.db)
    bob = org.principals.resolve("bob")
    question = "What are the salary bands and pay grades?"
    qvec = org.embedder.embed_query(question)
    for location in ("centroid:?margin=2&max_kbs=10", "centroid:?description=1", "all:"):
        router = ROUTERS.create(location, embedder=org.embedder)
        assert router.route(question, qvec, catalog.cards(SYSTEM))[0] == "hr"  # where the answer is
        routed = router.route(question, qvec, catalog.cards(bob))
        assert routed and "hr" not in routed, location
    # the routed names search as usual, within what bob may read
    routed = ROUTERS.create("centroid:", embedder=org.embedder).route(question, qvec, catalog.cards(bob))
    hits = org.retriever.search(question, routed, principal=bob).hits
    assert hits and all(h.kb in ("it", "handbook") for h in hits)
    assert not any("board" in h.source for h in hits)


def test_centroids_cover_the_whole_knowledge_base(org: Cairn) -> None:
    """Computed by a system read: the same for every caller, admin-only chunks included."""
    catalog = KbCatalog(org.db, k=1)
    bob = org.principals.resolve("bob")
    (mine,) = [c for c in catalog.cards(bob) if c.name == "handbook"]
    (system,) = [c for c in catalog.cards(SYSTEM) if c.name == "handbook"]
    assert mine.centroid is not None and system.centroid is not None
    assert np.array_equal(mine.centroid, system.centroid)
    assert mine.chunks == system.chunks == 2
    with org.db.connection(SYSTEM) as conn:
        rows = conn.execute(
            "SELECT c.embedding FROM chunks c JOIN knowledge_bases kb ON kb.id = c.kb_id WHERE kb.name = 'handbook'"
        ).fetchall()
    vectors = np.stack([np.asarray(r[0].to_numpy() if hasattr(r[0], "to_numpy") else r[0]) for r in rows])
    mean = vectors.mean(axis=0)
    assert mine.centroid.shape == (org.embedder.dim,)
    assert np.allclose(mine.centroid, mean / np.linalg.norm(mean), atol=1e-5)
    clustered = KbCatalog(org.db, k=16).cards(SYSTEM, ["handbook"])[0].centroid
    assert clustered is not None and clustered.shape == (2, org.embedder.dim)  # two chunks, two centroids
    assert np.allclose(np.linalg.norm(clustered, axis=1), 1.0, atol=1e-5)


def test_centroid_cache_invalidates_after_ingestion(org: Cairn, tmp_path: Path) -> None:
    cache = CentroidCache(org.db, k=1)
    with org.db.connection(SYSTEM) as conn:
        access = access_for(conn, SYSTEM)
        (before,) = kb_cards(conn, ["it"], access=access, centroids=cache)
        kb_cards(conn, ["it"], access=access, centroids=cache)
    assert cache.computed == 1  # the second call was served from the cache
    more = tmp_path / "more"
    _write(more, "printer.txt", "Printers, toner and scanning to email in the office.")
    assert org.ingestor.sync_folder(more, "it", prune=False).ok
    with org.db.connection(SYSTEM) as conn:
        (after,) = kb_cards(conn, ["it"], access=access_for(conn, SYSTEM), centroids=cache)
    assert cache.computed == 2
    assert after.chunks == before.chunks + 1
    assert before.centroid is not None and after.centroid is not None
    assert not np.allclose(before.centroid, after.centroid)
    # an empty knowledge base has no centroid, and is scored by its description
    org.store.ensure_kb("empty", "nothing yet")
    with org.db.connection(SYSTEM) as conn:
        (empty,) = kb_cards(conn, ["empty"], access=access_for(conn, SYSTEM), centroids=cache)
    assert empty.centroid is None and empty.chunks == 0 and empty.description == "nothing yet"
