"""Question decomposition: a complex question becomes sub-questions, each retrieved on its own.

Backends, chosen by location through :data:`~cairn.retrieve.base.DECOMPOSERS`:

``heuristic:?n=4``
    Rule-based, no model, about 0.1 ms a question: comparisons, coordinated questions and lists
    (below); a question that would give more than ``n`` parts is left whole.
``llm:?n=3``
    The configured generator writes at most ``n`` sub-questions; a reply without two usable ones,
    or a failed call, gives ``[question]``.

Both return ``[question]`` (the question itself, unchanged) when it is not complex. The heuristic
is deliberately conservative, because a false split costs more than a missed one: a question is
split only by one of these patterns, and only when it reads as a question or a request (it starts
with a question word, an auxiliary or a verb like *compare* / *list*; SciFact-style claims are
never split):

* comparisons: *compare X and Y*, *X vs Y*, *the difference between X and Y*, *how do X and Y
  differ*, *how does X differ from Y*, *which ..., X or Y* -> one sub-question per entity, keeping
  the asked aspect and any shared words (*the hotel limit for domestic vs international travel* ->
  *the hotel limit for domestic travel*, *the hotel limit for international travel*);
* several questions in one: *What is A and how do I B?*, *What is A? When is B?*; a pronoun in a
  later part that points back (*... and who approves it?*) is replaced by the topic of the first;
* lists of three or more: *What are the travel, expense and procurement policies?*, *How do I
  reset my password, unlock my account and enrol MFA?*;
* two noun phrases that each carry a determiner: *How do I reach the VPN and the HR portal?*.

Never split: a bare *X and Y* without a second determiner (*terms and conditions*, *research and
development budget*, *hotel limits and meal allowances*), relations (*the link between X and Y*),
fixed pairs, numbers (*1,500*), declarative statements.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qs

from cairn.errors import CairnError, ConfigError
from cairn.models.base import Generator
from cairn.retrieve.base import DECOMPOSERS, Decomposer
from cairn.types import ChatMessage

log = logging.getLogger(__name__)

DECOMPOSE_VERSION = "decompose-v1"
DECOMPOSE_SYSTEM = (
    "You split questions for a document search engine. If the question asks about several things (a comparison "
    "of two or more items, several questions joined together, or a question that needs facts from different "
    "documents), write at most {n} short, self-contained sub-questions, one per line, each naming the thing it "
    "asks about (no pronouns). If the question asks about one thing only, reply with the question unchanged. "
    "Do not answer. Reply with the sub-questions only."
)
MAX_SUBQUESTION_CHARS = 300

# -- word classes ---------------------------------------------------------------------------------
_WH = frozenset("what which who whom whose where when why how".split())
_AUX = frozenset("is are was were am do does did can could should would will shall may might must has have had".split())
_IMPERATIVE = frozenset(
    "compare contrast tell explain describe list show give summarise summarize outline find name define".split()
)
_DETS = frozenset(
    "the a an my our your their its his her this that these those each every all any both some no".split()
)
_PREPS = frozenset(
    "of for in on at to from with by about under over between during within into per than as via without "
    "across after before against among around behind beyond near through toward towards upon".split()
)
_PRONOUNS = frozenset("it its they them their this that these those".split())
_ASPECT_MARKERS = (
    "in terms of",
    "with respect to",
    "with regard to",
    "when it comes to",
    "regarding",
    "concerning",
    "in relation to",
)
# Fixed pairs joined by "and"/"or" that name one thing; never split (checked as whole words).
_BINOMIALS = (
    "terms and conditions",
    "research and development",
    "pros and cons",
    "health and safety",
    "trial and error",
    "mergers and acquisitions",
    "supply and demand",
    "rules and regulations",
    "policies and procedures",
    "questions and answers",
    "profit and loss",
    "sales and marketing",
    "learning and development",
    "diversity and inclusion",
    "travel and expense",
    "travel and expenses",
    "travel and entertainment",
    "food and drink",
    "bed and breakfast",
    "black and white",
    "salt and pepper",
    "wear and tear",
    "search and rescue",
    "roles and responsibilities",
    "rights and obligations",
    "dos and don'ts",
    "do's and don'ts",
    "odds and ends",
    "pass or fail",
    "true or false",
    "yes or no",
    "more or less",
    "sooner or later",
    "whether or not",
    "and/or",
    "up and running",
    "back and forth",
    "trade and industry",
    "signs and symptoms",
    "diagnosis and treatment",
    "prevention and treatment",
    "morbidity and mortality",
    "hardware and software",
    "onboarding and offboarding",
    "joiners and leavers",
)
_RELATIONS = frozenset(
    "relationship relation relations link links association associations correlation interaction "
    "interactions ratio connection connections overlap trade-off tradeoff balance".split()
)
_GLUE = "\u2060"  # joins the words of a fixed pair so that no rule sees its "and"

_SPACES = re.compile(r"\s+")
_ENDING = re.compile(r"[\s?.!]+$")


def _words(text: str) -> list[str]:
    return [w for w in text.split(" ") if w]


def _bare(word: str) -> str:
    return word.lower().strip(".,;:!?\"'()[]")


def _is_question(words: Sequence[str]) -> bool:
    """Reads as a question or a request: starts with a question word, an auxiliary or a request verb."""
    if not words:
        return False
    first = _bare(words[0])
    if first in ("please", "can", "could", "would") and len(words) > 2 and _bare(words[1]) == "you":
        first = _bare(words[2])
        return first in _IMPERATIVE or first in _WH or first in _AUX
    if first == "please" and len(words) > 1:
        first = _bare(words[1])
    return first in _WH or first in _AUX or first in _IMPERATIVE


def _protect(text: str) -> str:
    lowered = text.lower()
    for pair in _BINOMIALS:
        start = 0
        while True:
            at = lowered.find(pair, start)
            if at < 0:
                break
            end = at + len(pair)
            before = lowered[at - 1] if at > 0 else " "
            after = lowered[end] if end < len(lowered) else " "
            if not before.isalnum() and not after.isalnum():
                glued = text[at:end].replace(" ", _GLUE)
                text = text[:at] + glued + text[end:]
                lowered = text.lower()
            start = end
    return text


def _unprotect(text: str) -> str:
    return text.replace(_GLUE, " ")


def _finish(text: str, as_question: bool) -> str:
    """Tidy one sub-question: spaces, a capital first letter, '?' when it is phrased as a question."""
    text = _SPACES.sub(" ", _unprotect(text)).strip(" ,;:-")
    text = re.sub(r"\s+([?,.;:!])", r"\1", text)
    text = _ENDING.sub("", text)
    if not text:
        return ""
    words = _words(text)
    if as_question and words and (_bare(words[0]) in _WH or _bare(words[0]) in _AUX):
        text += "?"
    return text[0].upper() + text[1:]


# -- conjuncts -------------------------------------------------------------------------------------
def _boundary(word: str) -> bool:
    bare = _bare(word)
    return (
        bare in _DETS
        or bare in _PREPS
        or bare in _WH
        or bare in _AUX
        or bare in _IMPERATIVE
        or word.endswith((",", ":", ";"))
    )


def _hard_boundary(word: str) -> bool:
    """A boundary that a conjunct never crosses, even when it may include its determiner."""
    bare = _bare(word)
    return bare in _PREPS or bare in _WH or bare in _AUX or word.endswith((",", ":", ";"))


def _aspect_split(words: Sequence[str]) -> tuple[list[str], list[str]]:
    """``words`` up to an explicit aspect marker ("in terms of ..."), and the marker onwards."""
    lowered = [_bare(w) for w in words]
    for i in range(len(words)):
        for marker in _ASPECT_MARKERS:
            parts = marker.split()
            if lowered[i : i + len(parts)] == parts:
                return list(words[:i]), list(words[i:])
    return list(words), []


def _until_stop(words: Sequence[str]) -> int:
    """How many leading words belong to a conjunct: up to a preposition, question word or punctuation."""
    for i, word in enumerate(words):
        bare = _bare(word)
        if i > 0 and (bare in _PREPS or bare in _WH or bare in _AUX):
            return i
        if word.endswith((",", ":", ";", "?", "!")) or (word.endswith(".") and i == len(words) - 1):
            return i + 1
    return len(words)


def _strip_punct(words: list[str]) -> list[str]:
    if words:
        words = [*words[:-1], words[-1].rstrip(",:;?!.")]
        if not words[-1]:
            words = words[:-1]
    return words


def _distribute(
    left: Sequence[str], right: Sequence[str], *, whole_left: bool = False
) -> tuple[list[str], list[list[str]], list[str]] | None:
    """Split ``left CONJ right`` into (shared prefix, [conjunct x, conjunct y], shared tail).

    ``left`` ends with conjunct x, ``right`` starts with conjunct y. A ``right`` that opens with a
    determiner is a whole noun phrase of its own (*the X and the policy on Y*): it runs to an aspect
    marker or the end. Otherwise the conjuncts are short and share what surrounds them: x runs back
    to a determiner, preposition or question word (all of ``left`` when ``whole_left``), y is as
    long as x (*domestic vs international travel*: the tail *travel* belongs to both).
    """
    if not left or not right:
        return None
    if _bare(right[0]) in _DETS:
        # "the X and the policy on Y": y is a noun phrase of its own, and so is x.
        body, aspect = _aspect_split(right)
        if whole_left:
            start = 0
        else:
            start = len(left)
            while start > 0 and not _boundary(left[start - 1]):
                start -= 1
            while start > 0 and _bare(left[start - 1]) in _DETS:
                start -= 1
        prefix, x = list(left[:start]), list(left[start:])
        if not x:
            return None
        return prefix, [_strip_punct(x), _strip_punct(list(body))], list(aspect)
    start = len(left)
    stops_at = _boundary if not whole_left else _hard_boundary
    while start > 0 and not stops_at(left[start - 1]):
        start -= 1
    prefix, x = list(left[:start]), list(left[start:])
    core = [w for w in x if _bare(w) not in _DETS]
    if not core:
        return None
    y_len = min(len(core), _until_stop(right))
    return prefix, [_strip_punct(x), _strip_punct(list(right[:y_len]))], list(right[y_len:])


def _compose(prefix: Sequence[str], conjunct: Sequence[str], tail: Sequence[str]) -> str:
    prefix = list(prefix)
    if conjunct and prefix and _bare(conjunct[0]) in _DETS and _bare(prefix[-1]) in _DETS:
        prefix = prefix[:-1]
    return " ".join([*prefix, *conjunct, *tail])


def _valid(conjuncts: Sequence[Sequence[str]]) -> bool:
    if len(conjuncts) < 2:
        return False
    keys = set()
    for c in conjuncts:
        content = [w for w in c if _bare(w) not in _DETS]
        if not content or len(c) > 8:
            return False
        if any(_bare(w) in _WH for w in c):
            return False
        keys.add(" ".join(_bare(w) for w in c))
    return len(keys) == len(conjuncts)


# -- rules ---------------------------------------------------------------------------------------
_COMPARE = re.compile(r"^(?:(?:please|can you|could you|would you)\s+)*(?:compare|contrast)\s+(?P<body>.+)$", re.I)
_DIFFERENCE = re.compile(
    r"^(?:(?:what|which)(?:'s|\s+(?:is|are|were|was))?\s+)?(?:the\s+)?(?:main\s+|key\s+|major\s+|biggest\s+)?"
    r"(?:difference|differences|distinction)s?\s+(?:in\s+(?P<pre>.+?)\s+)?between\s+(?P<body>.+)$",
    re.I,
)
_DIFFER_AND = re.compile(r"^how\s+(?:do|does|did)\s+(?P<body>.+?)\s+differ\b(?P<aspect>.*)$", re.I)
_DIFFER_FROM = re.compile(
    r"^how\s+(?:(?:do|does|did)\s+(?P<x1>.+?)\s+differ|(?:is|are)\s+(?P<x2>.+?)\s+different)\s+from\s+(?P<y>.+)$",
    re.I,
)
_WHICH_OR = re.compile(r"^(?P<head>(?:which|what|who)\b[^,]+),\s+(?P<body>.+\s+or\s+.+)$", re.I)
_VS = re.compile(r"\s(?:vs\.?|versus)\s", re.I)


def _conj_positions(words: Sequence[str], conj: tuple[str, ...]) -> list[int]:
    return [i for i, w in enumerate(words) if w.lower() in conj]


def _two_way(body: str, conj: tuple[str, ...], *, whole_left: bool) -> tuple[list[str], list[str], list[str]] | None:
    """(prefix, [x, y] composed, tail) for a body with exactly one usable coordinator."""
    words = _words(body)
    positions = _conj_positions(words, conj)
    if len(positions) != 1:
        return None
    at = positions[0]
    parts = _distribute(words[:at], words[at + 1 :], whole_left=whole_left)
    if parts is None:
        return None
    prefix, conjuncts, tail = parts
    if not _valid(conjuncts):
        return None
    return prefix, [_compose([], c, []) for c in conjuncts], tail


def _comparison(q: str) -> list[str] | None:
    text = _ENDING.sub("", q)
    for frame in (_compare_frame, _difference_frame, _differ_from_frame, _differ_and_frame, _which_or_frame):
        out = frame(text)
        if out is not _NO_MATCH:
            return out
    return _vs_frame(text)


_NO_MATCH: list[str] = []  # a frame that does not apply (None: it applies but cannot split)


def _compare_frame(text: str) -> list[str] | None:
    m = _COMPARE.match(text)
    if not m:
        return _NO_MATCH
    conj = ("and", "with", "to", "against", "vs", "vs.", "versus")
    items = _list_items(_words(m.group("body")), whole_left=True, conj=conj)
    return [_finish(s, False) for s in items] if items else None


def _difference_frame(text: str) -> list[str] | None:
    m = _DIFFERENCE.match(text)
    if not m:
        return _NO_MATCH
    body, aspect = _aspect_split(_words(m.group("body")))
    two = _two_way(" ".join(body), ("and",), whole_left=True)
    if two is None:
        return None
    _, conjuncts, tail = two
    pre = m.group("pre")
    if pre:
        return [_finish(f"{pre} of {c} {' '.join(tail + aspect)}", False) for c in conjuncts]
    return [_finish(" ".join([c, *tail, *aspect]), False) for c in conjuncts]


def _differ_from_frame(text: str) -> list[str] | None:
    m = _DIFFER_FROM.match(text)
    if not m:
        return _NO_MATCH
    x = _words(m.group("x1") or m.group("x2"))
    y_words, aspect = _aspect_split(_words(m.group("y")))
    stop = _until_stop(y_words)
    pair = [x, _strip_punct(y_words[:stop])]
    if not _valid(pair):
        return None
    tail = [*y_words[stop:], *aspect]
    return [_finish(" ".join([*c, *tail]), False) for c in pair]


def _differ_and_frame(text: str) -> list[str] | None:
    m = _DIFFER_AND.match(text)
    if not m:
        return _NO_MATCH
    two = _two_way(m.group("body"), ("and",), whole_left=True)
    if two is None:
        return None
    _, conjuncts, tail = two
    aspect = m.group("aspect").strip()
    return [_finish(" ".join([c, *tail, aspect]), False) for c in conjuncts]


def _which_or_frame(text: str) -> list[str] | None:
    m = _WHICH_OR.match(text)
    if not m:
        return _NO_MATCH
    two = _two_way(m.group("body"), ("or",), whole_left=True)
    if two is None:
        return None
    _, conjuncts, tail = two
    head = _words(m.group("head"))[1:]  # "which has a higher limit" -> "has a higher limit"
    return [_finish(" ".join([c, *tail, *head]), False) for c in conjuncts]


def _vs_frame(text: str) -> list[str] | None:
    if not _VS.search(text):
        return None
    words = _words(text)
    positions = _conj_positions(words, ("vs", "vs.", "versus"))
    if len(positions) != 1:
        return None
    # "X vs Y" on its own, or inside a question; a claim that mentions a comparison stays whole.
    question = _is_question(words)
    if not question and (positions[0] > 4 or len(words) - positions[0] > 8):
        return None
    at = positions[0]
    parts = _distribute(words[:at], words[at + 1 :])
    if parts is None:
        return None
    prefix, pair, tail = parts
    if not _valid(pair):
        return None
    return [_finish(_compose(prefix, c, tail), question) for c in pair]


def _list_items(words: Sequence[str], *, whole_left: bool, conj: tuple[str, ...] = ("and", "or")) -> list[str] | None:
    """The items of ``a, b(,) and c`` (or of ``x and y`` when the coordinator is not "and" alone).

    Items other than the last are cut at the commas; the first runs back to a determiner,
    preposition or question word, but at least as far as the middle items are long (a list of verb
    phrases: *reset my password, unlock my account and enrol MFA*); the last is as long as the
    others and what follows it is shared (*the travel, expense and procurement policies*).
    """
    positions = _conj_positions(words, conj)
    if len(positions) != 1:
        return None
    at = positions[0]
    left, right = list(words[:at]), list(words[at + 1 :])
    comma_idx = [i for i, w in enumerate(left) if w.endswith(",")]
    if not comma_idx:
        parts = _distribute(left, right, whole_left=whole_left)
        if parts is None:
            return None
        prefix, conjuncts, tail = parts
        if not _valid(conjuncts):
            return None
        return [_compose(prefix, c, tail) for c in conjuncts]
    # a, b, ... and c
    first_end = comma_idx[0]
    middles: list[list[str]] = []
    for lo, hi in zip(comma_idx, [*comma_idx[1:], len(left)], strict=True):
        middles.append(_strip_punct(left[lo + 1 : hi + 1]))
    if middles and not middles[-1]:
        middles = middles[:-1]  # Oxford comma: "a, b, and c"
    first_words = left[: first_end + 1]
    if whole_left:
        start = 0
    else:
        start = len(first_words)
        while start > 0 and not _boundary(first_words[start - 1]):
            start -= 1
        longest = max((len(m) for m in middles), default=1)
        floor = _list_floor(first_words)
        start = max(min(start, len(first_words) - longest), floor)
    prefix, first = first_words[:start], _strip_punct(first_words[start:])
    if not first or not middles or any(not m for m in middles):
        return None
    size = max(len(first), *(len(m) for m in middles))
    stop = _until_stop(right)
    if right and _bare(right[0]) in _DETS:
        body, aspect = _aspect_split(right)
        last, tail = list(body), list(aspect)
    else:
        take = min(size, stop) if stop < len(right) or len(right) > size else len(right)
        last, tail = right[:take], right[take:]
        head = _strip_punct(list(tail[: _until_stop(tail)]))
        if head and not _bare(head[-1]).endswith("s"):
            # "laptop, charger and privacy filter": a singular noun after the list is the last
            # item's own; a shared head is plural ("the travel, expense and procurement policies").
            last, tail = right[:stop], right[stop:]
    items = [first, *middles, _strip_punct(list(last))]
    if not _valid(items) or any(len(i) > 6 for i in items):
        return None
    return [_compose(prefix, item, tail) for item in items]


def _list_floor(words: Sequence[str]) -> int:
    """Where a list item may start at the earliest: after a leading question word, auxiliary and subject."""
    i = 0
    if i < len(words) and (_bare(words[i]) in _WH or _bare(words[i]) in _IMPERATIVE):
        i += 1
        if i < len(words) and _bare(words[i]) == "me":
            i += 1
    if i < len(words) and _bare(words[i]) in _AUX:
        i += 1
        if i < len(words) and _bare(words[i]) in ("i", "we", "you", "they", "employees", "staff"):
            i += 1
    return i


def _question_list(q: str) -> list[str] | None:
    """``What are the A, B and C policies?``: three or more items separated by commas."""
    words = _words(_ENDING.sub("", q))
    if not _is_question(words):
        return None
    if not any(w.endswith(",") and not re.search(r"\d,$", w) for w in words):
        return None
    if any(_bare(w) in _RELATIONS or _bare(w) == "between" for w in words):
        return None
    items = _list_items(words, whole_left=False)
    if items is None or len(items) < 3:
        return None
    return [_finish(i, True) for i in items]


def _noun_phrases(q: str) -> list[str] | None:
    """``How do I reach the VPN and the HR portal?``: two determiner-led noun phrases in a question."""
    words = _words(_ENDING.sub("", q))
    if not _is_question(words) or any(_bare(w) in _RELATIONS or _bare(w) in ("between", "both") for w in words):
        return None
    positions = _conj_positions(words, ("and",))
    if len(positions) != 1:
        return None
    at = positions[0]
    if at + 1 >= len(words) or _bare(words[at + 1]) not in _DETS - {"all", "any", "each", "every", "no", "some"}:
        return None
    left = words[:at]
    # x must itself start with a determiner: find it walking back, without crossing a preposition/verb.
    start = at
    while start > 0 and _bare(left[start - 1]) not in _DETS:
        if _bare(left[start - 1]) in _PREPS or _bare(left[start - 1]) in _WH or _bare(left[start - 1]) in _AUX:
            return None
        start -= 1
    if start == 0:
        return None
    start -= 1
    prefix, x = left[:start], left[start:]
    right = words[at + 1 :]
    stop = _until_stop(right)
    y, tail = right[:stop], right[stop:]
    if not prefix or len(x) > 5 or len(y) > 5:
        return None
    conjuncts = [_strip_punct(list(x)), _strip_punct(list(y))]
    if not _valid(conjuncts):
        return None
    return [_finish(" ".join([*prefix, *c, *tail]), True) for c in conjuncts]


def _clauses(q: str) -> list[str] | None:
    """``What is A and how do I B?`` -> two questions; a pronoun in the second takes the first's topic."""
    text = _ENDING.sub("", q)
    words = _words(text)
    if not _is_question(words):
        return None
    yes_no = _bare(words[0]) in _AUX
    cuts: list[tuple[int, int]] = []
    for m in re.finditer(r"(?:,\s*and|;|\s+and|,\s*(?=(?:what|how|when|where|who|why|which)\b))\s+", text, re.I):
        nxt = text[m.end() :].split(" ", 1)[0].lower().strip(",")
        if nxt == "also":
            nxt = text[m.end() :].split(" ", 2)[1].lower() if len(text[m.end() :].split(" ")) > 1 else ""
        if nxt in _WH or (yes_no and nxt in _AUX):
            cuts.append((m.start(), m.end()))
    if not cuts:
        return None
    parts: list[str] = []
    pos = 0
    for start, end in cuts:
        parts.append(text[pos:start])
        pos = end
    parts.append(text[pos:])
    parts = [re.sub(r"^(?:also|and)\s+", "", p.strip(), flags=re.I) for p in parts]
    if any(len(_words(p)) < 2 or _STANDALONE_NOT.match(p) for p in parts):
        return None
    topic = _topic(parts[0])
    out = [parts[0]]
    for part in parts[1:]:
        resolved = _resolve_pronoun(part, topic)
        if resolved is None:
            return None
        out.append(resolved)
    return [_finish(p, True) for p in out]


_TOPIC = re.compile(
    r"^(?:what|who|where|which)(?:'s|\s+(?:is|are|was|were))\s+(?P<t>.+)$"
    r"|^(?:tell me about|explain|describe|summari[sz]e)\s+(?P<u>.+)$",
    re.I,
)


def _topic(clause: str) -> str | None:
    m = _TOPIC.match(clause.strip())
    if m:
        topic = (m.group("t") or m.group("u") or "").strip()
        return topic or None
    words = _words(clause)
    # Otherwise the object at the end of a clause whose subject is a person ("how do I request a
    # laptop" -> "a laptop", "what happens if I lose my badge" -> "my badge"); with any other
    # subject the last words may be a verb ("what did the study find").
    subject = next((i for i, w in enumerate(words) if _bare(w) in ("i", "we", "you")), None)
    if subject is None:
        return None
    for i in range(len(words) - 1, subject, -1):
        if _bare(words[i]) in _DETS - {"this", "that", "these", "those", "all", "any", "no", "each", "every"}:
            phrase = words[i:]
            if len(phrase) >= 2 and not any(_bare(w) in _PREPS or _bare(w) in _AUX for w in phrase[1:]):
                return " ".join(phrase)
            return None
    return None


def _resolve_pronoun(clause: str, topic: str | None) -> str | None:
    """``clause`` with its first back-pointing pronoun replaced by ``topic``; None when it cannot be."""
    words = _words(clause)
    for i, word in enumerate(words):
        bare = _bare(word)
        if bare not in _PRONOUNS:
            continue
        # "that policy" is a demonstrative with its own noun; "who approves that?" points back.
        if (
            bare in ("this", "that", "these", "those")
            and i + 1 < len(words)
            and _bare(words[i + 1]) not in _AUX
            and _bare(words[i + 1]) not in _PREPS
            and not words[i].endswith((",", "?"))
        ):
            continue
        if topic is None:
            return None
        trailing = word[len(word.rstrip(",;:?!.")) :]
        replacement = f"{topic}'s" if bare in ("its", "their") else topic
        return " ".join([*words[:i], replacement + trailing, *words[i + 1 :]])
    return clause


_STANDALONE_NOT = re.compile(r"^(?:and\s+)?(?:what|how)\s+about\b", re.I)


def _sentences(q: str) -> list[str] | None:
    """Several questions in one message: ``What is A? When is B?``."""
    pieces = [p.strip() for p in re.split(r"(?<=\?)\s+", q.strip()) if p.strip()]
    if len(pieces) < 2:
        return None
    out: list[str] = []
    for piece in pieces:
        piece = re.sub(r"^(?:and|also|plus)\s+", "", piece, flags=re.I)
        words = _words(piece)
        if len(words) < 3 or _STANDALONE_NOT.match(piece) or not _is_question(words):
            return None
        out.append(piece)
    resolved = [out[0]]
    topic = _topic(_ENDING.sub("", out[0]))
    for piece in out[1:]:
        r = _resolve_pronoun(_ENDING.sub("", piece), topic)
        if r is None:
            return None
        resolved.append(r)
    return [_finish(p, True) for p in resolved]


def split_question(question: str, n: int = 4) -> list[str]:
    """The heuristic decomposition of ``question`` (at most ``n`` parts), or ``[question]``."""
    q = _SPACES.sub(" ", question).strip()
    if len(_words(q)) < 3:
        return [question]
    q = _protect(q)
    for rule in (_sentences, _comparison, _clauses, _question_list, _noun_phrases):
        parts = rule(q)
        if parts is None:
            continue
        parts = _dedupe([p for p in parts if p])
        if len(parts) < 2 or len(parts) > n:
            return [question]
        if rule in (_sentences, _clauses):
            parts = _expand_once(parts, n)
        return parts
    return [question]


def _expand_once(parts: list[str], n: int) -> list[str]:
    """One more level (a comparison inside one of several questions), unless that exceeds ``n``."""
    expanded: list[str] = []
    for part in parts:
        inner = None
        for rule in (_comparison, _question_list, _noun_phrases):
            inner = rule(_protect(part))
            if inner is not None:
                break
        expanded.extend(inner if inner and len(inner) >= 2 else [part])
    expanded = _dedupe(expanded)
    return expanded if len(expanded) <= n else parts


def _dedupe(parts: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for part in parts:
        key = " ".join(re.findall(r"\w+", part.lower()))
        if key and key not in seen:
            seen.add(key)
            out.append(part)
    return out


class HeuristicDecomposer:
    """Rule-based splitting (see the module docstring); no model, microseconds per question."""

    name = "heuristic"

    def __init__(self, *, n: int = 4) -> None:
        if not 2 <= n <= 10:
            raise ConfigError(f"heuristic decomposer n must be in 2..10, got {n}")
        self.n = n

    def warm_up(self) -> None:
        pass

    def decompose(self, question: str) -> list[str]:
        return split_question(question, self.n)


# -- LLM -----------------------------------------------------------------------------------------
_LIST_MARKER = re.compile(
    r"^\s*(?:[-*•>]+|\(?\d{1,2}[.):]|\d{1,2}\s+-|(?:sub-?question|question|q)\s*\d*\s*[:.)-])\s*", re.I
)
_QUOTES = "\"'`“”‘’«»"
_PREAMBLE = re.compile(r"^(?:sure|certainly|of course|here (?:are|is)|okay|ok|the question)\b", re.I)


def decompose_messages(question: str, n: int) -> list[ChatMessage]:
    return [
        ChatMessage("system", DECOMPOSE_SYSTEM.format(n=n)),
        ChatMessage("user", f"Question: {' '.join(question.split())}\nSub-questions:"),
    ]


def parse_subquestions(reply: str, question: str, n: int) -> list[str]:
    """Sub-questions from a generator's reply: a JSON list or one per line, cleaned; ``[question]`` if fewer than two.

    List markers, quotes, bold marks and preambles ("Here are the sub-questions:") are dropped, as
    are repeats; a reply that holds a single question (the model saying "not complex", or
    rephrasing it) gives back the original question, so a simple question is never reworded.
    """
    lines: list[str] = []
    stripped = reply.strip()
    if stripped.startswith("["):
        try:
            data = json.loads(stripped[: stripped.rfind("]") + 1])
        except ValueError:
            data = None
        if isinstance(data, list):
            lines = [str(item) for item in data if isinstance(item, (str, int, float))]
    if not lines:
        lines = stripped.splitlines()
    out: list[str] = []
    for raw in lines:
        line = raw.replace("**", "").strip()
        for _ in range(2):
            line = _LIST_MARKER.sub("", line).strip().strip(_QUOTES).strip()
        line = line.rstrip(",").strip(_QUOTES)
        if not line or line.endswith(":") or _PREAMBLE.match(line) or len(re.findall(r"\w+", line)) < 2:
            continue
        line = " ".join(line.split())
        if len(line) > MAX_SUBQUESTION_CHARS:
            line = line[:MAX_SUBQUESTION_CHARS].rsplit(" ", 1)[0]
        out.append(line)
    out = _dedupe(out)[:n]
    return out if len(out) >= 2 else [question]


class LLMDecomposer:
    """Asks the generator for at most ``n`` sub-questions; any failure means no decomposition."""

    def __init__(self, generator: Generator, *, n: int = 3, max_tokens: int = 200) -> None:
        if not 2 <= n <= 10:
            raise ConfigError(f"llm decomposer n must be in 2..10, got {n}")
        self.generator = generator
        self.n = n
        self.max_tokens = max_tokens
        self.name = f"llm:{generator.name}"

    def warm_up(self) -> None:
        self.generator.warm_up()

    def decompose(self, question: str) -> list[str]:
        q = " ".join(question.split())
        if len(re.findall(r"\w+", q)) < 3:
            return [question]
        try:
            reply = self.generator.generate(decompose_messages(q, self.n), max_tokens=self.max_tokens).text
        except CairnError as exc:
            log.warning("question decomposition failed, retrieving the question as it is: %s", exc.message)
            return [question]
        return parse_subquestions(reply, question, self.n)


# -- registry --------------------------------------------------------------------------------------
def _options(location: str, allowed: Mapping[str, tuple[int, int]]) -> dict[str, int]:
    rest = location.partition(":")[2] if ":" in location else ""
    path, _, query = rest.partition("?")
    if path.strip():
        raise ConfigError(f"unexpected {path!r} in {location!r}", hint="options go after '?', e.g. 'heuristic:?n=4'")
    out: dict[str, int] = {}
    for key, values in parse_qs(query, keep_blank_values=True).items():
        if key not in allowed:
            raise ConfigError(f"unknown option {key!r} in {location!r}", hint=f"known: {', '.join(sorted(allowed))}")
        try:
            value = int(values[-1])
        except ValueError as exc:
            raise ConfigError(f"option {key!r} in {location!r} is not an integer") from exc
        lo, hi = allowed[key]
        if not lo <= value <= hi:
            raise ConfigError(f"option {key!r} in {location!r} must be in {lo}..{hi}, got {value}")
        out[key] = value
    return out


@DECOMPOSERS.register("heuristic")
def _heuristic(location: str, **_: object) -> Decomposer:
    options = _options(location, {"n": (2, 10)})
    return HeuristicDecomposer(n=options.get("n", 4))


@DECOMPOSERS.register("llm")
def _llm(location: str, *, generator: Generator | None = None, **_: object) -> Decomposer:
    if generator is None:
        raise ConfigError(
            f"the decomposer {location!r} needs an LLM generator, and only the extractive answerer is configured",
            hint="set CAIRN_GENERATOR to a model (e.g. 'local:qwen2.5-1.5b-instruct'), or use 'heuristic:'",
        )
    options = _options(location, {"n": (2, 10), "max_tokens": (32, 1024)})
    return LLMDecomposer(generator, n=options.get("n", 3), max_tokens=options.get("max_tokens", 200))


__all__ = [
    "DECOMPOSE_SYSTEM",
    "DECOMPOSE_VERSION",
    "HeuristicDecomposer",
    "LLMDecomposer",
    "decompose_messages",
    "parse_subquestions",
    "split_question",
]
