"""One object that wires the stages from settings; the CLI and the server only talk to this.

Every component is built on first access, so ``Cairn(settings)`` is free and a command that only
lists knowledge bases never loads a model.
"""

from __future__ import annotations

from functools import cached_property

from cairn.answer.answerers import ANSWERERS, Answerer, LLMAnswerer
from cairn.answer.engine import AnswerEngine
from cairn.answer.memory import ChatStore
from cairn.index.analyzer import Analyzer
from cairn.index.db import Database
from cairn.index.store import IndexStore
from cairn.ingest.base import Chunker
from cairn.ingest.sync import Ingestor
from cairn.models.base import Embedder, create_embedder, create_generator
from cairn.registry import scheme_of
from cairn.retrieve.hybrid import HybridRetriever, RetrievalConfig
from cairn.settings import Settings, get_settings


class Cairn:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()

    @cached_property
    def db(self) -> Database:
        return Database(self.settings)

    @cached_property
    def analyzer(self) -> Analyzer:
        return Analyzer()

    @cached_property
    def store(self) -> IndexStore:
        return IndexStore(self.db, self.analyzer)

    @cached_property
    def embedder(self) -> Embedder:
        return create_embedder(self.settings.embedder, settings=self.settings)

    @cached_property
    def chunker(self) -> Chunker:
        from cairn.ingest.chunking import RecursiveChunker

        return RecursiveChunker(chunk_size=self.settings.chunk_size, overlap=self.settings.chunk_overlap)

    @cached_property
    def ingestor(self) -> Ingestor:
        return Ingestor(self.store, self.embedder, self.chunker, max_bytes=int(self.settings.max_file_mb * 1024 * 1024))

    @cached_property
    def retrieval_config(self) -> RetrievalConfig:
        return RetrievalConfig.from_settings(self.settings)

    @cached_property
    def retriever(self) -> HybridRetriever:
        return HybridRetriever(self.db, self.embedder, config=self.retrieval_config, analyzer=self.analyzer)

    @cached_property
    def answerer(self) -> Answerer:
        location = self.settings.generator
        location = location if ":" in location else location + ":"
        if scheme_of(location) in ANSWERERS.schemes():
            return ANSWERERS.create(location, embedder=self.embedder, settings=self.settings)
        generator = create_generator(location, settings=self.settings)
        return LLMAnswerer(generator, max_tokens=self.settings.max_answer_tokens)

    @cached_property
    def engine(self) -> AnswerEngine:
        return AnswerEngine(
            self.retriever,
            self.answerer,
            min_relevance=self.settings.min_relevance,
            context_chars=self.settings.max_context_chars,
            history_turns=self.settings.history_turns,
        )

    @cached_property
    def chats(self) -> ChatStore:
        return ChatStore(self.db)

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.close()
