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

import threading
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from rag.config import FUSIONS, Config, Fusion
from rag.errors import ConfigError
from rag.models.embed import Embedder, embed_queries, model_languages
from rag.records import Hit

if TYPE_CHECKING:
    from rag.index.store import Store

SearchMode = Literal["hybrid", "bm25", "dense"]  # hybrid: the retriever's fusion; else one side alone
SEARCH_MODES: tuple[str, ...] = typing.get_args(SearchMode)
LANGUAGE_SAMPLE = 400  # files read to tell the collection's languages (Retriever.document_languages)


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
    """Searches one Store with one Embedder; stateless between calls, safe to share across threads.

    The defaults are Config's (one source of truth); the Pipeline passes its configured values.
    """

    def __init__(self, index: Store, embedder: Embedder, *, fusion: Fusion = Config.fusion,
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
        self._languages: frozenset[str] | None = None  # of the documents: document_languages
        self._lock = threading.Lock()

    def candidates(self, query: str, *, n: int | None = None, query_vec: np.ndarray | None = None,
                   sources: Sequence[str] | None = None) -> Candidates:
        """The lexical and dense top-n, each scored on both sides. `sources` (documents, checked by
        `check_files`) restricts both retrievers in the store before they pick their top-n, so a
        file filter costs no recall (`Store.candidates`)."""
        from rag.index.tokenize import tokenize
        from rag.text import normalise

        n = n or self.n_candidates
        if self.index.n_chunks == 0:
            empty = np.zeros(0)
            return Candidates(empty.astype(np.int64), empty, empty, empty.astype(np.int64), empty.astype(np.int64))
        qv = embed_queries(self.embedder, [normalise(query)])[0] if query_vec is None else query_vec
        p = self.index.candidates(tokenize(query), qv, n, sources=sources)
        return Candidates(p.rows, p.bm25, p.dense, _ranks(p.bm25, p.lexical), _ranks(p.dense, p.nearest))

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
        c = self.candidates(query, query_vec=query_vec, sources=None if files is None else self.check_files(files))
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

    def document_languages(self) -> frozenset[str]:
        """The languages the collection's documents are written in (`translate.chunk_language` of each
        file's first chunk; up to LANGUAGE_SAMPLE files, evenly spread), once per generation."""
        with self._lock:
            if self._languages is None:
                from rag.answer.translate import chunk_language

                files = sorted(f.source for f in self.index.files())
                step = max(1, len(files) // LANGUAGE_SAMPLE)
                found = set()
                for source in files[::step]:
                    chunks = self.index.source_chunks(source)
                    if chunks:
                        found.add(chunk_language(chunks[0].text))
                self._languages = frozenset(found)
            return self._languages

    def check_files(self, files: Sequence[str]) -> list[str]:
        """`files`, sorted and unique; ConfigError naming any file that is not in the index."""
        known = {f.source for f in self.index.files()}
        unknown = sorted(set(files) - known)
        if unknown:
            listed = ", ".join(sorted(known)[:10]) + (" …" if len(known) > 10 else "")
            raise ConfigError(f"file filter: {', '.join(map(repr, unknown))} not in this collection "
                              f"(documents: {listed or 'none'}; fix: use a name from that list)")
        return sorted(set(files))
