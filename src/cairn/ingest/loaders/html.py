"""HTML: the readable main text of a page, with its h1–h6 as headings.

Pages carry navigation, scripts and cookie banners that would pollute retrieval, so the loader
keeps ``<main>`` (or a lone ``<article>``) when the page marks one, and drops chrome everywhere.
Deep nesting is the one input that makes HTML parsing slow: the tree builder scans its stack of
open elements on every tag, so 200,000 nested ``<div>`` take minutes. Like browsers (Chromium caps
the tree at 512 levels), the loader drops tags nested deeper than the ``max_depth`` parse limit
(:data:`MAX_DEPTH` by default) before parsing, keeping their text. The tree is then walked with an
explicit loop over sibling/parent links, not recursion, so no input can exhaust the stack.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from cairn.ingest.base import LOADERS
from cairn.ingest.limits import DEFAULT_LIMITS, current_limits
from cairn.ingest.loaders._common import title_from
from cairn.ingest.sniff import decode_text, normalize_text
from cairn.types import Heading, ParsedDocument

if TYPE_CHECKING:
    from selectolax.lexbor import LexborHTMLParser, LexborNode

_SKIP = frozenset(
    {"script", "style", "noscript", "template", "svg", "math", "nav", "aside", "form", "iframe", "object"}
    | {"canvas", "button", "select", "textarea", "dialog", "head", "footer"}
)
_CONTENT = frozenset({"main", "article"})
_PARAGRAPH = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol", "dl", "section"}
    | {"article", "main", "figure", "hr", "address", "details", "header", "fieldset"}
)
_LINE = frozenset({"div", "li", "tr", "dt", "dd", "caption", "figcaption", "summary", "legend", "br"})
_HEADING = {f"h{n}": n for n in range(1, 7)}
_WHITESPACE = re.compile(r"\s+")
MAX_DEPTH = DEFAULT_LIMITS.max_depth
# ``[^<>]`` rather than ``[^>]``: an unterminated tag must not make every later match rescan the text.
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)[^<>]*?(/?)>")
# Elements whose content is raw text: a ``<`` inside a script is a comparison, not a tag.
_RAW_TEXT_END = {name: re.compile(rf"</{name}\s*>", re.IGNORECASE) for name in ("script", "style", "textarea")}
# Tags that never nest: void elements and those whose end tag is implied by the next sibling.
_FLAT = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
    | {"p", "li", "dt", "dd", "tr", "td", "th", "option", "optgroup", "thead", "tbody", "tfoot", "colgroup"}
    | {"html", "head", "body", "rb", "rt", "rp", "param"}
)


class HtmlLoader:
    name = "html"

    def load(self, data: bytes, *, filename: str) -> ParsedDocument:
        from selectolax.lexbor import LexborHTMLParser

        max_depth = current_limits().max_depth
        markup, warnings = decode_text(data)
        markup, flattened = flatten(markup, max_depth)
        if flattened:
            warnings.append(f"markup nested deeper than {max_depth} levels; {flattened} tags ignored")
        tree = LexborHTMLParser(markup)
        root = _content_root(tree)
        writer = _Writer()
        if root is not None:
            writer.walk(root)
        text = writer.text()
        title_node = tree.css_first("head > title") or tree.css_first("title")
        page_title = title_node.text(deep=True) if title_node is not None else None
        first_h1 = next((h.title for h in writer.headings if h.level == 1), None)
        return ParsedDocument(
            text=text,
            title=title_from(page_title, first_h1, text=text, filename=filename),
            mime="text/html",
            headings=tuple(writer.headings),
            warnings=tuple(f"{filename}: {w}" for w in warnings),
        )


def flatten(markup: str, max_depth: int = MAX_DEPTH) -> tuple[str, int]:
    """Drop start and end tags nested deeper than ``max_depth``; returns the markup and the count dropped.

    Depth is estimated from the tags alone, which is enough to bound the parser's work: text and
    shallow structure are never touched, and well-formed pages come back unchanged.
    """
    if markup.count("<") <= max_depth:
        return markup, 0
    depth = 0
    dropped: list[tuple[int, int]] = []
    position = 0
    while (tag := _TAG.search(markup, position)) is not None:
        position = tag.end()
        name, closing = tag.group(2).lower(), tag.group(1) == "/"
        if name in _RAW_TEXT_END and not closing:
            raw_end = _RAW_TEXT_END[name].search(markup, position)
            position = raw_end.start() if raw_end else len(markup)
        if name in _FLAT or tag.group(3):
            continue
        if not closing:
            depth += 1
        if depth > max_depth:
            dropped.append(tag.span())
        if closing:
            depth = max(depth - 1, 0)
    if not dropped:
        return markup, 0
    kept: list[str] = []
    cursor = 0
    for start, end in dropped:
        kept.append(markup[cursor:start])
        cursor = end
    kept.append(markup[cursor:])
    return "".join(kept), len(dropped)


def _content_root(tree: LexborHTMLParser) -> LexborNode | None:
    main = tree.css_first("main") or tree.css_first("[role=main]")
    if main is not None:
        return main
    articles = tree.css("article")
    if len(articles) == 1:
        return articles[0]
    return tree.body or tree.root


class _Writer:
    """Turns a DOM walk into text: collapses inline whitespace, turns blocks into line breaks."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.headings: list[Heading] = []
        self._break = 0
        self._space = False
        self._separator = ""
        self._pre = 0
        self._content = 0
        self._heading: tuple[int, int | None] | None = None
        self._rows: list[int] = []

    def text(self) -> str:
        return "".join(self.parts)

    def walk(self, root: LexborNode) -> None:
        node: LexborNode | None = root
        root_id = root.mem_id
        while node is not None:
            child = node.first_child if self._enter(node) else None
            if child is not None:
                node = child
                continue
            while node is not None:
                self._exit(node)
                if node.mem_id == root_id:
                    node = None
                    break
                sibling = node.next
                if sibling is not None:
                    node = sibling
                    break
                node = node.parent

    def _enter(self, node: LexborNode) -> bool:
        tag = node.tag or ""
        if tag == "-text":
            self._write(node.text_content or "")
            return False
        if tag.startswith("-") or not self._visible(node, tag):
            return False
        if tag in _CONTENT:
            self._content += 1
        if tag == "pre":
            self._pre += 1
        if tag in _PARAGRAPH:
            self._break = 2
        elif tag in _LINE:
            self._break = max(self._break, 1)
        if tag in _HEADING and self._heading is None:
            self._heading = (_HEADING[tag], None)
        if tag == "tr":
            self._rows.append(0)
        elif tag in ("td", "th") and self._rows:
            if self._rows[-1]:
                self._separator = " | "
            self._rows[-1] += 1
        return True

    def _visible(self, node: LexborNode, tag: str) -> bool:
        if tag in _SKIP or (tag == "header" and not self._content):
            return False
        attrs = node.attributes
        return "hidden" not in attrs and attrs.get("aria-hidden") != "true"

    def _exit(self, node: LexborNode) -> None:
        tag = node.tag or ""
        if tag.startswith("-") or not self._visible(node, tag):
            return
        if tag in _CONTENT:
            self._content -= 1
        if tag == "pre":
            self._pre -= 1
        if tag == "tr" and self._rows:
            self._rows.pop()
        if tag in _HEADING and self._heading is not None and self._heading[0] == _HEADING[tag]:
            level, start = self._heading
            self._heading = None
            if start is not None:
                title = self._since(start)
                if title:
                    self.headings.append(Heading(level, title, start))
        if tag in _PARAGRAPH:
            self._break = 2
        elif tag in _LINE:
            self._break = max(self._break, 1)

    def _write(self, raw: str) -> None:
        if self._pre:
            chunk = normalize_text(raw)
        else:
            chunk = _WHITESPACE.sub(" ", raw)
            if chunk.startswith(" "):
                self._space = True
            chunk = chunk.strip(" ")
        if not chunk:
            return
        self._flush()
        if self._heading is not None and self._heading[1] is None:
            self._heading = (self._heading[0], self.length)
        self.parts.append(chunk)
        self.length += len(chunk)
        self._space = not self._pre and raw[-1:].isspace()

    def _flush(self) -> None:
        if self.length:
            if self._break:
                self._emit("\n" * self._break)
            elif self._separator:
                self._emit(self._separator)
            elif self._space and not self.parts[-1][-1:].isspace():
                self._emit(" ")
        self._break, self._space, self._separator = 0, False, ""

    def _emit(self, piece: str) -> None:
        self.parts.append(piece)
        self.length += len(piece)

    def _since(self, start: int) -> str:
        collected: list[str] = []
        size = self.length
        for part in reversed(self.parts):
            if size <= start:
                break
            collected.append(part)
            size -= len(part)
        joined = "".join(reversed(collected))[start - size :]
        return " ".join(joined.split())


@LOADERS.register("html")
def _create(location: str) -> HtmlLoader:
    return HtmlLoader()
