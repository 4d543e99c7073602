"""Deterministic assignment: stable, balanced by weight, monotone in the rollout, independent per salt."""

from __future__ import annotations

from collections import Counter

import pytest

from cairn.ops.experiments import Experiment, Variant, assign, in_rollout, pick_variant, rollout_bucket
from cairn.ops.experiments.assign import BUCKETS, eligible
from cairn.types import SYSTEM, Principal

USERS = [f"user-{i:05d}" for i in range(10_000)]
IDS = {name: i + 1 for i, name in enumerate(USERS)}
TWO = (Variant("control"), Variant("concise", template="concise-v1"))


def _running(rollout: float, variants: tuple[Variant, ...] = TWO, **changes: object) -> Experiment:
    return Experiment(name="exp", variants=variants, status="running", rollout=rollout, **changes)  # type: ignore[arg-type]


def _user(name: str, *groups: str) -> Principal:
    return Principal(name, user_id=IDS[name], groups=groups)


def test_assignment_is_pinned_to_sha256_of_salt_and_user() -> None:
    """Changing the hash would silently move every user to another variant mid-experiment."""
    assert [rollout_bucket("exp", u) for u in USERS[:5]] == [rollout_bucket("exp", u) for u in USERS[:5]]
    import hashlib

    digest = hashlib.sha256(b"exp\x1frollout\x1fuser-00000").digest()
    assert rollout_bucket("exp", "user-00000") == int.from_bytes(digest[:8], "big") % BUCKETS
    digest = hashlib.sha256(b"exp\x1fvariant\x1fuser-00000").digest()
    point = int.from_bytes(digest[:8], "big") / 2**64
    assert pick_variant("exp", "user-00000", TWO) is TWO[0 if point < 0.5 else 1]


@pytest.mark.parametrize(
    "weights",
    [(1.0, 1.0), (1.0, 2.0, 1.0), (9.0, 1.0), (1.0, 1.0, 1.0, 1.0, 1.0)],
)
def test_variants_split_users_by_weight(weights: tuple[float, ...]) -> None:
    variants = tuple(Variant(f"v{i}", weight=w) for i, w in enumerate(weights))
    counts = Counter(pick_variant("exp", u, variants).name for u in USERS)
    for variant in variants:
        expected = variant.weight / sum(weights)
        # 4 standard deviations of a binomial share over 10,000 users: fails by chance about once in 16,000.
        tolerance = 4 * (expected * (1 - expected) / len(USERS)) ** 0.5
        assert abs(counts[variant.name] / len(USERS) - expected) < tolerance, (variant.name, counts)


@pytest.mark.parametrize("percent", [1.0, 10.0, 33.3, 50.0, 90.0])
def test_rollout_admits_its_share_of_users(percent: float) -> None:
    admitted = sum(in_rollout("exp", u, percent) for u in USERS)
    share = percent / 100
    assert abs(admitted / len(USERS) - share) < 4 * (share * (1 - share) / len(USERS)) ** 0.5


def test_rollout_edges() -> None:
    assert not any(in_rollout("exp", u, 0.0) for u in USERS)
    assert all(in_rollout("exp", u, 100.0) for u in USERS)


def test_growing_the_rollout_keeps_everyone_in_with_the_same_variant() -> None:
    previous: dict[str, str] = {}
    for percent in (0.5, 1, 5, 10, 25, 50, 75, 100):
        experiment = _running(percent)
        now = {u: a.variant.name for u in USERS if (a := assign(experiment, _user(u))) is not None}
        assert set(previous) <= set(now), f"someone left when the rollout grew to {percent}%"
        assert all(now[u] == v for u, v in previous.items()), f"someone changed variant at {percent}%"
        previous = now
    assert len(previous) == len(USERS)


def test_each_rollout_slice_is_split_by_the_weights() -> None:
    """Inclusion and variant come from independent hashes: a 10% slice is not skewed to one arm."""
    experiment = _running(10.0)
    counts = Counter(a.variant.name for u in USERS if (a := assign(experiment, _user(u))) is not None)
    total = sum(counts.values())
    assert 800 < total < 1200
    assert abs(counts["control"] / total - 0.5) < 4 * (0.25 / total) ** 0.5


def test_salts_draw_independent_populations() -> None:
    first = {u for u in USERS if in_rollout("exp-a", u, 50.0)}
    second = {u for u in USERS if in_rollout("exp-b", u, 50.0)}
    overlap = len(first & second) / len(USERS)
    assert abs(overlap - 0.25) < 0.02  # independent halves overlap in a quarter
    again = {u for u in USERS if in_rollout("exp-a", u, 50.0)}
    assert again == first


def test_the_salt_defaults_to_the_name_and_a_shared_salt_keeps_the_population() -> None:
    one = _running(30.0)
    other = Experiment(name="exp-2", variants=TWO, status="running", rollout=30.0, salt="exp")
    assert one.salt == "exp"
    for u in USERS[:500]:
        a, b = assign(one, _user(u)), assign(other, _user(u))
        assert (a is None) == (b is None)
        assert a is None or b is None or a.variant.name == b.variant.name


def test_only_stored_users_of_the_pilot_groups_take_part() -> None:
    experiment = _running(100.0, groups=("pilot",))
    alice = Principal("alice", user_id=1, groups=("pilot", "hr"))
    bob = Principal("bob", user_id=2, groups=("hr",))
    assert assign(experiment, alice) is not None
    assert assign(experiment, bob) is None
    assert assign(experiment, SYSTEM) is None, "the local operator is not a user"
    assert assign(experiment, Principal("ghost")) is None, "an unidentified caller is never assigned"
    assert eligible(_running(100.0), bob)


@pytest.mark.parametrize("status", ["draft", "paused", "stopped"])
def test_an_experiment_that_does_not_run_assigns_nobody(status: str) -> None:
    experiment = Experiment(name="exp", variants=TWO, status=status, rollout=100.0)
    assert all(assign(experiment, _user(u)) is None for u in USERS[:200])


def test_the_assignment_names_its_label_and_whether_it_is_the_control() -> None:
    experiment = _running(100.0)
    labels = {assign(experiment, _user(u)) for u in USERS[:100]}  # type: ignore[misc]
    assert {a.label for a in labels if a is not None} == {"exp:control", "exp:concise"}
    assert all(a.control == (a.variant.name == "control") for a in labels if a is not None)
