"""The sample corpus builds and every file in it parses the way the demo and evaluation expect."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cairn.ingest.chunking import RecursiveChunker
from cairn.ingest.parse import parse_file

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
SEEDS = {
    "hr_policy_2026.pdf": (
        "Placeholder for HR Policy Document 2026. This policy outlines new remote work guidelines, benefits "
        "for AI skilling, and updated cybersecurity protocols for all employees. Employees are required to "
        "complete AI ethics training by Q3 2026. The corporate travel policy has been updated to reflect "
        "sustainable options."
    ),
    "it_security_guidelines.txt": (
        "IT Security Guidelines 2026: Multi-factor authentication is now mandatory for all internal systems. "
        "Report suspicious emails immediately to security@example.com. All company laptops must run approved "
        "endpoint detection and response (EDR) software. Phishing awareness training is scheduled monthly. "
        "Data encryption at rest and in transit is enforced for all sensitive enterprise data."
    ),
    "product_roadmap_q2_2026.txt": (
        "Product Roadmap Q2 2026: Key features include autonomous agent orchestration, enhanced multi-modal "
        "interface for customer support, and integration with advanced quantum-safe encryption algorithms. "
        "Target release for the new GenAI-powered analytics dashboard is June 1st, 2026. The internal beta "
        "for our new CodeGen assistant will start in May."
    ),
}
SEED_QUESTIONS = [
    "What is the deadline for AI ethics training?",
    "How do I report a suspicious email?",
    "When is the new GenAI-powered analytics dashboard launching?",
    "Tell me about the corporate travel policy.",
    "What are the new remote work guidelines?",
    "What is the capital of France?",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    outdir = tmp_path_factory.mktemp("corpus")
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_samples.py"), str(outdir)],
        check=True,
        capture_output=True,
    )
    return outdir


def test_seed_documents_have_their_exact_content() -> None:
    for name, content in SEEDS.items():
        assert (ROOT / "samples" / "handbook" / name).read_text(encoding="utf-8").rstrip("\n") == content


def test_questions_start_with_the_seed_questions() -> None:
    lines = (ROOT / "samples" / "questions.txt").read_text(encoding="utf-8").splitlines()
    assert lines[:6] == SEED_QUESTIONS
    assert len(lines) >= 10
    assert all(line.strip().endswith(("?", ".")) for line in lines)


def test_build_copies_the_handbook_and_generates_binaries(corpus: Path) -> None:
    handbook = {p.name for p in (ROOT / "samples" / "handbook").iterdir()}
    built = {p.name for p in corpus.iterdir()}
    assert handbook < built
    assert {"laptop_vpn_user_manual.pdf", "expense_procurement_policy.docx"} <= built
    assert (corpus / "laptop_vpn_user_manual.pdf").read_bytes().startswith(b"%PDF-")


def test_every_built_file_parses_and_chunks(corpus: Path) -> None:
    chunker = RecursiveChunker()
    for path in sorted(corpus.iterdir()):
        document = parse_file(path, max_bytes=10_000_000)
        assert document.text.strip(), path.name
        assert chunker.chunk(document), path.name
        expected_warnings = 1 if path.name == "hr_policy_2026.pdf" else 0
        assert len(document.warnings) == expected_warnings, (path.name, document.warnings)


def test_generated_pdf_has_pages_and_outline(corpus: Path) -> None:
    document = parse_file(corpus / "laptop_vpn_user_manual.pdf", max_bytes=10_000_000)
    assert document.mime == "application/pdf"
    assert document.title == "Laptop and VPN User Manual"
    assert len(document.pages) >= 3
    assert any(h.title == "4. Lost or stolen laptops" for h in document.headings)
    lost = document.text.index("Report a lost or stolen laptop")
    chunk = next(c for c in RecursiveChunker().chunk(document) if c.start <= lost < c.end)
    assert chunk.heading_path == ("4. Lost or stolen laptops",)
    assert chunk.page is not None and chunk.page > 1


def test_generated_docx_has_headings_and_limits_table(corpus: Path) -> None:
    document = parse_file(corpus / "expense_procurement_policy.docx", max_bytes=10_000_000)
    assert document.title == "Expense and Procurement Policy"
    titles = [h.title for h in document.headings]
    assert {"Spending limits", "Sustainable travel", "Approval thresholds"} <= set(titles)
    assert "Hotel, international | 250 EUR per night | Higher-cost cities list published by Finance" in document.text


def test_html_and_markdown_samples_keep_structure_and_drop_noise(corpus: Path) -> None:
    html = parse_file(corpus / "onboarding_guide.html", max_bytes=10_000_000)
    assert "analytics.track" not in html.text and "Accept all cookies" not in html.text
    assert "People directory" not in html.text and "Internal use only" not in html.text
    assert "facilities@example.com" in html.text
    markdown = parse_file(corpus / "engineering_oncall_handbook.md", max_bytes=10_000_000)
    assert markdown.title == "Example Corp Engineering On-Call Handbook"
    assert "INC-2026-0142" in markdown.text
    assert not any(h.title.startswith("the bot replies") for h in markdown.headings)
    levels = {h.title: h.level for h in markdown.headings}
    assert levels["After the incident"] == 2 and levels["Communications lead"] == 4
