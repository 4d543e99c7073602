from __future__ import annotations

import pytest

from cairn.errors import ConfigError, ModelError
from cairn.models import create_embedder, create_generator
from cairn.settings import get_settings
from cairn.testing import HashEmbedder, ScriptedGenerator, check_embedder, check_generator
from cairn.types import ChatMessage

USER = [ChatMessage("user", "What is   the deadline?")]


def test_hash_embedder_conforms() -> None:
    check_embedder(HashEmbedder(64))


def test_shared_words_score_higher_than_disjoint_text() -> None:
    emb = HashEmbedder(64)
    query, near, far = emb.embed_documents(
        ["ethics training deadline", "the ethics training deadline is Q3", "lunch menu"]
    )
    assert query @ near > 0.5
    assert query @ near > query @ far


def test_hash_vectors_are_pinned() -> None:
    # Stored vectors must match across processes and releases: sha256 buckets, never hash().
    raw = HashEmbedder(8)._embed_batch(["alpha beta beta ."])
    assert raw.tolist() == [[0.0, 2.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]]


def test_fake_schemes_are_registered(tmp_path: object) -> None:
    settings = get_settings(home=str(tmp_path))
    embedder = create_embedder("fake:hash?dim=32", settings=settings)
    assert isinstance(embedder, HashEmbedder)
    assert embedder.dim == 32
    assert create_embedder("fake:", settings=settings).dim == 64
    assert create_embedder("fake", settings=settings).dim == 64
    assert isinstance(create_generator("fake", settings=settings), ScriptedGenerator)
    assert isinstance(create_generator("fake:scripted", settings=settings), ScriptedGenerator)


@pytest.mark.parametrize("location", ["fake:hash?dim=0", "fake:hash?dim=x", "fake:other", "fake:hash?size=3"])
def test_bad_fake_embedder_locations(location: str) -> None:
    with pytest.raises(ConfigError):
        create_embedder(location, settings=get_settings())


def test_scripted_generator_conforms() -> None:
    check_generator(ScriptedGenerator())


def test_queued_replies_stream_word_by_word_in_order() -> None:
    gen = ScriptedGenerator()
    gen.enqueue("First  reply here.", "Second")
    pieces = list(gen.stream(USER))
    assert pieces == ["First  ", "reply ", "here."]
    assert gen.last_usage.tokens_out == 3
    assert gen.generate(USER).text == "Second"


def test_empty_queue_echoes_the_last_user_message() -> None:
    gen = ScriptedGenerator()
    messages = [ChatMessage("system", "rules"), *USER, ChatMessage("assistant", "x")]
    assert gen.generate(messages).text == "Echo: What is the deadline?"
    assert gen.generate(messages).text == "Echo: What is the deadline?"


def test_calls_record_every_conversation() -> None:
    gen = ScriptedGenerator()
    gen.generate(USER)
    gen.generate([ChatMessage("user", "again")])
    assert gen.calls == [tuple(USER), (ChatMessage("user", "again"),)]


def test_max_tokens_and_stop_are_honoured() -> None:
    gen = ScriptedGenerator()
    gen.enqueue("one two three four five", "keep this STOP drop that")
    assert gen.generate(USER, max_tokens=2).text == "one two "
    assert gen.generate(USER, stop=["STOP"]).text == "keep this "


def test_a_queued_exception_is_raised() -> None:
    gen = ScriptedGenerator()
    gen.enqueue(ModelError("server down"), "after")
    with pytest.raises(ModelError, match="server down"):
        gen.generate(USER)
    assert gen.generate(USER).text == "after"


def test_usage_counts_prompt_words() -> None:
    gen = ScriptedGenerator()
    completion = gen.generate(USER)
    assert completion.tokens_in == 5
    assert completion.model == "fake-scripted"
