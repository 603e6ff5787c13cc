"""Lexical tokens for BM25: language-aware, pure functions.

    >>> tokenize("Running GGUF models: 向量检索")
    ['run', 'gguf', 'model', '向量', '量检', '检索']

Text is NFKC-normalised (full-width Latin becomes ASCII, half-width katakana full-width), CJK
radical look-alikes folded ('⻆' → '角') and lower-cased (`rag.text.fold`), then cut into runs
of CJK characters (`rag.text.CJK_CHARS`) and everything else:

- CJK runs (Han, Hiragana, Katakana, Hangul) become overlapping character bigrams; a run of one
  character stays a unigram. Measured against unigrams+bigrams, jieba words and jieba+bigrams
  on CMRC 2018 in `eval/tokenizer_choice.py`: bigrams had the best R@1 and need no dictionary.
- Other words are runs of letters and digits. English stopwords are dropped and alphabetic words
  are stemmed with the Snowball English stemmer (PyStemmer); words with digits are kept as they
  are ("4.8", "7b", "q4").
- Identifiers joined by `_`, `.` or `-` ("Q4_K_M", "llama-2-7b", "v1.2") give the whole
  identifier, its `_`-joined segments and its parts, so a query for "Q4_K_M" matches
  "model.Q4_K_M.gguf" exactly and one for "llama 2" still finds "llama-2-7b". Pure numbers
  ("4.8", "1,000", "3.5.1") stay whole: their parts would match every number sharing a group.

Deliberately skipped: stemming for languages other than English, word segmentation for scripts
written without spaces other than CJK (Thai, Lao…: a run becomes one token), and synonyms.
"""
from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable

from rag.text import CJK_RUN, fold

# Recorded in every index manifest (rag.ingest.build.settings_signature): bump it whenever a change
# here gives different tokens for the same text, so the next ingest re-tokenizes every file instead
# of mixing old and new tokens in one BM25 index.
TOKENIZER_VERSION = "2"  # 2: CJK radical look-alikes folded (rag.text.fold_radicals)

# A word: a number with `.`/`,` groups, or letters/digits joined by single `_ . -` (identifiers).
_WORD = re.compile(r"\d+(?:[.,]\d+)+(?!\w)|[^\W_]+(?:[._\-][^\W_]+)*")
_PART = re.compile(r"[^\W_]+")
_LOOSE_JOINER = re.compile(r"[.\-]")  # '_' binds tighter: snake_case names and quant types
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")

# NLTK's English list, less the negations ("no", "not", "nor": they change what a query asks).
# The apostrophe fragments ("s", "t", "ll"…) are here because apostrophes split words.
STOPWORDS = frozenset("""
a about above after again against ain all am an and any are aren as at be because been before
being below between both but by can couldn d did didn do does doesn doing don down during each
few for from further had hadn has hasn have haven having he her here hers herself him himself his
how i if in into is isn it its itself just ll m ma me mightn more most mustn my myself needn now o
of off on once only or other our ours ourselves out over own re s same shan she should shouldn so
some such t than that the their theirs them themselves then there these they this those through
to too under until up ve very was wasn we were weren what when where which while who whom why will
with won wouldn y you your yours yourself yourselves
""".split())


def tokenize(text: str) -> list[str]:
    """Tokens for BM25, the same function for documents and queries.

    >>> tokenize("The quick foxes are jumping over Q4_K_M")
    ['quick', 'fox', 'jump', 'q4_k_m', 'q4', 'k']
    """
    return tokenize_with(text, stem=True, stopwords=True, cjk=cjk_bigrams)


def tokenize_with(text: str, *, stem: bool, stopwords: bool,
                  cjk: Callable[[str], list[str]]) -> list[str]:
    """`tokenize` with its choices open, for `eval/tokenizer_choice.py` and tests."""
    text = fold(text)
    stem_word = _stemmer() if stem else None
    out: list[str] = []
    pos = 0
    for m in CJK_RUN.finditer(text):
        if m.start() > pos:
            _words(text[pos:m.start()], out, stem_word, stopwords)
        out.extend(cjk(m.group()))
        pos = m.end()
    if pos < len(text):
        _words(text[pos:], out, stem_word, stopwords)
    return out


def cjk_bigrams(run: str) -> list[str]:
    """Overlapping character bigrams of one CJK run: '向量检索' → ['向量', '量检', '检索']."""
    if len(run) == 1:
        return [run]
    return [run[i:i + 2] for i in range(len(run) - 1)]


def _words(segment: str, out: list[str], stem_word: Callable[[str], str] | None,
           stopwords: bool) -> None:
    for m in _WORD.finditer(segment):
        word = m.group()
        if _NUMBER.fullmatch(word):
            out.append(word)
            continue
        if _PART.fullmatch(word):
            segments = [word]
        else:
            out.append(word)  # the identifier as written: an exact match scores above its parts
            segments = _LOOSE_JOINER.split(word)
        for segment in segments:
            if "_" in segment and segment != word:
                out.append(segment)  # 'q4_k_m' inside 'model.q4_k_m.gguf'
            for part in _PART.findall(segment):
                if stopwords and part in STOPWORDS:
                    continue
                if stem_word is not None and part.isalpha():
                    part = stem_word(part)
                out.append(part)


@functools.lru_cache(maxsize=1)
def _stemmer() -> Callable[[str], str] | None:
    """The Snowball English stemmer, or None (with a warning) when PyStemmer is missing."""
    try:
        import Stemmer
    except ImportError:
        warnings.warn("PyStemmer is not installed: BM25 tokens are not stemmed "
                      "(fix: pip install PyStemmer)", stacklevel=3)
        return None
    stem: Callable[[str], str] = Stemmer.Stemmer("english").stemWord
    return stem
