"""cairn: a self-hosted knowledge assistant that answers only from your documents, with citations.

Importing cairn is cheap: settings, models, the database and heavy libraries load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cairn.errors import CairnError

if TYPE_CHECKING:
    from cairn.settings import Settings, get_settings

__version__ = "0.1.0"

__all__ = ["CairnError", "Settings", "__version__", "get_settings"]


def __getattr__(name: str) -> Any:
    if name in ("Settings", "get_settings"):
        from cairn import settings

        return getattr(settings, name)
    raise AttributeError(f"module 'cairn' has no attribute {name!r}")
