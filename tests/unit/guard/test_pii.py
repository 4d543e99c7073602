from __future__ import annotations

import time

import pytest

from cairn.errors import ConfigError
from cairn.guard.base import GUARDS
from cairn.guard.pii import PiiDetector, PiiFinding, find_pii, mask, redact


@pytest.fixture(scope="module")
def detector() -> PiiDetector:
    return PiiDetector()


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("Write to jane.doe@example.com today.", "email", "jane.doe@example.com"),
        ("Call +44 20 7946 0958 after 5.", "phone", "+44 20 7946 0958"),
        ("Call 020 7946 0958 after 5.", "phone", "020 7946 0958"),
        ("Call (212) 555-0123 after 5.", "phone", "(212) 555-0123"),
        ("Appelez le 01 42 68 53 00.", "phone", "01 42 68 53 00"),
        ("Tel.: +31-20-5665-633; fax", "phone", "+31-20-5665-633"),
        ("Pay to DE89 3704 0044 0532 0130 00 by Friday.", "iban", "DE89 3704 0044 0532 0130 00"),
        ("IBAN GB82WEST12345698765432.", "iban", "GB82WEST12345698765432"),
        ("Card 4111 1111 1111 1111, exp 12/29.", "credit_card", "4111 1111 1111 1111"),
        ("Card 5555-5555-5555-4444.", "credit_card", "5555-5555-5555-4444"),
        ("Amex 378282246310005.", "credit_card", "378282246310005"),
        ("SSN 536-90-4399 on file.", "us_ssn", "536-90-4399"),
        ("SSN: 536904399", "us_ssn", "536904399"),
        ("NINO AB 12 34 56 C.", "uk_nino", "AB 12 34 56 C"),
        ("National Insurance number AB123456C.", "uk_nino", "AB123456C"),
        ("NIR 1 84 12 76 451 089 46.", "fr_nir", "1 84 12 76 451 089 46"),
        ("Steuer-ID: 65929970489", "de_tax_id", "65929970489"),
        ("DNI 12345678Z.", "es_dni", "12345678Z"),
        ("NIE X1234567L.", "es_dni", "X1234567L"),
        ("Codice fiscale MRTMTT91D08F205J.", "it_codice_fiscale", "MRTMTT91D08F205J"),
    ],
)
def test_each_kind_is_found(detector: PiiDetector, text: str, kind: str, value: str) -> None:
    findings = detector.find(text)
    assert [(f.kind, text[f.start : f.end]) for f in findings] == [(kind, value)]


@pytest.mark.parametrize(
    "text",
    [
        "Order id 4716 2839 1234 5678 (fails Luhn).",
        "Ticket 4111111111111112",
        "Reference 1234567890123456",
        "ISBN 978-3-16-148410-0",
        "Released on 2023-10-12 and 12/10/2023.",
        "Upgrade to v1.2.3 or 10.4.22.",
        "Revenue was 1,234,567 euros ($1,234,567.89).",
        "95% CI 0.40-0.82, p = 0.0012345, n = 12345678",
        "Compound PD 0332991 and CK-0944636 and SR141716A.",
        "16 978 participants aged 16-44 years",
        "doi 10.1038/nature12373, PMID 23456789",
        "Invoice 2024-000123, ISO 9001:2015, host 192.168.100.200",
        "IBAN GB82 WEST 1234 5698 7654 33 (bad check digits)",
        "SSN 666-12-3456 and 000-12-3456 are never issued",
        "NINO QQ 12 34 56 C is a specimen prefix",
        "An 11-digit number 65929970489 without context",
        "DNI 12345678A has the wrong letter",
        "4444 4444 4444 4444",
    ],
)
def test_checksum_failures_and_lookalikes_are_not_pii(detector: PiiDetector, text: str) -> None:
    assert detector.find(text) == []


def test_redact_labels_exactly() -> None:
    text = "Mail jane@corp.example, card 4111 1111 1111 1111, phone +44 20 7946 0958."
    assert redact(text) == "Mail [EMAIL], card [CREDIT_CARD], phone [PHONE]."


def test_redact_masks_exactly() -> None:
    text = "Mail jane@corp.example, card 4111 1111 1111 1111, phone +44 20 7946 0958."
    assert redact(text, style="mask") == "Mail j***@corp.example, card **** **** **** 1111, phone +** ** **** 0958."


def test_redact_only_the_kinds_asked_for() -> None:
    text = "jane@corp.example or DE89 3704 0044 0532 0130 00"
    assert redact(text, kinds=["iban"]) == "jane@corp.example or [IBAN]"
    assert PiiDetector().redact(text, kinds=["email"]) == "[EMAIL] or DE89 3704 0044 0532 0130 00"


def test_findings_carry_a_masked_value(detector: PiiDetector) -> None:
    assert detector.find("SSN 536-90-4399") == [PiiFinding("us_ssn", 4, 15, "***-**-4399")]
    assert mask("john.smith@example.com") == "j*********@example.com"


def test_an_iban_is_not_also_a_phone_or_card(detector: PiiDetector) -> None:
    findings = detector.find("FR76 3000 6000 0112 3456 7890 189")
    assert [f.kind for f in findings] == ["iban"]


def test_phone_regions_are_configurable() -> None:
    national = "Call 020 7946 0958."
    assert find_pii(national, regions=()) == []
    assert [f.kind for f in find_pii(national, regions=("GB",))] == ["phone"]
    assert find_pii(national, regions=("US",)) == []
    assert [f.kind for f in find_pii("Call +44 20 7946 0958.", regions=())] == ["phone"]


def test_check_returns_a_verdict(detector: PiiDetector) -> None:
    verdict = detector.check("jane@corp.example and SSN 536-90-4399")
    assert verdict.flagged
    assert verdict.reasons == ("email", "us_ssn")
    assert verdict.spans == ((0, 17), (26, 37))
    assert not detector.check("nothing here").flagged


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ConfigError):
        PiiDetector(["email", "passport"])
    with pytest.raises(ConfigError):
        PiiDetector(regions=["England"])
    with pytest.raises(ConfigError):
        redact("x", style="blur")  # type: ignore[arg-type]


def test_registry_builds_the_detector() -> None:
    guard = GUARDS.create("pii:?kinds=email,iban&regions=")
    assert isinstance(guard, PiiDetector)
    assert guard.kinds == ("email", "iban")
    assert guard.regions == ()


@pytest.mark.parametrize("text", ["1 " * 5000, "4111 " * 3000, "a@" * 5000, "x@" + "a." * 5000, "DE89 " * 3000])
def test_pathological_input_stays_fast(detector: PiiDetector, text: str) -> None:
    start = time.perf_counter()
    detector.find(text)
    assert time.perf_counter() - start < 2.0
