"""Registers the built-in backends, the same way a third-party ``cairn.plugins`` entry point would."""

from __future__ import annotations

import importlib

BUILTIN_MODULES = (
    "cairn.ingest.loaders",
    "cairn.ingest.entities",
    "cairn.models.onnx_embedder",
    "cairn.models.openai_compat",
    "cairn.models.llama_local",
    "cairn.guard.injection",
    "cairn.guard.pii",
    "cairn.guard.output",
    "cairn.answer.grounding",
    "cairn.retrieve.rerank_http",
    "cairn.retrieve.rerank_local",
    "cairn.retrieve.rewrite",
    "cairn.retrieve.compress",
    "cairn.retrieve.decompose",
    "cairn.retrieve.router",
    "cairn.testing.fakes",
    "cairn.testing.fake_stages",
)


def register_builtins() -> None:
    """Importing each module runs its ``@REGISTRY.register(...)`` decorators."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
