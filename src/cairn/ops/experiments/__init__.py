"""A/B experiments and progressive rollout of prompt templates, retrieval profiles and model tiers.

``model``   experiments, variants, assignments and the rules they obey
``assign``  deterministic, monotone assignment of users to variants (hashes, no per-user state)
``store``   experiments in PostgreSQL, managed by administrators, read by every answer
``stats``   Wilson intervals, z and Mann-Whitney tests, bootstrap, randomization test
``report``  per-variant figures from the audit trail and feedback, compared with the control
``offline`` every variant's configuration run through the BEIR and QA evaluators, paired comparisons

docs/experiments.md is the user's guide.
"""

from cairn.ops.experiments.assign import assign, in_rollout, pick_variant, rollout_bucket
from cairn.ops.experiments.model import STATUSES, Assignment, Experiment, Variant, parse_variant
from cairn.ops.experiments.store import ExperimentStore

__all__ = [
    "STATUSES",
    "Assignment",
    "Experiment",
    "ExperimentStore",
    "Variant",
    "assign",
    "in_rollout",
    "parse_variant",
    "pick_variant",
    "rollout_bucket",
]
