"""Embedders and generators: packaged local models and OpenAI-compatible clients."""

from cairn.models.base import (
    EMBEDDERS,
    GENERATORS,
    BaseEmbedder,
    BaseGenerator,
    Completion,
    Embedder,
    Generator,
    create_embedder,
    create_generator,
)

__all__ = [
    "EMBEDDERS",
    "GENERATORS",
    "BaseEmbedder",
    "BaseGenerator",
    "Completion",
    "Embedder",
    "Generator",
    "create_embedder",
    "create_generator",
]
