"""The lexical analyzer behind BM25: lowercase, ``\\w\\w+`` tokens, Lucene's English stopwords, Snowball stemming.

It is the analyzer bm25s uses (Lucene's stop set, Snowball English rather than Lucene's Porter
stemmer), so our BM25 can be checked against bm25s term for term.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cached_property
from typing import Any

TOKEN = re.compile(r"(?u)\b\w\w+\b")

# Lucene's EnglishAnalyzer stop set (also bm25s' "en"): small on purpose; BM25's idf handles the rest.
STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with".split()
)


class Analyzer:
    """Turns text into index terms; cheap to build, the stemmer loads on first use."""

    def __init__(self, language: str = "english", *, stem: bool = True) -> None:
        self.language = language
        self.stem = stem

    @cached_property
    def _stemmer(self) -> Any:
        import Stemmer

        return Stemmer.Stemmer(self.language)

    def terms(self, text: str) -> list[str]:
        tokens = [t for t in TOKEN.findall(text.lower()) if t not in STOPWORDS]
        if self.stem and tokens:
            stemmed: list[str] = self._stemmer.stemWords(tokens)
            return stemmed
        return tokens

    def term_frequencies(self, text: str) -> tuple[Counter[str], int]:
        terms = self.terms(text)
        return Counter(terms), len(terms)
