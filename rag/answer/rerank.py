"""Reranking: a cross-encoder re-scores the top fused candidates against the query.

The default, `cross-encoder/ms-marco-MiniLM-L-6-v2`, is small (22M parameters, ~20 ms per
candidate on a laptop CPU) and English-only; for multilingual collections use
`BAAI/bge-reranker-v2-m3` (568M parameters, slower, 100+ languages).

Models load offline, like embedders (`rag.embed.resolve_model_path`: a local folder or the
Hugging Face cache). A missing reranker is not an error: `load_reranker` returns None and a one-line
notice, and the pipeline answers from the fused ranking. Deliberately skipped: LLM-based
listwise rerankers and remote rerank APIs.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
from typing import Protocol, Sequence, runtime_checkable

from rag.models.embed import resolve_model_path
from rag.errors import MissingDependencyError, ModelNotFoundError
from rag.records import Hit

log = logging.getLogger(__name__)


@runtime_checkable
class Reranker(Protocol):
    name: str

    def score(self, query: str, texts: Sequence[str]) -> list[float]: ...


class CrossEncoderReranker:
    """sentence-transformers CrossEncoder; `name` is a local folder or a Hugging Face id in the cache."""

    def __init__(self, name: str, *, path: str | None = None, device: str = "cpu", batch_size: int = 32,
                 max_length: int = 512) -> None:
        try:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            from sentence_transformers import CrossEncoder
        except ImportError as err:
            raise MissingDependencyError("sentence-transformers", "core") from err
        if path is None:
            try:
                path = resolve_model_path(name)
            except ModelNotFoundError as err:
                raise ModelNotFoundError(f"reranker {name!r} is not available offline: {_MISSING} "
                                         f"(fix: {_fix(name)})") from err
        self.name = name
        self.batch_size = batch_size
        self._lock = threading.Lock()  # the HF tokenizer and torch module are shared across UI threads
        self.model = CrossEncoder(path, device=device, max_length=max_length, local_files_only=True)

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        with self._lock:
            scores = self.model.predict([(query, t) for t in texts], batch_size=self.batch_size,
                                        show_progress_bar=False, convert_to_numpy=True)
        return [float(s) for s in scores]


_MISSING = "not a local folder and not in the local Hugging Face cache"


def _fix(name: str) -> str:
    return (f"run `huggingface-cli download {name}` once on a connected machine, set reranker_model to a "
            "local folder, or set rerank = false")


def load_reranker(cfg) -> tuple[Reranker | None, str | None]:
    """(reranker, None), or (None, notice) when reranking is off or the model cannot be loaded.

    cfg: rag.config.Config. Never raises for a missing model: reranking improves answers but is
    not needed for them, so the notice is logged once here and shown with the answer.
    """
    if not cfg.rerank:
        return None, None
    name = cfg.reranker_model
    reason, fix = "", _fix(name)
    try:
        path = resolve_model_path(name)
    except ModelNotFoundError:
        reason = _MISSING
    else:
        try:
            return CrossEncoderReranker(name, path=path), None
        except MissingDependencyError:
            reason, fix = "sentence-transformers is not installed", "pip install sentence-transformers"
        except Exception as err:  # noqa: BLE001 - a broken download must not stop answering
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            reason = f"failed to load: {type(err).__name__}" + (f": {first}" if first else "")
    notice = f"reranker {name!r} unavailable ({reason}): answering without reranking (fix: {fix})"
    log.warning(notice)
    return None, notice


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
