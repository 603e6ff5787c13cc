"""Comparing two reports: which headline metrics got worse than the baseline by more than a margin.

    >>> [(r.metric, round(r.change, 2)) for r in regressions({"f1": 0.5}, {"f1": 0.6}, max_drop=0.05, metrics=["f1"])]
    [('f1', -0.1)]
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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
