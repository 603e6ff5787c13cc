"""Running headers and footers (page furniture) found across a document's pages and removed.

A line is furniture when it stands among the first or last lines of most pages, compared with
its digits replaced and its spacing and case ignored, so 'Page 3 of 10', a bare page number and
'VerDate Sep 11 2014 … Jkt 235001 PO 00000 Frm 00003' count as the same line on every page:

    >>> pages = [f"Annual Report 2024\\n{body}\\nPage {n} of 3" for n, body in enumerate(["Sales", "Costs", "Plan"], 1)]
    >>> strip_furniture(pages)
    ['Sales', 'Costs', 'Plan']

Chunks then carry no header text between two halves of a sentence, and the title is never a
running header. Only the edges of a page are searched, so a line that repeats in the body (a
recurring sentence, a table header) stays. Deliberately skipped: documents of one or two pages
(too few to tell furniture from content), headers that differ on every page (a chapter title
that changes) and furniture drawn in the middle of the page (watermarks).
"""
from __future__ import annotations

import re
from collections import Counter

EDGE_LINES = 4  # a header or footer is a line or two; four covers a journal block (series, publisher, DOI)
MIN_PAGES = 3  # with one or two pages, a repeated line is as likely to be content
SHORT_LINE = 30  # characters: inside the edge, only short lines (page numbers, labels) are furniture
MIN_SHARE = 0.5  # of pages: recto/verso layouts put one header on every other page

_DIGITS = re.compile(r"\d+")


def line_key(line: str) -> str:
    """What a line is compared by: digits as '#', whitespace dropped, case folded.

    >>> line_key("Page 3 of 10") == line_key("page 12 of 10"), line_key("  - 7 -  ")
    (True, '-#-')
    """
    return "".join(_DIGITS.sub("#", line).split()).casefold()


def _edges(lines: list[str], known: set[str]) -> list[int]:
    """Indices of the first and last non-empty lines of a page, `EDGE_LINES` of them or a quarter
    of the page when it is short, not counting lines already `known` as furniture (so a page
    number under a four-line header is still at the edge)."""
    filled = [i for i, line in enumerate(lines) if line.strip()]
    depth = min(EDGE_LINES, max(1, len(filled) // 4))
    edges: set[int] = set()
    for order in (filled, filled[::-1]):
        fresh = 0
        for i in order:
            if fresh == depth:
                break
            edges.add(i)
            fresh += line_key(lines[i]) not in known
    return sorted(edges)


def furniture_keys(pages: list[str]) -> set[str]:
    """The keys of lines that stand at the top or bottom of at least half the pages (and of
    three or more); none for a document of fewer than three pages. Then short lines (a page
    number, 'Chapter 2') just inside what was found are looked for the same way."""
    if len(pages) < MIN_PAGES:
        return set()
    least = max(MIN_PAGES, MIN_SHARE * len(pages))
    split = [text.split("\n") for text in pages]
    keys: set[str] = set()
    for _ in range(3):  # each round looks just inside the last; two is the most real layouts need
        counts: Counter[str] = Counter()
        for lines in split:
            edge = (lines[i] for i in _edges(lines, keys))
            counts.update({line_key(line) for line in edge if not keys or len(line.strip()) <= SHORT_LINE})
        found = {key for key, n in counts.items() if n >= least and key}
        if found <= keys:
            break
        keys |= found
    return keys


def strip_furniture(pages: list[str]) -> list[str]:
    """Each page's text without its running header and footer lines (see the module docstring);
    the texts as they are when there is no furniture."""
    keys = furniture_keys(pages)
    if not keys:
        return pages
    out = []
    for text in pages:
        lines = text.split("\n")
        drop = {i for i in _edges(lines, keys) if line_key(lines[i]) in keys}
        out.append("\n".join(line for i, line in enumerate(lines) if i not in drop).strip() if drop else text)
    return out
