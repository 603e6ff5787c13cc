"""Calibration metrics: refusal curves over thresholds, detector scores, bootstrap intervals, fitting.

- Abstention: refusal rates at a threshold, and the whole curve over thresholds from the recorded
  evidence scores (nothing is re-run). A question is refused as the product refuses it
  (`rag.answer.abstain.should_abstain`) unless another rule is passed.
- Detection (positive class = 1 = hallucinated): confusion counts, balanced accuracy,
  precision/recall/F1, AUROC by the rank statistic, the best threshold.
- `bootstrap_ci`: the 95 % percentile interval of a mean, from 1000 seeded resamples;
  `curve_band`: the same for every point of a refusal curve.
- `fit_logistic`: the sign-bounded logistic regression that fits the product's constants.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from eval.metrics.answer import share
from rag.answer.abstain import should_abstain

Refuses = Callable[[float, float], bool]  # (score, threshold) → refused?

# --- abstention -----------------------------------------------------------------------------------


def refusal_rates(refused: Sequence[bool], answerable: Sequence[bool]) -> tuple[float | None, float | None]:
    """(correct-refusal rate over unanswerable, false-refusal rate over answerable).

    >>> refusal_rates([True, False, True, False], [False, False, True, True])
    (0.5, 0.5)
    """
    correct = [r for r, a in zip(refused, answerable) if not a]
    false = [r for r, a in zip(refused, answerable) if a]
    return share(correct), share(false)


def refusal_curve(scores_unans: Sequence[float], scores_ans: Sequence[float],
                  thresholds: Sequence[float], *, refuses: Refuses = should_abstain) -> list[dict[str, float]]:
    """`refusal_rates` at each threshold t, from the evidence scores of the unanswerable and the
    answerable questions (a rate over no question is 0.0 here).

    >>> refusal_curve([0.1, 0.5], [0.4, 0.9], [0.45])
    [{'threshold': 0.45, 'correct_refusals': 0.5, 'false_refusals': 0.5}]
    """
    scores = [*scores_unans, *scores_ans]
    answerable = [False] * len(scores_unans) + [True] * len(scores_ans)
    out = []
    for t in thresholds:
        correct, false = refusal_rates([refuses(s, t) for s in scores], answerable)
        out.append({"threshold": t, "correct_refusals": correct or 0.0, "false_refusals": false or 0.0})
    return out


def choose_threshold(points: Sequence[dict[str, float]], *, max_false: float) -> dict[str, float]:
    """The point with the most correct refusals among those with false refusals ≤ max_false
    (the lowest threshold among equals); threshold 0.0 (never refuse) if none qualifies."""
    ok = [p for p in points if p["false_refusals"] <= max_false]
    if not ok:
        return {"threshold": 0.0, "correct_refusals": 0.0, "false_refusals": 0.0}
    return max(ok, key=lambda p: (p["correct_refusals"], -p["threshold"]))


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
                     refuses: Refuses = should_abstain) -> list[CurvePoint]:
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
               level: float = 0.95, refuses: Refuses = should_abstain) -> dict[str, list[list[float]]]:
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
    stats: dict[str, list[np.ndarray]] = {"correct_refusal_rate": [], "false_refusal_rate": [], "risk": []}
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


# --- detection (positive class = 1 = hallucinated) --------------------------------------------------


def confusion(labels: Sequence[int], flagged: Sequence[bool]) -> tuple[int, int, int, int]:
    """(tp, fp, tn, fn).

    >>> confusion([1, 1, 0, 0], [True, False, True, False])
    (1, 1, 1, 1)
    """
    tp = sum(1 for y, f in zip(labels, flagged) if y == 1 and f)
    fp = sum(1 for y, f in zip(labels, flagged) if y == 0 and f)
    tn = sum(1 for y, f in zip(labels, flagged) if y == 0 and not f)
    fn = sum(1 for y, f in zip(labels, flagged) if y == 1 and not f)
    return tp, fp, tn, fn


def balanced_accuracy(labels: Sequence[int], flagged: Sequence[bool]) -> float:
    """Mean of the recall on each class; 0.5 for a constant prediction.

    >>> balanced_accuracy([1, 1, 1, 0], [True, True, False, False])
    0.8333333333333333
    """
    tp, fp, tn, fn = confusion(labels, flagged)
    tpr = tp / (tp + fn) if tp + fn else 0.0
    tnr = tn / (tn + fp) if tn + fp else 0.0
    return (tpr + tnr) / 2


def precision_recall_f1(labels: Sequence[int], flagged: Sequence[bool]) -> tuple[float, float, float]:
    """Precision, recall and F1 of the positive (hallucinated) class; 0.0 where undefined."""
    tp, fp, _, fn = confusion(labels, flagged)
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f1


def auroc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Area under the ROC curve by the rank statistic: P(score of a positive > a negative),
    ties counting one half. Higher score = more likely positive. 0.5 when a class is empty.

    >>> auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    >>> auroc([0, 1], [0.5, 0.5])
    0.5
    """
    pairs = sorted(zip(scores, labels))
    n_pos = sum(1 for y in labels if y == 1)
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.5
    rank_sum, i = 0.0, 0
    while i < len(pairs):  # average ranks over runs of tied scores
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        mid = (i + 1 + j) / 2
        rank_sum += mid * sum(1 for k in range(i, j) if pairs[k][1] == 1)
        i = j
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def best_threshold(labels: Sequence[int], supports: Sequence[float]) -> tuple[float, float]:
    """The support threshold (flag when support < t) with the highest balanced accuracy, and that
    accuracy. Candidates are midpoints between distinct support values; ties go to the lowest t.

    >>> best_threshold([1, 1, 0, 0], [0.1, 0.25, 0.75, 0.9])
    (0.5, 1.0)
    """
    values = sorted(set(supports))
    cands = [values[0] - 1e-9] + [(a + b) / 2 for a, b in zip(values, values[1:])] + [values[-1] + 1e-9]
    best_t, best_acc = cands[0], -1.0
    for t in cands:
        acc = balanced_accuracy(labels, [s < t for s in supports])
        if acc > best_acc + 1e-12:
            best_t, best_acc = t, acc
    return best_t, best_acc


# --- fitting ----------------------------------------------------------------------------------------


def fit_logistic(x: Sequence[Sequence[float]], y: Sequence[float], *, signs: Sequence[int],
                 sample_weight: Sequence[float] | None = None, l2: float = 1.0) -> list[float]:
    """L2-regularised logistic regression with each weight bounded to its sign (0 allowed).

    Returns weights then intercept. Plain L-BFGS-B on the log-loss: small enough to read, and
    sklearn's solver cannot bound signs.
    """
    from scipy.optimize import minimize
    from scipy.special import expit  # the logistic, vectorised

    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    sw = np.ones(len(ya)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)

    def loss(wb: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = wb[:-1], wb[-1]
        z = xa @ w + b
        resid = sw * (expit(z) - ya)
        value = np.sum(sw * (np.logaddexp(0.0, z) - ya * z)) + 0.5 * l2 * w @ w
        return float(value), np.append(xa.T @ resid + l2 * w, resid.sum())

    bounds = [(0.0, None) if s > 0 else (None, 0.0) for s in signs] + [(None, None)]
    res = minimize(loss, np.zeros(xa.shape[1] + 1), jac=True, method="L-BFGS-B", bounds=bounds)
    return [float(v) for v in res.x]
