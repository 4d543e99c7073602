"""Personal data in answers and audit records: found by pattern, confirmed by checksum, redacted.

A pattern alone would flag half of a scientific abstract (confidence intervals, sample sizes,
compound ids), so every kind except e-mail is confirmed the way the issuer defines it: Luhn and
the card networks' prefixes for cards, mod-97 and the national layout for IBANs (``stdnum.iban``),
the national check digits for identity numbers (``stdnum``), and the numbering plans of
``phonenumbers`` for phone numbers. Numbers that fail (random 16-digit ids, ISBNs, dates,
versions, amounts) are left alone. Everything runs locally; nothing is looked up.

Known limits: names and postal addresses are not detected (that needs a language model);
national phone numbers are only recognised for the configured regions (``+`` international
numbers always are); a UK National Insurance number written without spaces and a German tax id
are only taken as such after a word that announces them (otherwise they read like compound
codes and 11-digit ids); US SSNs must be written with separators (``123-45-6789``) unless "SSN"
or "social security" precedes them. Passport and driving-licence numbers are not covered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal
from urllib.parse import parse_qs

from cairn.errors import ConfigError
from cairn.guard.base import GUARDS, GuardVerdict

PII_KINDS: tuple[str, ...] = (
    "email",
    "phone",
    "iban",
    "credit_card",
    "us_ssn",
    "uk_nino",
    "fr_nir",
    "de_tax_id",
    "es_dni",
    "it_codice_fiscale",
)
DEFAULT_PHONE_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR")
RedactStyle = Literal["label", "mask"]


@dataclass(frozen=True, slots=True)
class PiiFinding:
    """One piece of personal data: ``text[start:end]``; ``masked`` is safe to log or show."""

    kind: str
    start: int
    end: int
    masked: str


def mask(value: str, *, keep: int = 4) -> str:
    """Hide every letter and digit but the last ``keep``; separators stay so the shape is recognisable."""
    if "@" in value:
        local, _, domain = value.partition("@")
        return local[:1] + "*" * max(len(local) - 1, 1) + "@" + domain
    alnum = [i for i, c in enumerate(value) if c.isalnum()]
    shown = set(alnum[-keep:]) if keep else set()
    return "".join(c if (not c.isalnum() or i in shown) else "*" for i, c in enumerate(value))


_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}\b"
)
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}"
    r"(?:(?: [A-Za-z0-9]{4}){2,7}(?: [A-Za-z0-9]{1,4})?|[A-Za-z0-9]{11,30})(?![A-Za-z0-9])"
)
_CARD = re.compile(r"(?<![\d.,-])\d(?:[ -]?\d){12,18}(?![\d]|[.,-]\d)")
_SSN = re.compile(r"(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d]|-\d)")
_SSN_BARE = re.compile(r"(?i:\b(?:ssn|social security(?: number| no\.?)?)\b)\W{0,6}(\d{9})\b")
_NINO = re.compile(r"(?<![A-Za-z0-9])[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])")
_NINO_BAD_PREFIXES = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})
_NINO_CONTEXT = re.compile(r"(?i:\b(?:national insurance|ni number|ni no|nino)\b)")
_NIR = re.compile(r"(?<![\d])[12] ?\d{2} ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d{2}|2[ABab]) ?\d{3} ?\d{3} ?\d{2}(?![\d])")
_DE_TAX_ID = re.compile(
    r"(?i:\b(?:steuer-?id|steuerliche identifikationsnummer|identifikationsnummer|steuer-?identifikationsnummer|"
    r"idnr|tax id(?:entification number)?|tin)\b)[^\d\n]{0,24}(\d{2} ?\d{3} ?\d{3} ?\d{3})(?![\d])"
)
_ES_DNI = re.compile(r"(?<![A-Za-z0-9])(?:\d{8}|[XYZ]-?\d{7})-?[A-Za-z](?![A-Za-z0-9])")
_IT_CF = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{6}[0-9LMNP-Vlmnp-v]{2}[A-EHLMPR-Ta-ehlmpr-t][0-9LMNP-Vlmnp-v]{2}[A-Za-z]"
    r"[0-9LMNP-Vlmnp-v]{3}[A-Za-z](?![A-Za-z0-9])"
)
# Phone candidates: international (+ or 00), a national trunk 0 (GB, DE, FR, ...), or the North
# American layout with separators. phonenumbers then decides whether the number exists in the plan.
_PHONE = re.compile(
    r"(?<![\w.,/+-])(?:"
    r"(?:\+|00)[1-9]\d{0,2}[ .\-]?(?:\(0?\d{1,4}\)[ .\-]?)?\d(?:[ .\-]?\d){5,13}"
    r"|\(?0\d{1,4}\)?[ .\-/]?\d(?:[ .\-]?\d){4,11}"
    r"|(?:\+?1[ .\-])?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .\-])[2-9]\d{2}[ .\-]\d{4}"
    r")(?![\w]|[.,\-/]\d)"
)
_DIGITS = re.compile(r"\d")


def _digits(value: str) -> str:
    return "".join(_DIGITS.findall(value))


def _card_brand_ok(digits: str) -> bool:
    """The IIN ranges of the major networks: a Luhn-valid number outside them is some other id."""
    n = len(digits)
    two, four, six = int(digits[:2]), int(digits[:4]), int(digits[:6])
    if digits[0] == "4":
        return n in (13, 16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16
    if two in (34, 37):
        return n == 15
    if four == 6011 or two == 65 or 644 <= int(digits[:3]) <= 649 or 622126 <= six <= 622925:
        return 16 <= n <= 19
    if 3528 <= four <= 3589:
        return 16 <= n <= 19
    if two in (36, 38, 39) or 300 <= int(digits[:3]) <= 305:
        return 14 <= n <= 19
    if two == 62:
        return 16 <= n <= 19
    if two in (50, 56, 57, 58, 63, 67):
        return 12 <= n <= 19
    return False


def _consistent_grouping(value: str) -> bool:
    separators = {c for c in value if not c.isdigit()}
    if not separators:
        return True
    if len(separators) > 1:
        return False
    sep = separators.pop()
    groups = [len(g) for g in value.split(sep)]
    return all(g >= 3 for g in groups[:-1]) and groups[-1] >= 1 and len(groups) <= 5


@cache
def _stdnum() -> dict[str, Any]:
    """Imported on first use: ``import cairn.guard.pii`` stays cheap for callers that never redact."""
    from stdnum import iban, luhn
    from stdnum.de import idnr
    from stdnum.es import dni, nie
    from stdnum.fr import nir
    from stdnum.it import codicefiscale
    from stdnum.us import ssn

    return {
        "iban": iban,
        "luhn": luhn,
        "idnr": idnr,
        "dni": dni,
        "nie": nie,
        "nir": nir,
        "codicefiscale": codicefiscale,
        "ssn": ssn,
    }


Candidate = tuple[int, int]


def _emails(text: str, _: PiiDetector) -> Iterable[Candidate]:
    for m in _EMAIL.finditer(text):
        yield m.span()


def _ibans(text: str, _: PiiDetector) -> Iterable[Candidate]:
    iban = _stdnum()["iban"]
    for m in _IBAN.finditer(text):
        value = m.group(0)
        # A trailing short word can look like the last group ("... 0130 00 to"): retry without it.
        for _attempt in range(3):
            if iban.is_valid(value.upper()):
                yield m.start(), m.start() + len(value)
                break
            if " " not in value:
                break
            value = value.rsplit(" ", 1)[0]


def _cards(text: str, _: PiiDetector) -> Iterable[Candidate]:
    luhn = _stdnum()["luhn"]
    for m in _CARD.finditer(text):
        value = m.group(0)
        digits = _digits(value)
        if (
            13 <= len(digits) <= 19
            and len(set(digits)) > 1
            and _consistent_grouping(value)
            and _card_brand_ok(digits)
            and luhn.is_valid(digits)
        ):
            yield m.span()


def _ssns(text: str, _: PiiDetector) -> Iterable[Candidate]:
    ssn = _stdnum()["ssn"]
    for m in _SSN.finditer(text):
        if ssn.is_valid(m.group(1) + m.group(3) + m.group(4)):
            yield m.span()
    for m in _SSN_BARE.finditer(text):
        if ssn.is_valid(m.group(1)):
            yield m.span(1)


def _ninos(text: str, _: PiiDetector) -> Iterable[Candidate]:
    # HMRC's rules: no D, F, I, Q, U, V in the prefix, no O second, and a few reserved pairs. There
    # is no check digit, and unspaced it reads like a compound code ("SR141716A"), so the unspaced
    # form needs a word that announces it.
    for m in _NINO.finditer(text):
        value = m.group(0)
        if value[:2] in _NINO_BAD_PREFIXES:
            continue
        if " " in value or _NINO_CONTEXT.search(text, max(0, m.start() - 40), m.start()):
            yield m.span()


def _nirs(text: str, _: PiiDetector) -> Iterable[Candidate]:
    nir = _stdnum()["nir"]
    for m in _NIR.finditer(text):
        if nir.is_valid(m.group(0).replace(" ", "").upper()):
            yield m.span()


def _de_tax_ids(text: str, _: PiiDetector) -> Iterable[Candidate]:
    idnr = _stdnum()["idnr"]
    for m in _DE_TAX_ID.finditer(text):
        if idnr.is_valid(m.group(1).replace(" ", "")):
            yield m.span(1)


def _es_dnis(text: str, _: PiiDetector) -> Iterable[Candidate]:
    std = _stdnum()
    for m in _ES_DNI.finditer(text):
        value = m.group(0).replace("-", "").upper()
        if (std["nie"] if value[0] in "XYZ" else std["dni"]).is_valid(value):
            yield m.span()


def _codici_fiscali(text: str, _: PiiDetector) -> Iterable[Candidate]:
    codicefiscale = _stdnum()["codicefiscale"]
    for m in _IT_CF.finditer(text):
        if codicefiscale.is_valid(m.group(0).upper()):
            yield m.span()


def _phones(text: str, detector: PiiDetector) -> Iterable[Candidate]:
    import phonenumbers

    for m in _PHONE.finditer(text):
        value = m.group(0)
        digits = _digits(value)
        if not 7 <= len(digits) <= 15:
            continue
        international = value.startswith(("+", "00"))
        # Bare digit runs are more often ids than phone numbers unless they are long enough to be
        # a full national number.
        if not international and value.isdigit() and len(digits) < 10:
            continue
        regions: Sequence[str | None] = [None] if international else detector.regions
        for region in regions:
            try:
                number = phonenumbers.parse("+" + value[2:] if value.startswith("00") else value, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                yield m.span()
                break


# Order is priority when two kinds claim overlapping text (an IBAN holds digit runs that a card
# or phone pattern would also see).
_FINDERS: dict[str, Callable[[str, PiiDetector], Iterable[Candidate]]] = {
    "email": _emails,
    "iban": _ibans,
    "credit_card": _cards,
    "fr_nir": _nirs,
    "it_codice_fiscale": _codici_fiscali,
    "uk_nino": _ninos,
    "es_dni": _es_dnis,
    "de_tax_id": _de_tax_ids,
    "us_ssn": _ssns,
    "phone": _phones,
}


class PiiDetector:
    """Finds and redacts personal data; ``kinds`` limits what it looks for (default: all)."""

    name = "pii"

    def __init__(self, kinds: Iterable[str] = PII_KINDS, *, regions: Sequence[str] = DEFAULT_PHONE_REGIONS) -> None:
        self.kinds = tuple(kinds)
        unknown = sorted(set(self.kinds) - set(PII_KINDS))
        if unknown:
            raise ConfigError(f"unknown PII kinds: {', '.join(unknown)}", hint=f"known: {', '.join(PII_KINDS)}")
        self.regions = tuple(r.upper() for r in regions)
        bad = [r for r in self.regions if not (len(r) == 2 and r.isalpha())]
        if bad:
            raise ConfigError(f"phone regions must be ISO 3166 alpha-2 codes, got {bad}")

    def find(self, text: str, kinds: Iterable[str] | None = None) -> list[PiiFinding]:
        """Findings in text order; where two kinds overlap, the one earlier in ``_FINDERS`` wins."""
        wanted = set(self.kinds if kinds is None else kinds)
        taken: list[PiiFinding] = []
        for kind, finder in _FINDERS.items():
            if kind not in wanted:
                continue
            for start, end in finder(text, self):
                if not any(start < f.end and f.start < end for f in taken):
                    taken.append(PiiFinding(kind, start, end, mask(text[start:end])))
        return sorted(taken, key=lambda f: f.start)

    def check(self, text: str) -> GuardVerdict:
        found = self.find(text)
        return GuardVerdict(
            self.name,
            bool(found),
            1.0 if found else 0.0,
            tuple(sorted({f.kind for f in found})),
            tuple((f.start, f.end) for f in found),
        )

    def redact(self, text: str, kinds: Iterable[str] | None = None, style: RedactStyle = "label") -> str:
        """``label`` replaces each finding with ``[KIND]``; ``mask`` keeps its last four characters."""
        return redact_findings(text, self.find(text, kinds), style)


def redact_findings(text: str, findings: Sequence[PiiFinding], style: RedactStyle = "label") -> str:
    if style not in ("label", "mask"):
        raise ConfigError(f"redaction style must be 'label' or 'mask', got {style!r}")
    out: list[str] = []
    pos = 0
    for f in sorted(findings, key=lambda f: f.start):
        out.append(text[pos : f.start])
        out.append(f"[{f.kind.upper()}]" if style == "label" else f.masked)
        pos = f.end
    out.append(text[pos:])
    return "".join(out)


def find_pii(
    text: str, kinds: Iterable[str] = PII_KINDS, *, regions: Sequence[str] = DEFAULT_PHONE_REGIONS
) -> list[PiiFinding]:
    return PiiDetector(kinds, regions=regions).find(text)


def redact(
    text: str,
    kinds: Iterable[str] = PII_KINDS,
    style: RedactStyle = "label",
    *,
    regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
) -> str:
    return PiiDetector(kinds, regions=regions).redact(text, style=style)


@GUARDS.register("pii")
def _create(location: str, **_: object) -> PiiDetector:
    """``pii:``, ``pii:?kinds=email,iban&regions=US,GB`` (``regions=`` empty: international numbers only)."""
    query = {k: v[-1] for k, v in parse_qs(location.partition("?")[2], keep_blank_values=True).items()}
    kinds = [k for k in query.get("kinds", ",".join(PII_KINDS)).split(",") if k]
    regions = [r for r in query.get("regions", ",".join(DEFAULT_PHONE_REGIONS)).split(",") if r]
    return PiiDetector(kinds, regions=regions)
