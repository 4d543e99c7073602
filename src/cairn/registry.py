"""Backends are chosen by a location string (``scheme:rest``) looked up in a registry.

Built-ins register through the same ``cairn.plugins`` entry point as third-party plugins, so
adding a backend never means editing an if/elif chain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from cairn.errors import ConfigError

T = TypeVar("T")
log = logging.getLogger(__name__)
_plugins_loaded = False


def load_plugins() -> None:
    """Run every ``cairn.plugins`` entry point once (built-ins first)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    from cairn.plugins import register_builtins

    register_builtins()
    _plugins_loaded = True
    for ep in entry_points(group="cairn.plugins"):
        if ep.value == "cairn.plugins:register_builtins":
            continue
        try:
            ep.load()()
        except Exception:
            log.exception("plugin %s failed to load", ep.name)


def scheme_of(location: str) -> str:
    scheme, sep, _ = location.partition(":")
    if not sep or not scheme:
        raise ConfigError(f"backend location {location!r} has no scheme", hint="e.g. 'openai://host:8000/v1'")
    return scheme.lower()


class Registry(Generic[T]):
    """A named map from scheme to factory; ``create(location)`` builds the backend."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, *schemes: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            for scheme in schemes:
                self._factories[scheme.lower()] = factory
            return factory

        return decorator

    def schemes(self) -> list[str]:
        load_plugins()
        return sorted(self._factories)

    def create(self, location: str, **kwargs: object) -> T:
        """Build the backend for ``location``; a bare name (``pdf``) is taken as ``pdf:``."""
        load_plugins()
        scheme = scheme_of(location if ":" in location else location + ":")
        factory = self._factories.get(scheme)
        if factory is None:
            known = ", ".join(sorted(self._factories)) or "none"
            raise ConfigError(f"unknown {self.kind} backend {scheme!r} in {location!r}", hint=f"known: {known}")
        return factory(location, **kwargs)
