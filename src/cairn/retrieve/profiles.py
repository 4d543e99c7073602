"""Named retrieval profiles: ``fast``, ``default`` and ``quality``.

Each is a set of changes laid over the settings-derived config. The stages in them were chosen
from the ablation in docs/retrieval.md (``python bench/ablation.py``), not by taste: ``default``
is the best measured trade-off on a 2-core machine, ``quality`` the best measured regardless of
cost, ``fast`` the cheapest that stays close to ``default``.
"""

from __future__ import annotations

from typing import Any

from cairn.errors import InputError

PROFILES: dict[str, dict[str, Any]] = {
    # Routing and decomposition act only when they apply: routing when a request names every
    # readable knowledge base (`--kb '*'`), decomposition when a question has several parts.
    "fast": {"candidates": 50, "ef_search": 64, "route": "centroid:"},
    "default": {"route": "centroid:", "decompose": "heuristic:"},
    "quality": {
        "route": "centroid:",
        "decompose": "heuristic:",
        "rerank": "splade:?weight=0.5",
        "rerank_depth": 30,
    },
}


# Every stage a profile may turn on, off: a profile names only what it changes.
STAGES_OFF: dict[str, Any] = {
    "decompose": None,
    "route": None,
    "rewrite": None,
    "graph": 0.0,
    "rerank": None,
    "parents": 0,
    "compress": None,
}


def profile_changes(name: str) -> dict[str, Any]:
    try:
        return STAGES_OFF | PROFILES[name]
    except KeyError:
        raise InputError(f"unknown retrieval profile {name!r}", hint=f"one of: {', '.join(PROFILES)}") from None
