"""Retrieval metrics over ranked document ids and graded relevance: recall@k, MRR, nDCG@k.

`ranked` is a list of ids, best first (a document once); `gains` maps relevant ids to a gain > 0
(1 for a single gold passage; Cranfield's grades 1..4).

    >>> ranked, gains = ["x", "a", "b"], {"a": 1.0, "b": 1.0}
    >>> recall_at(ranked, gains, 2), reciprocal_rank(ranked, gains)
    (0.5, 0.5)
"""
from __future__ import annotations

import math
from collections.abc import Sequence


def recall_at(ranked: Sequence[str], gains: dict[str, float], k: int) -> float:
    """Share of relevant documents in the top k (= hit rate when there is one gold document).

    >>> recall_at(["a", "b", "c"], {"b": 1, "z": 1}, 2)
    0.5
    """
    relevant = {d for d, g in gains.items() if g > 0}
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


def reciprocal_rank(ranked: Sequence[str], gains: dict[str, float]) -> float:
    """1 / rank of the first relevant document; 0.0 when none is ranked.

    >>> reciprocal_rank(["a", "b"], {"b": 1})
    0.5
    """
    for i, d in enumerate(ranked, start=1):
        if gains.get(d, 0) > 0:
            return 1.0 / i
    return 0.0


def ndcg_at(ranked: Sequence[str], gains: dict[str, float], k: int = 10) -> float:
    """nDCG with linear gains and log2 discounts.

    >>> round(ndcg_at(["x", "a"], {"a": 1.0}, 10), 4)
    0.6309
    """
    dcg = sum(gains.get(d, 0.0) / math.log2(i + 1) for i, d in enumerate(ranked[:k], start=1))
    ideal = sorted((g for g in gains.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 1) for i, g in enumerate(ideal, start=1))
    return dcg / idcg if idcg else 0.0
