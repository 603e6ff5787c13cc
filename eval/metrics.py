"""Answer, citation and abstention metrics: pure functions over strings, flags and scores.

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
- Abstention: refusal rates at a threshold, and the whole curve over thresholds from the recorded
  evidence scores (nothing is re-run).
- `bootstrap_ci`: the 95 % percentile interval of a mean, from 1000 seeded resamples.

Retrieval metrics live in `eval.retrieval` (recall_at, reciprocal_rank, ndcg_at).
Deliberately skipped: nltk's word tokenizer in the CMRC segmentation (a regex stands in: words and
numbers are kept whole, punctuation is dropped) and answer-type-specific normalisation (dates, units).
"""
from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

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


# --- abstention -----------------------------------------------------------------------------------


def below(score: float, threshold: float) -> bool:
    """The default refusal rule: evidence strictly below the threshold."""
    return score < threshold


def refusal_rates(refused: Sequence[bool], answerable: Sequence[bool]) -> tuple[float | None, float | None]:
    """(correct-refusal rate over unanswerable, false-refusal rate over answerable).

    >>> refusal_rates([True, False, True, False], [False, False, True, True])
    (0.5, 0.5)
    """
    correct = [r for r, a in zip(refused, answerable) if not a]
    false = [r for r, a in zip(refused, answerable) if a]
    return share(correct), share(false)


@dataclass(frozen=True)
class CurvePoint:
    threshold: float
    coverage: float  # share of all questions answered
    risk: float  # share of the answered questions answered wrongly (0 when none is answered)
    correct_refusal_rate: float | None
    false_refusal_rate: float | None


def thresholds_from(scores: Sequence[float]) -> list[float]:
    """Every observed score, then one above the highest: from 'refuse nothing' to 'refuse everything'.

    >>> thresholds_from([0.5, 0.2, 0.5])
    [0.2, 0.5, 0.51]
    """
    uniq = sorted(set(float(s) for s in scores))
    return uniq + [round(uniq[-1] + 0.01, 6)] if uniq else [0.0]


def abstention_curve(scores: Sequence[float], answerable: Sequence[bool], wrong: Sequence[bool], *,
                     always_refused: Sequence[bool] | None = None, thresholds: Sequence[float] | None = None,
                     refuses: Callable[[float, float], bool] = below) -> list[CurvePoint]:
    """Refusal rates and risk–coverage at each threshold, from recorded evidence scores.

    A question is refused at threshold t when `refuses(score, t)` or it is `always_refused` (the
    model declined, or nothing was retrieved). `wrong`: what answering it would be (an
    unanswerable question, or an answer that misses every reference).

    >>> [(p.threshold, p.coverage, p.risk) for p in abstention_curve([0.1, 0.9], [False, True], [True, False])]
    [(0.1, 1.0, 0.5), (0.9, 0.5, 0.0), (0.91, 0.0, 0.0)]
    """
    n = len(scores)
    always = list(always_refused) if always_refused is not None else [False] * n
    out = []
    for t in (thresholds if thresholds is not None else thresholds_from(scores)):
        refused = [refuses(s, t) or a for s, a in zip(scores, always)]
        answered = [i for i in range(n) if not refused[i]]
        risk = sum(1 for i in answered if wrong[i]) / len(answered) if answered else 0.0
        correct, false = refusal_rates(refused, answerable)
        out.append(CurvePoint(float(t), len(answered) / n if n else 0.0, risk, correct, false))
    return out


def area_under_risk_coverage(points: Sequence[CurvePoint]) -> float:
    """AURC: trapezoid area under risk as a function of coverage (lower is better).

    >>> pts = [CurvePoint(0, 1.0, 0.5, 0, 0), CurvePoint(1, 0.5, 0.0, 0, 0), CurvePoint(2, 0.0, 0.0, 0, 0)]
    >>> area_under_risk_coverage(pts)
    0.125
    """
    pts = sorted((p.coverage, p.risk) for p in points)
    return float(sum((c1 - c0) * (r0 + r1) / 2 for (c0, r0), (c1, r1) in zip(pts, pts[1:])))


# --- uncertainty ----------------------------------------------------------------------------------


def bootstrap_ci(values: Sequence[float], *, resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float] | None:
    """Percentile interval of the mean over `resamples` seeded resamples with replacement.

    >>> bootstrap_ci([0.4] * 10)
    (0.4, 0.4)
    >>> bootstrap_ci([]) is None
    True
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(round(lo, 10)), float(round(hi, 10))


def curve_band(scores: Sequence[float], answerable: Sequence[bool], wrong: Sequence[bool], thresholds: Sequence[float],
               *, always_refused: Sequence[bool] | None = None, resamples: int = 1000, seed: int = 0,
               level: float = 0.95, refuses: Callable[[float, float], bool] = below) -> dict[str, list[list[float]]]:
    """95 % bootstrap bands (questions resampled) for the curve's rates at each threshold.

    Returns {"correct_refusal_rate" | "false_refusal_rate" | "risk": [[lo, hi] per threshold]}; a
    resample without any question of a group leaves that group's rate out of the percentile.
    """
    n = len(scores)
    always = np.asarray(always_refused if always_refused is not None else [False] * n, dtype=bool)
    refused = np.array([[refuses(s, t) for s in scores] for t in thresholds], dtype=bool) | always[None, :]
    ans = np.asarray(answerable, dtype=bool)
    bad = np.asarray(wrong, dtype=bool)
    rng = np.random.default_rng(seed)
    stats = {"correct_refusal_rate": [], "false_refusal_rate": [], "risk": []}
    missing = np.full(len(thresholds), np.nan)

    def rate(flags: np.ndarray, among: np.ndarray) -> np.ndarray:
        return flags[:, among].sum(1) / among.sum() if among.any() else missing

    with np.errstate(invalid="ignore", divide="ignore"):
        for _ in range(resamples if n else 0):
            idx = rng.integers(0, n, size=n)
            r, a, w = refused[:, idx], ans[idx], bad[idx]
            stats["correct_refusal_rate"].append(rate(r, ~a))
            stats["false_refusal_rate"].append(rate(r, a))
            answered = (~r).sum(1)
            stats["risk"].append(np.where(answered > 0, (~r & w[None, :]).sum(1) / np.maximum(answered, 1), 0.0))
    tail = (1.0 - level) / 2 * 100
    out = {}
    for key, rows in stats.items():
        if not rows:
            out[key] = [[math.nan, math.nan] for _ in thresholds]
            continue
        arr = np.asarray(rows)
        lo = np.nanpercentile(arr, tail, axis=0) if not np.isnan(arr).all() else np.full(len(thresholds), np.nan)
        hi = np.nanpercentile(arr, 100 - tail, axis=0) if not np.isnan(arr).all() else np.full(len(thresholds), np.nan)
        out[key] = [[float(a), float(b)] for a, b in zip(lo, hi)]
    return out


# --- comparing reports ----------------------------------------------------------------------------

# For these a rise is the regression.
LOWER_IS_BETTER = frozenset({"hallucination_rate", "false_refusal_rate"})


@dataclass(frozen=True)
class Regression:
    metric: str
    baseline: float
    current: float

    @property
    def change(self) -> float:
        return self.current - self.baseline


def regressions(current: Mapping[str, float | None], baseline: Mapping[str, float | None], *, max_drop: float,
                metrics: Sequence[str]) -> list[Regression]:
    """Metrics that got worse by more than `max_drop` (a drop, or a rise for LOWER_IS_BETTER).

    Metrics missing (or None) on either side are skipped: there is nothing to compare.

    >>> regressions({"f1": 0.5, "hallucination_rate": 0.3}, {"f1": 0.6, "hallucination_rate": 0.1},
    ...             max_drop=0.05, metrics=["f1", "hallucination_rate"])[1].metric
    'hallucination_rate'
    """
    out = []
    for m in metrics:
        now, base = current.get(m), baseline.get(m)
        if now is None or base is None:
            continue
        worse = (now - base) if m in LOWER_IS_BETTER else (base - now)
        if worse > max_drop + 1e-12:
            out.append(Regression(m, float(base), float(now)))
    return out
