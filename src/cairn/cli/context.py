"""Builds the :class:`Cairn` facade for a CLI invocation from options and the environment."""

from __future__ import annotations

import logging
from typing import Any

from cairn.assistant import Cairn
from cairn.settings import get_settings


def open_cairn(**overrides: Any) -> Cairn:
    settings = get_settings(**overrides)
    logging.getLogger("cairn").setLevel(settings.log_level.upper())
    return Cairn(settings)
