"""Deterministic assignment: which users are in an experiment, and with which variant.

Nothing is stored per user. Two independent hashes of ``(salt, user)`` decide:

* the **rollout bucket** (0..9,999): a user is in the experiment when the bucket is below the
  rollout (in hundredths of a percent). Growing the rollout only adds buckets, so everyone who was in
  stays in;
* the **variant point** (uniform in [0, 1)), placed on the cumulative variant weights. It does not
  depend on the rollout at all, so a user keeps their variant while the rollout grows, and every
  rollout slice is split by the weights.

SHA-256 rather than Python's ``hash()`` (seeded per process), so every replica and every run agree.
The salt defaults to the experiment's name: two experiments draw independent populations, and
reusing a salt on purpose keeps a population across experiments.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from cairn.ops.experiments.model import Assignment, Experiment, Variant
from cairn.types import Principal

BUCKETS = 10_000  # rollout resolution: 0.01 percent
_SCALE = float(2**64)


def _hash64(salt: str, purpose: str, user: str) -> int:
    digest = hashlib.sha256(f"{salt}\x1f{purpose}\x1f{user}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def rollout_bucket(salt: str, user: str) -> int:
    return _hash64(salt, "rollout", user) % BUCKETS


def in_rollout(salt: str, user: str, percent: float) -> bool:
    return rollout_bucket(salt, user) < round(percent * BUCKETS / 100.0)


def variant_point(salt: str, user: str) -> float:
    return _hash64(salt, "variant", user) / _SCALE


def pick_variant(salt: str, user: str, variants: Sequence[Variant]) -> Variant:
    """The variant whose share of the cumulative weights holds the user's point."""
    if not variants:
        raise ValueError("no variants to pick from")
    target = variant_point(salt, user) * sum(v.weight for v in variants)
    cumulative = 0.0
    for variant in variants:
        cumulative += variant.weight
        if target < cumulative:
            return variant
    return variants[-1]  # rounding at the very top of the range


def eligible(experiment: Experiment, principal: Principal) -> bool:
    """Only stored users take part: the local operator and unidentified callers never do; pilot
    groups, when set, restrict it to their members."""
    if principal.user_id is None or principal.is_system:
        return False
    return not experiment.groups or bool(set(experiment.groups) & set(principal.groups))


def assign(experiment: Experiment, principal: Principal) -> Assignment | None:
    """The variant of ``principal`` in a running ``experiment``; None: not in it (gets the default, not counted)."""
    if experiment.status != "running" or not eligible(experiment, principal):
        return None
    if not in_rollout(experiment.salt, principal.name, experiment.rollout):
        return None
    variant = pick_variant(experiment.salt, principal.name, experiment.variants)
    return Assignment(experiment.name, variant, control=variant.name == experiment.control.name)
