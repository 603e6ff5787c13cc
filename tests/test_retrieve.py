"""Retrieval: fusion functions, the BM25 oracle, the language-aware dense weight, HNSW recall."""
from __future__ import annotations

import random

import numpy as np
import pytest

from rag.answer.retrieve import Retriever, convex_fusion, dense_weight, minmax, rrf
from rag.config import FUSIONS, Config
from rag.errors import ConfigError
from rag.index.store import Index, build_dense
from rag.index.tokenize import tokenize
from rag.ingest.build import build_index
from rag.records import Document, Page

WORDS = ("quantization weight bits memory cache token model vector index search rerank prompt answer citation "
         "page document chunk embedding latency throughput context window layer matrix kernel").split()


def corpus(n: int = 60, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 25))) + f" unique{i}" for i in range(n)]


def test_minmax_and_convex_fusion_by_hand():
    assert minmax(np.array([5.0, 5.0])).tolist() == [0.0, 0.0]
    fused = convex_fusion(np.array([0.0, 10.0, 5.0]), np.array([0.2, 0.4, 0.6]), 0.5)
    assert fused.round(3).tolist() == [0.0, 0.75, 0.75]
    assert convex_fusion(np.array([0.0, 10.0]), np.array([1.0, 0.0]), 0.0).tolist() == [0.0, 1.0]


def test_rrf_by_hand():
    # doc0 ranked 1st and 3rd, doc1 2nd by one retriever only
    got = rrf([np.array([1, 2]), np.array([3, 0])], k=60)
    assert got.round(6).tolist() == [round(1 / 61 + 1 / 63, 6), round(1 / 62, 6)]


def test_dense_weight_drops_a_blind_embedder():
    english = frozenset({"latin"})
    assert dense_weight("cjk", english, 0.5) == 0.0
    assert dense_weight("latin", english, 0.5) == 0.5
    assert dense_weight("cjk", None, 0.5) == 0.5  # multilingual embedders keep their say
    assert dense_weight("other", english, 0.5) == 0.5


def test_bm25s_scores_equal_rank_bm25_okapi_oracle():
    """Same tokens, same k1/b, Robertson idf: bm25s must reproduce BM25Okapi's scores up to the constant
    (k1 + 1) factor that BM25Okapi keeps in its numerator (it changes no ranking)."""
    bm25s = pytest.importorskip("bm25s")
    rank_bm25 = pytest.importorskip("rank_bm25")
    docs = [tokenize(t) for t in corpus()]
    okapi = rank_bm25.BM25Okapi(docs, k1=1.2, b=0.75, epsilon=0.0)
    ours = bm25s.BM25(k1=1.2, b=0.75, method="robertson")
    ours.index(docs, show_progress=False)
    for q in ("unique7 memory", "quantization bits unique3", "citation page", "unique59"):
        qt = tokenize(q)
        rare = [t for t in qt if sum(t in d for d in docs) < len(docs) / 2]  # Okapi floors negative idf
        expected = okapi.get_scores(rare)
        got = ours.get_scores(rare)
        np.testing.assert_allclose(got * (1.2 + 1), expected, rtol=1e-4, atol=1e-4)


def test_product_bm25_ranking_agrees_with_the_oracle(tmp_path, make_cfg, fake_embedder):
    """The index's BM25 (Lucene idf) ranks like BM25Okapi on rare-term queries."""
    rank_bm25 = pytest.importorskip("rank_bm25")
    texts = corpus()
    docs = [Document(source=f"d{i:02d}", kind="txt", pages=(Page(1, t),)) for i, t in enumerate(texts)]
    cfg = make_cfg()
    build_index(docs, cfg.index_dir, cfg, fake_embedder)
    idx = Index.open(cfg.index_dir)
    tokens = [tokenize(t) for t in texts]
    okapi = rank_bm25.BM25Okapi(tokens, k1=1.2, b=0.75)
    agree = 0
    queries = [f"unique{i} {WORDS[i % len(WORDS)]}" for i in range(0, 60, 3)]
    for q in queries:
        ours = idx.bm25_scores(tokenize(q))
        sources = [c.source for c in idx.chunks(np.argsort(-ours)[:3])]
        oracle = [f"d{i:02d}" for i in np.argsort(-okapi.get_scores(tokenize(q)), kind="stable")[:3]]
        agree += sources[0] == oracle[0]
    assert agree == len(queries)


def test_cjk_query_on_english_embedder_is_ranked_by_bm25_alone(tmp_path, make_cfg, fake_embedder):
    docs = [Document(source=f"zh{i}", kind="txt", pages=(Page(1, t),)) for i, t in enumerate(
        ["向量检索使用内积寻找最近的段落。", "量化把权重压缩到更少的比特。", "重排序模型给候选段落重新打分。"])]
    cfg = make_cfg()
    build_index(docs, cfg.index_dir, cfg, fake_embedder)
    idx = Index.open(cfg.index_dir)
    r = Retriever(idx, fake_embedder, alpha=0.5)
    r.languages = frozenset({"latin"})  # as for all-MiniLM-L6-v2
    hybrid = [h.chunk.source for h in r.search("量化 比特", k=3)]
    bm25 = [h.chunk.source for h in r.search("量化 比特", k=3, mode="bm25")]
    assert hybrid[0] == bm25[0] == "zh1"


def test_hits_carry_every_score(tmp_path, make_cfg, fake_embedder):
    docs = [Document(source=f"d{i:02d}", kind="txt", pages=(Page(1, t),)) for i, t in enumerate(corpus(20))]
    cfg = make_cfg()
    build_index(docs, cfg.index_dir, cfg, fake_embedder)
    hits = Retriever(Index.open(cfg.index_dir), fake_embedder).search("unique5 memory", k=5)
    assert hits[0].chunk.source == "d05" and hits[0].bm25_rank == 1
    assert all(h.dense_score is not None and h.fused_score == h.score for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.fixture
def small_index(make_cfg, fake_embedder) -> Index:
    docs = [Document(source=f"d{i:02d}", kind="txt", pages=(Page(1, t),)) for i, t in enumerate(corpus(20))]
    cfg = make_cfg()
    build_index(docs, cfg.index_dir, cfg, fake_embedder)
    return Index.open(cfg.index_dir)


def test_unknown_fusion_is_an_error_listing_the_valid_values(small_index, fake_embedder):
    with pytest.raises(ConfigError) as err:
        Retriever(small_index, fake_embedder, fusion="rff")  # type: ignore[arg-type]
    assert "'rff'" in str(err.value) and all(f in str(err.value) for f in FUSIONS)
    with pytest.raises(ConfigError, match="auto, rrf, bm25, dense"):
        Config(fusion="rff")  # type: ignore[arg-type]


def test_unknown_search_mode_is_an_error(small_index, fake_embedder):
    with pytest.raises(ConfigError, match="hybrid, bm25, dense"):
        Retriever(small_index, fake_embedder).search("memory", mode="rrf")  # type: ignore[arg-type]


def test_retriever_defaults_are_the_configs(small_index, fake_embedder):
    """One source of truth: a Retriever built without settings fuses like the default Config."""
    r, cfg = Retriever(small_index, fake_embedder), Config()
    assert (r.fusion, r.alpha, r.n_candidates) == (cfg.fusion, cfg.fusion_alpha, cfg.candidates)
    explicit = Retriever(small_index, fake_embedder, fusion=cfg.fusion, alpha=cfg.fusion_alpha,
                         candidates=cfg.candidates)
    for q in ("unique5 memory", "quantization bits", "citation page layer"):
        assert [(h.chunk.id, h.score) for h in r.search(q)] == [(h.chunk.id, h.score) for h in explicit.search(q)]


def test_hnsw_recall_against_exact_flat():
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((4000, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    flat = build_dense(vecs, exact_max=10**9, hnsw_m=32, ef_search=128)
    hnsw = build_dense(vecs, exact_max=100, hnsw_m=32, ef_search=128)
    assert hasattr(hnsw, "hnsw") and not hasattr(flat, "hnsw")
    queries = vecs[:200] + 0.1 * rng.standard_normal((200, 32)).astype(np.float32)
    _, exact = flat.search(queries, 10)
    _, approx = hnsw.search(queries, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert recall >= 0.95
