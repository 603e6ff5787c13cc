"""HTML: bytes → a one-page `Document` of the page's visible text (stdlib `html.parser`).

Headings become '#' lines for the chunker, list items '- item', table cells 'a | b'; scripts,
styles and the <head> are left out; the title is <title>, else the first <h1>. The charset is the
one `rag.ingest.decode.decode_text` finds, a <meta charset> counting as a declaration.

Deliberately skipped: pages that only JavaScript renders (reported: save the rendered page),
CSS-hidden text (kept: no stylesheet is applied), links and images (their text only).
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

from rag.errors import LoadError
from rag.ingest.decode import TITLE_MAX_CHARS, check_replacement_chars, decode_text, first_line, normalize_text
from rag.records import Document, Page

_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_:.\-]+)""", re.IGNORECASE)
_HIDDEN = frozenset({"script", "style", "noscript", "template", "svg", "iframe", "object", "canvas"})
_HEAD_ONLY = frozenset({"title", "meta", "link", "style", "script", "base", "noscript", "template"})
_HEADINGS = {f"h{i}": i for i in range(1, 7)}
_SPACES = re.compile(r"\s+")
_LINE_BREAKS = frozenset({"br", "tr", "dt", "dd", "option"})
_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "body", "caption", "center", "details", "dialog",
    "dir", "div", "dl", "fieldset", "figcaption", "figure", "footer", "form", "header", "hgroup",
    "hr", "html", "legend", "main", "menu", "nav", "ol", "p", "section", "summary", "table",
    "tbody", "tfoot", "thead", "ul",
})


class _VisibleText(HTMLParser):
    """Collects visible text as blocks: headings become '## Title' lines, list items '- item',
    table cells 'a | b'; whitespace collapses everywhere but inside <pre>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.lines: list[str] = []  # finished lines of the current block
        self.words: list[str] = []  # fragments of the current line
        self.prefix = ""  # '- ' while inside a list item that has not shown text yet
        self.hidden = 0  # depth inside script/style/svg/…
        self.in_head = self.in_title = False
        self.title: list[str] = []
        self.heading = 0
        self.first_h1 = ""
        self.pre = 0
        self.pre_text: list[str] = []

    def _end_line(self) -> None:
        line = _SPACES.sub(" ", "".join(self.words)).strip()
        self.words = []
        if line:
            self.lines.append(self.prefix + line)
            self.prefix = ""

    def _end_block(self) -> None:
        self._end_line()
        if self.lines:
            self.blocks.append("\n".join(self.lines))
            self.lines = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        if self.hidden:
            return
        if tag == "head":
            self.in_head = True
        elif tag == "body" or (self.in_head and tag not in _HEAD_ONLY):
            self.in_head = False  # </head> is optional: any body tag ends the head
        if tag == "title":
            self.in_title = True
        if self.in_head:
            return
        if tag in _HEADINGS:
            self._end_block()
            self.heading = _HEADINGS[tag]
        elif tag == "pre":
            if not self.pre:
                self._end_block()
            self.pre += 1
        elif tag == "br" and self.pre:
            self.pre_text.append("\n")
        elif tag == "li":
            self._end_line()
            self.prefix = "- "
        elif tag in ("td", "th"):
            if "".join(self.words).strip():
                self.words.append(" | ")
        elif tag in _LINE_BREAKS:
            self._end_line()
        elif tag in _BLOCKS:
            self._end_block()

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN and self.hidden:
            self.hidden -= 1
            return
        if self.hidden:
            return
        if tag == "title":
            self.in_title = False
        elif tag == "head":
            self.in_head = False
        elif tag in _HEADINGS and self.heading:
            self._end_line()
            text = " ".join(self.lines)
            self.lines = []
            if text:
                self.blocks.append("#" * self.heading + " " + text)
                if self.heading == 1 and not self.first_h1:
                    self.first_h1 = text
            self.heading = 0
        elif tag == "pre" and self.pre:
            self.pre -= 1
            if not self.pre:
                text = "".join(self.pre_text).strip("\n")
                self.pre_text = []
                if text.strip():
                    self.blocks.append(text)
        elif tag == "li":
            self._end_line()
            self.prefix = ""
        elif tag in _LINE_BREAKS and tag != "br":
            self._end_line()
        elif tag in _BLOCKS:
            self._end_block()

    def handle_data(self, data: str) -> None:
        if self.hidden:
            return
        if self.in_title:
            self.title.append(data)
        elif self.in_head:
            return
        elif self.pre:
            self.pre_text.append(data)
        else:
            self.words.append(data)

    def result(self) -> tuple[str, str]:
        """(text, title) once the whole document has been fed."""
        self._end_block()
        return "\n\n".join(self.blocks), " ".join("".join(self.title).split())


def html_to_text(html: str) -> tuple[str, str]:
    """Visible text and <title> of an HTML page.

    >>> html_to_text('<title>T</title><h2>Intro</h2><p>a  <b>b</b></p><script>x</script>')
    ('## Intro\\n\\na b', 'T')
    """
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    text, title = parser.result()
    return text, title or parser.first_h1


def parse_html(source: str, data: bytes) -> Document:
    """HTML → one-page Document of its visible text, title from <title> or the first <h1>."""
    match = _META_CHARSET.search(data[:4096])
    declared = match.group(1).decode("ascii") if match else None
    html = normalize_text(decode_text(source, data, declared=declared))
    check_replacement_chars(source, html)
    text, title = html_to_text(html)
    if not text.strip():
        raise LoadError(source, "no visible text (only markup or scripts)",
                        "if a script builds the page, save the rendered page (e.g. print to PDF) "
                        "and ingest that")
    return Document(source=source, kind="html", pages=(Page(number=1, text=text),),
                    title=(title or first_line(text).lstrip("# "))[:TITLE_MAX_CHARS])
