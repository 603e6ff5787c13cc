"""Answers without an LLM: the sentences of the retrieved chunks that best match the question.

    >>> extractive_answer("How much memory does a 7B model need?", hits)        # doctest: +SKIP
    'A 7B model quantized to Q4_K_M needs about 4.8 GB of memory.[2]'

Every sentence of every hit is a candidate; hit i is cited as [i + 1], the numbering
`rag.answer.cite.resolve` expects. A candidate's score is

    coverage + 0.15 / rank  (+ 0.5 · cosine(question, sentence) when an embedder is given)

where coverage is the idf-weighted share of the question's terms (`rag.index.tokenize` tokens: stemmed
words, CJK bigrams) that the sentence contains, idf taken over the candidate sentences as in BM25.
The best sentence is kept, then up to `max_sentences - 1` more that bring query terms not covered
yet and score at least 60 % of the best. Sentences of one hit keep their order in the document;
hits are ordered by their best selected sentence.

A chosen table row (`rag.ingest.rows`: "Header: value | Header: value", one row a sentence) longer
than `ROW_CHARS` is cut to the cells that hold a question term, after its first cell (what the row
is about), with "⋯" where cells were left out between them (not "…", which would end a sentence for
the citation checks): a one-number question about a 30-column row gets "model: mistral 7b | ⋯ |
memory_gb: 4.4", not 600 characters. The cells are the document's own.

Deliberately skipped: term-frequency saturation and length normalisation (a sentence is short
enough that containing a term is what counts), and rewriting or shortening sentences: the answer
is document text, verbatim but for whitespace, the document's own footnote markers and the cells
left out of a wide row.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rag.answer.cite import split_sentences, strip_markers
from rag.index.tokenize import tokenize
from rag.ingest.rows import CELL_SEPARATOR, is_row
from rag.records import Hit
from rag.text import CJK_CHAR

RANK_WEIGHT = 0.15  # enough to break near-ties in favour of the better-ranked chunk, no more
EMBED_WEIGHT = 0.5  # cosine of MiniLM-like models sits in 0.2..0.8: half a term's coverage
KEEP_SHARE = 0.6  # an extra sentence must score at least this share of the best one
GAP = "⋯"  # cells left out of a wide row
ROW_CHARS = 160  # a row up to about two lines of the chat column is shown whole
_CJK_END = "。！？"


@dataclass(frozen=True)
class _Candidate:
    hit: int  # 0-based rank of the hit
    start: int  # offset in the chunk text, for document order
    end: int  # end offset in the chunk text
    text: str
    terms: frozenset[str]


def extractive_answer(question: str, hits: Sequence[Hit], *, max_sentences: int = 3,
                      embed: Callable[[list[str]], np.ndarray] | None = None) -> str:
    """Up to `max_sentences` document sentences, each ending with its source marker `[n]`.

    Sentences are joined by a space, or by nothing after Chinese end punctuation.
    Empty `hits` (or hits without text) → "".
    """
    candidates, scores = scored_sentences(question, hits, embed=embed)
    if not candidates:
        return ""
    query = set(tokenize(question))
    order = sorted(range(len(candidates)), key=lambda k: (-scores[k], candidates[k].hit, candidates[k].start))
    best = order[0]
    chosen = [best]
    covered = candidates[best].terms & query
    for k in order[1:]:
        if len(chosen) >= max_sentences or scores[k] < KEEP_SHARE * scores[best]:
            break
        new = (candidates[k].terms & query) - covered
        if not new or any(candidates[k].text == candidates[j].text for j in chosen):
            continue
        if "?" in candidates[k].text or "？" in candidates[k].text:
            continue  # a question adds nothing to an answer
        chosen.append(k)
        covered |= new

    hit_order = list(dict.fromkeys(candidates[k].hit for k in chosen))  # by best selected sentence
    chosen.sort(key=lambda k: (hit_order.index(candidates[k].hit), candidates[k].start))
    answer = previous = ""
    for k in chosen:
        if answer and not previous.endswith(tuple(_CJK_END)):
            answer += " "
        text = candidates[k].text
        previous = _terminated(_row_cells(text, query) if is_row(text) else text)
        answer += f"{previous}[{candidates[k].hit + 1}]"
    return answer


def _row_cells(row: str, query: set[str], *, limit: int = ROW_CHARS) -> str:
    """A wide row cut to its first cell and the cells holding a query term, '⋯' for each inner gap.

    >>> row = "model: mistral 7b | quant: Q4_K_M | licence: Apache 2.0 | memory_gb: 4.4 | context: 32768"
    >>> _row_cells(row, set(tokenize("How much memory does it need?")), limit=40)
    'model: mistral 7b | ⋯ | memory_gb: 4.4'
    >>> _row_cells("a: 1 | b: 2", {"b"})
    'a: 1 | b: 2'
    """
    cells = row.split(CELL_SEPARATOR.strip())
    if len(row) <= limit or len(cells) < 3:
        return row
    cells = [c.strip() for c in cells]
    keep = [i == 0 or bool(query & set(tokenize(c))) for i, c in enumerate(cells)]
    if sum(keep) == 1:
        return row  # nothing but the key matches: the question is about the whole row
    out: list[str] = []
    for cell, kept in zip(cells, keep):
        if kept:
            out.append(cell)
        elif out[-1] != GAP:
            out.append(GAP)
    return CELL_SEPARATOR.join(out[:-1] if out[-1] == GAP else out)


def scored_sentences(question: str, hits: Sequence[Hit], *,
                     embed: Callable[[list[str]], np.ndarray] | None = None) -> tuple[list[_Candidate], np.ndarray]:
    """Every sentence of every hit with its answer score (the formula in the module docstring).

    Also what `rag.answer.focus` keeps of a long passage for a small model.
    """
    candidates = _candidates(hits)
    if not candidates:
        return [], np.zeros(0)
    scores = _coverage(set(tokenize(question)), candidates)
    scores += np.array([RANK_WEIGHT / (c.hit + 1) for c in candidates])
    scores *= np.array([_answer_shape(question, c.text) for c in candidates])
    if embed is not None:
        vectors = np.asarray(embed([question] + [c.text for c in candidates]), dtype=np.float32)
        scores += EMBED_WEIGHT * np.clip(vectors[1:] @ vectors[0], 0.0, 1.0)
    return candidates, scores


_QUANTITY_QUESTION = re.compile(r"^\s*(how (much|many|long|large|big|fast|old)|what (size|percentage|number))"
                                r"|多少|几|多大|多长", re.IGNORECASE)


def _answer_shape(question: str, sentence: str) -> float:
    """A multiplier for sentences that cannot be answers or look like one.

    A sentence that asks a question (often the document quoting the user's question back) is
    halved; for "how much / how many / 多少" questions a sentence with a number gets a lift.

    >>> _answer_shape("How much memory?", 'For example "How much memory?" is asked.')
    0.5
    >>> _answer_shape("How much memory?", "It needs 4.4 GB.")
    1.2
    """
    factor = 0.5 if ("?" in sentence or "？" in sentence) else 1.0
    if _QUANTITY_QUESTION.search(question) and re.search(r"\d", sentence):
        factor *= 1.2
    return factor


def _candidates(hits: Sequence[Hit]) -> list[_Candidate]:
    out = []
    for i, hit in enumerate(hits):
        text = hit.chunk.text
        for a, b in split_sentences(text):
            sentence = strip_markers(" ".join(text[a:b].split()))
            terms = frozenset(tokenize(sentence))
            if terms:
                out.append(_Candidate(i, a, b, sentence, terms))
    return out


def _coverage(query: set[str], candidates: list[_Candidate]) -> np.ndarray:
    """Idf-weighted share of the query terms each candidate contains, 0..1.

    Terms no candidate contains still count in the denominator: a question half about something
    the chunks never mention is half answered at best.
    """
    if not query:
        return np.zeros(len(candidates))
    n = len(candidates)
    idf = {t: math.log(1 + (n - df + 0.5) / (df + 0.5))
           for t in query for df in [sum(1 for c in candidates if t in c.terms)]}
    total = sum(idf.values())
    return np.array([sum(idf[t] for t in query & c.terms) / total for c in candidates])


def _terminated(sentence: str) -> str:
    """The sentence with end punctuation, so that its marker closes it for `split_sentences`.

    >>> _terminated("Memory use"), _terminated("内存"), _terminated("Done.")
    ('Memory use.', '内存。', 'Done.')
    """
    tail = sentence.rstrip("\"'”’」』）)»")
    if tail.endswith((".", "!", "?", "…", *_CJK_END)):
        return sentence
    return sentence + ("。" if CJK_CHAR.match(sentence[-1]) else ".")
