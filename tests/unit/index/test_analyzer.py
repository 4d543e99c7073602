from __future__ import annotations

from cairn.index.analyzer import Analyzer


def test_lowercase_stopwords_stemming() -> None:
    terms = Analyzer().terms("The Employees are REQUIRED to complete trainings; a b I/O")
    assert terms == ["employe", "requir", "complet", "train"]


def test_term_frequencies() -> None:
    tf, length = Analyzer().term_frequencies("running runs ran; the runner")
    assert tf["run"] == 2 and length == 4
