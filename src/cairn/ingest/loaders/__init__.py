"""Built-in loaders, one module per format; importing this package registers them all in ``LOADERS``.

Each module imports its parsing library inside ``load`` so that registering loaders (which every
``Registry.create`` triggers) stays cheap.
"""

from __future__ import annotations

from cairn.ingest.loaders.docx import DocxLoader
from cairn.ingest.loaders.html import HtmlLoader
from cairn.ingest.loaders.markdown import MarkdownLoader
from cairn.ingest.loaders.pdf import PdfLoader
from cairn.ingest.loaders.text import TextLoader

__all__ = ["DocxLoader", "HtmlLoader", "MarkdownLoader", "PdfLoader", "TextLoader"]
