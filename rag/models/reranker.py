"""The cross-encoder reranker backend (sentence-transformers CrossEncoder), loaded offline.

The default, `cross-encoder/ms-marco-MiniLM-L-6-v2`, is small (22M parameters, ~20 ms per
candidate on a laptop CPU) and English-only; for multilingual collections use
`BAAI/bge-reranker-v2-m3` (568M parameters, slower, 100+ languages).

Models load offline, like embedders (`rag.models.embed.resolve_model_path`: a local folder or the
Hugging Face cache, then `local_files_only`); nothing here sets environment variables. The
`Reranker` protocol and the pure `rerank` stage live in rag.answer.rerank; `load_reranker`, which
turns a missing model into a notice, in rag.models.factory. Deliberately skipped: LLM-based
listwise rerankers and remote rerank APIs.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence

from rag.errors import MissingDependencyError, ModelNotFoundError
from rag.models.embed import resolve_model_path

MISSING = "not a local folder and not in the local Hugging Face cache"


def missing_fix(name: str) -> str:
    """What the user can do about a reranker that is not available offline."""
    return (f"run `huggingface-cli download {name}` once on a connected machine, set reranker_model to a "
            "local folder, or set rerank = false")


class CrossEncoderReranker:
    """sentence-transformers CrossEncoder; `name` is a local folder or a Hugging Face id in the cache."""

    def __init__(self, name: str, *, path: str | None = None, device: str = "cpu", batch_size: int = 32,
                 max_length: int = 512) -> None:
        try:
            from sentence_transformers import CrossEncoder
        except ImportError as err:
            raise MissingDependencyError("sentence-transformers") from err
        if path is None:
            try:
                path = resolve_model_path(name)
            except ModelNotFoundError as err:
                raise ModelNotFoundError(f"reranker {name!r} is not available offline: {MISSING} "
                                         f"(fix: {missing_fix(name)})") from err
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
