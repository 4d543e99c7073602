"""Knowledge-base routers on hand-built cards, the centroid clustering, and the routing measures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from cairn.errors import ConfigError, InputError, ModelError
from cairn.eval.routing import (
    RoutingExample,
    confusion_table,
    evaluate_routing,
    load_examples,
    markdown_table,
    per_kb_table,
    score_routing,
)
from cairn.index.kb_cards import spherical_kmeans
from cairn.retrieve.base import ROUTERS, KbCard, KbRouter
from cairn.retrieve.router import (
    CentroidRouter,
    FederatedRouter,
    LLMRouter,
    choose,
    describe,
    parse_kb_names,
    route_messages,
)
from cairn.testing.fakes import HashEmbedder, ScriptedGenerator

Vec = npt.NDArray[np.float32]


def unit(*values: float) -> Vec:
    v = np.asarray(values, dtype=np.float32)
    out: Vec = v / np.linalg.norm(v)
    return out


def card(name: str, centroid: Vec | None, description: str = "", chunks: int = 10) -> KbCard:
    return KbCard(name=name, description=description, centroid=centroid, chunks=chunks)


CARDS = [
    card("hr", unit(1, 0, 0, 0)),
    card("it", unit(0, 1, 0, 0)),
    card("finance", unit(0, 0, 1, 0)),
]


class CountingEmbedder(HashEmbedder):
    def __init__(self) -> None:
        super().__init__(dim=4)
        self.batches: list[list[str]] = []

    def _embed_batch(self, texts: list[str]) -> npt.NDArray[np.float32]:
        self.batches.append(list(texts))
        return super()._embed_batch(texts)


def test_centroid_router_picks_the_closest_and_those_within_the_margin() -> None:
    router = CentroidRouter(None, description=0.0, margin=0.1, max_kbs=3)
    assert isinstance(router, KbRouter)
    assert router.route("q", unit(1, 0.05, 0, 0), CARDS) == ["hr"]
    # hr and it score alike: both are searched, best first
    assert router.route("q", unit(1, 0.95, 0, 0), CARDS) == ["hr", "it"]
    assert CentroidRouter(None, description=0.0, margin=0.0).route("q", unit(1, 0.95, 0, 0), CARDS) == ["hr"]
    assert CentroidRouter(None, description=0.0, margin=2.0, max_kbs=2).route("q", unit(0, 0, 1, 0), CARDS) == [
        "finance",
        "hr",  # ties at 0 are broken by name
    ]
    # one card or none: nothing to choose
    assert router.route("q", unit(0, 1, 0, 0), CARDS[:1]) == ["hr"]
    assert router.route("q", unit(0, 1, 0, 0), []) == []


def test_several_centroids_score_by_the_closest() -> None:
    varied = card("science", np.stack([unit(1, 0, 0, 0), unit(0, 0, 0, 1)]))
    cards = [varied, card("it", unit(0.5, 0.5, 0, 0.7))]
    router = CentroidRouter(None, description=0.0, margin=0.0)
    assert router.route("q", unit(0, 0, 0, 1), cards) == ["science"]
    assert router.route("q", unit(1, 0, 0, 0), cards) == ["science"]
    assert router.scores(unit(0, 0, 0, 1), cards)["science"] == pytest.approx(1.0)


def test_descriptions_are_embedded_once_and_mixed_in() -> None:
    embedder = CountingEmbedder()
    cards = [
        card("hr", None, "holiday leave salary"),
        card("it", None, "laptop vpn password"),
        card("empty", None, ""),  # no chunks, no description: described by its name
    ]
    router = CentroidRouter(embedder, description=0.5, margin=0.0)
    query = embedder.embed_query("vpn password reset")
    assert router.route("vpn password reset", query, cards) == ["it"]
    assert router.route("vpn password", embedder.embed_query("vpn password"), cards) == ["it"]
    documents = [b for b in embedder.batches if len(b) > 1 or b[0] in ("holiday leave salary", "empty")]
    assert sorted(t for b in documents for t in b) == ["empty", "holiday leave salary", "laptop vpn password"]
    # a card with a centroid mixes both scores: (1 - w) * centroid + w * description
    mixed = [card("it", unit(0, 1, 0, 0), "laptop vpn password")]
    scores = router.scores(unit(0, 1, 0, 0), mixed)
    description_cos = float(embedder.embed_documents(["laptop vpn password"])[0] @ unit(0, 1, 0, 0))
    assert scores["it"] == pytest.approx(0.5 * 1.0 + 0.5 * description_cos, abs=1e-6)


def test_describe_falls_back_to_the_name() -> None:
    assert describe(card("hr-policies_2026", None)) == "hr policies 2026"
    assert describe(card("it", None, "  IT\nservices ")) == "IT services"


def test_a_vector_of_another_size_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        CentroidRouter(None, description=0.0).route("q", unit(1, 0, 0), CARDS)


def test_choose_orders_and_cuts() -> None:
    scores = {"a": 0.5, "b": 0.48, "c": 0.2, "d": 0.49}
    assert choose(scores, margin=0.05, max_kbs=3) == ["a", "d", "b"]
    assert choose(scores, margin=0.05, max_kbs=2) == ["a", "d"]
    assert choose(scores, margin=0.0, max_kbs=5) == ["a"]
    assert choose({}, margin=0.1, max_kbs=3) == []


@pytest.mark.parametrize(
    ("reply", "names"),
    [
        ("it", ["it"]),
        ("IT, finance", ["it", "finance"]),
        ("The best knowledge base is **finance** (then hr).", ["finance", "hr"]),
        ("hr-archive", ["hr-archive"]),  # not "hr" as well
        ("hr, hr-archive", ["hr", "hr-archive"]),
        ("Knowledge base: beir-scifact.", ["beir-scifact"]),
        ("bit, shirt, itinerary", []),  # names inside other words do not count
        ("none of them", []),
    ],
)
def test_parse_kb_names(reply: str, names: list[str]) -> None:
    assert parse_kb_names(reply, ["hr", "it", "finance", "hr-archive", "beir-scifact"]) == names


def test_llm_router_uses_the_generator_and_falls_back() -> None:
    generator = ScriptedGenerator()
    fallback = CentroidRouter(None, description=0.0, margin=0.0)
    router = ROUTERS.create("llm:?max_kbs=2&description=0", generator=generator, embedder=None)
    assert isinstance(router, LLMRouter)
    generator.enqueue("finance, it, hr", "I do not know", ModelError("down"))
    query = unit(1, 0, 0, 0)  # closest to hr by centroid
    assert router.route("What is the hotel limit?", query, CARDS) == ["finance", "it"]
    assert router.route("What is the hotel limit?", query, CARDS) == ["hr"]  # nothing usable: centroids
    assert router.route("What is the hotel limit?", query, CARDS) == ["hr"]  # the call failed: centroids
    assert router.fallbacks == 2
    system, user = generator.calls[0]
    assert "up to 2 names" in system.content
    assert "- hr: hr\n- it: it\n- finance: finance" in user.content
    assert user.content.endswith("Question: What is the hotel limit?\nKnowledge base:")
    assert fallback.route("q", query, CARDS) == ["hr"]


def test_llm_router_offers_a_shortlist_when_there_are_many() -> None:
    generator = ScriptedGenerator()
    many = [card(f"kb{i}", unit(*(1.0 if j == i else 0.01 for j in range(4)))) for i in range(4)]
    router = LLMRouter(generator, CentroidRouter(None, description=0.0, margin=0.1), shortlist=2)
    generator.enqueue("kb3")  # not offered: ignored, so the centroid router decides
    assert router.route("q", unit(1, 0.9, 0, 0), many) == ["kb0", "kb1"]
    offered = generator.calls[0][1].content
    assert "- kb0:" in offered and "- kb1:" in offered and "kb2" not in offered and "kb3" not in offered
    assert route_messages("q", many[:1], 1)[1].content.startswith("Knowledge bases:\n- kb0: kb0")


def test_federated_router_returns_everything_best_first() -> None:
    router = ROUTERS.create("all:")
    assert isinstance(router, FederatedRouter)
    with_empty = [*CARDS, card("new", None, chunks=0)]
    assert router.route("q", unit(0, 0.2, 1, 0), with_empty) == ["finance", "it", "hr", "new"]


def test_router_registry_options() -> None:
    embedder = HashEmbedder(dim=4)
    router = ROUTERS.create("centroid:?margin=0.1&max_kbs=2&description=0.3", embedder=embedder)
    assert isinstance(router, CentroidRouter)
    assert (router.margin, router.max_kbs, router.description) == (0.1, 2, 0.3)
    defaults = ROUTERS.create("centroid", embedder=embedder)
    assert isinstance(defaults, CentroidRouter)
    assert (defaults.margin, defaults.max_kbs, defaults.description) == (0.05, 3, 0.25)
    for bad in ("centroid:?margin=-1", "centroid:?max_kbs=1.5", "centroid:?speed=2", "centroid:x", "all:?margin=1"):
        with pytest.raises(ConfigError):
            ROUTERS.create(bad, embedder=embedder)
    with pytest.raises(ConfigError):
        ROUTERS.create("centroid:?description=0.5", embedder=None)  # descriptions need an embedder
    with pytest.raises(ConfigError) as info:
        ROUTERS.create("llm:", generator=None, embedder=embedder)
    assert info.value.hint and "centroid" in info.value.hint


def test_spherical_kmeans_finds_the_clusters() -> None:
    rng = np.random.default_rng(7)
    centres = np.eye(4, dtype=np.float32)[:3]
    points = np.concatenate([c + 0.05 * rng.standard_normal((20, 4)).astype(np.float32) for c in centres])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    found = spherical_kmeans(points, 3)
    assert found.shape == (3, 4)
    assert np.allclose(np.linalg.norm(found, axis=1), 1.0, atol=1e-5)
    assert sorted(int(np.argmax(row)) for row in found) == [0, 1, 2]
    assert np.array_equal(found, spherical_kmeans(points, 3))  # deterministic
    assert spherical_kmeans(points[:2], 16).shape == (2, 4)  # never more centroids than points
    assert spherical_kmeans(np.stack([points[0]] * 5), 4).shape == (1, 4)  # duplicates collapse


def test_routing_measures() -> None:
    examples = [
        RoutingExample("q1", ("hr",)),
        RoutingExample("q2", ("hr", "finance")),
        RoutingExample("q3", ("it",)),
        RoutingExample("q4", ("it",)),
        RoutingExample("q5", ("finance", "it"), needs="all"),
    ]
    routed = [["hr"], ["finance", "hr"], ["hr", "it"], ["finance"], ["it", "finance"]]
    report = score_routing(examples, routed, name="test", latencies_ms=[1.0, 2.0, 3.0, 4.0, 5.0])
    assert report.top1 == pytest.approx(3 / 5)  # q1, q2 (finance is gold too), q5
    assert report.any_correct == pytest.approx(4 / 5)  # q4 misses entirely
    assert report.covered == pytest.approx(4 / 5)
    assert report.mean_kbs == pytest.approx(8 / 5)
    assert report.per_kb["it"].top1 == 0.0 and report.per_kb["it"].any_correct == 0.5
    assert report.macro_top1 == pytest.approx((1.0 + 0.0 + 1.0) / 3)
    assert report.confusion == {"finance": {"it": 1}, "hr": {"finance": 1, "hr": 1}, "it": {"finance": 1, "hr": 1}}
    assert report.p50_ms == 3.0
    assert [m[0] for m in report.misses] == ["q3", "q4"]
    partial = score_routing([RoutingExample("q", ("a", "b"), needs="all")], [["a"]])
    assert (partial.any_correct, partial.covered) == (1.0, 0.0)
    table = markdown_table({"test": report})
    assert "| test | 5 | 0.600 | 0.800 |" in table
    assert "| it | 2 | 0.00 / 0.50 |" in per_kb_table({"test": report})
    assert "| hr | 1 | 1 | 0 |" in confusion_table(report)
    with pytest.raises(InputError):
        score_routing([], [])


def test_evaluate_routing_runs_a_router(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    rows = [
        {"question": "leave", "kbs": ["hr"], "split": "dev"},
        {"question": "vpn", "kbs": "it", "source": "written", "split": "test"},
        {"question": "both", "kbs": ["it", "hr"], "needs": "all"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    examples = load_examples(path)
    assert examples[1] == RoutingExample("vpn", ("it",), "written", "test")
    assert examples[2].needs == "all"
    vectors = [unit(1, 0, 0, 0), unit(0, 1, 0, 0), unit(0.7, 0.7, 0, 0)]
    router = CentroidRouter(None, description=0.0, margin=0.05)
    report = evaluate_routing(router, examples, CARDS, vectors)
    assert (report.router, report.n, report.top1, report.covered) == ("centroid", 3, 1.0, 1.0)
    with pytest.raises(InputError):
        evaluate_routing(router, examples, CARDS, vectors[:2])
    with pytest.raises(InputError):
        evaluate_routing(router, [RoutingExample("x", ("legal",))], CARDS, vectors[:1])
    path.write_text('{"question": "no kbs"}\n', encoding="utf-8")
    with pytest.raises(InputError):
        load_examples(path)
