"""Hostile input for the ingestion tests: valid seed files, seeded mutations of them, and known bad files.

Everything is generated from code and a seed, so no binary file is committed and a failing case is
reproduced by its name alone (``0417-docx-zip_size.docx``: mutant 417 of the DOCX seed, made by
``zip_size``). Seeds are built with fixed timestamps, so the same seed gives the same bytes on
every machine.

- :func:`seed_files`: one valid file per format (PDF with compressed pages, an outline and an
  image; DOCX with headings and a table; HTML; Markdown; plain text).
- :func:`mutants`: byte flips, truncation, splicing of two seeds, inserted and repeated ranges,
  zip directories that lie (sizes, CRC, method, offsets), PDF stream lengths and xref offsets that
  lie, invalid UTF-8 and NULs, deep nesting and long lines injected into text formats.
- :func:`known_bad_files`: decompression bombs (zip with honest and with lying sizes, PDF Flate and
  nested Flate), page and entry counts over the limits, deep HTML, invalid UTF-8, huge lines and the
  regular-expression traps found while building this suite, each with the outcome it must have.
"""

from __future__ import annotations

import io
import random
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from cairn.ingest.limits import MB, ParseLimits

_DATE = (2024, 1, 1, 0, 0, 0)


# -- PDF ----------------------------------------------------------------------------------------------
def pdf_file(
    pages: list[bytes],
    *,
    filters: bytes = b"",
    title: str | None = None,
    outline: Sequence[tuple[str, int]] = (),
    image: bytes | None = None,
    image_filter: bytes = b"",
) -> bytes:
    """A small, valid PDF: one content stream per page (already encoded for ``filters``), Helvetica text.

    ``outline`` is (title, page index) bookmarks; ``image`` a stream placed on the first page as an
    image XObject (1 x n pixels, 8-bit grey), encoded for ``image_filter``.
    """
    objects: dict[int, bytes] = {}
    count = len(pages)
    font = 3 + 2 * count
    info = font + 1
    outlines = info + 1
    image_id = outlines + 1 + len(outline)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(count))
    outline_ref = f" /Outlines {outlines} 0 R" if outline else ""
    objects[1] = f"<< /Type /Catalog /Pages 2 0 R{outline_ref} >>".encode()
    objects[2] = f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode()
    for index, content in enumerate(pages):
        xobject = f" /XObject << /Im1 {image_id} 0 R >>" if image is not None and index == 0 else ""
        objects[3 + 2 * index] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
            f" /Resources << /Font << /F1 {font} 0 R >>{xobject} >> /Contents {4 + 2 * index} 0 R >>"
        ).encode()
        objects[4 + 2 * index] = _stream(content, filters)
    objects[font] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
    objects[info] = b"<< /Title (" + _pdf_string(title or "") + b") /Producer (cairn tests) >>"
    if outline:
        first, last = outlines + 1, outlines + len(outline)
        objects[outlines] = f"<< /Type /Outlines /First {first} 0 R /Last {last} 0 R /Count {len(outline)} >>".encode()
        for offset, (name, page) in enumerate(outline):
            number = outlines + 1 + offset
            links = (f" /Prev {number - 1} 0 R" if number > first else "") + (
                f" /Next {number + 1} 0 R" if number < last else ""
            )
            objects[number] = (
                b"<< /Title ("
                + _pdf_string(name)
                + f") /Parent {outlines} 0 R{links} /Dest [{3 + 2 * page} 0 R /XYZ 0 792 0] >>".encode()
            )
    if image is not None:
        objects[image_id] = _stream(
            image,
            b" /Type /XObject /Subtype /Image /Width 1 /Height "
            + str(max(1, len(image))).encode()
            + b" /ColorSpace /DeviceGray /BitsPerComponent 8"
            + image_filter,
        )
    return _assemble(objects, root=1, info=info)


def shared_pages_pdf(count: int, text: str = "page") -> bytes:
    """A PDF of ``count`` pages sharing one content stream: many pages in few bytes (about 80 per page)."""
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        4: _stream(text_content([text]), b""),
    }
    kids = " ".join(f"{5 + i} 0 R" for i in range(count))
    objects[2] = f"<< /Type /Pages /Kids [{kids}] /Count {count} /Resources << /Font << /F1 3 0 R >> >> >>".encode()
    for i in range(count):
        objects[5 + i] = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>"
    return _assemble(objects, root=1)


def text_content(lines: list[str]) -> bytes:
    """A page content stream writing ``lines`` top-down in 12 pt Helvetica."""
    ops = [b"BT /F1 12 Tf 72 720 Td 14 TL"]
    for line in lines:
        ops.append(b"(" + _pdf_string(line) + b") Tj T*")
    ops.append(b"ET")
    return b"\n".join(ops)


def flate(data: bytes, level: int = 9) -> bytes:
    return zlib.compress(data, level)


def deflated_spaces(size: int, *, times: int = 1, prefix: bytes = b"") -> bytes:
    """``prefix`` and ``size`` spaces, zlib-deflated ``times`` times, built in pieces (never ``size`` bytes at once)."""
    data = _deflate_run(size, prefix=prefix, wbits=zlib.MAX_WBITS)
    for _ in range(times - 1):
        data = zlib.compress(data, 9)
    return data


def _deflate_run(size: int, *, prefix: bytes = b"", suffix: bytes = b"", wbits: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    parts = [compressor.compress(prefix)]
    block = b" " * MB
    left = size
    while left > 0:
        parts.append(compressor.compress(block[: min(left, MB)]))
        left -= MB
    parts.append(compressor.compress(suffix) + compressor.flush())
    return b"".join(parts)


def _stream(data: bytes, dictionary: bytes) -> bytes:
    return b"<< /Length " + str(len(data)).encode() + dictionary + b" >>\nstream\n" + data + b"\nendstream"


def _pdf_string(text: str) -> bytes:
    return text.encode("latin-1", "replace").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def _assemble(objects: dict[int, bytes], *, root: int, info: int | None = None) -> bytes:
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += f"{number} 0 obj\n".encode() + objects[number] + b"\nendobj\n"
    size = max(objects) + 1
    xref = len(out)
    out += f"xref\n0 {size}\n0000000000 65535 f \n".encode()
    for number in range(1, size):
        out += f"{offsets[number]:010d} 00000 n \n".encode() if number in offsets else b"0000000000 65535 f \n"
    info_ref = f" /Info {info} 0 R" if info else ""
    out += f"trailer\n<< /Size {size} /Root {root} 0 R{info_ref} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


# -- DOCX ---------------------------------------------------------------------------------------------
_CONTENT_TYPES = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    b'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    b'<Default Extension="xml" ContentType="application/xml"/>'
    b'<Override PartName="/word/document.xml"'
    b' ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
    b"</Types>"
)
_RELS = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    b'<Relationship Id="rId1" Target="word/document.xml"'
    b' Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"/>'
    b"</Relationships>"
)
_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def docx_file(paragraphs: list[str]) -> bytes:
    """A real Word document made by python-docx (headings, paragraphs, a table), with fixed timestamps."""
    import docx

    document = docx.Document()
    document.core_properties.title = "Hostile input seed"
    document.add_heading("Expense policy", level=1)
    for index, text in enumerate(paragraphs):
        if index % 3 == 2:
            document.add_heading(f"Section {index}", level=2)
        document.add_paragraph(text)
    table = document.add_table(rows=2, cols=3)
    for row, cells in zip(table.rows, (("Item", "Limit", "Approver"), ("Hotel", "150 EUR", "Manager")), strict=True):
        for cell, value in zip(row.cells, cells, strict=True):
            cell.text = value
    buffer = io.BytesIO()
    document.save(buffer)
    return rezip(dict(unzip(buffer.getvalue())))


def docx_parts(document_xml: bytes, *, extra: dict[str, bytes] | None = None, level: int = 6) -> bytes:
    """A minimal Word package around ``document_xml`` (the smallest python-docx opens)."""
    parts = {"[Content_Types].xml": _CONTENT_TYPES, "_rels/.rels": _RELS, "word/document.xml": document_xml}
    return rezip({**parts, **(extra or {})}, level=level)


def document_xml(body: bytes) -> bytes:
    head = f'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="{_W}"><w:body>'.encode()
    return head + body + b"</w:body></w:document>"


def paragraph_xml(text: str) -> bytes:
    return b"<w:p><w:r><w:t>" + text.replace("&", "&amp;").replace("<", "&lt;").encode() + b"</w:t></w:r></w:p>"


def unzip(data: bytes) -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            yield info.filename, archive.read(info)


def rezip(parts: dict[str, bytes], *, level: int = 6) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in parts.items():
            info = zipfile.ZipInfo(name, date_time=_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data, compresslevel=level)
    return buffer.getvalue()


def zip_bomb_docx(size: int, *, lie: bool = False) -> bytes:
    """A Word package whose document.xml inflates to ``size`` bytes of an XML comment.

    With ``lie`` the zip directory (central and local headers) declares 1 KB instead: the bomb
    then hides from a check of declared sizes alone.
    """
    head, tail = b'<?xml version="1.0"?><!--', b"-->"
    raw = _deflate_run(size, prefix=head, suffix=tail, wbits=-zlib.MAX_WBITS)  # zip entries are raw deflate
    declared = 1024 if lie else size + len(head) + len(tail)
    entries = [
        ("[Content_Types].xml", _CONTENT_TYPES, None),
        ("_rels/.rels", _RELS, None),
        ("word/document.xml", b"", (raw, declared)),
    ]
    return _raw_zip(entries)


def _raw_zip(entries: list[tuple[str, bytes, tuple[bytes, int] | None]]) -> bytes:
    """A zip written field by field, so an entry's declared size can be anything (``(deflated, size)``)."""
    out = bytearray()
    central = bytearray()
    for name, data, precompressed in entries:
        if precompressed is None:
            compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
            raw, size, crc = compressor.compress(data) + compressor.flush(), len(data), zlib.crc32(data)
        else:
            raw, size = precompressed
            crc = 0
        encoded = name.encode()
        offset = len(out)
        # Local header and central directory record: version 2.0, no flags, deflated, a fixed date.
        sizes = (crc, len(raw), size, len(encoded))
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0x21, *sizes, 0)
        out += encoded + raw
        record = struct.pack("<4sHHHHHHIIIH", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, *sizes)
        central += record + struct.pack("<HHHHII", 0, 0, 0, 0, 0, offset)  # extra, comment, disk, attributes
        central += encoded
    start = len(out)
    out += central
    out += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), start, 0)
    return bytes(out)


def _billion_laughs() -> bytes:
    """A Word document body whose one entity expands to 10**10 characters, if a parser let it."""
    entities = [b'<!ENTITY e0 "laugh laugh ">']
    for level in range(1, 10):
        entities.append(b'<!ENTITY e%d "%s">' % (level, b"&e%d;" % (level - 1) * 10))
    doctype = b"<!DOCTYPE w:document [" + b"".join(entities) + b"]>"
    body = b'<w:document xmlns:w="' + _W.encode() + b'"><w:body>' + paragraph_xml("x").replace(b"x", b"&e9;")
    return b'<?xml version="1.0"?>' + doctype + body + b"</w:body></w:document>"


# -- seeds ---------------------------------------------------------------------------------------------
_SENTENCES = (
    "Travel must be booked through the portal at least two weeks ahead.",
    "Hotel costs above 150 EUR per night need the approval of a manager.",
    "Laptops are encrypted and must be locked when unattended.",
    "Expense reports are due on the fifth working day of the month.",
    "Café receipts count as meals; tips above 10 % are not refunded.",
    "Remote work is allowed up to three days a week with the team's agreement.",
)


def seed_files() -> dict[str, bytes]:
    """One valid file per format, small enough that a thousand mutants ingest in seconds."""
    lines = list(_SENTENCES)
    pages = [flate(text_content(lines[i : i + 3])) for i in range(0, len(lines), 3)]
    pdf = pdf_file(
        pages,
        filters=b" /Filter /FlateDecode",
        title="Travel and expenses",
        outline=[("Travel", 0), ("Expenses", 1)],
        image=flate(bytes(range(64))),
        image_filter=b" /Filter /FlateDecode",
    )
    html = (
        "<!doctype html><html><head><title>Onboarding guide</title><script>if (a < b) { x(); }</script>"
        "<style>p { color: red }</style></head><body><nav><a href='/'>Home</a></nav><!-- banner -->"
        "<main><h1>Onboarding</h1><p>" + "</p><p>".join(lines[:3]) + "</p><h2>Equipment</h2>"
        "<table><tr><th>Item</th><th>Owner</th></tr><tr><td>Laptop</td><td>IT</td></tr></table>"
        "<ul><li>" + "</li><li>".join(lines[3:]) + "</li></ul></main><footer>© cairn</footer></body></html>"
    ).encode()
    markdown = (
        "---\ntitle: Security handbook\n---\n# Security\n\n" + "\n".join(lines[:3]) + "\n\n## Devices\n\n"
        "```\ncode block # not a heading\n```\n\nSetext heading\n--------------\n\n" + "\n".join(lines[3:]) + "\n"
    ).encode()
    text = ("Roadmap 2026\n\n" + "\n\n".join(lines) + "\n").encode()
    return {
        "seed.pdf": pdf,
        "seed.docx": docx_file(lines),
        "seed.html": html,
        "seed.md": markdown,
        "seed.txt": text,
    }


# -- mutations -----------------------------------------------------------------------------------------
Mutation = Callable[[random.Random, bytes, dict[str, bytes]], bytes]
_MAX_GROWTH = 64 * 1024


def _flip(rng: random.Random, data: bytes, seeds: dict[str, bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        position = rng.randrange(len(out))
        out[position] ^= rng.randint(1, 255)
    return bytes(out)


def _truncate(rng: random.Random, data: bytes, seeds: dict[str, bytes]) -> bytes:
    return data[: rng.randrange(len(data))]


def _splice(rng: random.Random, data: bytes, seeds: dict[str, bytes]) -> bytes:
    other = seeds[rng.choice(sorted(seeds))]
    return data[: rng.randrange(len(data) + 1)] + other[rng.randrange(len(other)) :]


def _insert(rng: random.Random, data: bytes, seeds: dict[str, bytes]) -> bytes:
    position = rng.randrange(len(data) + 1)
    junk = rng.choice(
        (
            rng.randbytes(rng.randint(1, 256)),
            b"\x00" * rng.randint(1, 64),
            b"\xff\xfe\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c\xbc\xed\xa0\x80",  # invalid UTF-8, a UTF-16 surrogate
            b"<div>" * rng.randint(100, 5000),
            b"stream\n" + rng.randbytes(32) + b"\nendstream",
            b"%PDF-1.7\n",
            b"PK\x03\x04",
        )
    )
    return data[:position] + junk + data[position:]


def _delete(rng: random.Random, data: bytes, seeds: dict[str, bytes]) -> bytes:
    start = rng.randrange(len(data))
    return data[:start] + data[start + rng.randint(1, max(1, len(data) // 8)) :]


def _repeat(rng: random.Random, data: bytes, seeds: dict[str, bytes]) -> bytes:
    start = rng.randrange(len(data))
    piece = data[start : start + rng.randint(1, 512)]
    times = min(rng.randint(2, 200), _MAX_GROWTH // max(1, len(piece)))
    return data[:start] + piece * times + data[start:]


def _long_line(rng: random.Random, data: bytes, seeds: dict[str, bytes]) -> bytes:
    position = rng.randrange(len(data) + 1)
    filler = rng.choice((b" ", b"a", b"# ", b"ab ", b"\t#", b"-", b"<!---->", b"&amp;"))
    return data[:position] + filler * (_MAX_GROWTH // len(filler)) + data[position:]


_ZIP_FIELDS = {  # central directory field: (offset in the record, struct format)
    "crc": (16, "<I"),
    "compressed_size": (20, "<I"),
    "size": (24, "<I"),
    "method": (10, "<H"),
    "flags": (8, "<H"),
    "offset": (42, "<I"),
    "name_length": (28, "<H"),
}


def _zip_directory(rng: random.Random, data: bytes, seeds: dict[str, bytes]) -> bytes:
    """Lie in one field of one central directory record (sizes, CRC, method, offset...)."""
    records = [m.start() for m in re.finditer(b"PK\x01\x02", data)]
    if not records:
        return _flip(rng, data, seeds)
    record = rng.choice(records)
    field = rng.choice(sorted(_ZIP_FIELDS))
    offset, fmt = _ZIP_FIELDS[field]
    width = struct.calcsize(fmt)
    if record + offset + width > len(data):
        return data[:record]
    (value,) = struct.unpack_from(fmt, data, record + offset)
    limit = 0xFFFF if width == 2 else 0xFFFFFFFF
    new = rng.choice((0, 1, limit, value // 2, value * 2 + 1, rng.randrange(limit)))
    out = bytearray(data)
    struct.pack_into(fmt, out, record + offset, min(new, limit))
    return bytes(out)


def _zip_entry(rng: random.Random, data: bytes, seeds: dict[str, bytes]) -> bytes:
    """Corrupt, replace or drop one zip entry's content, keeping the archive well formed."""
    try:
        parts = dict(unzip(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error, zlib.error, NotImplementedError):
        return _flip(rng, data, seeds)
    name = rng.choice(sorted(parts))
    choice = rng.randrange(5)
    if choice == 0:
        del parts[name]
    elif choice == 1:
        parts[name] = _flip(rng, parts[name] or b"x", seeds)
    elif choice == 2:
        parts[name] = parts[name][: rng.randrange(len(parts[name]) + 1)]
    elif choice == 3:
        parts[name] = b"<w:p>" * rng.randint(100, 20000)
    else:
        parts["../../" + name] = parts[name]  # a path-traversal entry name next to the real one
    return rezip(parts, level=rng.choice((0, 1, 9)))


def _pdf_numbers(rng: random.Random, data: bytes, seeds: dict[str, bytes]) -> bytes:
    """Lie in PDF numbers: a stream ``/Length``, an xref offset, ``startxref``, ``/Count`` or an object number."""
    spans = [m.span(1) for m in re.finditer(rb"(?:/Length|/Count|startxref\s|/Size)\s*(\d+)", data)]
    spans += [m.span(1) for m in re.finditer(rb"\n(\d{10}) \d{5} n", data)]
    spans += [m.span(1) for m in re.finditer(rb"(\d+) 0 R", data)]
    if not spans:
        return _flip(rng, data, seeds)
    start, end = rng.choice(spans)
    value = int(data[start:end])
    new = rng.choice((0, 1, -1, value + 1, value - 1, value * 1000, 2**31 - 1, 2**63, rng.randrange(len(data) + 1)))
    return data[:start] + str(new).encode() + data[end:]


def _pdf_structure(rng: random.Random, data: bytes, seeds: dict[str, bytes]) -> bytes:
    """Break PDF structure: drop ``endstream``/``endobj``, a page tree pointing at itself, a lying filter."""
    edits = (
        (b"endstream", b""),
        (b"endobj", b""),
        (b"/Kids [", b"/Kids [2 0 R "),
        (b"/FlateDecode", b"/LZWDecode"),
        (b"/FlateDecode", b"[/FlateDecode /FlateDecode]"),
        (b"/Parent 2 0 R", b"/Parent 3 0 R"),
        (b"xref", b"xref\n0 999999999"),
        (b"/Type /Page ", b"/Type /Pages "),
    )
    old, new = rng.choice(edits)
    positions = [m.start() for m in re.finditer(re.escape(old), data)]
    if not positions:
        return _flip(rng, data, seeds)
    at = rng.choice(positions)
    return data[:at] + new + data[at + len(old) :]


COMMON: dict[str, Mutation] = {
    "flip": _flip,
    "truncate": _truncate,
    "splice": _splice,
    "insert": _insert,
    "delete": _delete,
    "repeat": _repeat,
}
BY_FORMAT: dict[str, dict[str, Mutation]] = {
    "pdf": {"pdf_numbers": _pdf_numbers, "pdf_structure": _pdf_structure},
    "docx": {"zip_directory": _zip_directory, "zip_entry": _zip_entry},
    "html": {"long_line": _long_line},
    "md": {"long_line": _long_line},
    "txt": {"long_line": _long_line},
}
_OTHER_NAMES = ("pdf", "docx", "html", "md", "txt", "bin")


@dataclass(frozen=True, slots=True)
class Mutant:
    name: str
    data: bytes
    seed: str
    mutation: str


def mutants(count: int, *, seed: int = 0, seeds: dict[str, bytes] | None = None) -> list[Mutant]:
    """``count`` mutated files, round-robin over the seeds; the same ``seed`` always gives the same files.

    One in ten is also given another format's extension, since a name must never decide how a
    file is parsed; one in five gets a second mutation on top of the first.
    """
    seeds = seeds or seed_files()
    rng = random.Random(seed)
    names = sorted(seeds)
    out = []
    for number in range(count):
        seed_name = names[number % len(names)]
        fmt = seed_name.rsplit(".", 1)[1]
        table = {**COMMON, **BY_FORMAT[fmt]}
        applied = [rng.choice(sorted(table))]
        if rng.random() < 0.2:
            applied.append(rng.choice(sorted(table)))
        data = seeds[seed_name]
        for mutation in applied:
            data = table[mutation](rng, data, seeds) if data else data
        extension = rng.choice(_OTHER_NAMES) if rng.random() < 0.1 else fmt
        label = "+".join(applied)
        out.append(Mutant(f"{number:04d}-{fmt}-{label}.{extension}", data, seed_name, label))
    return out


# -- known bad cases -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BadFile:
    """A hostile file and what ingesting it must give: the status, and a pattern its message must match."""

    name: str
    data: bytes
    status: str  # "error", "skipped" or "added"
    message: str = ""  # regular expression searched in the report's message (or warnings when added)


def known_bad_files(limits: ParseLimits) -> list[BadFile]:
    """Every hostile case the suite has a name for, sized against ``limits`` (keep them small in tests)."""
    over = limits.max_unpacked_bytes + MB
    lines = list(_SENTENCES)
    nested_size = max(over, 64 * MB)
    return [
        BadFile("zip-bomb.docx", zip_bomb_docx(over), "error", r"would expand to .* zip bomb"),
        BadFile("zip-bomb-lying.docx", zip_bomb_docx(over, lie=True), "error", r"past the 1,024 bytes .*zip bomb"),
        BadFile(
            "zip-many-entries.docx",
            docx_parts(
                document_xml(paragraph_xml("many entries")),
                extra={f"word/media/{i}.bin": b"" for i in range(limits.max_zip_entries + 1)},
                level=0,
            ),
            "error",
            r"more than [\d,]+ (?:zip )?entries",
        ),
        BadFile(
            "zip-traversal-entry.docx",
            docx_parts(document_xml(paragraph_xml("traversal entry names are data")), extra={"../../evil.sh": b"x"}),
            "added",
        ),
        BadFile(
            "xml-deep.docx",
            docx_parts(
                document_xml(b"<w:sdt><w:sdtContent>" * 300 + paragraph_xml("deep") + b"</w:sdtContent></w:sdt>" * 300)
            ),
            "error",
            r"(?i)depth",
        ),
        BadFile("billion-laughs.docx", docx_parts(_billion_laughs()), "error", r"(?i)amplification|entit"),
        BadFile(
            "flate-bomb.pdf",
            pdf_file([deflated_spaces(over, prefix=text_content(["bomb"]))], filters=b" /Filter /FlateDecode"),
            "error",
            r"stream inflates past .* decompression bomb",
        ),
        BadFile(
            "flate-bomb-nested.pdf",
            pdf_file(
                [deflated_spaces(nested_size, times=2, prefix=text_content(["bomb"]))],
                filters=b" /Filter [/FlateDecode /FlateDecode]",
            ),
            "error",
            r"nested compressed PDF stream inflates past",
        ),
        BadFile(
            "flate-image-is-not-a-bomb.pdf",
            pdf_file([text_content(lines[:2])], image=deflated_spaces(over), image_filter=b" /Filter /FlateDecode"),
            "added",
        ),
        BadFile("many-pages.pdf", shared_pages_pdf(limits.max_pages + 1), "error", r"pages exceed the [\d,]+-page"),
        BadFile(
            "page-count-lie.pdf",
            pdf_file([text_content(lines[:1])]).replace(b"/Count 1 ", b"/Count 999999999 "),
            "added",
        ),
        BadFile(
            "deep.html",
            b"<html><body>" + b"<div>" * 100_000 + b"deep text" + b"</div>" * 100_000 + b"</body></html>",
            "added",
            r"nested deeper than \d+ levels",
        ),
        BadFile("invalid-utf8.txt", b"Caf\xe9 au lait, na\xefve r\xe9sum\xe9.\n" * 50, "added", "not valid UTF-8"),
        BadFile("nul-bytes.txt", b"text\x00with\x00nul\x00bytes\n" * 4, "skipped", r"binary content"),
        # Lines of 100-300 KB: past what a quadratic pattern survives (the two Markdown ones took a
        # minute each before their patterns were fixed), small enough to keep the suite quick.
        BadFile("huge-line.txt", b"word " * 60_000, "added"),
        BadFile("huge-line-no-spaces.txt", b"x" * 300_000, "added"),
        BadFile("atx-spaces.md", b"# a" + b" " * 100_000 + b"x\n", "added"),
        BadFile("front-matter-title.md", b"---\ntitle: a" + b" " * 100_000 + b"x\n---\n# Body\n", "added"),
        BadFile("comment-run.txt", b"<!---->" * 1100 + b"x", "added"),
        BadFile("unterminated-tags.html", b"<html><body>" + b"<a " * 200_000 + b"</body></html>", "added"),
        BadFile("empty.pdf", b"", "added", r"no extractable text"),
        BadFile("not-a-pdf.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 64, "error", r"unreadable PDF|damaged"),
        BadFile("elf-binary.txt", b"\x7fELF" + bytes(64), "skipped", r"ELF executable"),
    ]


__all__ = [
    "BY_FORMAT",
    "COMMON",
    "BadFile",
    "Mutant",
    "deflated_spaces",
    "document_xml",
    "docx_file",
    "docx_parts",
    "flate",
    "known_bad_files",
    "mutants",
    "paragraph_xml",
    "pdf_file",
    "rezip",
    "seed_files",
    "shared_pages_pdf",
    "text_content",
    "unzip",
]
