"""Hybrid retrieval: BM25 and dense candidates, scored on both sides, fused by a convex combination.

Why not plain reciprocal rank fusion: RRF gives a retriever equal say even when it is blind. With
the English MiniLM embedder, equal RRF dropped Chinese R@1 on CMRC from .958 (BM25 alone) to .589
and English R@1 on SQuAD from .795 to .773. Here every candidate gets both scores (exact dense
inner product for lexical candidates, the full BM25 score for dense candidates), both are min-max
normalised over the candidate set, and combined as (1-α)·bm25 + α·dense. The dense weight α drops
to 0 for a query whose script the embedder was not trained on (rag.models.embed.model_languages), and
rises to 1 when the query shares no term with the collection. eval.retrieval measures the choice.
"""
from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from rag.config import FUSIONS, Config, Fusion
from rag.errors import ConfigError
from rag.models.embed import Embedder, model_languages
from rag.records import Hit

if TYPE_CHECKING:
    from rag.index.store import Index

SearchMode = Literal["hybrid", "bm25", "dense"]  # hybrid: the retriever's fusion; else one side alone
SEARCH_MODES: tuple[str, ...] = typing.get_args(SearchMode)


def minmax(x: np.ndarray) -> np.ndarray:
    """Scale to 0..1 over the candidates; a constant vector maps to zeros.

    >>> minmax(np.array([2.0, 4.0, 3.0])).tolist()
    [0.0, 1.0, 0.5]
    """
    if len(x) == 0:
        return x
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def dense_weight(query_script: str, embed_languages: frozenset[str] | None, alpha: float) -> float:
    """The dense side's weight for this query: 0 when the embedder cannot read the query's script.

    >>> dense_weight("cjk", frozenset({"latin"}), 0.3)
    0.0
    >>> dense_weight("latin", frozenset({"latin"}), 0.3)
    0.3
    """
    if embed_languages is not None and query_script not in embed_languages and query_script != "other":
        return 0.0
    return alpha


def convex_fusion(bm25: np.ndarray, dense: np.ndarray, alpha: float) -> np.ndarray:
    """(1-α)·minmax(bm25) + α·minmax(dense), aligned arrays over the same candidates.

    >>> convex_fusion(np.array([1.0, 3.0]), np.array([0.9, 0.1]), 0.5).round(2).tolist()
    [0.5, 0.5]
    """
    return (1.0 - alpha) * minmax(bm25) + alpha * minmax(dense)


def rrf(ranks: Sequence[np.ndarray], k: int = 60) -> np.ndarray:
    """Reciprocal rank fusion over 1-based ranks (0 = not ranked by that retriever).

    >>> rrf([np.array([1, 2]), np.array([2, 0])], k=0).round(2).tolist()
    [1.5, 0.5]
    """
    total = np.zeros(len(ranks[0]), dtype=np.float64)
    for r in ranks:
        total += np.where(r > 0, 1.0 / (k + np.maximum(r, 1)), 0.0)
    return total


def _ranks(scores: np.ndarray, member: np.ndarray) -> np.ndarray:
    """1-based rank of each candidate by score among the members, 0 for non-members."""
    out = np.zeros(len(scores), dtype=np.int64)
    idx = np.flatnonzero(member)
    order = idx[np.argsort(-scores[idx], kind="stable")]
    out[order] = np.arange(1, len(order) + 1)
    return out


@dataclass(frozen=True)
class Candidates:
    rows: np.ndarray
    bm25: np.ndarray
    dense: np.ndarray
    bm25_rank: np.ndarray  # 1-based within the lexical top-N, 0 outside
    dense_rank: np.ndarray


class Retriever:
    """Searches one Index with one Embedder; stateless between calls, safe to share across threads.

    The defaults are Config's (one source of truth); the Pipeline passes its configured values.
    """

    def __init__(self, index: Index, embedder: Embedder, *, fusion: Fusion = Config.fusion,
                 alpha: float = Config.fusion_alpha, candidates: int = Config.candidates) -> None:
        if fusion not in FUSIONS:  # checked here too: eval and tests build Retrievers without a Config
            raise ConfigError(f"fusion {fusion!r} is not one of {', '.join(FUSIONS)}")
        self.index = index
        self.embedder = embedder
        self.fusion = fusion
        self.alpha = alpha
        self.n_candidates = candidates
        langs = index.manifest.get("embed_languages", "unset")
        self.languages = ((frozenset(langs) if langs else None) if langs != "unset"
                          else model_languages(index.embed_model))

    def candidates(self, query: str, *, n: int | None = None, query_vec: np.ndarray | None = None,
                   allowed: np.ndarray | None = None) -> Candidates:
        """The lexical and dense top-n, each scored on both sides. `allowed` (sorted row numbers)
        restricts both retrievers before they pick their top-n, so a file filter costs no recall:
        BM25 ranks only the allowed rows, and the dense side scores them exactly instead of asking
        the ANN index (whose top-n could all lie outside the filter)."""
        from rag.index.tokenize import tokenize
        from rag.text import normalise

        n = n or self.n_candidates
        idx = self.index
        pool = np.arange(idx.n_chunks) if allowed is None else np.asarray(allowed, dtype=np.int64)
        if idx.n_chunks == 0 or len(pool) == 0:
            empty = np.zeros(0)
            return Candidates(empty.astype(np.int64), empty, empty, empty.astype(np.int64), empty.astype(np.int64))
        full_bm25 = idx.bm25_scores(tokenize(query))
        lex_n = min(n, len(pool))
        pool_bm25 = full_bm25[pool]
        lex = pool[np.argpartition(-pool_bm25, lex_n - 1)[:lex_n]] if lex_n < len(pool) else pool
        lex = lex[full_bm25[lex] > 0]
        qv = self.embedder.embed([normalise(query)])[0] if query_vec is None else query_vec
        if allowed is None:
            dense_rows, _ = idx.dense_search(qv, n)
        else:
            pool_dense = idx.dense_scores(qv, pool)
            dense_n = min(n, len(pool))
            dense_rows = (pool[np.argpartition(-pool_dense, dense_n - 1)[:dense_n]] if dense_n < len(pool)
                          else pool)
        rows = np.unique(np.concatenate([lex, dense_rows]).astype(np.int64))
        bm25 = full_bm25[rows].astype(np.float64)
        dense = idx.dense_scores(qv, rows).astype(np.float64)
        return Candidates(rows, bm25, dense, _ranks(bm25, np.isin(rows, lex)), _ranks(dense, np.isin(rows, dense_rows)))

    def search(self, query: str, *, k: int = 10, mode: SearchMode = "hybrid",
               files: Sequence[str] | None = None) -> list[Hit]:
        """Top-k chunks. mode: hybrid | bm25 | dense. files: only chunks of these documents."""
        return self.search_with_vector(query, None, k=k, mode=mode, files=files)

    def search_with_vector(self, query: str, query_vec: np.ndarray | None, *, k: int = 10,
                           mode: SearchMode = "hybrid", files: Sequence[str] | None = None) -> list[Hit]:
        """`search` with the query embedding given (batch evaluation embeds all queries at once, each
        in the form `rag.text.normalise` gives, as `candidates` does)."""
        from rag.text import language as query_language

        if mode not in SEARCH_MODES:
            raise ConfigError(f"search mode {mode!r} is not one of {', '.join(SEARCH_MODES)}")
        allowed = None if files is None else self.allowed_rows(files)
        c = self.candidates(query, query_vec=query_vec, allowed=allowed)
        if len(c.rows) == 0:
            return []
        fusion = self.fusion if mode == "hybrid" else mode
        if fusion == "bm25":
            fused = minmax(c.bm25) + 1e-6 * minmax(c.dense)  # dense only breaks ties
        elif fusion == "dense":
            fused = c.dense
        elif fusion == "rrf":
            fused = rrf([c.bm25_rank, c.dense_rank])
        else:
            alpha = dense_weight(query_language(query), self.languages, self.alpha)
            if not np.any(c.bm25 > 0):
                alpha = 1.0  # no shared term: lexical scores say nothing
            fused = convex_fusion(c.bm25, c.dense, alpha) + 1e-6 * minmax(c.dense)
        order = np.argsort(-fused, kind="stable")[:k]
        chunks = self.index.chunks(c.rows[order])
        return [Hit(chunk=ch, score=float(fused[i]), bm25_score=float(c.bm25[i]),
                    bm25_rank=int(c.bm25_rank[i]) or None, dense_score=float(c.dense[i]),
                    dense_rank=int(c.dense_rank[i]) or None, fused_score=float(fused[i]),
                    paginated=self.index.is_paginated(ch.source))
                for ch, i in zip(chunks, order)]

    def allowed_rows(self, files: Sequence[str]) -> np.ndarray:
        """Rows of the chunks of `files`; ConfigError naming any file that is not in the index."""
        known = {f.source for f in self.index.files()}
        unknown = sorted(set(files) - known)
        if unknown:
            listed = ", ".join(sorted(known)[:10]) + (" …" if len(known) > 10 else "")
            raise ConfigError(f"file filter: {', '.join(map(repr, unknown))} not in this collection "
                              f"(documents: {listed or 'none'}; fix: use a name from that list)")
        return self.index.source_rows(files)
