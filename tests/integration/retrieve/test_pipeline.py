"""The pipeline around candidate retrieval: each stage runs where the config says, inside the
caller's snapshot and permissions, and a stage never sees a passage its caller may not read."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cairn.assistant import Cairn
from cairn.index.access import readers
from cairn.retrieve.hybrid import RetrievalConfig
from cairn.testing.fake_stages import FixedRewriter, NameRouter, ReverseReranker
from cairn.types import SYSTEM

DOCS = {
    "hr/leave.txt": "Annual leave is thirty days per year. Carry-over needs manager approval.",
    "hr/salary.txt": "Salary bands are reviewed every March. The pay review is done by HR.",
    "it/vpn.txt": "The VPN gateway rotates its certificate monthly. Use the corporate client.",
    "it/laptop.txt": "Laptops are replaced every four years. Broken screens go to the service desk.",
    "secret/merger.txt": "Merger talks with Zephyr Corp are confidential. Codename BLUEHERON.",
}


@pytest.fixture
def cairn(make_cairn: Callable[..., Cairn], tmp_path: Path) -> Cairn:
    cairn = make_cairn()
    root = tmp_path / "docs"
    for rel, text in DOCS.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (root / "secret" / ".cairn-acl").write_text("groups: board\n", encoding="utf-8")
    everyone = readers(groups=["everyone"])
    for kb in ("hr", "it", "secret"):
        assert cairn.ingestor.sync_folder(root / kb, kb, readers=everyone).ok
    cairn.principals.add_user("eve")
    return cairn


def _config(cairn: Cairn, **changes: object) -> RetrievalConfig:
    return cairn.retrieval_config.with_(**({"top_k": 10} | changes))


def _names(hits: object) -> list[str]:
    return [Path(h.source).name for h in hits]  # type: ignore[attr-defined]


def test_rerank_reorders_only_the_top_depth(cairn: Cairn) -> None:
    plain = cairn.retriever.search("leave salary vpn laptops", ["hr", "it"], _config(cairn), principal=SYSTEM)
    reranked = cairn.retriever.search(
        "leave salary vpn laptops", ["hr", "it"], _config(cairn, rerank="fake:", rerank_depth=3), principal=SYSTEM
    )
    before = _names(plain.hits)
    assert len(before) == 4
    assert _names(reranked.hits) == before[:3][::-1] + before[3:]
    assert "rerank" in reranked.timings_ms and "rerank" in reranked.hits[0].scores


def test_rewrites_are_retrieved_and_fused(cairn: Cairn) -> None:
    config = _config(cairn, rewrite="fake:?q=certificate+rotation", top_k=2)
    plain = cairn.retriever.search("screens", ["it"], config.with_(rewrite="off"), principal=SYSTEM)
    expanded = cairn.retriever.search("screens", ["it"], config, principal=SYSTEM)
    assert _names(plain.hits)[0] == "laptop.txt"
    assert set(_names(expanded.hits)) == {"laptop.txt", "vpn.txt"}
    assert expanded.trace["rewrites"][0]["text"] == "certificate rotation"


def test_decomposition_represents_every_part(cairn: Cairn) -> None:
    config = _config(cairn, decompose="fake:", top_k=3)
    result = cairn.retriever.search("annual leave days; VPN certificate", ["hr", "it"], config, principal=SYSTEM)
    assert result.trace["sub_questions"] == ["annual leave days", "VPN certificate"]
    assert {"leave.txt", "vpn.txt"} <= set(_names(result.hits))


def test_router_is_offered_only_readable_kbs(cairn: Cairn) -> None:
    eve = cairn.principals.resolve("eve")
    config = _config(cairn, route="fake:")
    router = cairn.retriever.stages.router("fake:")
    assert isinstance(router, NameRouter)
    routed = cairn.retriever.search("it: laptops and screens", ["*"], config, principal=eve)
    assert router.offered[-1] == ["hr", "it"]  # 'secret' has no document eve can read: it does not exist for her
    assert routed.trace["routed_kbs"] == ["it"]
    assert set(_names(routed.hits)) <= {"vpn.txt", "laptop.txt"}
    cairn.retriever.search("merger codename", ["*"], config, principal=SYSTEM)
    assert router.offered[-1] == ["hr", "it", "secret"]


def test_stages_never_see_unreadable_passages(cairn: Cairn) -> None:
    eve = cairn.principals.resolve("eve")
    config = _config(cairn, rerank="fake:", rewrite="fake:?q=merger+BLUEHERON&feedback=1", compress="fake:")
    result = cairn.retriever.search("Zephyr merger codename BLUEHERON", ["*"], config, principal=eve)
    reranker = cairn.retriever.stages.reranker("fake:")
    rewriter = cairn.retriever.stages.rewriter("fake:?q=merger+BLUEHERON&feedback=1")
    assert isinstance(reranker, ReverseReranker) and isinstance(rewriter, FixedRewriter)
    seen = [h for _, hits in reranker.calls + rewriter.calls for h in hits] + list(result.hits)
    assert seen, "the stages ran on eve's readable passages"
    assert all("BLUEHERON" not in h.text and "merger" not in h.source for h in seen)
    admin = cairn.retriever.search("Zephyr merger codename BLUEHERON", ["*"], config, principal=SYSTEM)
    assert "merger.txt" in _names(admin.hits)


def test_compression_keeps_exact_slices(cairn: Cairn) -> None:
    result = cairn.retriever.search("annual leave", ["hr"], _config(cairn, compress="fake:"), principal=SYSTEM)
    assert result.hits and "compress" in result.timings_ms
    for hit in result.hits:
        _, body = cairn.store.passage(SYSTEM, hit.chunk_id)
        assert hit.text.endswith(".") and body[hit.start : hit.end] == hit.text


def test_profiles_and_kb_profiles(make_cairn: Callable[..., Cairn]) -> None:
    cairn = make_cairn(kb_profiles={"legal": "fast"})
    assert cairn.config_for(["legal"]).profile == "fast"
    assert cairn.config_for(["legal", "hr"]).profile == "default"
    assert cairn.config_for(["hr"], "quality").profile == "quality"
    assert cairn.config_for(["legal"]).candidates < cairn.config_for(["hr"]).candidates
