"""Build the sample corpus: ``python scripts/build_samples.py OUTDIR``.

Copies ``samples/handbook`` and renders the text sources in ``samples/sources`` to real PDF and DOCX
files. Binary documents are generated rather than committed so that their content stays reviewable
in diffs, and so the corpus exercises the same PDF and Word parsers as users' files do. Output is
byte-for-byte reproducible: creation dates are pinned.

Sources use a small Markdown subset: ``#``/``##``/``###`` headings, paragraphs, ``-`` and ``1.``
list items, and ``|``-separated table rows (the first row is the header).
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
AUTHOR = "Example Corp"
PINNED_DATE = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
# Which generator renders each source; the output takes the source's stem.
GENERATED = {
    "expense_procurement_policy.md": "docx",
    "laptop_vpn_user_manual.md": "pdf",
}
_HEADING = re.compile(r"(#{1,3})\s+(.*)")
_ITEM = re.compile(r"(-|\d+\.)\s+(.*)")
_TABLE_RULE = re.compile(r"\|[\s:|-]+\|?")


@dataclass
class Block:
    kind: str
    text: str = ""
    level: int = 0
    marker: str = ""
    rows: list[list[str]] = field(default_factory=list)


def parse_source(text: str) -> list[Block]:
    """Blocks of the Markdown subset, with wrapped lines of a paragraph or list item joined."""
    blocks: list[Block] = []
    current: Block | None = None
    for raw in text.splitlines():
        line = raw.strip()
        heading, item = _HEADING.fullmatch(line), _ITEM.fullmatch(line)
        if not line:
            current = None
        elif heading:
            blocks.append(Block("heading", heading.group(2), level=len(heading.group(1))))
            current = None
        elif line.startswith("|"):
            if not _TABLE_RULE.fullmatch(line):
                row = [cell.strip() for cell in line.strip("|").split("|")]
                if current is None or current.kind != "table":
                    current = Block("table")
                    blocks.append(current)
                current.rows.append(row)
        elif item:
            current = Block("item", item.group(2), marker=item.group(1))
            blocks.append(current)
        elif current is not None and current.kind in ("paragraph", "item"):
            current.text += " " + line
        else:
            current = Block("paragraph", line)
            blocks.append(current)
    return blocks


def title_of(blocks: list[Block]) -> str:
    return next((b.text for b in blocks if b.kind == "heading" and b.level == 1), AUTHOR)


def render_docx(blocks: list[Block], target: Path) -> None:
    """Title and Heading N styles, real list styles and a grid table: what Word users produce."""
    import docx

    document = docx.Document()
    properties = document.core_properties
    properties.title, properties.author = title_of(blocks), AUTHOR
    properties.created = properties.modified = PINNED_DATE.replace(tzinfo=None)
    for block in blocks:
        if block.kind == "heading":
            document.add_heading(block.text, level=block.level - 1)
        elif block.kind == "paragraph":
            document.add_paragraph(block.text)
        elif block.kind == "item":
            style = "List Bullet" if block.marker == "-" else "List Number"
            document.add_paragraph(block.text, style=style)
        else:
            width = max(len(row) for row in block.rows)
            table = document.add_table(rows=len(block.rows), cols=width)
            table.style = "Table Grid"
            for cells, row in zip(table.rows, block.rows, strict=True):
                for cell, value in zip(cells.cells, row, strict=False):
                    cell.text = value
            for cell in table.rows[0].cells:
                for run in cell.paragraphs[0].runs:
                    run.bold = True
    buffer = io.BytesIO()
    document.save(buffer)
    target.write_bytes(_pin_zip_dates(buffer.getvalue()))


def _pin_zip_dates(data: bytes) -> bytes:
    """Rewrite a zip with every entry dated :data:`PINNED_DATE`; python-docx stamps the current time."""
    pinned = io.BytesIO()
    stamp = PINNED_DATE.timetuple()[:6]
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(pinned, "w") as target:
        for entry in source.infolist():
            copy = zipfile.ZipInfo(entry.filename, date_time=stamp)
            copy.compress_type = entry.compress_type
            copy.external_attr = entry.external_attr
            target.writestr(copy, source.read(entry.filename))
    return pinned.getvalue()


def render_pdf(blocks: list[Block], target: Path) -> None:
    """One chapter (``##``) per page, with PDF bookmarks for ``##`` and ``###`` headings.

    Core fonts only cover Latin-1, so sources are checked up front rather than failing mid-page.
    """
    from fpdf import FPDF

    for block in blocks:
        for text in (block.text, *(cell for row in block.rows for cell in row)):
            try:
                text.encode("latin-1")
            except UnicodeEncodeError as exc:
                raise SystemExit(f"{target.name}: PDF sources must be Latin-1 text: {text[:60]!r}") from exc
    pdf = FPDF(format="A4")
    pdf.set_title(title_of(blocks))
    pdf.set_author(AUTHOR)
    pdf.set_creation_date(PINNED_DATE)
    pdf.set_margins(20, 20, 20)
    pdf.add_page()
    for block in blocks:
        if block.kind == "heading":
            if block.level == 2 and pdf.page_no() > 0 and pdf.get_y() > 40:
                pdf.add_page()
            if block.level > 1:
                pdf.start_section(block.text, level=block.level - 2)
            pdf.set_font("Helvetica", "B", {1: 18, 2: 14, 3: 12}[block.level])
            pdf.multi_cell(0, 9, block.text, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
            continue
        pdf.set_font("Helvetica", "", 11)
        if block.kind == "paragraph":
            pdf.multi_cell(0, 5.5, block.text, new_x="LMARGIN", new_y="NEXT")
        elif block.kind == "item":
            pdf.multi_cell(0, 5.5, f"{block.marker} {block.text}", new_x="LMARGIN", new_y="NEXT")
        else:
            with pdf.table() as table:
                for values in block.rows:
                    row = table.row()
                    for value in values:
                        row.cell(value)
        pdf.ln(2.5)
    pdf.output(str(target))


RENDERERS: dict[str, Callable[[list[Block], Path], None]] = {"docx": render_docx, "pdf": render_pdf}


def build(outdir: Path) -> Iterator[Path]:
    """Write the corpus to ``outdir`` and yield each file written."""
    outdir.mkdir(parents=True, exist_ok=True)
    for source in sorted((SAMPLES / "handbook").iterdir()):
        if source.is_file():
            yield Path(shutil.copyfile(source, outdir / source.name))
    for name, fmt in sorted(GENERATED.items()):
        blocks = parse_source((SAMPLES / "sources" / name).read_text(encoding="utf-8"))
        target = outdir / f"{Path(name).stem}.{fmt}"
        RENDERERS[fmt](blocks, target)
        yield target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("outdir", type=Path, help="directory to write the corpus into (created if missing)")
    args = parser.parse_args(argv)
    for path in build(args.outdir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
