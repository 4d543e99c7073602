"""Decide a file's format from its bytes, because names lie.

Users upload ``.pdf`` files that are plain text, ``.txt`` exports that are HTML, and images with
any name at all. The extension only breaks ties between text formats, where the bytes cannot tell
Markdown from plain text; whenever content and name disagree the caller gets a warning to show.
"""

from __future__ import annotations

import codecs
import io
import re
import zipfile
from pathlib import PurePath

from cairn.errors import LimitExceeded, UnsupportedFormat
from cairn.ingest.bombs import count_zip_entries
from cairn.ingest.limits import current_limits

_EXTENSIONS = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdown": "markdown",
    ".mkd": "markdown",
    ".txt": "text",
    ".text": "text",
}
_TEXT_FORMATS = {"html", "markdown", "text"}
_DESCRIPTIONS = {"pdf": "a PDF", "docx": "a Word document", "html": "HTML", "markdown": "Markdown"}

# Formats people try to index that no loader reads; naming them beats "binary content".
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x7fELF", "an ELF executable"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Office file (.doc/.xls/.ppt)"),
    (b"{\\rtf", "an RTF document"),
    (b"%!PS", "a PostScript file"),
)
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_HEAD_BYTES = 8192
# Bytes that never occur in text: C0 controls except tab, LF, VT, FF, CR, ESC.
_CONTROL = bytes(set(range(32)) - {9, 10, 11, 12, 13, 27})
_MAX_CONTROL_RATIO = 0.02
# The comments are an atomic group: a lazy ``.*?`` inside a repetition can split a run of n
# comments 2**n ways, and the engine would try them all before giving up on a page without <html>.
_HTML_START = re.compile(
    r"\s*(?:<\?xml[^>]*>\s*)?(?>(?:<!--.*?-->\s*)*)<(?:!doctype\s+html|html[\s>])", re.IGNORECASE | re.DOTALL
)
_HTML_TAGS = re.compile(r"<(?:head|body|title|meta|p|div|h[1-6])[\s>/]", re.I)
_MARKDOWN = re.compile(
    r"^(?: {0,3}#{1,6}[ \t]+\S| {0,3}(?:```|~~~)|[^\n]+\n {0,3}(?:={3,}|-{3,})[ \t]*$)", re.MULTILINE
)
_NEWLINES = re.compile(r"\r\n?")


def sniff(data: bytes, filename: str) -> tuple[str, list[str]]:
    """Return the format key of ``data`` and warnings about a misleading name.

    Raises :class:`UnsupportedFormat` for binary content no loader can read.
    """
    ext = PurePath(filename).suffix.lower()
    claimed = _EXTENSIONS.get(ext)
    found = _sniff_binary(data, filename, ext)
    if found is None:
        found = _sniff_text(data, filename, claimed)
    warnings = []
    if claimed is not None and claimed != found and not (claimed in _TEXT_FORMATS and found in _TEXT_FORMATS):
        what = _DESCRIPTIONS.get(found, "plain text")
        warnings.append(f"{filename}: named {ext} but contains {what}; read as {found}")
    return found, warnings


def decode_text(data: bytes) -> tuple[str, list[str]]:
    """Decode bytes of unknown encoding; never fails, and says when it had to guess.

    UTF-8 is tried first (with or without BOM), then UTF-16 (BOM or NUL pattern), then cp1252,
    which is what "plain text" from Windows tools usually is, then latin-1, which accepts anything.
    Newlines are normalised to ``\\n`` and NULs removed, since every offset later indexes this text.
    """
    codec, skip = _detect_codec(data)
    warnings: list[str] = []
    body = data[skip:]
    if codec.startswith("utf-16"):
        text = body.decode(codec, errors="replace")
        if "\ufffd" in text:
            warnings.append(f"invalid {codec.upper()} sequences replaced")
        return normalize_text(text), warnings
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = body.decode("cp1252")
            warnings.append("not valid UTF-8; decoded as Windows-1252")
        except UnicodeDecodeError:
            text = body.decode("latin-1")
            warnings.append("not valid UTF-8; decoded as Latin-1")
    return normalize_text(text), warnings


def normalize_text(text: str) -> str:
    """Give every loader the same newline convention and no NULs (Postgres text cannot hold them)."""
    if "\r" in text:
        text = _NEWLINES.sub("\n", text)
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text


def _detect_codec(data: bytes) -> tuple[str, int]:
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return codec, len(bom)
    head = data[:_HEAD_BYTES]
    if len(head) >= 4 and head.count(0) * 3 >= len(head):
        # Text saved as UTF-16 without a BOM: every ASCII char pairs with a NUL on one side.
        even, odd = head[0::2].count(0), head[1::2].count(0)
        half = len(head) // 2
        if odd * 10 >= half * 9 and even * 10 < half:
            return "utf-16-le", 0
        if even * 10 >= half * 9 and odd * 10 < half:
            return "utf-16-be", 0
    return "utf-8", 0


def _sniff_binary(data: bytes, filename: str, ext: str) -> str | None:
    if b"%PDF-" in data[:1024]:
        return "pdf"
    if data.startswith(_ZIP_MAGIC):
        return _sniff_zip(data, filename, ext)
    for magic, what in _MAGIC:
        if data.startswith(magic):
            hint = "save it as .docx" if "Office" in what else None
            raise UnsupportedFormat(f"{filename}: {what} is not a supported document format", hint=hint)
    return None


def _sniff_zip(data: bytes, filename: str, ext: str) -> str:
    limit = current_limits().max_zip_entries
    if count_zip_entries(data) > limit:
        raise LimitExceeded(f"{filename}: a zip archive with more than {limit:,} entries refused")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        # A damaged Word file is still a Word file: let its loader report it as corrupt.
        if ext == ".docx" or b"word/document.xml" in data:
            return "docx"
        raise UnsupportedFormat(f"{filename}: unreadable zip archive") from None
    if "word/document.xml" in names:
        return "docx"
    raise UnsupportedFormat(
        f"{filename}: a zip archive that is not a Word document",
        hint="supported: pdf, docx, html, markdown, text",
    )


def _sniff_text(data: bytes, filename: str, claimed: str | None) -> str:
    codec, skip = _detect_codec(data)
    if codec == "utf-8" and _looks_binary(data):
        raise UnsupportedFormat(
            f"{filename}: binary content of an unknown type",
            hint="supported: pdf, docx, html, markdown, text",
        )
    head = data[skip : skip + _HEAD_BYTES].decode(codec, errors="replace")
    if _HTML_START.match(head):
        return "html"
    if claimed in _TEXT_FORMATS:
        return claimed
    if head.lstrip().startswith("<") and _HTML_TAGS.search(head):
        return "html"
    if _MARKDOWN.search(head):
        return "markdown"
    return "text"


def _looks_binary(data: bytes) -> bool:
    if b"\x00" in data:
        return True
    head = data[:_HEAD_BYTES]
    if not head:
        return False
    controls = len(head) - len(head.translate(None, _CONTROL))
    return controls > len(head) * _MAX_CONTROL_RATIO


__all__ = ["decode_text", "normalize_text", "sniff"]
