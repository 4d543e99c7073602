"""Builds the :class:`Cairn` facade for a CLI invocation from options and the environment."""

from __future__ import annotations

import logging
from typing import Any

from cairn.assistant import Cairn
from cairn.settings import get_settings

_opened: list[Cairn] = []


def open_cairn(**overrides: Any) -> Cairn:
    settings = get_settings(**overrides)
    logging.getLogger("cairn").setLevel(settings.log_level.upper())
    cairn = Cairn(settings)
    _opened.append(cairn)
    return cairn


def close_all() -> None:
    """Close pools before the embedded server's exit hook stops it, also when a command failed."""
    while _opened:
        _opened.pop().close()
