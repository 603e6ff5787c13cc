"""Reranking: the pure `rerank` with a fake scorer, and a tiny random cross-encoder built on the spot."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from rag.answer.rerank import Reranker, rerank
from rag.config import Config
from rag.models.factory import load_reranker
from rag.models.reranker import CrossEncoderReranker
from rag.records import Chunk, Hit
from rag.testing import write_tiny_cross_encoder


def hit(text: str, score: float = 0.0) -> Hit:
    return Hit(chunk=Chunk(id=text, source="doc.txt", text=text, start=0, end=len(text), pages=(1,)),
               score=score, fused_score=score)


class LengthReranker:
    """Scores a text by its length: easy to predict."""

    name = "length"

    def score(self, query: str, texts) -> list[float]:
        return [float(len(t)) for t in texts]


HITS = [hit("bb", 0.9), hit("a", 0.8), hit("dddd", 0.7), hit("cc", 0.6), hit("eeeee", 0.5)]


def test_rerank_sorts_by_reranker_score_and_keeps_earlier_scores():
    out = rerank(LengthReranker(), "q", HITS, top_n=4)
    assert [h.chunk.text for h in out] == ["dddd", "bb", "cc", "a"]  # 'eeeee' was beyond top_n
    assert [h.score for h in out] == [4.0, 2.0, 2.0, 1.0]
    assert all(h.rerank_score == h.score for h in out)
    assert out[0].fused_score == 0.7  # the fused score survives for the UI and eval


def test_rerank_ties_keep_incoming_order_and_top_n_edges():
    assert [h.chunk.text for h in rerank(LengthReranker(), "q", HITS, top_n=5)] == ["eeeee", "dddd", "bb", "cc", "a"]
    assert rerank(LengthReranker(), "q", HITS, top_n=0) == []
    assert rerank(LengthReranker(), "q", [], top_n=5) == []
    assert len(rerank(LengthReranker(), "q", HITS, top_n=50)) == len(HITS)


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory) -> Path:
    pytest.importorskip("sentence_transformers")
    return write_tiny_cross_encoder(tmp_path_factory.mktemp("ce") / "tiny-ce")


@pytest.fixture(scope="session")
def tiny_reranker(tiny_cross_encoder) -> Reranker:
    reranker, notice = load_reranker(Config(reranker_model=str(tiny_cross_encoder)))
    assert notice is None
    return reranker


def test_tiny_cross_encoder_loads_and_scores(tiny_reranker, tiny_cross_encoder):
    assert isinstance(tiny_reranker, CrossEncoderReranker) and isinstance(tiny_reranker, Reranker)
    assert tiny_reranker.name == str(tiny_cross_encoder)
    texts = ["paris is the capital of france", "the cat", "python code and tests", "the sun is a star"]
    scores = tiny_reranker.score("what is the capital of france", texts)
    assert len(scores) == 4 and len(set(scores)) == 4  # random weights, but distinct and repeatable
    assert tiny_reranker.score("what is the capital of france", texts) == scores
    assert tiny_reranker.score("q", []) == []


def test_rerank_with_the_cross_encoder_orders_by_its_scores(tiny_reranker):
    hits = [hit(t) for t in ["paris is the capital of france", "the cat", "dogs and cats", "python code", "x"]]
    out = rerank(tiny_reranker, "capital of france", hits, top_n=4)
    scores = tiny_reranker.score("capital of france", [h.chunk.text for h in hits[:4]])
    assert len(out) == 4 and "x" not in [h.chunk.text for h in out]
    assert [h.rerank_score for h in out] == sorted(scores, reverse=True)


def test_missing_reranker_is_a_notice_not_an_error(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="rag.models.factory"):
        reranker, notice = load_reranker(Config(reranker_model="no/such-model"))
    assert reranker is None
    assert "'no/such-model'" in notice and "without reranking" in notice and "fix:" in notice
    assert len(notice.splitlines()) == 1
    assert [r.getMessage() for r in caplog.records] == [notice]


def test_broken_reranker_folder_is_a_notice(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    reranker, notice = load_reranker(Config(reranker_model=str(tmp_path)))
    assert reranker is None and "failed to load" in notice and "without reranking" in notice


def test_rerank_off_means_no_reranker_and_no_notice():
    assert load_reranker(Config(rerank=False, reranker_model="no/such-model")) == (None, None)


@pytest.fixture
def clean_hf_environment(monkeypatch):
    """The variables the backend used to set for itself, unset for the test (conftest sets them).

    The third-party libraries are imported first: torch sets variables of its own on import, which
    are not ours to answer for."""
    for name in ("sentence_transformers",):
        pytest.importorskip(name)
    for key in ("HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM"):
        monkeypatch.delenv(key, raising=False)


def test_loading_a_reranker_leaves_the_environment_alone(tiny_cross_encoder, tmp_path, clean_hf_environment):
    before = dict(os.environ)
    reranker = CrossEncoderReranker(str(tiny_cross_encoder))
    assert reranker.score("q", ["a text"])  # it loaded and works
    (tmp_path / "config.json").write_text("{not json")
    assert load_reranker(Config(reranker_model=str(tmp_path)))[0] is None  # and failing to load
    assert dict(os.environ) == before
