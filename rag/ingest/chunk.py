"""Pure chunking: a Document becomes Chunks whose text is an exact span of `document.text`.

    >>> doc = Document("notes.md", "md", (Page(1, "# Setup\\n\\nInstall it. Then run it."),))
    >>> [(c.text, c.heading_path, c.pages) for c in chunk_document(doc)]
    [('Install it. Then run it.', ('Setup',), (1,))]

Structure first, size second:

1. Sections. In Markdown, HTML and Office documents (their loaders write Markdown headings) an ATX
   heading line (`#` … `######`, not inside a ``` fence) starts a section; `heading_path` is the
   stack of headings above it. A chunk never spans two sections, and the heading line itself is
   left out of the chunk text (it is in `heading_path`).
2. Paragraphs (blank lines; a page break is one) are packed greedily up to `max_tokens`; a
   paragraph that fits in a chunk of its own is never split.
3. A paragraph too long is cut into sentences (`rag.text.sentence_spans`: `. ! ?` + space, but
   not after "e.g.", "Dr.", initials or list numbers; `。！？；．` in CJK text; each line of a
   list-like paragraph). A table row (`rag.ingest.rows.is_row`: one line of 'Header: value | …'
   cells) that fits in a chunk is one sentence, so neither packing nor overlap cuts it; a row
   too long for one is cut between its cells.
4. A sentence too long is cut at whitespace, then after punctuation inside a run without spaces
   (Chinese clauses), and only then at a fixed character count, never inside a Latin word unless
   the word alone is longer than a chunk (base64, minified code).
5. Each chunk after the first in a section repeats the trailing whole sentences of the previous
   chunk, up to `overlap_tokens`.

Every step is a linear scan: about a second per 2 MB even when the file is one long line.

Deliberately skipped: semantic (embedding-based) chunking, table and figure detection, Setext
(underlined) headings, headings in PDF or plain text, exact tokenizer counts (see `estimate_tokens`).
"""
from __future__ import annotations

import bisect
import hashlib
import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from rag.ingest.rows import CELL_SEPARATOR, is_row
from rag.records import Chunk, Document, Page
from rag.text import CJK_CHARS, sentence_spans

HEADING_KINDS = frozenset({"md", "html", "docx", "xlsx", "pptx"})  # kinds whose '# ' lines are headings, not comments

# estimate_tokens: separate C-level scans are several times faster than one loop over matches.
_CJK_RUN = re.compile(f"[{CJK_CHARS}]+")
_LETTER_RUN = re.compile(rf"[^\W\d_{CJK_CHARS}]+")
_DIGIT_RUN = re.compile(r"\d+")
_PUNCT_CHAR = re.compile(r"[^\w\s]|_")

_HEADING_OR_FENCE = re.compile(
    r"^ {0,3}(?:(#{1,6})(?:[ \t]+([^\n]*?))?[ \t]*$|(`{3,}|~{3,})([^\n]*)$)", re.M)
_CLOSING_HASHES = re.compile(r"(?:^|[ \t]+)#+[ \t]*$")
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")
_WORD_SPAN = re.compile(r"\S+")
_PUNCT_RUN = re.compile(r"[!-/:-@\[-`{-~\u2010-\u2027\u3000-\u3004\u3008-\u303f\uff01-\uff0f"
                        r"\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]+")
_LATIN_ALNUM = re.compile(rf"[^\W_{CJK_CHARS}]")

def estimate_tokens(text: str) -> int:
    """A cheap stand-in for a BERT-style word-piece count (all-MiniLM's tokenizer).

    One per CJK character; one per Latin (or other alphabetic) word of up to 6 letters and one
    more per 4 letters beyond (≈1.3 per English word: long words split into word pieces); one per
    run of up to 4 digits and one more per 3 digits beyond; one per punctuation character (the
    BERT tokenizer splits every punctuation mark off on its own).

    >>> estimate_tokens("Chunking 向量检索 in 3.5 s!")
    12

    "Chunking" 2 + 向量检索 4 + "in" 1 + "3" 1 + "." 1 + "5" 1 + "s" 1 + "!" 1 = 12.
    """
    words = _LETTER_RUN.findall(text)
    digits = _DIGIT_RUN.findall(text)
    return (sum(map(len, _CJK_RUN.findall(text)))
            + len(words) + sum((len(w) - 3) // 4 for w in words if len(w) > 6)
            + len(digits) + sum((len(d) - 4) // 3 for d in digits if len(d) > 6)
            + len(_PUNCT_CHAR.findall(text)))


def chunk_id(source: str, start: int, end: int, text: str) -> str:
    """Content hash of where a chunk is and what it says: re-chunking the same file gives the
    same ids, and the same text in two files gets two ids."""
    payload = "\x1f".join((source, str(start), str(end), text)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(payload).hexdigest()[:20]


def chunk_document(doc: Document, *, max_tokens: int = 200, overlap_tokens: int = 32,
                   count_tokens: Callable[[str], int] = estimate_tokens) -> list[Chunk]:
    """Chunks of `doc` in document order; see the module docstring for the rules.

    `count_tokens` should count without special tokens ([CLS], [SEP]): pieces are counted one at
    a time and summed.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError(f"overlap_tokens must be in [0, max_tokens), got {overlap_tokens} "
                         f"with max_tokens={max_tokens}")
    text = doc.text
    page_starts = doc.page_starts
    labels = {p.number: p.label for p in doc.pages} if any(p.label for p in doc.pages) else None
    ocr_pages = {p.number for p in doc.pages if p.ocr}
    chunks: list[Chunk] = []
    for heading_path, body_start, body_end in _sections(text, headings=doc.kind in HEADING_KINDS):
        paragraphs = (_paragraph_pieces(text, s, e, max_tokens, count_tokens)
                      for s, e in _paragraphs(text, body_start, body_end))
        for pieces in _pack(paragraphs, max_tokens, overlap_tokens):
            for start, end in _within_bound(text, pieces, max_tokens, count_tokens):
                span = text[start:end]
                pages = _pages(doc.pages, page_starts, start, end)
                chunks.append(Chunk(
                    id=chunk_id(doc.source, start, end, span), source=doc.source, text=span,
                    start=start, end=end, pages=pages, heading_path=heading_path, ordinal=len(chunks),
                    page_labels=tuple(labels[n] or str(n) for n in pages) if labels else (),
                    ocr_pages=tuple(n for n in pages if n in ocr_pages)))
    return chunks


@dataclass(frozen=True, slots=True)
class _Piece:
    """The unit of packing: a sentence, or a part of one too long for a chunk."""

    start: int
    end: int
    tokens: int
    whole: bool  # a complete sentence: only these are repeated as overlap


def _sections(text: str, *, headings: bool) -> Iterator[tuple[tuple[str, ...], int, int]]:
    """(heading path, body start, body end) per section; the heading lines are in no body."""
    path: tuple[str, ...] = ()
    stack: list[tuple[int, str]] = []
    body_start = 0
    fence: str | None = None  # the opening fence while inside a code block: '# x' is code there
    for m in (_HEADING_OR_FENCE.finditer(text) if headings else ()):
        if m.group(3):
            marker = m.group(3)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence) and not m.group(4).strip():
                fence = None
            continue
        if fence is not None:
            continue
        yield path, body_start, m.start()
        level = len(m.group(1))
        title = _CLOSING_HASHES.sub("", m.group(2) or "").strip()
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        path = tuple(t for _, t in stack if t)
        body_start = m.end()
    yield path, body_start, len(text)


def _paragraphs(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Non-empty stripped spans between blank lines."""
    pos = start
    for m in _BLANK_LINE.finditer(text, start, end):
        span = _strip(text, pos, m.start())
        if span:
            yield span
        pos = m.end()
    span = _strip(text, pos, end)
    if span:
        yield span


def _strip(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def _paragraph_pieces(text: str, start: int, end: int, max_tokens: int,
                      count_tokens: Callable[[str], int]) -> Iterator[_Piece]:
    if is_row(text, start, end):
        yield from _row_pieces(text, start, end, max_tokens, count_tokens)
        return
    for s, e in sentence_spans(text, start, end):
        tokens = count_tokens(text[s:e])
        if tokens <= max_tokens:
            yield _Piece(s, e, tokens, whole=True)
        else:
            yield from _split_long(text, s, e, tokens, max_tokens, count_tokens)


def _row_pieces(text: str, start: int, end: int, max_tokens: int,
                count_tokens: Callable[[str], int]) -> Iterator[_Piece]:
    """A table row as one sentence when it fits (no overlap repeats half a row); else its cells,
    so a row too long for a chunk is cut between cells, never inside one that fits."""
    tokens = count_tokens(text[start:end])
    if tokens <= max_tokens:
        yield _Piece(start, end, tokens, whole=True)
        return
    pos = start
    while pos < end:
        cut = text.find(CELL_SEPARATOR, pos, end)
        stop = end if cut == -1 else cut + len(CELL_SEPARATOR)
        cell_end = end if cut == -1 else cut + len(CELL_SEPARATOR.rstrip())  # the '|' ends its cell
        n = count_tokens(text[pos:cell_end])
        if n <= max_tokens:
            yield _Piece(pos, cell_end, n, whole=False)
        else:
            yield from _split_long(text, pos, cell_end, n, max_tokens, count_tokens)
        pos = stop


def _split_long(text: str, start: int, end: int, tokens: int, max_tokens: int,
                count_tokens: Callable[[str], int]) -> Iterator[_Piece]:
    """Parts of a sentence longer than a chunk: at whitespace, then after punctuation inside a
    word (Chinese clauses), then at a character count. Words are read lazily, so a sentence as
    long as the whole file costs memory for one chunk, not for the file."""
    spans = (m.span() for m in _WORD_SPAN.finditer(text, start, end))
    words: list[tuple[int, int]] = []  # the words read but not yet in a part

    def more(k: int) -> int:
        while len(words) < k:
            span = next(spans, None)
            if span is None:
                break
            words.append(span)
        return min(k, len(words))

    guess = 1
    while more(1):
        if words[0] == (start, end):  # one word, already counted: straight to its punctuation
            atoms = _atoms(text, start, end, max_tokens, count_tokens, level=0, tokens=tokens)
        else:
            k, n = _most_words(text, words, more, guess, max_tokens, count_tokens)
            if k:
                yield _Piece(words[0][0], words[k - 1][1], n, whole=False)
                del words[:k]
                guess = k
                continue
            atoms = _atoms(text, *words[0], max_tokens, count_tokens, level=0)  # one word > a chunk
        for s, e, t in _group(atoms, max_tokens):
            yield _Piece(s, e, t, whole=False)
        del words[:1]


def _most_words(text: str, words: list[tuple[int, int]], more: Callable[[int], int], guess: int,
                max_tokens: int, count_tokens: Callable[[str], int]) -> tuple[int, int]:
    """How many of the next `words` fit in one part, and their count: (0, 0) when not one.

    Counts whole spans, so a counter need not be additive; starting from the last part's word
    count it usually takes two counts of about a chunk each, which keeps a long sentence linear.
    `more(k)` reads up to k words into `words` and says how many there are.
    """
    def size(k: int) -> int:
        return count_tokens(text[words[0][0]:words[k - 1][1]])

    k = more(guess)
    n = size(k)
    if n <= max_tokens:  # gallop up from the guess to a size that does not fit
        lo, lo_n, step = k, n, 1
        while True:
            k = more(lo + step)
            if k == lo:
                return lo, lo_n  # the rest of the sentence fits
            n = size(k)
            if n > max_tokens:
                hi = k
                break
            lo, lo_n, step = k, n, step * 2
    else:  # gallop down to a size that fits (or to none: the first word alone is too long)
        lo, lo_n, hi, step = 0, 0, k, 1
        while hi > 1:
            k = max(1, hi - step)
            n = size(k)
            if n <= max_tokens:
                lo, lo_n = k, n
                break
            hi, step = k, step * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        n = size(mid)
        if n <= max_tokens:
            lo, lo_n = mid, n
        else:
            hi = mid
    return lo, lo_n


def _atoms(text: str, start: int, end: int, max_tokens: int, count_tokens: Callable[[str], int],
           *, level: int, tokens: int | None = None) -> Iterator[tuple[int, int, int]]:
    """(start, end, tokens) parts of one word, each within `max_tokens`."""
    if tokens is None:
        tokens = count_tokens(text[start:end])
    if tokens <= max_tokens:
        yield start, end, tokens
    elif level == 0:  # a word (or a run of CJK) longer than a chunk: try its punctuation
        pos = start
        for m in _PUNCT_RUN.finditer(text, start, end):
            if pos < m.end() < end:
                yield from _atoms(text, pos, m.end(), max_tokens, count_tokens, level=1)
                pos = m.end()
        if pos == start:
            yield from _cut_by_count(text, start, end, tokens, max_tokens, count_tokens)
        else:
            yield from _atoms(text, pos, end, max_tokens, count_tokens, level=1)
    else:
        yield from _cut_by_count(text, start, end, tokens, max_tokens, count_tokens)


def _cut_by_count(text: str, start: int, end: int, tokens: int, max_tokens: int,
                  count_tokens: Callable[[str], int]) -> Iterator[tuple[int, int, int]]:
    """Consecutive parts of at most `max_tokens`, cut at a character count scaled from the
    tokens per character; a cut that would fall inside a Latin word moves back to its start."""
    step = max(1, (end - start) * max_tokens // max(tokens, 1))
    pos = start
    while pos < end:
        cut = min(end, pos + step)
        if cut < end and _LATIN_ALNUM.match(text, cut - 1) and _LATIN_ALNUM.match(text, cut):
            back = cut  # inside a Latin word: cut before it (a 'word' over 40 characters is data)
            while back > pos and cut - back < 40 and _LATIN_ALNUM.match(text, back - 1):
                back -= 1
            if back > pos and not _LATIN_ALNUM.match(text, back - 1):
                cut = back
        while pos + 1 < cut < end and _PUNCT_RUN.match(text, cut):  # keep '。' with its clause
            cut -= 1
        n = count_tokens(text[pos:cut])
        while n > max_tokens and cut - pos > 1:  # denser than the average: shrink this part
            cut = pos + max(1, (cut - pos) * max_tokens // n)
            n = count_tokens(text[pos:cut])
        yield pos, cut, n
        pos = cut


def _group(atoms: Iterable[tuple[int, int, int]], max_tokens: int) -> Iterator[tuple[int, int, int]]:
    """Consecutive atoms joined greedily while their token sum stays within `max_tokens`."""
    first = last = -1
    total = 0
    for start, end, tokens in atoms:
        if first >= 0 and total + tokens > max_tokens:
            yield first, last, total
            first, total = -1, 0
        if first < 0:
            first = start
        last = end
        total += tokens
    if first >= 0:
        yield first, last, total


def _pack(paragraphs: Iterator[Iterator[_Piece]], max_tokens: int,
          overlap_tokens: int) -> Iterator[list[_Piece]]:
    """Greedy packing of one section: whole paragraphs while they fit, else piece by piece."""
    chunk: list[_Piece] = []
    tokens = 0
    fresh = False  # the chunk holds something besides the overlap carried from the last one
    for pieces in paragraphs:
        head: list[_Piece] = []  # read just far enough to know whether the paragraph fits whole
        total = 0
        for piece in pieces:
            head.append(piece)
            total += piece.tokens
            if total > max_tokens:
                break
        if total <= max_tokens:
            groups: Iterable[tuple[list[_Piece], int]] = [(head, total)]
        else:
            groups = (([p], p.tokens) for p in itertools.chain(head, pieces))
        for group, size in groups:
            if fresh and tokens + size > max_tokens:
                yield chunk
                chunk = _overlap(chunk, min(overlap_tokens, max_tokens - size))
                tokens = sum(p.tokens for p in chunk)
            chunk.extend(group)
            tokens += size
            fresh = True
    if fresh:
        yield chunk


def _overlap(previous: list[_Piece], budget: int) -> list[_Piece]:
    """The trailing whole sentences of `previous` worth at most `budget` tokens."""
    taken = 0
    i = len(previous)
    while i > 0 and previous[i - 1].whole and taken + previous[i - 1].tokens <= budget:
        i -= 1
        taken += previous[i].tokens
    return previous[i:]


def _within_bound(text: str, pieces: list[_Piece], max_tokens: int,
                  count_tokens: Callable[[str], int]) -> Iterator[tuple[int, int]]:
    """The chunk's span, halved until the counter agrees it fits: piece counts are summed, and a
    counter that is not additive over whitespace (a real tokenizer) may disagree."""
    start, end = pieces[0].start, pieces[-1].end
    if len(pieces) == 1 or count_tokens(text[start:end]) <= max_tokens:
        yield start, end
        return
    half = len(pieces) // 2
    yield from _within_bound(text, pieces[:half], max_tokens, count_tokens)
    yield from _within_bound(text, pieces[half:], max_tokens, count_tokens)


def _pages(pages: tuple[Page, ...], starts: tuple[int, ...], start: int, end: int) -> tuple[int, ...]:
    """Numbers of the pages whose text overlaps [start, end)."""
    first = max(0, bisect.bisect_right(starts, start) - 1)
    last = bisect.bisect_left(starts, end) - 1
    return tuple(sorted(pages[i].number for i in range(first, last + 1)
                        if pages[i].text and starts[i] < end and starts[i] + len(pages[i].text) > start))
