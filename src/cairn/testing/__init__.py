"""Deterministic fakes and conformance checks for testing cairn and its plugins without models."""

from cairn.testing.conformance import ConformanceError, check_embedder, check_generator
from cairn.testing.fakes import HashEmbedder, ScriptedGenerator

__all__ = ["ConformanceError", "HashEmbedder", "ScriptedGenerator", "check_embedder", "check_generator"]
