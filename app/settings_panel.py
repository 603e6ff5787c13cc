"""The sidebar's answer settings, saved per collection, and the reranker's plain-language notice.

A collection's top-k, reranking, fusion and temperature (and the model the Models tab picks) live
in its settings.json (`rag.settings`): `saved_config` applies them over the configuration from
rag.toml and the environment, each value checked by `rag.config`, and a bad one costs one sentence
naming the setting and its range. Moving a widget saves the collection's file at once.

The rerank toggle shows what will happen: with no reranker installed it is off and disabled, and
the reason is one line with the technical part (the model id, the command that installs it) in a
"details" expander.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from app import render
from rag.config import FUSIONS, Config
from rag.errors import ConfigError, ModelNotFoundError
from rag.settings import apply_settings, load_settings, save_settings, settings_path

RERANK_OFF_LINE = ":material/info: Reranking is off: no reranker model is installed."


def collection_dir(cfg: Config) -> Path:
    """The folder whose settings.json holds this collection's settings: its index folder."""
    return Path(cfg.index_dir)


def saved_config(cfg: Config) -> tuple[Config, list[str]]:
    """`cfg` with the collection's saved settings applied, and a message per value that was refused."""
    try:
        values = load_settings(settings_path(collection_dir(cfg)))
    except ConfigError as err:
        return cfg, [str(err)]
    return apply_settings(cfg, values)


def save(cfg: Config, **changes: Any) -> None:
    """Merge `changes` into the collection's settings file."""
    path = settings_path(collection_dir(cfg))
    try:
        values = load_settings(path)
    except ConfigError:
        values = {}  # unreadable: its problem was shown; the user's new choice replaces it
    save_settings(path, {**values, **changes})


def show_problems(where, problems: list[str]) -> None:
    for text in problems:
        where.warning(render.md_escape(f"Saved setting not used: {text}"))


def reranker_missing(cfg: Config) -> str:
    """'' when the configured reranker is on this machine, else the full notice (for "details")."""
    from rag.models.embed import resolve_model_path
    from rag.models.reranker import MISSING, missing_fix

    try:
        resolve_model_path(cfg.reranker_model)
    except ModelNotFoundError:
        return (f"The reranker {cfg.reranker_model!r} is {MISSING}. Answers are ranked by the fused BM25 and "
                f"dense scores alone. To install it: {missing_fix(cfg.reranker_model)}.")
    return ""


def rerank_notice(where, details: str) -> None:
    """One line, the rest behind "details"."""
    where.caption(RERANK_OFF_LINE)
    with where.expander("details"):
        st.markdown(render.md_escape(details))


def retrieval_settings(where, cfg0: Config, *, model_loaded: bool) -> Config:
    """The Retrieval section: top-k, rerank, fusion, temperature; each change saved for the collection."""
    from app.resources import reranker_for

    def saver(name: str):
        return lambda: save(cfg0, **{name: st.session_state[name]})

    where.subheader("Retrieval")
    top_k = where.slider("Sources per answer (top-k)", 1, 20, value=min(20, max(1, cfg0.top_k)), key="top_k",
                         on_change=saver("top_k"))
    missing = reranker_missing(cfg0)
    rerank = where.toggle("Rerank with a cross-encoder", value=cfg0.rerank and not missing, key="rerank",
                          disabled=bool(missing), on_change=saver("rerank"))
    if missing:
        rerank = False
        rerank_notice(where, missing)
    elif rerank:
        reranker, notice = reranker_for(cfg0)
        if reranker is None:  # installed but does not load: say so, and answer without it
            rerank = False
            rerank_notice(where, notice or "the reranker did not load")
    fusions = list(FUSIONS)  # Config has checked that cfg0.fusion is one of them
    fusion = where.selectbox("Fusion", fusions, index=fusions.index(cfg0.fusion), key="fusion",
                             on_change=saver("fusion"),
                             help="auto: score fusion that drops a retriever blind to the query's language")
    temperature = where.slider("Temperature", 0.0, 1.5, value=min(1.5, float(cfg0.temperature)), step=0.05,
                               key="temperature", disabled=not model_loaded, on_change=saver("temperature"),
                               help="Only used with a GGUF model")
    return cfg0.with_overrides(top_k=top_k, rerank=rerank, fusion=fusion, temperature=temperature)
