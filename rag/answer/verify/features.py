"""Claim features: what is checkable in a claim, and what of it the evidence has. Pure functions.

    >>> missing_numbers("It scored 4.8 in 2,000 tests.", ["A score of 4.9 over 2000 tests."])
    ('4.8',)

Read by the offline verifier (does the cited source support this sentence?) and, before any
generation, by `rag.answer.abstain` (do the hits hold an answer to this question?):

- evidence sentences and windows of consecutive sentences (`split_sentences`, `windows`);
- content tokens: `rag.index.tokenize` tokens (stemmed Latin words, CJK bigrams) less the words
  that claim nothing on their own, and their coverage by the evidence, alone and as pairs;
- numbers written with digits (normalised) and name-like words, and which of them the evidence
  lacks: quantities with their units and Chinese numerals (`quantities`); number words in the
  evidence ("three") match digits in the claim.

Deliberately skipped: Chinese names (CJK claims are checked by bigram coverage and numbers), and
coreference across sentences.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

from rag.answer.verify.quantities import missing_quantities, normalise_number
from rag.index.tokenize import STOPWORDS, tokenize
from rag.text import fold, language, sentence_spans

# Words that carry no checkable claim on their own: answers such as "Yes." or "In summary:".
NON_CLAIM = frozenset("yes also however thus therefore summary overall conclus addit furthermor "
                      "moreov final answer note".split())

_NUM = re.compile(r"(?<![\w.])(\d+(?:[.,]\d+)*)(?:s|st|nd|rd|th)?(?![\d])")
SHORT_ANSWER_WORDS = 2
_WORD_RE = re.compile(r"[^\W\d_][\w'’-]*")


def split_sentences(text: str) -> list[str]:
    """Sentences of an evidence text or claim: `rag.text.sentence_spans`, every line a unit, and
    glued sentences cut too (scraped text loses the space after a full stop).

    >>> split_sentences("Arthur's Magazine was American.First for Women is German. 北京是首都。它很大")
    ["Arthur's Magazine was American.", 'First for Women is German.', '北京是首都。', '它很大']
    """
    return [text[a:b] for a, b in sentence_spans(text, glued=True, every_line=True)]


def windows(text: str, *, size: int = 2) -> list[str]:
    """Each sentence and each run of up to `size` consecutive sentences: what a claim is compared to.

    >>> windows("A b. C d. E f.")
    ['A b.', 'C d.', 'E f.', 'A b. C d.', 'C d. E f.']
    """
    sents = split_sentences(text)
    out = list(sents)
    for n in range(2, size + 1):
        out += [" ".join(sents[i:i + n]) for i in range(len(sents) - n + 1)]
    return out or [text]


def content_tokens(text: str) -> list[str]:
    """Stemmed content words and CJK bigrams, without words that claim nothing on their own.

    >>> content_tokens("Yes, the magazines were founded in 1844.")
    ['magazin', 'found', '1844']
    """
    return [t for t in tokenize(text) if t not in NON_CLAIM]


def numbers(text: str) -> list[str]:
    """Numbers written with digits, normalised: thousands separators dropped, '1990s' → '1990'.

    >>> numbers("In the 1990s, 2,000 people paid $4.80 on May 3rd.")
    ['1990', '2000', '4.8', '3']
    """
    text = unicodedata.normalize("NFKC", text)
    return [normalise_number(m.group(1)) for m in _NUM.finditer(text)]


def missing_numbers(claim: str, evidence: Sequence[str]) -> tuple[str, ...]:
    """Quantities of the claim (as written, with their unit) that no evidence text holds: digits,
    Chinese numerals, number words in the evidence, units compared by value (`quantities`)."""
    return missing_quantities(claim, evidence)


def names(text: str) -> list[str]:
    """Name-like words: capitalised words that do not start a sentence, and acronyms anywhere.

    >>> names("The film starred Scarlett Johansson and was shown by the BBC.")
    ['Scarlett', 'Johansson', 'BBC']
    """
    out: list[str] = []
    for sent in split_sentences(unicodedata.normalize("NFKC", text)):
        words = list(_WORD_RE.finditer(sent))
        for i, m in enumerate(words):
            word = m.group().strip("'’-")
            if len(word) < 2 or word.lower() in STOPWORDS or word.lower() in NON_CLAIM:
                continue
            acronym = word.isupper() and sum(c.isalpha() for c in word) >= 2
            # A sentence of a few words is an answer such as "Lepidoptera." whose first word is the name.
            if acronym or word[0].isupper() and (i > 0 or len(words) <= SHORT_ANSWER_WORDS):
                out.append(word)
    return list(dict.fromkeys(out))


def missing_names(claim: str, evidence: Sequence[str]) -> tuple[str, ...]:
    """Name-like words of the claim found in none of the evidence texts (case-insensitive, stemmed)."""
    if language(claim) == "cjk":
        return ()
    lowered = " ".join(fold(t) for t in evidence)
    stems = set(tokenize(lowered))
    out = []
    for name in names(claim):
        low = name.lower()
        if re.search(r"(?<!\w)" + re.escape(low) + r"(?!\w)", lowered):
            continue
        toks = tokenize(low)
        if toks and all(t in stems for t in toks):
            continue
        out.append(name)
    return tuple(out)


def coverage(claim_tokens: Sequence[str], evidence_tokens: Iterable[str]) -> float:
    """Share of the claim's distinct tokens found in the evidence; 1.0 for a claim without tokens.

    >>> coverage(["capit", "franc", "pari"], ["pari", "capit", "citi"])
    0.6666666666666666
    """
    claim = set(claim_tokens)
    if not claim:
        return 1.0
    return len(claim & set(evidence_tokens)) / len(claim)


def bigram_coverage(claim_tokens: Sequence[str], evidence_tokens: Sequence[str]) -> float:
    """Share of the claim's adjacent token pairs that are adjacent (either order) in the evidence.

    Coverage alone accepts a claim that reuses the source's words in a new relation
    ("Nixon named Groening"); pairs keep some of the word order. 1.0 when the claim has < 2 tokens.
    """
    pairs = {(a, b) for a, b in zip(claim_tokens, claim_tokens[1:]) if a != b}
    if not pairs:
        return 1.0
    have = set(zip(evidence_tokens, evidence_tokens[1:]))
    have |= {(b, a) for a, b in have}
    return len(pairs & have) / len(pairs)


def is_claim(text: str) -> bool:
    """False for connective sentences such as 'In summary:' — fewer than 3 content tokens, no digits, no names.

    >>> is_claim("In summary:"), is_claim("It was completed in 1889.")
    (False, True)
    """
    return len(set(content_tokens(text))) >= 3 or bool(numbers(text)) or bool(names(text))
