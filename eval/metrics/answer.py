"""Answer and faithfulness metrics: pure functions over strings and per-sentence verdicts.

    >>> exact_match("The Eiffel Tower!", ["eiffel tower"]), round(token_f1("Paris, France", ["Paris"]), 4)
    (1.0, 0.6667)
    >>> round(token_f1("北京天安门", ["北京"]), 4)      # CMRC 2018: characters, longest common substring
    0.5714

- Answers: SQuAD normalisation (lower case, no punctuation, no articles, single spaces) for exact
  match and token F1; text with CJK characters is scored as in the CMRC 2018 evaluation (mixed
  segmentation: each CJK character is a token, other runs are words; F1 from the longest common
  substring of the two token lists). `answer_recall`: the normalised reference occurs in the answer.
- Citations (ALCE, Gao et al. 2023): a sentence's citations recall it when the cited sources
  together support it; a citation is precise when the sentence is supported by its citations and
  that one either supports it alone or is needed for the joint support.
- Faithfulness: `share` of supported sentences, `weighted_share` of supported claims.

Deliberately skipped: nltk's word tokenizer in the CMRC segmentation (a regex stands in: words and
numbers are kept whole, punctuation is dropped) and answer-type-specific normalisation (dates, units).
"""
from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rag.text import CJK_CHARS, has_cjk

_CJK = re.compile(f"[{CJK_CHARS}]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)
# The CMRC 2018 script's punctuation list; other Unicode punctuation is dropped as well.
_CMRC_PUNCT = set("-:_*^/\\~`+=，。：？！“”；’《》……·、「」（）－～『』")
_WORDS = re.compile(r"\d+(?:[.,]\d+)*|[^\W_]+")


# --- answers -----------------------------------------------------------------------------------------


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation.

    >>> normalize_answer("The  Quick, brown fox!")
    'quick brown fox'
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def mixed_segmentation(text: str) -> list[str]:
    """CMRC 2018 tokens: each CJK character alone, other runs cut into words; punctuation dropped.

    >>> mixed_segmentation("模型需要4.4 GB内存。")
    ['模', '型', '需', '要', '4.4', 'gb', '内', '存']
    """
    text = unicodedata.normalize("NFKC", text).lower().strip()
    out: list[str] = []
    run = ""
    for ch in text + " ":
        if _CJK.match(ch) or ch in _CMRC_PUNCT:
            out += _WORDS.findall(run)
            run = ""
            if _CJK.match(ch):
                out.append(ch)
        else:
            run += ch
    return out


def _cmrc_strip(text: str) -> str:
    """The CMRC exact-match form: lower case, no punctuation, no whitespace."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if not (ch in _CMRC_PUNCT or ch.isspace()
                                             or unicodedata.category(ch).startswith("P")))


def longest_common_substring(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest run of tokens shared by a and b.

    >>> longest_common_substring(list("北京天安门"), list("天安门广场"))
    3
    """
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def _f1(common: int, n_pred: int, n_ref: int) -> float:
    if common == 0:
        return 0.0
    p, r = common / n_pred, common / n_ref
    return 2 * p * r / (p + r)


def _exact_one(prediction: str, reference: str) -> float:
    if has_cjk(prediction) or has_cjk(reference):
        return float(_cmrc_strip(prediction) == _cmrc_strip(reference))
    return float(normalize_answer(prediction) == normalize_answer(reference))


def _f1_one(prediction: str, reference: str) -> float:
    if has_cjk(prediction) or has_cjk(reference):
        pred, ref = mixed_segmentation(prediction), mixed_segmentation(reference)
        return _f1(longest_common_substring(ref, pred), len(pred), len(ref))
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    return _f1(sum((Counter(pred) & Counter(ref)).values()), len(pred), len(ref))


def _recall_one(prediction: str, reference: str) -> float:
    if has_cjk(prediction) or has_cjk(reference):
        ref = _cmrc_strip(reference)
        return float(bool(ref) and ref in _cmrc_strip(prediction))
    ref = normalize_answer(reference)
    return float(bool(ref) and f" {ref} " in f" {normalize_answer(prediction)} ")


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 when the prediction equals any reference after normalisation; 0.0 without references.

    >>> exact_match("about 4.4 GB.", ["4.4 GB", "about 4.4 GB"])
    1.0
    """
    return max((_exact_one(prediction, r) for r in references), default=0.0)


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """Best token F1 over the references (SQuAD bag of words; CMRC characters for CJK text).

    >>> round(token_f1("a 7B model needs about 4.4 GB", ["4.4 GB"]), 4)
    0.5
    """
    return max((_f1_one(prediction, r) for r in references), default=0.0)


def answer_recall(prediction: str, references: Sequence[str]) -> float:
    """1.0 when a normalised reference occurs, whole words, inside the normalised prediction.

    >>> answer_recall("A 7B model needs about 4.4 GB of memory.", ["4.4 GB"]), answer_recall("4.8 GB", ["4.4 GB"])
    (1.0, 0.0)
    """
    return max((_recall_one(prediction, r) for r in references), default=0.0)


# --- faithfulness and citations -------------------------------------------------------------------


@dataclass(frozen=True)
class CitationCheck:
    """ALCE verdicts for one sentence: does it have citation recall, and which citations are precise."""

    recall: bool
    precise: tuple[bool, ...]  # one per cited source, in the order cited


def alce_citations(text: str, cited: Sequence[int], sources: Sequence[str],
                   supports: Callable[[str, list[str]], bool]) -> CitationCheck:
    """Citation recall and precision of one sentence; `sources[n-1]` is the text of source [n].

    recall: the cited sources together support the sentence (no citation → no recall).
    precision, per citation c: recall holds, and c supports the sentence alone or the others
    without c do not (c is needed). A sentence without recall has no precise citation.

    >>> sup = lambda claim, ev: "A" in "".join(ev)
    >>> alce_citations("claim", [1, 2], ["A", "B"], sup)
    CitationCheck(recall=True, precise=(True, False))
    """
    cited = [n for n in dict.fromkeys(cited) if 1 <= n <= len(sources)]
    if not cited:
        return CitationCheck(False, ())
    if not supports(text, [sources[n - 1] for n in cited]):
        return CitationCheck(False, (False,) * len(cited))
    if len(cited) == 1:
        return CitationCheck(True, (True,))
    precise = []
    for n in cited:
        alone = supports(text, [sources[n - 1]])
        needed = not supports(text, [sources[m - 1] for m in cited if m != n])
        precise.append(alone or needed)
    return CitationCheck(True, tuple(precise))


def share(flags: Sequence[bool | float]) -> float | None:
    """Mean of 0/1 flags (or weights); None for an empty list, so that 'no data' is not 0.

    >>> share([True, False, True, True]), share([])
    (0.75, None)
    """
    return float(sum(flags)) / len(flags) if len(flags) else None


def weighted_share(scores: Sequence[float], weights: Sequence[float]) -> float | None:
    """Σ score·weight / Σ weight: claim-level support when each sentence has `weights` claims.

    >>> weighted_share([1.0, 0.5], [1, 2])
    0.6666666666666666
    """
    total = float(sum(weights))
    return float(sum(s * w for s, w in zip(scores, weights))) / total if total else None
