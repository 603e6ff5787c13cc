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
from collections.abc import Sequence
from dataclasses import dataclass

from rag.index.tokenize import tokenize
from rag.records import Citation, Hit
from rag.text import sentence_spans

_OPEN = "[\\[［【]"
_CLOSE = "[\\]］】]"
_NUM = r"\d{1,2}"
_ITEM = rf"(?:\^|(?:sources?|src|ref|来源)\s*:?\s*)?{_NUM}(?:\s*[-–—~～]\s*{_NUM})?"
_SEP = r"\s*[,，、;；]\s*"
_MARKER = re.compile(rf"{_OPEN}[ \t]*{_ITEM}(?:{_SEP}{_ITEM})*[ \t]*{_CLOSE}", re.IGNORECASE)
_NUMBER_OR_RANGE = re.compile(rf"({_NUM})(?:\s*[-–—~～]\s*({_NUM}))?")
_MAX_RANGE = 20  # "[1-99]" is a typo or an attack, not 99 citations


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
    """Sentence spans `(start, end)` of an answer (or a passage), trimmed of whitespace.

    >>> t = "Mass is 5 kg.[1] Dr. Smith said so [2]. 质量是五公斤。[3]它很重！"
    >>> [t[a:b] for a, b in split_sentences(t)]
    ['Mass is 5 kg.[1]', 'Dr. Smith said so [2].', '质量是五公斤。[3]', '它很重！']

    `rag.text.sentence_spans` with the rules of answers: markers right after a sentence's
    punctuation belong to that sentence; `；` ends no sentence (a clause would lose the marker at
    the end of its sentence); a period before a lower-case word ("approx. five") ends none.
    """
    return sentence_spans(text, marker=_MARKER, semicolons=False, trust_case=True)


@dataclass(frozen=True)
class CitedSentence:
    """A sentence of an answer and the marker numbers it cites."""

    text: str  # markers stripped, trimmed: what is checked and shown
    cited: tuple[int, ...]  # in order of appearance, without duplicates
    start: int  # answer_text[start:end] is the sentence as written, markers included
    end: int


def sentence_citations(text: str) -> list[CitedSentence]:
    """Each sentence, markers stripped and trimmed, with the numbers it cites and its span.

    >>> [(s.text, s.cited) for s in sentence_citations("Mass is 5 kg [1][2]. Made of iron.[3] 没有引用。")]
    [('Mass is 5 kg.', (1, 2)), ('Made of iron.', (3,)), ('没有引用。', ())]
    >>> [(s.start, s.end) for s in sentence_citations("Mass is 5 kg [1][2]. Made of iron.[3] 没有引用。")]
    [(0, 20), (21, 37), (38, 43)]

    A "sentence" that is only a marker (at the very start of a text) is dropped.
    """
    out: list[CitedSentence] = []
    for a, b in split_sentences(text):
        piece = text[a:b]
        numbers: list[int] = []
        for mk in find_markers(piece):
            numbers.extend(n for n in mk.numbers if n not in numbers)
        clean = strip_markers(piece)
        if clean:
            out.append(CitedSentence(clean, tuple(numbers), a, b))
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
    for sentence in sentence_citations(text):
        for n in sentence.cited:
            claims.setdefault(n, []).append(sentence.text)
    citations = []
    for n in sorted(claims):
        hit = sources[n - 1]
        quote, offset = best_quote(" ".join(claims[n]), hit.chunk.text)
        citations.append(Citation(n=n, chunk_id=hit.chunk.id, source=hit.chunk.source,
                                  pages=hit.chunk.pages, quote=quote, quote_start=offset,
                                  paginated=hit.paginated, page_labels=hit.chunk.page_labels))
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
