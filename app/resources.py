"""Process-wide resources of the app, held in `st.cache_resource`: models load once, for every session.

One `Pipeline` per distinct configuration (the sidebar's top-k, reranker, fusion and temperature
make a session's configuration); all of them share one embedder, one GGUF generator and one
reranker, each cached under the settings that select it, so moving a slider never loads a model
twice. The generator is wrapped in `rag.models.speeds.MeteredGenerator`, which keeps the speed of
its last answers in models/speeds.json; `release_models` drops it when the model manager switches
models. The embedder loads on first use, so an empty or mismatched index can be explained without
loading (or failing to find) a model.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from rag.config import Config
from rag.errors import RagError
from rag.pipeline import Pipeline

# Settings that select each model; everything else may differ between sessions.
_EMBED_KEYS = ("embed_model", "embed_backend", "embed_device", "embed_batch_size", "embed_languages")
_GEN_KEYS = ("llm_model", "n_gpu_layers", "n_ctx", "n_threads", "n_threads_batch", "seed", "chat_prefix_cache",
             "weight_repack", "llm_backend", "llm_base_url", "llm_api_key_env", "llm_timeout_s")


def _key(cfg: Config, names: tuple[str, ...]) -> str:
    return repr(tuple((n, getattr(cfg, n)) for n in names))


@st.cache_resource(show_spinner="Loading the embedding model…", max_entries=2)
def _embedder(key: str, _cfg: Config):
    from rag.models.factory import load_embedder

    return load_embedder(_cfg)


@st.cache_resource(show_spinner="Loading the language model…", max_entries=2)
def _generator(key: str, _cfg: Config) -> tuple[object, str]:
    """(generator or None, error). A configured model that fails to load, or that llama-cpp-python
    is not installed to run (MissingDependencyError, naming the extra), is reported in the sidebar
    and the app answers extractively, rather than failing every question."""
    from rag.models.llama import load_generator
    from rag.models.speeds import MeteredGenerator

    try:
        gen = load_generator(_cfg)
    except RagError as err:
        return None, str(err)
    path = getattr(gen, "path", None)  # a local GGUF: its speed is kept beside it (models/speeds.json)
    return (MeteredGenerator(gen, Path(path).parent) if gen is not None and path else gen), ""


@st.cache_resource(show_spinner="Loading the reranker…", max_entries=4)
def _reranker(name: str, _cfg: Config) -> tuple[object, str]:
    """(reranker or None, notice): a missing reranker costs a notice, never an error."""
    from rag.models.factory import load_reranker

    reranker, notice = load_reranker(_cfg.with_overrides(rerank=True))
    return reranker, notice or ""


def release_models() -> None:
    """Forget the loaded generators and the Pipelines holding them: the next page run loads the newly
    chosen model once, and the old one is freed when the answers still using it finish."""
    _generator.clear()
    _pipeline.clear()


def _generator_key(cfg: Config) -> str:
    """The settings that select the generator, and with no llm_model the GGUF that stands for it: the
    first one in models/ is a file listing, not a setting, so a model installed (or removed) while the
    app runs is picked up instead of the cached 'no model'."""
    key = _key(cfg, _GEN_KEYS)
    if cfg.llm_backend == "llamacpp" and not cfg.llm_model.strip():
        from rag.models.llama import resolve_gguf

        found = resolve_gguf("")
        key += repr(str(found.resolve()) if found else None)
    return key


def generator_for(cfg: Config) -> tuple[object, str]:
    return _generator(_generator_key(cfg), cfg)


def reranker_for(cfg: Config) -> tuple[object, str]:
    return _reranker(cfg.reranker_model, cfg)


class LazyEmbedder:
    """Stands in for the shared embedder until something embeds or asks for its size."""

    def __init__(self, cfg: Config) -> None:
        self._cfg = cfg

    def __getattr__(self, name: str):
        return getattr(_embedder(_key(self._cfg, _EMBED_KEYS), self._cfg), name)


@st.cache_resource(show_spinner=False, max_entries=8)  # each holds an open index generation
def _pipeline(key: str, _cfg: Config) -> Pipeline:
    reranker = reranker_for(_cfg)[0] if _cfg.rerank else None
    return Pipeline(_cfg, embedder=LazyEmbedder(_cfg), generator=generator_for(_cfg)[0], reranker=reranker)


def pipeline_for(cfg: Config) -> Pipeline:
    """The shared Pipeline for this exact configuration (created once per process)."""
    return _pipeline(repr(cfg) + _generator_key(cfg), cfg)
