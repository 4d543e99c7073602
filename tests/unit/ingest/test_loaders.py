from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Callable

import pytest

from cairn.errors import CorruptDocument, LimitExceeded
from cairn.ingest.base import LOADERS, Loader
from cairn.ingest.limits import DEFAULT_LIMITS
from cairn.ingest.loaders import DocxLoader, HtmlLoader, MarkdownLoader, PdfLoader, TextLoader
from cairn.ingest.loaders.html import MAX_DEPTH
from cairn.types import ParsedDocument

pytestmark = pytest.mark.unit

MakeBytes = Callable[..., bytes]


def _headings_point_at_titles(document: ParsedDocument) -> None:
    for heading in document.headings:
        assert 0 <= heading.start < len(document.text)
        assert document.text[heading.start :].lstrip("# ").startswith(heading.title), heading


@pytest.mark.parametrize("fmt", ["pdf", "docx", "html", "markdown", "text"])
def test_every_format_has_a_registered_loader(fmt: str) -> None:
    loader = LOADERS.create(fmt)
    assert isinstance(loader, Loader)
    assert loader.name == fmt


# PDF


def test_pdf_pages_are_spans_of_the_joined_text(make_pdf: MakeBytes) -> None:
    bodies = ["Alpha page talks about laptops.", "Beta page covers VPN access.", "Gamma page ends here."]
    document = PdfLoader().load(make_pdf(bodies, title="Laptop Manual"), filename="manual.pdf")
    assert document.mime == "application/pdf"
    assert document.title == "Laptop Manual"
    assert [page.number for page in document.pages] == [1, 2, 3]
    assert [document.text[p.start : p.end] for p in document.pages] == bodies
    assert document.text == "\n\n".join(bodies)
    assert document.page_at(document.text.index("Beta")) == 2
    assert document.warnings == ()


def test_pdf_title_falls_back_to_first_line(make_pdf: MakeBytes) -> None:
    document = PdfLoader().load(make_pdf(["Quarterly Report\nSecond line"]), filename="q.pdf")
    assert document.title == "Quarterly Report"


def test_pdf_bookmarks_become_headings_at_their_titles(make_pdf: MakeBytes) -> None:
    pages = ["Intro\nWelcome text.", "Setup\nInstall the client.\nDetails\nMore text."]
    sections = [(0, 0, "Intro"), (1, 0, "Setup"), (1, 1, "Details")]
    document = PdfLoader().load(make_pdf(pages, sections=sections), filename="m.pdf")
    assert [(h.level, h.title) for h in document.headings] == [(1, "Intro"), (1, "Setup"), (2, "Details")]
    _headings_point_at_titles(document)
    assert document.page_at(document.headings[2].start) == 2


def test_pdf_without_text_warns_about_scans(make_pdf: MakeBytes) -> None:
    document = PdfLoader().load(make_pdf(["", ""]), filename="scan.pdf")
    assert document.text.strip() == ""
    assert len(document.pages) == 2
    assert document.warnings == ("scan.pdf: no extractable text (scanned? OCR not available)",)


def test_pdf_words_hyphenated_across_lines_are_rejoined() -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(40, 6, "Supercalifragi\xadlisticexpiali\xaddocious information")
    document = PdfLoader().load(bytes(pdf.output()), filename="h.pdf")
    assert document.text.split() == ["Supercalifragilisticexpialidocious", "information"]


def test_encrypted_pdf_is_corrupt_document() -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(text="secret")
    pdf.set_encryption(owner_password="owner", user_password="user")
    with pytest.raises(CorruptDocument, match="encrypted"):
        PdfLoader().load(bytes(pdf.output()), filename="locked.pdf")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_pdf_is_corrupt_document(make_pdf: MakeBytes, damage: str) -> None:
    data = make_pdf(["some text"])
    broken = data[: len(data) // 3] if damage == "truncate" else b"%PDF-1.7\n" + bytes(range(256)) * 8
    with pytest.raises(CorruptDocument, match=r"^broken\.pdf: "):
        PdfLoader().load(broken, filename="broken.pdf")


# DOCX


def test_docx_paragraphs_headings_and_tables(make_docx: MakeBytes) -> None:
    data = make_docx(
        [
            ("title", "Expense Policy"),
            ("p", "Applies to everyone."),
            ("h1", "Limits"),
            ("table", [["Item", "Limit"], ["Hotel", "180 EUR"]]),
            ("h2", "Approvals"),
            ("p", "Directors approve."),
        ]
    )
    document = DocxLoader().load(data, filename="policy.docx")
    assert document.text == (
        "Expense Policy\n\nApplies to everyone.\n\nLimits\n\nItem | Limit\nHotel | 180 EUR\n\n"
        "Approvals\n\nDirectors approve."
    )
    assert [(h.level, h.title) for h in document.headings] == [
        (1, "Expense Policy"),
        (1, "Limits"),
        (2, "Approvals"),
    ]
    _headings_point_at_titles(document)
    assert document.title == "Expense Policy"
    assert document.mime.endswith("wordprocessingml.document")


def test_docx_title_prefers_core_properties_and_merged_cells_appear_once(make_docx: MakeBytes) -> None:
    import docx

    source = docx.Document(io.BytesIO(make_docx([("p", "body")], title="From Properties")))
    table = source.add_table(rows=2, cols=3)
    merged = table.cell(0, 0).merge(table.cell(0, 2))
    merged.text = "Wide header"
    for column, value in enumerate(["a", "b", "c"]):
        table.cell(1, column).text = value
    buffer = io.BytesIO()
    source.save(buffer)
    document = DocxLoader().load(buffer.getvalue(), filename="t.docx")
    assert document.title == "From Properties"
    assert document.text.endswith("Wide header\na | b | c")


def test_damaged_docx_is_corrupt_document(make_docx: MakeBytes) -> None:
    data = make_docx([("p", "hello")])
    with pytest.raises(CorruptDocument, match=r"^memo\.docx: "):
        DocxLoader().load(data[: len(data) // 2], filename="memo.docx")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("word/document.xml", b"<not-closed")
    with pytest.raises(CorruptDocument):
        DocxLoader().load(buffer.getvalue(), filename="fake.docx")


MAX_UNCOMPRESSED = DEFAULT_LIMITS.max_unpacked_bytes


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """A real bomb: a few hundred KB that would inflate past the limit."""
    buffer = io.BytesIO()
    block = bytes(1024 * 1024)
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("[Content_Types].xml", b"<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as entry:
            for _ in range(MAX_UNCOMPRESSED // len(block) + 1):
                entry.write(block)
    return buffer.getvalue()


def test_zip_bomb_is_refused_before_inflating(zip_bomb: bytes) -> None:
    assert len(zip_bomb) < MAX_UNCOMPRESSED // 100
    with pytest.raises(LimitExceeded, match="zip bomb"):
        DocxLoader().load(zip_bomb, filename="bomb.docx")


# HTML

PAGE = b"""<!doctype html>
<html><head><title>Onboarding  Guide</title>
<style>body { color: red }</style><script>trackEverything("STYLE-AND-SCRIPT")</script></head>
<body>
<header><nav><a href="/">SITE-NAV</a></nav></header>
<aside>COOKIE-BANNER <button>OK</button></aside>
<main>
  <article>
    <header><h1>Welcome to <em>Example</em> Corp</h1></header>
    <p>First   day:
       badge &amp; laptop.</p>
    <h2>Schedule</h2>
    <table><tr><th>When</th><th>What</th></tr><tr><td>Day 1</td><td>Badge</td></tr></table>
    <p>Line one<br>Line two</p>
    <pre>keep   this
  indentation</pre>
    <div hidden>HIDDEN-TEXT</div>
    <noscript>NOSCRIPT-TEXT</noscript>
    <h3>Buddy</h3><ul><li>Lunch weekly</li><li>Questions welcome</li></ul>
  </article>
</main>
<footer>SITE-FOOTER</footer>
</body></html>"""


def test_html_keeps_main_text_and_drops_chrome() -> None:
    document = HtmlLoader().load(PAGE, filename="onboarding.html")
    assert document.text == (
        "Welcome to Example Corp\n\nFirst day: badge & laptop.\n\nSchedule\n\nWhen | What\nDay 1 | Badge"
        "\n\nLine one\nLine two\n\nkeep   this\n  indentation\n\nBuddy\n\nLunch weekly\nQuestions welcome"
    )
    for noise in ("STYLE-AND-SCRIPT", "SITE-NAV", "COOKIE-BANNER", "SITE-FOOTER", "HIDDEN", "NOSCRIPT"):
        assert noise not in document.text
    assert document.title == "Onboarding Guide"
    assert document.mime == "text/html"


def test_html_headings_have_levels_and_offsets() -> None:
    document = HtmlLoader().load(PAGE, filename="onboarding.html")
    assert [(h.level, h.title) for h in document.headings] == [
        (1, "Welcome to Example Corp"),
        (2, "Schedule"),
        (3, "Buddy"),
    ]
    _headings_point_at_titles(document)


def test_html_without_main_uses_body_and_h1_title() -> None:
    markup = b"<html><body><nav>MENU</nav><h1>Release notes</h1><p>Fixed bugs.</p><footer>F</footer></body></html>"
    document = HtmlLoader().load(markup, filename="notes.html")
    assert document.text == "Release notes\n\nFixed bugs."
    assert document.title == "Release notes"


def test_deeply_nested_html_is_fast_and_keeps_text() -> None:
    depth = 100_000
    markup = b"<html><body>" + b"<div>" * depth + b"deep text" + b"</div>" * depth + b"<p>after</p></body></html>"
    started = time.perf_counter()
    document = HtmlLoader().load(markup, filename="deep.html")
    assert time.perf_counter() - started < 3
    assert document.text == "deep text\n\nafter"
    assert document.warnings and f"deeper than {MAX_DEPTH}" in document.warnings[0]


# Markdown

MARKDOWN = """---
title: On-call Handbook
owner: sre
---
Intro line.

# Rotation #

Text about rotation.

Severity levels
---------------

```bash
# not a heading
echo "## nor this"
```

~~~
# still code
~~~

### Paging  ###
- list item
---

Closing
=======
#hashtag is not a heading
    # indented code is not a heading
"""


def test_markdown_headings_and_text_as_is() -> None:
    document = MarkdownLoader().load(MARKDOWN.encode(), filename="oncall.md")
    assert document.text == MARKDOWN
    assert [(h.level, h.title) for h in document.headings] == [
        (1, "Rotation"),
        (2, "Severity levels"),
        (3, "Paging"),
        (1, "Closing"),
    ]
    _headings_point_at_titles(document)
    assert document.text[document.headings[0].start] == "#"
    assert document.title == "On-call Handbook"
    assert document.mime == "text/markdown"


def test_markdown_unclosed_fence_hides_the_rest() -> None:
    document = MarkdownLoader().load(b"# Real\n\n```\n# inside\n## also inside\n", filename="x.md")
    assert [h.title for h in document.headings] == ["Real"]


def test_markdown_title_without_front_matter_is_first_h1() -> None:
    document = MarkdownLoader().load(b"## Sub first\n\n# Main\n", filename="x.md")
    assert document.title == "Main"


# Text


def test_text_title_is_first_nonblank_line_truncated() -> None:
    long_line = "word " * 60
    document = TextLoader().load(f"\n\n  {long_line}\nsecond".encode(), filename="notes.txt")
    assert document.title == " ".join(long_line.split())[:120]
    assert len(document.title) == 120
    assert document.text == f"\n\n  {long_line}\nsecond"
    assert document.mime == "text/plain"


def test_text_decoding_warning_names_the_file() -> None:
    document = TextLoader().load(b"na\xefve caf\xe9", filename="legacy.txt")
    assert document.text == "naïve café"
    assert document.warnings == ("legacy.txt: not valid UTF-8; decoded as Windows-1252",)


def test_empty_text_gets_filename_title() -> None:
    document = TextLoader().load(b"", filename="blank.txt")
    assert document.text == ""
    assert document.title == "blank"
