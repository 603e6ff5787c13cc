"""The model manager (the Models tab) and the sidebar's model status card.

- Installed models: every GGUF in models/ (`rag.models.registry.installed_models`), its size on
  disk and its measured speed (`rag.models.speeds`: tokens/s of its last answers). "Use" makes it
  the collection's model (settings.json, `app.settings_panel.save`) and drops the loaded one
  (`app.resources.release_models`), so the next run loads the new model once.
- GPU layers and context size, saved the same way.
- Recommended models not installed yet: "Install" runs `rag.models.pull` (the code behind
  `python -m rag.models pull`) as a `PullJob` in a background thread; a fragment polls it once a
  second for the progress bar, and "Cancel" sets its event. Jobs are process-wide (one per model),
  so a reload or a second session sees the same download.

Deliberately skipped: deleting model files from the UI (a 4 GB download lost to a misclick).
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import render
from app.settings_panel import save
from rag.config import Config
from rag.models import registry
from rag.models.pull import PullJob
from rag.models.registry import DEFAULT_DIR, InstalledModel
from rag.models.speeds import last_speed, mean_speed

CONTEXT_SIZES = [2048, 4096, 8192, 16384, 32768]


def models_dir() -> Path:
    return DEFAULT_DIR


# --- the sidebar card --------------------------------------------------------------------------------


def status_card(where, cfg: Config):
    """The Model section of the sidebar: which model answers, on what, and how fast it last wrote.
    Returns the loaded generator, or None (extractive mode)."""
    from app.resources import generator_for

    where.subheader("Model")
    gen, error = generator_for(cfg)
    if gen is not None:
        slot = where.empty()
        st.session_state["model_card"] = (slot, gen)  # redrawn after an answer: refresh_status_card
        _card(slot, gen)
    else:
        where.info("Extractive mode: answers are sentences quoted from the documents. To get written "
                   "answers, install a model in the Models tab.")
    if error:
        where.error(render.md_escape(error))
    return gen


def _card(slot, gen) -> None:
    path = getattr(gen, "path", None)
    speed = last_speed(Path(path).parent, gen.name) if path else None
    text = f"GGUF loaded: {gen.name} · {getattr(gen, 'offload', 'CPU')}"
    text += f" · last answer {speed:g} tokens/s" if speed else " · speed: not measured yet"
    slot.success(render.md_escape(text))


def refresh_status_card() -> None:
    """Redraw this run's status card, so the speed of the answer just written shows at once."""
    card = st.session_state.get("model_card")
    if card is not None:
        _card(*card)


# --- the Models tab ----------------------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def _jobs() -> dict[str, PullJob]:
    """The pulls of this process, by model name (shared by every session)."""
    return {}


def _size(n: int) -> str:
    """'1.1 GB', '491 MB', '0.2 MB'.

    >>> _size(1_117_320_768), _size(491_400_064), _size(210_000)
    ('1.1 GB', '491 MB', '0.2 MB')
    """
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    return f"{n / 1e6:.0f} MB" if n >= 1e7 else f"{n / 1e6:.1f} MB"


def _use(cfg: Config, model: InstalledModel) -> None:
    from app.resources import release_models

    # a recommended model by its name (found in models/ wherever the app runs), any other by its path
    save(cfg, llm_model=model.recommended.name if model.recommended else str(model.path))
    release_models()


def _active(cfg: Config, gen, installed: list[InstalledModel]) -> str:
    """The file name of the model answering now ('' for none)."""
    if gen is not None:
        return str(gen.name)
    spec = cfg.llm_model.strip()
    for m in installed:
        if spec and spec in (m.name, str(m.path), m.recommended.name if m.recommended else None):
            return m.name
    return ""


def models_tab(cfg: Config) -> None:
    from app.resources import generator_for

    gen = generator_for(cfg)[0]
    directory = models_dir()
    installed = registry.installed_models(directory)
    active = _active(cfg, gen, installed)
    st.subheader("Installed models")
    if not installed:
        st.info(render.md_escape(f"No model in {directory}/ yet: answers are sentences quoted from the "
                                 "documents. Install a recommended model below."))
    for m in installed:
        name, meta, action = st.columns([5, 4, 2], vertical_alignment="center")
        label = m.recommended.name if m.recommended else m.name
        name.markdown(render.md_escape(label) + ("  \n" + render.md_escape(m.name) if m.recommended else ""))
        speed = mean_speed(directory, m.name)
        meta.caption(render.md_escape(f"{_size(m.bytes)} on disk · "
                                      + (f"writes {speed:g} tokens/s (last answers)" if speed else
                                         "speed not measured yet")))
        if m.name == active:
            action.button("Active", key=f"use-{m.name}", disabled=True, icon=":material/check:")
        else:
            action.button("Use", key=f"use-{m.name}", on_click=_use, args=(cfg, m))

    st.subheader("Run settings")
    a, b = st.columns(2)
    a.number_input("GPU layers (0 = CPU only, -1 = all)", min_value=-1, max_value=999, step=1,
                   value=max(-1, min(999, cfg.n_gpu_layers)), key="n_gpu_layers",
                   on_change=lambda: _save_run(cfg, "n_gpu_layers"),
                   help="Layers offloaded to the GPU; ignored by a CPU-only llama-cpp-python build")
    sizes = sorted({*CONTEXT_SIZES, cfg.n_ctx}) if cfg.n_ctx else CONTEXT_SIZES
    b.selectbox("Context size (tokens)", sizes, index=sizes.index(cfg.n_ctx) if cfg.n_ctx in sizes else 1,
                key="n_ctx", on_change=lambda: _save_run(cfg, "n_ctx"),
                help="What the model reads at once: the question, the sources and the conversation")

    st.subheader("Recommended models")
    jobs = _jobs()
    names = {m.name for m in installed}
    for rec in registry.RECOMMENDED:
        if rec.file in names:
            continue
        job = jobs.get(rec.name)
        name, meta, action = st.columns([5, 4, 2], vertical_alignment="center")
        name.markdown(render.md_escape(rec.name) + "  \n" + render.md_escape(rec.note or rec.languages))
        meta.caption(render.md_escape(f"{rec.size_gb:.1f} GB download · {rec.languages}"
                                      + ("" if rec.offline else " · from Hugging Face")))
        if job is None:
            action.button("Install", key=f"install-{rec.name}", icon=":material/download:",
                          on_click=_install, args=(rec.name, directory))
        elif job.finished:
            jobs.pop(rec.name, None)
            if job.cancelled:
                st.info(render.md_escape(f"Install of {rec.name} cancelled. What was downloaded is kept: "
                                         "installing again resumes."))
            elif job.error:
                st.error(render.md_escape(f"Install of {rec.name} failed: {job.error}"))
            action.button("Install", key=f"install-{rec.name}", icon=":material/download:",
                          on_click=_install, args=(rec.name, directory))
        else:
            _progress(rec.name)
    for job_name, job in list(jobs.items()):  # installed now: say so once
        if job.finished and job.result is not None:
            jobs.pop(job_name, None)
            st.success(render.md_escape(f"Installed {job_name} ({_size(job.result.bytes)}). Press Use to answer "
                                        "with it."))


def _save_run(cfg: Config, name: str) -> None:
    from app.resources import release_models

    save(cfg, **{name: st.session_state[name]})
    release_models()  # the model loads again with the new layers or context


def _install(name: str, directory: Path) -> None:
    jobs = _jobs()
    if name not in jobs or jobs[name].finished:
        jobs[name] = PullJob(name, directory.resolve()).start()  # the thread outlives this run (and its cwd)


@st.fragment(run_every=1.0)
def _progress(name: str) -> None:
    """The running pull's bar, redrawn every second; the whole page reruns once it has ended."""
    job = _jobs().get(name)
    if job is None or job.finished:
        st.rerun()
    assert job is not None
    if job.stage == "hub":
        text = f"Downloading {name} from Hugging Face" + (f": {_size(job.done)} of {_size(job.total)}"
                                                          if job.total else "…")
    elif job.stage == "assemble":
        text = f"Checking {name}: {_size(job.done)} of {_size(job.total)}"
    elif job.total:
        text = f"Downloading {name}: {_size(job.done)} of {_size(job.total)}"
    else:
        text = f"Starting the download of {name}…"
    st.progress(job.fraction, text=render.md_escape(text))
    if st.button("Cancel", key=f"cancel-{name}", icon=":material/close:"):
        job.cancel.set()
        st.caption("Cancelling…")
