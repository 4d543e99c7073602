"""Refuse decompression bombs before a parser inflates them, by measuring what they really inflate to.

A few hundred KB of DOCX or PDF can expand to gigabytes: a zip entry of zeros, a PDF content
stream deflated once (or twice, ``/Filter [/FlateDecode /FlateDecode]``, where each pass multiplies
the ratio). PDFium and lxml allocate the whole result, and PDFium aborts the process when it
cannot. The checks here stream the compressed data through zlib in bounded pieces, counting output
and discarding it, and stop as soon as the budget is spent: cost is linear in the compressed size
and memory stays at one piece, whatever the file claims.

Sizes written in a file are never trusted alone: a zip directory's declared sizes are checked
first (cheap, and what an honest bomb reveals) and then every entry is inflated for real, because
a lying directory can claim a kilobyte for a gigabyte.
"""

from __future__ import annotations

import contextlib
import io
import re
import struct
import zipfile
import zlib

from cairn.errors import CorruptDocument, LimitExceeded
from cairn.ingest.limits import MB

_PIECE = 64 * 1024
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, then (after 22 bytes) name and extra-field lengths
_CENTRAL_SIGNATURE = b"PK\x01\x02"


def count_zip_entries(data: bytes) -> int:
    """An upper bound on the entries of a zip, without building its directory.

    ``zipfile`` materialises one object per directory record, so a file of a few MB could make it
    allocate gigabytes before any other check runs; counting signatures is one ``memchr``-speed scan.
    """
    return data.count(_CENTRAL_SIGNATURE)


def check_zip(data: bytes, filename: str, *, max_bytes: int, max_entries: int, what: str = "Word document") -> None:
    """Refuse a zip that is damaged, has too many entries, or inflates (declared or really) past ``max_bytes``."""
    if count_zip_entries(data) > max_entries:
        raise LimitExceeded(f"{filename}: {what} with more than {max_entries:,} zip entries refused")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error) as exc:
        raise CorruptDocument(f"{filename}: damaged {what} (bad zip: {exc})") from exc
    declared = sum(entry.file_size for entry in entries)
    if declared > max_bytes:
        raise LimitExceeded(
            f"{filename}: {what} would expand to {declared // MB:,} MB (limit {max_bytes // MB:,} MB);"
            " refused as a possible zip bomb"
        )
    total = 0
    for entry in entries:
        inflated = _inflated_size(data, entry, entry.file_size + 1, filename)
        if inflated > entry.file_size:
            # Damaged data or a bomb hiding its size: either way the directory cannot be trusted.
            raise CorruptDocument(
                f"{filename}: zip entry {entry.filename!r} inflates past the {entry.file_size:,} bytes its"
                " directory declares (damaged, or a zip bomb hiding its size); refused"
            )
        total += inflated
        if total > max_bytes:  # pragma: no cover - declared sizes bound the real ones, checked above
            raise LimitExceeded(f"{filename}: {what} expands past {max_bytes // MB:,} MB; refused as a zip bomb")


def _inflated_size(data: bytes, entry: zipfile.ZipInfo, cap: int, filename: str) -> int:
    """Bytes the entry's compressed data really inflates to, counting stops past ``cap``.

    Only the compressed range the directory gives is read, which is all that ``zipfile`` (and so
    python-docx) would read. Entries in a method other than stored/deflated cannot be measured and
    are refused: Word never writes them.
    """
    header = data[entry.header_offset : entry.header_offset + _LOCAL_HEADER.size]
    if len(header) < _LOCAL_HEADER.size:
        raise CorruptDocument(f"{filename}: zip entry {entry.filename!r} starts past the end of the file")
    signature, name_length, extra_length = _LOCAL_HEADER.unpack(header)
    if signature != b"PK\x03\x04":
        raise CorruptDocument(f"{filename}: zip entry {entry.filename!r} has no local header")
    start = entry.header_offset + _LOCAL_HEADER.size + name_length + extra_length
    raw = memoryview(data)[start : start + entry.compress_size]
    if entry.compress_type == zipfile.ZIP_STORED:
        return len(raw)
    if entry.compress_type != zipfile.ZIP_DEFLATED:
        method = entry.compress_type
        raise CorruptDocument(f"{filename}: zip entry {entry.filename!r} uses unsupported compression {method}")
    counter = _Counter(cap)
    try:
        _feed([zlib.decompressobj(-zlib.MAX_WBITS)], 0, raw, counter)
    except zlib.error as exc:
        raise CorruptDocument(f"{filename}: zip entry {entry.filename!r} is not valid deflate data ({exc})") from exc
    return counter.total


# -- PDF ------------------------------------------------------------------------------------------------
_STREAM = re.compile(rb"stream(?:\r\n|\n|\r)")
_FILTER = re.compile(rb"/Filter\s*(\[[^\]]*\]|/[A-Za-z0-9]+)")
_NAME = re.compile(rb"/([A-Za-z0-9]+)")
_IMAGE = re.compile(rb"/Subtype\s*/Image\b")
_FLATE = frozenset({b"FlateDecode", b"Fl"})
# How far back from ``stream`` its dictionary may start; dictionaries of real PDFs are far shorter.
_DICT_WINDOW = 4096
# Real PDFs chain at most two filters; a longer chain of Flate passes only serves to hide a bomb.
MAX_FLATE_CHAIN = 8
# PDFium inflates a stream (a page's content, a font, an object stream) whole when it needs it, so
# memory is at risk from one large stream; all of them together mostly cost time, this check's own
# included, so they get a looser budget (inflating 2 GB takes a few seconds).
PDF_TOTAL_FACTOR = 10


def check_pdf_streams(data: bytes, filename: str, *, max_bytes: int) -> None:
    """Refuse a PDF with a Flate stream inflating past ``max_bytes``, or streams inflating past ten times that in all.

    Each stream is found by its ``stream`` keyword and decoded from there until zlib says it ended,
    ignoring ``/Length`` (which may lie). Chained Flate filters are decoded in a pipeline so a
    nested bomb is measured at its final size. Image streams are skipped: text extraction never
    decodes them, and scanned pages legitimately hold hundreds of MB of pixels.
    """
    total, total_cap = 0, max_bytes * PDF_TOTAL_FACTOR
    previous = 0  # dictionaries are looked for after the previous keyword, so no byte is scanned twice
    for found in _STREAM.finditer(data):
        start = found.start()
        if start >= 3 and data[start - 3 : start] == b"end":
            continue
        window = data[max(previous, start - _DICT_WINDOW) : start]
        previous = found.end()
        dict_start = window.rfind(b"obj")
        if dict_start >= 0:
            window = window[dict_start:]
        filters = _filters(window)
        flate_stages = 0
        for name in filters:
            if name not in _FLATE:
                break
            flate_stages += 1
        if not flate_stages or _IMAGE.search(window):
            continue
        if flate_stages > MAX_FLATE_CHAIN:
            raise LimitExceeded(f"{filename}: a PDF stream chains {flate_stages} Flate filters; refused")
        cap = min(max_bytes, total_cap - total)
        counter = _Counter(cap)
        inflaters = [zlib.decompressobj() for _ in range(flate_stages)]
        # A damaged stream stops with zlib.error: what it produced so far counts, and PDFium judges the rest.
        with contextlib.suppress(zlib.error):
            _feed(inflaters, 0, memoryview(data)[found.end() :], counter)
        total += counter.total
        if counter.exceeded and cap == max_bytes:
            nested = "nested " if flate_stages > 1 else ""
            raise LimitExceeded(
                f"{filename}: a {nested}compressed PDF stream inflates past {max_bytes // MB:,} MB;"
                " refused as a possible decompression bomb"
            )
        if counter.exceeded:
            raise LimitExceeded(
                f"{filename}: the compressed PDF streams inflate past {total_cap // MB:,} MB in all;"
                " refused as a possible decompression bomb"
            )


def _filters(dictionary: bytes) -> list[bytes]:
    matches = _FILTER.findall(dictionary)  # the last /Filter before ``stream`` belongs to this stream's dictionary
    return _NAME.findall(matches[-1]) if matches else []


class _Counter:
    """Output bytes seen by the last stage of a pipeline, with the budget they may not pass."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.total = 0

    @property
    def exceeded(self) -> bool:
        return self.total > self.cap


def _feed(inflaters: list[zlib._Decompress], level: int, data: memoryview | bytes, counter: _Counter) -> bool:
    """Push ``data`` through ``inflaters[level:]`` in bounded pieces; True once the budget is passed."""
    inflater = inflaters[level]
    last = level + 1 == len(inflaters)
    position = 0
    while position < len(data) and not inflater.eof:
        pending: bytes | memoryview = data[position : position + _PIECE]
        position += len(pending)
        while pending and not inflater.eof:
            out = inflater.decompress(pending, _PIECE)
            pending = inflater.unconsumed_tail
            if last:
                counter.total += len(out)
            elif out:
                _feed(inflaters, level + 1, out, counter)
            if counter.exceeded:
                return True
            if not out and not pending:
                break
    return counter.exceeded


__all__ = ["check_pdf_streams", "check_zip", "count_zip_entries"]
