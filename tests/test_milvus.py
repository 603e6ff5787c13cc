"""The Milvus store against Milvus Lite: ingest, search, incremental update, delete, English and
Chinese, the same fused ranking as the local store, and a clear error for an unreachable server."""
from __future__ import annotations

import numpy as np
import pytest

from rag.answer.retrieve import Retriever
from rag.errors import MissingDependencyError, RagError
from rag.index.store import open_store
from rag.ingest.build import ingest
from tests.conftest import write_docs

pytest.importorskip("pymilvus", reason="the 'milvus' extra is not installed")
pytest.importorskip("milvus_lite", reason="the 'milvus' extra is not installed (Milvus Lite)")

DOCS = {
    "quant.md": "# Quantization\n\nQ4_K_M stores about 4.8 bits per weight in llama.cpp files.",
    "bm25.txt": "BM25 is a ranking function developed at City University London in the 1990s.",
    "zh/向量.md": "# 向量检索\n\n向量检索用内积比较两个嵌入向量，余弦相似度是归一化后的内积。",
    "cats.txt": "Cats sleep for most of the day and hunt small birds at dawn.",
}


@pytest.fixture(scope="module")
def lite_uri(tmp_path_factory):
    """One Milvus Lite database for the module; each test gets its own collection prefix."""
    return str(tmp_path_factory.mktemp("milvus") / "milvus.db")


@pytest.fixture
def milvus_cfg(make_cfg, lite_uri, request):
    names = iter(range(100))
    test = "".join(ch if ch.isalnum() else "_" for ch in request.node.name)[-40:]

    def make(**overrides):
        return make_cfg(store="milvus", milvus_uri=lite_uri, milvus_prefix=f"t{next(names)}_{test}", **overrides)

    return make


def top_sources(cfg, embedder, query: str, k: int = 3) -> list[str]:
    store = open_store(cfg)
    return [h.chunk.source for h in Retriever(store, embedder).search(query, k=k)]


def test_ingest_then_english_and_chinese_queries_find_their_documents(tmp_path, milvus_cfg, fake_embedder):
    cfg = milvus_cfg()
    report = ingest(write_docs(tmp_path / "docs", DOCS), cfg, embedder=fake_embedder)
    assert (len(report.new), report.chunks_embedded, report.generation) == (4, report.chunks, "gen-000001")
    assert top_sources(cfg, fake_embedder, "bits per weight Q4_K_M")[0] == "quant.md"
    assert top_sources(cfg, fake_embedder, "City University London")[0] == "bm25.txt"
    assert top_sources(cfg, fake_embedder, "向量检索 内积")[0] == "zh/向量.md"
    store = open_store(cfg)
    assert [f.source for f in store.files()] == sorted(DOCS)
    chunk = store.source_chunks("bm25.txt")[0]
    assert store.chunk_by_id(chunk.id) == chunk
    assert not (tmp_path / "index" / "CURRENT").exists()  # nothing of the local store was written


def test_fused_scores_equal_the_local_store(tmp_path, make_cfg, milvus_cfg, fake_embedder):
    folder = write_docs(tmp_path / "docs", DOCS)
    local, milvus = make_cfg(), milvus_cfg()
    ingest(folder, local, embedder=fake_embedder)
    ingest(folder, milvus, embedder=fake_embedder)
    for query in ("bits per weight", "ranking function London", "余弦相似度", "birds at dawn"):
        a = Retriever(open_store(local), fake_embedder).search(query, k=4)
        b = Retriever(open_store(milvus), fake_embedder).search(query, k=4)
        assert [h.chunk.id for h in a] == [h.chunk.id for h in b], query
        assert np.allclose([h.bm25_score for h in a], [h.bm25_score for h in b], rtol=1e-4), query
        assert np.allclose([h.dense_score for h in a], [h.dense_score for h in b], atol=1e-5), query


def test_a_file_filter_is_applied_in_milvus_before_the_top_n(tmp_path, make_cfg, milvus_cfg, fake_embedder):
    folder = write_docs(tmp_path / "docs", DOCS)
    local, milvus = make_cfg(), milvus_cfg()
    ingest(folder, local, embedder=fake_embedder)
    ingest(folder, milvus, embedder=fake_embedder)
    for cfg in (local, milvus):
        hits = Retriever(open_store(cfg), fake_embedder).search("bits per weight Q4_K_M", k=3, files=["cats.txt"])
        assert hits and {h.chunk.source for h in hits} == {"cats.txt"}, cfg.store


def test_changed_file_is_re_embedded_alone_and_removed_file_leaves_the_store(tmp_path, milvus_cfg, fake_embedder):
    folder = write_docs(tmp_path / "docs", DOCS)
    cfg = milvus_cfg()
    ingest(folder, cfg, embedder=fake_embedder)
    old = open_store(cfg).source_chunks("cats.txt")
    (folder / "cats.txt").write_text("Dogs bark at the postman every morning.", encoding="utf-8")
    (folder / "bm25.txt").unlink()
    report = ingest(folder, cfg, embedder=fake_embedder)
    assert (report.changed, report.removed, report.unchanged) == (["cats.txt"], ["bm25.txt"], 2)
    assert report.chunks_embedded == 1 and report.generation == "gen-000002"
    store = open_store(cfg)
    assert "bm25.txt" not in {f.source for f in store.files()}
    assert store.chunk_by_id(old[0].id) is None
    assert store.n_chunks == report.chunks
    assert top_sources(cfg, fake_embedder, "postman morning")[0] == "cats.txt"
    assert "bm25.txt" not in top_sources(cfg, fake_embedder, "City University London", k=4)
    again = ingest(folder, cfg, embedder=fake_embedder)
    assert again.noop and again.generation == "gen-000002"


def test_incremental_result_equals_a_clean_ingest(tmp_path, milvus_cfg, fake_embedder):
    folder = write_docs(tmp_path / "docs", DOCS)
    grown = milvus_cfg()
    ingest(folder, grown, embedder=fake_embedder)
    (folder / "quant.md").write_text("# Quantization\n\nQ8_0 keeps 8.5 bits per weight.", encoding="utf-8")
    (folder / "new.txt").write_text("A new note about vector databases and BM25.", encoding="utf-8")
    ingest(folder, grown, embedder=fake_embedder)
    clean = milvus_cfg(index_dir=str(tmp_path / "index-b"))
    ingest(folder, clean, embedder=fake_embedder)
    a, b = open_store(grown), open_store(clean)
    assert (a.n_chunks, a.total_len) == (b.n_chunks, b.total_len)
    for query in ("bits per weight", "vector databases BM25", "向量"):
        ha = Retriever(a, fake_embedder).search(query, k=5)
        hb = Retriever(b, fake_embedder).search(query, k=5)
        assert [h.chunk.id for h in ha] == [h.chunk.id for h in hb]
        assert np.allclose([h.bm25_score for h in ha], [h.bm25_score for h in hb])


def test_an_ingest_killed_before_its_switch_leaves_the_previous_generation(tmp_path, milvus_cfg, fake_embedder,
                                                                          monkeypatch):
    from rag.index.milvus import MilvusWriter

    folder = write_docs(tmp_path / "docs", DOCS)
    cfg = milvus_cfg()
    ingest(folder, cfg, embedder=fake_embedder)
    (folder / "cats.txt").write_text("Dogs bark at the postman every morning.", encoding="utf-8")

    def killed(self, *a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(MilvusWriter, "_update_terms", killed)  # after the new rows, before the switch
    with pytest.raises(KeyboardInterrupt):
        ingest(folder, cfg, embedder=fake_embedder)
    store = open_store(cfg)
    assert store.generation == "gen-000001"
    assert top_sources(cfg, fake_embedder, "birds at dawn")[0] == "cats.txt"
    assert "postman" not in " ".join(c.text for c in store.source_chunks("cats.txt"))
    monkeypatch.undo()
    report = ingest(folder, cfg, embedder=fake_embedder)  # the next ingest clears the leftovers
    assert report.changed == ["cats.txt"]
    assert top_sources(cfg, fake_embedder, "postman morning")[0] == "cats.txt"
    assert open_store(cfg).n_chunks == report.chunks


def test_a_second_ingest_is_refused_while_one_holds_the_lease(tmp_path, milvus_cfg, fake_embedder):
    from rag.errors import IndexLockedError
    from rag.index.milvus import MilvusWriter

    folder = write_docs(tmp_path / "docs", DOCS)
    cfg = milvus_cfg()
    ingest(folder, cfg, embedder=fake_embedder)
    other = MilvusWriter.connect(cfg)
    other.holder = "another-host pid 1"
    other.prepare(rebuild=False)  # holds the lease, as an ingest on another machine would
    (folder / "cats.txt").write_text("changed", encoding="utf-8")
    with pytest.raises(IndexLockedError, match="another-host pid 1"):
        ingest(folder, cfg, embedder=fake_embedder)
    other.close()
    assert ingest(folder, cfg, embedder=fake_embedder).changed == ["cats.txt"]


def test_unreachable_milvus_names_the_uri_and_writes_nothing(tmp_path, make_cfg, fake_embedder):
    folder = write_docs(tmp_path / "docs", DOCS)
    cfg = make_cfg(store="milvus", milvus_uri="http://127.0.0.1:1")
    with pytest.raises(RagError, match=r"http://127\.0\.0\.1:1.*fix:") as err:
        ingest(folder, cfg, embedder=fake_embedder)
    assert "store = \"local\"" in str(err.value)
    assert not (tmp_path / "index").exists()
    with pytest.raises(RagError, match=r"http://127\.0\.0\.1:1"):
        open_store(cfg)


def test_a_bad_milvus_uri_is_refused_at_start_up(make_cfg):
    with pytest.raises(RagError, match="milvus_uri"):
        make_cfg(store="milvus", milvus_uri="milvus-data")


def test_missing_pymilvus_names_the_extra(monkeypatch, milvus_cfg):
    import sys

    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(MissingDependencyError, match=r"\.\[milvus\]"):
        open_store(milvus_cfg())
