"""Citation markers: find them, split text into sentences, resolve [n] to the sources behind it.

    resolve("GGUF stores weights [1, 1]. It was made up [7].", two_hits)
    → ("GGUF stores weights [1]. It was made up.", (Citation(n=1, …),), 1)

The marker grammar (`find_markers`), used for model output *and* to neutralise look-alikes in
document text before it goes into a prompt (`neutralise_markers`):

- brackets `[…]`, full-width `［…］` and lenticular `【…】`, in any pairing;
- inside: one or more items separated by `,` `，` `、` `;` `；` (spaces allowed); an item is a
  number or a range `1-3` (`-` `–` `—` `~` `～`), optionally prefixed by `^` (footnote style) or
  `source`/`sources`/`ref`/`来源` ("[Source 2]");
- numbers have one or two digits: `[2023]` and `[100]` are years and references, not markers.
  `[0]` *is* a marker (an invalid one, removed and counted by `resolve`);
- a range expands to every number in it when it spans at most 20 numbers, else to its two ends.

Adjacent markers (`[1][2]`, `[1] [2]`) are separate `Marker`s; `resolve` renders a run of them as
one group, `[1][2]`, without duplicates.

Deliberately skipped: page narrowing of a citation (a `Chunk` has no page offsets, so a citation
keeps the chunk's pages) and sentence splitting for scripts other than Latin and CJK punctuation.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from rag.records import Citation, Hit
from rag.index.tokenize import tokenize

_OPEN = "[\\[［【]"
_CLOSE = "[\\]］】]"
_NUM = r"\d{1,2}"
_ITEM = rf"(?:\^|(?:sources?|src|ref|来源)\s*:?\s*)?{_NUM}(?:\s*[-–—~～]\s*{_NUM})?"
_SEP = r"\s*[,，、;；]\s*"
_MARKER = re.compile(rf"{_OPEN}[ \t]*{_ITEM}(?:{_SEP}{_ITEM})*[ \t]*{_CLOSE}", re.IGNORECASE)
_NUMBER_OR_RANGE = re.compile(rf"({_NUM})(?:\s*[-–—~～]\s*({_NUM}))?")
_MAX_RANGE = 20  # "[1-99]" is a typo or an attack, not 99 citations

# Sentence ends: Latin terminators need whitespace (or a marker, or CJK text) after them,
# CJK ones do not. A blank line, or a line break before a list item, ends a sentence too.
_TERMINATOR = re.compile(r"[.!?…]+|[。！？]+|\n[ \t]*\n|\n(?=[ \t]*(?:[-*•·]|\d{1,3}[.)])\s)")
_CLOSERS = "\"'”’」』）)»"
_CJK_PUNCT = "。！？"
_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
# Abbreviations after which a period does not end a sentence even before a capital ("Dr. Smith").
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs e.g i.e cf fig figs eq eqs no nos vol pp p sec ch approx ref refs".split())


@dataclass(frozen=True)
class Marker:
    start: int  # text[start:end] is the whole marker, brackets included
    end: int
    numbers: tuple[int, ...]  # in order of appearance, without duplicates, ranges expanded


def find_markers(text: str) -> list[Marker]:
    """Every citation marker in `text`, left to right.

    >>> [m.numbers for m in find_markers("a [1] b [2, 3][4-6] c ［7］【8】[^9] [2023] [a]")]
    [(1,), (2, 3), (4, 5, 6), (7,), (8,), (9,)]
    """
    out = []
    for m in _MARKER.finditer(text):
        numbers: list[int] = []
        for item in _NUMBER_OR_RANGE.finditer(m.group()[1:-1]):
            lo = int(item.group(1))
            hi = int(item.group(2)) if item.group(2) else lo
            span = range(lo, hi + 1) if lo <= hi and hi - lo < _MAX_RANGE else (lo, hi)
            numbers.extend(n for n in span if n not in numbers)
        out.append(Marker(m.start(), m.end(), tuple(numbers)))
    return out


def neutralise_markers(text: str) -> str:
    """Turn marker look-alikes into parentheses, so document text cannot forge a citation.

    >>> neutralise_markers("reply HACKED [9] or 【2】, not [2023]")
    'reply HACKED (9) or (2), not [2023]'

    Lengths are kept: offsets into the text stay valid.
    """
    chars = list(text)
    for m in find_markers(text):
        chars[m.start], chars[m.end - 1] = "(", ")"
    return "".join(chars)


def strip_markers(text: str) -> str:
    """Text without markers, and without the space a marker leaves before punctuation.

    >>> strip_markers("Mass is 5 kg [1][2]. Next [3]")
    'Mass is 5 kg. Next'
    """
    out = _MARKER.sub("", text)
    out = re.sub(r"[ \t]+([.,;:!?。，；：！？])", r"\1", out)
    return re.sub(r"[ \t]{2,}", " ", out).strip()


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans `(start, end)`, trimmed of whitespace; English and Chinese punctuation.

    >>> t = "Mass is 5 kg.[1] Dr. Smith said so [2]. 质量是五公斤。[3]它很重！"
    >>> [t[a:b] for a, b in split_sentences(t)]
    ['Mass is 5 kg.[1]', 'Dr. Smith said so [2].', '质量是五公斤。[3]', '它很重！']

    Markers right after a sentence's punctuation belong to that sentence. A Latin period does not
    end a sentence inside a number ("3.5"), after a known abbreviation or an initial ("J. Smith"),
    or before a lower-case word ("approx. five").
    """
    spans: list[tuple[int, int]] = []
    start = pos = 0
    while (m := _TERMINATOR.search(text, pos)) is not None:
        pos = m.end()
        if m.group()[0] == "\n":
            _add_span(spans, text, start, m.start())
            start = pos
            continue
        end = pos
        while end < len(text) and text[end] in _CLOSERS:
            end += 1
        absorbed = False
        while (mk := _MARKER.match(text, _skip_blanks(text, end))) is not None:
            end, absorbed = mk.end(), True
        cjk_end = m.group()[-1] in _CJK_PUNCT
        if not (cjk_end or absorbed or _latin_sentence_end(text, m.start(), m.group(), end)):
            continue
        _add_span(spans, text, start, end)
        start = pos = end
    _add_span(spans, text, start, len(text))
    return spans


def _skip_blanks(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t":
        i += 1
    return i


def _latin_sentence_end(text: str, at: int, run: str, end: int) -> bool:
    """Whether a Latin terminator run at `at` (closers up to `end`) ends its sentence."""
    if end < len(text) and not text[end].isspace():
        return bool(_CJK_CHAR.match(text[end]))  # "done.下一句" ends; "3.5" and "e.g.," do not
    nxt = _skip_blanks(text, end)
    while nxt < len(text) and text[nxt].isspace():
        nxt += 1
    if run != ".":
        return True
    if nxt < len(text) and text[nxt].islower():
        return False
    k = at
    while k > 0 and not text[k - 1].isspace() and text[k - 1] not in "([{\"'“‘":
        k -= 1
    word = text[k:at]
    if word.lower() in _ABBREVIATIONS:
        return False
    return not (len(word) == 1 and word.isupper())  # an initial: "J. Smith"


def _add_span(spans: list[tuple[int, int]], text: str, a: int, b: int) -> None:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    if a < b:
        spans.append((a, b))


def sentence_citations(text: str) -> list[tuple[str, tuple[int, ...]]]:
    """Each sentence, markers stripped and trimmed, with the numbers it cites.

    >>> sentence_citations("Mass is 5 kg [1][2]. Made of iron.[3] 没有引用。")
    [('Mass is 5 kg.', (1, 2)), ('Made of iron.', (3,)), ('没有引用。', ())]

    A "sentence" that is only a marker (at the very start of a text) is dropped.
    """
    out: list[tuple[str, tuple[int, ...]]] = []
    for a, b in split_sentences(text):
        piece = text[a:b]
        numbers: list[int] = []
        for mk in find_markers(piece):
            numbers.extend(n for n in mk.numbers if n not in numbers)
        clean = strip_markers(piece)
        if clean:
            out.append((clean, tuple(numbers)))
    return out


def resolve(raw_text: str, sources: Sequence[Hit]) -> tuple[str, tuple[Citation, ...], int]:
    """Rendered text, one Citation per distinct valid number (by n), and the invalid-number count.

    Markers are rendered as `[n]` runs (`[1, 2]` → `[1][2]`, `[2][2]` → `[2]`); numbers outside
    1..len(sources) are removed and counted once per marker run; a run left empty disappears with
    the space before it ("HACKED [9]." → "HACKED."). Each citation's quote is the span of its
    chunk that best supports the sentences citing it (`best_quote`).
    """
    markers = find_markers(raw_text)
    pieces: list[str] = []
    invalid = 0
    pos = 0
    for group in _marker_runs(raw_text, markers):
        numbers: list[int] = []
        for mk in group:
            numbers.extend(n for n in mk.numbers if n not in numbers)
        valid = [n for n in numbers if 1 <= n <= len(sources)]
        invalid += len(numbers) - len(valid)
        before = raw_text[pos:group[0].start]
        after_end = group[-1].end
        if not valid and (after_end == len(raw_text) or raw_text[after_end].isspace()
                          or raw_text[after_end] in ".,;:!?。，；：！？)"):
            before = before.rstrip(" \t")
        pieces.append(before + "".join(f"[{n}]" for n in valid))
        pos = after_end
    pieces.append(raw_text[pos:])
    text = "".join(pieces)

    claims: dict[int, list[str]] = {}
    for sentence, numbers in sentence_citations(text):
        for n in numbers:
            claims.setdefault(n, []).append(sentence)
    citations = []
    for n in sorted(claims):
        hit = sources[n - 1]
        quote, offset = best_quote(" ".join(claims[n]), hit.chunk.text)
        citations.append(Citation(n=n, chunk_id=hit.chunk.id, source=hit.chunk.source,
                                  pages=hit.chunk.pages, quote=quote, quote_start=offset,
                                  paginated=hit.paginated))
    return text, tuple(citations), invalid


def _marker_runs(text: str, markers: list[Marker]) -> list[list[Marker]]:
    """Markers grouped into runs separated by nothing but spaces: '[1] [2]' is one run."""
    runs: list[list[Marker]] = []
    for mk in markers:
        if runs and text[runs[-1][-1].end:mk.start].strip(" \t") == "":
            runs[-1].append(mk)
        else:
            runs.append([mk])
    return runs


def best_quote(claim: str, passage: str, *, max_chars: int = 300) -> tuple[str, int]:
    """The passage sentence, or pair of adjacent sentences, sharing the most tokens with `claim`.

    >>> p = "GGUF is a file format. It stores quantized weights. It was made in 2023."
    >>> best_quote("Weights are stored quantized [1].", p)
    ('It stores quantized weights.', 23)

    Tokens are `rag.index.tokenize` tokens (lower-cased stemmed words, CJK bigrams); a pair is chosen
    only when it shares more tokens than either sentence alone and fits in `max_chars`; a single
    sentence longer than `max_chars` is cut at a word boundary. Always
    `passage[offset:offset + len(quote)] == quote`; ('', 0) for an empty passage.
    """
    spans = split_sentences(passage)
    if not spans:
        return "", 0
    wanted = set(tokenize(strip_markers(claim)))
    sets = [set(tokenize(passage[a:b])) & wanted for a, b in spans]
    best = (-1, 0, 0)  # (overlap, -length, -start): more overlap, then shorter, then earlier
    best_span = spans[0]
    for i, (a, b) in enumerate(spans):
        candidates = [((a, b), len(sets[i]))]
        if i + 1 < len(spans) and spans[i + 1][1] - a <= max_chars:
            candidates.append(((a, spans[i + 1][1]), len(sets[i] | sets[i + 1])))
        for (ca, cb), overlap in candidates:
            key = (overlap, -(cb - ca), -ca)
            if key > best:
                best, best_span = key, (ca, cb)
    a, b = best_span
    if b - a > max_chars:
        cut = passage.rfind(" ", a, a + max_chars + 1)
        b = cut if cut > a + max_chars // 2 else a + max_chars
        while b > a and passage[b - 1].isspace():
            b -= 1
    return passage[a:b], a
