from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cairn.errors import CorruptDocument, InputError, UnsupportedFormat
from cairn.ingest.loaders.text import TextLoader
from cairn.ingest.parse import parse_bytes, parse_file

pytestmark = pytest.mark.unit

MakeBytes = Callable[..., bytes]


def test_sniff_warnings_come_before_loader_warnings() -> None:
    document = parse_bytes(b"Caf\xe9 policy text.", "policy.pdf")
    assert document.mime == "text/plain"
    assert document.text == "Café policy text."
    assert document.warnings == (
        "policy.pdf: named .pdf but contains plain text; read as text",
        "policy.pdf: not valid UTF-8; decoded as Windows-1252",
    )


def test_each_format_reaches_its_loader(make_pdf: MakeBytes, make_docx: MakeBytes) -> None:
    cases = {
        "a.pdf": (make_pdf(["pdf body"]), "application/pdf"),
        "b.docx": (make_docx([("p", "docx body")]), "application/vnd.openxmlformats-officedocument"),
        "c.html": (b"<html><body><p>html body</p></body></html>", "text/html"),
        "d.md": (b"# md body\n", "text/markdown"),
        "e.txt": (b"text body\n", "text/plain"),
    }
    for filename, (data, mime) in cases.items():
        document = parse_bytes(data, filename)
        assert document.mime.startswith(mime)
        assert "body" in document.text


def test_parse_file_refuses_files_over_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(b"x" * 101)
    with pytest.raises(InputError, match=r"big\.txt: larger than the 100-byte limit"):
        parse_file(path, max_bytes=100)
    assert parse_file(path, max_bytes=101).text == "x" * 101


def test_parse_file_reports_unreadable_paths_as_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"missing\.txt: cannot read"):
        parse_file(tmp_path / "missing.txt", max_bytes=100)


def test_corrupt_and_unsupported_files_raise_cairn_errors(make_pdf: MakeBytes, make_docx: MakeBytes) -> None:
    pdf, docx = make_pdf(["text"]), make_docx([("p", "text")])
    with pytest.raises(CorruptDocument, match=r"^cut\.pdf: "):
        parse_bytes(pdf[: len(pdf) // 2], "cut.pdf")
    with pytest.raises(CorruptDocument, match=r"^cut\.docx: "):
        parse_bytes(docx[: len(docx) // 2], "cut.docx")
    with pytest.raises(UnsupportedFormat):
        parse_bytes(b"\x89PNG\r\n\x1a\n" + bytes(32), "scan.pdf")


def test_unexpected_library_errors_become_corrupt_document(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(self: TextLoader, data: bytes, *, filename: str) -> None:
        raise ValueError("parser internals")

    monkeypatch.setattr(TextLoader, "load", explode)
    with pytest.raises(CorruptDocument) as raised:
        parse_bytes(b"plain text", "notes.txt")
    assert raised.value.message == "notes.txt: ValueError: parser internals"
    assert isinstance(raised.value.__cause__, ValueError)
