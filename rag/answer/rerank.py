"""Reranking: a cross-encoder re-scores the top fused candidates against the query.

This module is the stage: the `Reranker` protocol a backend meets and the pure `rerank` over hits.
The backend (sentence-transformers CrossEncoder) is rag.models.reranker, and
`rag.models.factory.load_reranker` picks it from the config. A missing reranker is not an error:
the factory returns None and a one-line notice, and the pipeline answers from the fused ranking.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from rag.records import Hit


@runtime_checkable
class Reranker(Protocol):
    name: str

    def score(self, query: str, texts: Sequence[str]) -> list[float]: ...


def rerank(reranker: Reranker, query: str, hits: Sequence[Hit], *, top_n: int) -> list[Hit]:
    """The first `top_n` hits re-scored by `reranker`, best first; the rest are dropped.

    Each returned hit keeps its earlier scores and gains `rerank_score`; `score` becomes the
    rerank score. Ties keep their incoming order (a stable sort).
    """
    head = list(hits[:max(0, top_n)])
    if not head:
        return []
    scores = reranker.score(query, [h.chunk.text for h in head])
    if len(scores) != len(head):
        raise ValueError(f"reranker {reranker.name!r} returned {len(scores)} scores for {len(head)} texts")
    order = sorted(range(len(head)), key=lambda i: -scores[i])
    return [dataclasses.replace(head[i], rerank_score=float(scores[i]), score=float(scores[i])) for i in order]
