from __future__ import annotations

import io
import random
import zipfile
from collections.abc import Callable

import pytest

from cairn.errors import UnsupportedFormat
from cairn.ingest.sniff import decode_text, sniff

pytestmark = pytest.mark.unit

MakeBytes = Callable[..., bytes]

HR_POLICY = (
    b"Placeholder for HR Policy Document 2026. This policy outlines new remote work guidelines, benefits "
    b"for AI skilling, and updated cybersecurity protocols for all employees.\n"
)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_real_pdf_is_pdf_whatever_its_name(make_pdf: MakeBytes) -> None:
    data = make_pdf(["hello"])
    assert sniff(data, "report.pdf") == ("pdf", [])
    fmt, warnings = sniff(data, "report.docx")
    assert fmt == "pdf"
    assert warnings == ["report.docx: named .docx but contains a PDF; read as pdf"]


def test_real_docx_is_docx(make_docx: MakeBytes) -> None:
    data = make_docx([("p", "hello")])
    assert sniff(data, "memo.docx") == ("docx", [])
    assert sniff(data, "memo.bin")[0] == "docx"


def test_pdf_named_file_with_plain_text_is_text_with_warning() -> None:
    fmt, warnings = sniff(HR_POLICY, "hr_policy_2026.pdf")
    assert fmt == "text"
    assert warnings == ["hr_policy_2026.pdf: named .pdf but contains plain text; read as text"]


@pytest.mark.parametrize(
    ("data", "filename", "expected"),
    [
        (b"<!DOCTYPE html><html><body><p>x</p></body></html>", "page.html", "html"),
        (b"\xef\xbb\xbf  <!-- generated -->\n<html lang=en><p>x", "export.txt", "html"),
        (b"<p>fragment</p><div>more</div>", "fragment.htm", "html"),
        (b"<div>fragment</div>", "noext", "html"),
        (b"# Title\n\nSome *markdown*.\n", "notes.md", "markdown"),
        (b"# Title\n\nSome *markdown*.\n", "notes", "markdown"),
        (b"Title\n=====\n\nBody\n", "README", "markdown"),
        (b"# Title\n\nSome text.\n", "notes.txt", "text"),
        (b"<p>inline html in markdown</p>\n\n# Heading\n", "doc.md", "markdown"),
        (b"just some words\nover two lines\n", "log", "text"),
        (b"", "empty.txt", "text"),
    ],
)
def test_text_formats_follow_content_then_extension(data: bytes, filename: str, expected: str) -> None:
    fmt, warnings = sniff(data, filename)
    assert fmt == expected
    assert warnings == []


def test_markdown_in_a_pdf_name_is_read_as_markdown_with_warning() -> None:
    fmt, warnings = sniff(b"# Minutes\n\n- item\n", "minutes.pdf")
    assert fmt == "markdown"
    assert warnings == ["minutes.pdf: named .pdf but contains Markdown; read as markdown"]


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (PNG, "PNG image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG image"),
        (b"\x7fELF\x02\x01\x01" + bytes(64), "ELF executable"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64), "legacy Office"),
        (b"\x1f\x8b\x08\x00" + bytes(16), "gzip"),
    ],
)
def test_known_binary_formats_are_named_in_the_refusal(data: bytes, needle: str) -> None:
    with pytest.raises(UnsupportedFormat) as raised:
        sniff(data, "upload.pdf")
    assert needle in raised.value.message
    assert raised.value.message.startswith("upload.pdf: ")
    assert raised.value.status == 415


def test_legacy_word_file_suggests_docx() -> None:
    with pytest.raises(UnsupportedFormat) as raised:
        sniff(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), "old.doc")
    assert raised.value.hint is not None and "docx" in raised.value.hint


def test_random_binary_and_control_heavy_data_are_refused() -> None:
    noise = random.Random(7).randbytes(4096)
    with pytest.raises(UnsupportedFormat, match="binary content"):
        sniff(noise, "data.txt")
    controls = bytes(range(1, 9)) * 40 + b"mostly text" * 10
    with pytest.raises(UnsupportedFormat):
        sniff(controls, "weird.txt")
    late_nul = b"text " * 5000 + b"\x00"
    with pytest.raises(UnsupportedFormat):
        sniff(late_nul, "late.txt")


def test_zip_that_is_not_a_word_document_is_refused() -> None:
    data = _zip({"mimetype": b"application/vnd.oasis.opendocument.text", "content.xml": b"<x/>"})
    with pytest.raises(UnsupportedFormat, match="not a Word document"):
        sniff(data, "letter.docx")


def test_damaged_zip_goes_to_the_docx_loader_only_when_it_claims_to_be_word(make_docx: MakeBytes) -> None:
    truncated = make_docx([("p", "hello")])[:300]
    assert sniff(truncated, "memo.docx")[0] == "docx"
    with pytest.raises(UnsupportedFormat, match="unreadable zip"):
        sniff(b"PK\x03\x04" + bytes(40), "archive.zip")


@pytest.mark.parametrize(
    ("data", "text", "warned"),
    [
        (b"\xef\xbb\xbfplain caf\xc3\xa9", "plain café", False),
        ("utf-16 with BOM: caf\u00e9 \u20ac".encode("utf-16"), "utf-16 with BOM: café €", False),
        ("no BOM here, little endian".encode("utf-16-le"), "no BOM here, little endian", False),
        ("no BOM here, big endian".encode("utf-16-be"), "no BOM here, big endian", False),
        (b"caf\xe9 costs \x8010", "café costs €10", True),
        (b"line one\r\nline two\rline three", "line one\nline two\nline three", False),
    ],
)
def test_decode_text(data: bytes, text: str, warned: bool) -> None:
    decoded, warnings = decode_text(data)
    assert decoded == text
    assert bool(warnings) == warned


def test_decode_text_falls_back_to_latin1_when_cp1252_cannot_decode() -> None:
    decoded, warnings = decode_text(b"abc \x81\xe9")
    assert decoded == "abc \x81é"
    assert warnings == ["not valid UTF-8; decoded as Latin-1"]
    assert decode_text(b"\x93quoted\x94")[1] == ["not valid UTF-8; decoded as Windows-1252"]


def test_utf16_text_is_sniffed_as_text_not_binary() -> None:
    assert sniff("Hello, UTF-16 world\n".encode("utf-16"), "notes.txt") == ("text", [])
    assert sniff("Hello, UTF-16 world\n".encode("utf-16-le"), "notes.txt") == ("text", [])
