"""Ingest: incremental updates, deletions, bad inputs, the lock, model mismatch, crash safety."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rag.answer.retrieve import Retriever
from rag.cli.ingest import main as ingest_main
from rag.errors import IndexLockedError, IndexMissingError, IndexStateError, IngestError, ModelMismatchError
from rag.index.store import Index, current_generation
from rag.ingest.build import IngestLock, ingest
from tests.conftest import ROOT, shared_path, write_docs

DOCS = {
    "quant.md": "# Quantization\n\nQ4_K_M stores about 4.8 bits per weight.\n\n## Memory\n\n"
                "A 7B model in Q4_K_M needs about 4.4 GB of memory.\n",
    "bm25.txt": "BM25 ranks documents by term frequency and inverse document frequency.\n\n"
                "The k1 parameter controls term frequency saturation.\n",
    "page.html": "<html><head><title>KV cache</title><script>var secret='DECOY';</script></head><body>"
                 "<h1>KV cache</h1><p>The KV cache stores keys and values of past tokens.</p></body></html>",
    "zh/向量.md": "# 向量检索\n\n向量检索把文本变成向量，然后用内积找最近的段落。\n",
}


def state(index_dir: Path) -> dict:
    """Everything a clean ingest determines: chunk ids in row order, files, vectors."""
    idx = Index.open(index_dir)
    con = sqlite3.connect(idx.path / "chunks.sqlite")
    rows = con.execute("SELECT row, id, source, text FROM chunks ORDER BY row").fetchall()
    files = con.execute("SELECT source, hash, chunks FROM files ORDER BY source").fetchall()
    con.close()
    out = {"rows": rows, "files": files, "vectors": np.asarray(idx.vectors).round(5).tolist()}
    idx.close()
    return out


def search_sources(index_dir: Path, embedder, query: str, k: int = 3) -> list[str]:
    idx = Index.open(index_dir)
    return [h.chunk.source for h in Retriever(idx, embedder).search(query, k=k)]


def test_ingest_then_search_finds_each_document(tmp_path, make_cfg, fake_embedder):
    folder = write_docs(tmp_path / "docs", DOCS)
    cfg = make_cfg()
    report = ingest(folder, cfg, embedder=fake_embedder)
    assert sorted(report.new) == sorted(DOCS)
    assert report.failed == [] and report.files == 4 and report.chunks >= 4
    assert search_sources(cfg.index_dir, fake_embedder, "bits per weight Q4_K_M")[0] == "quant.md"
    assert search_sources(cfg.index_dir, fake_embedder, "向量检索 内积")[0] == "zh/向量.md"
    # Scripts and styles never reach the index.
    idx = Index.open(cfg.index_dir)
    assert all("DECOY" not in c.text for c in idx.source_chunks("page.html"))
    assert json.loads((Path(cfg.index_dir) / "last_ingest.json").read_text())["files"] == 4


def test_unchanged_folder_is_a_noop_without_parsing_or_embedding(tmp_path, make_cfg, fake_embedder, monkeypatch):
    folder = write_docs(tmp_path / "docs", DOCS)
    cfg = make_cfg()
    first = ingest(folder, cfg, embedder=fake_embedder)
    calls = fake_embedder.calls
    import rag.ingest.parse

    monkeypatch.setattr(rag.ingest.parse, "parse", lambda *a, **k: pytest.fail("an unchanged file was parsed"))
    second = ingest(folder, cfg, embedder=fake_embedder)
    assert second.noop and second.unchanged == 4 and second.generation == first.generation
    assert fake_embedder.calls == calls


def test_changed_file_is_re_embedded_alone_and_removed_file_leaves_every_store(tmp_path, make_cfg, fake_embedder):
    folder = write_docs(tmp_path / "docs", DOCS)
    cfg = make_cfg()
    ingest(folder, cfg, embedder=fake_embedder)
    before = {r[1] for r in state(cfg.index_dir)["rows"] if r[2] not in ("bm25.txt", "page.html")}
    (folder / "bm25.txt").write_text("Okapi BM25 was developed at City University London.\n", encoding="utf-8")
    (folder / "page.html").unlink()
    report = ingest(folder, cfg, embedder=fake_embedder)
    assert report.changed == ["bm25.txt"] and report.removed == ["page.html"]
    assert report.chunks_embedded == 1  # only the changed file's single chunk
    after = state(cfg.index_dir)
    assert "page.html" not in {r[2] for r in after["rows"]} and "page.html" not in {f[0] for f in after["files"]}
    assert before <= {r[1] for r in after["rows"]}  # untouched files keep their chunk ids
    idx = Index.open(cfg.index_dir)
    assert idx.n_chunks == len(after["rows"]) == idx.vectors.shape[0] == idx.dense.ntotal
    assert idx.bm25_scores(["kv", "cach"]).max() == 0  # BM25 forgot the deleted page
    assert search_sources(cfg.index_dir, fake_embedder, "City University London")[0] == "bm25.txt"


def test_a_new_tokenizer_version_re_tokenizes_every_file(tmp_path, make_cfg, fake_embedder, monkeypatch):
    from rag.index import tokenize as tok

    folder = write_docs(tmp_path / "docs", DOCS)
    cfg = make_cfg()
    first = ingest(folder, cfg, embedder=fake_embedder)
    real = tok.tokenize
    monkeypatch.setattr(tok, "tokenize", lambda text: [*real(text), "tokv2"])  # the tokenizer changes…
    monkeypatch.setattr(tok, "TOKENIZER_VERSION", tok.TOKENIZER_VERSION + "-next")  # …and says so
    second = ingest(folder, cfg, embedder=fake_embedder)
    assert not second.noop and second.generation != first.generation
    assert second.unchanged == 0 and sorted(second.changed) == sorted(DOCS)
    idx = Index.open(cfg.index_dir)
    assert (idx.bm25_scores(["tokv2"]) > 0).all()  # every chunk was tokenized again
    assert idx.manifest["settings"]["tokenizer"] == tok.TOKENIZER_VERSION
    idx.close()


def test_incremental_result_equals_clean_ingest(tmp_path, make_cfg, fake_embedder):
    folder = write_docs(tmp_path / "docs", DOCS)
    cfg = make_cfg()
    ingest(folder, cfg, embedder=fake_embedder)
    (folder / "quant.md").write_text("# Quantization\n\nQ8_0 uses 8.5 bits per weight.\n", encoding="utf-8")
    (folder / "new.txt").write_text("A brand new document about rerankers.\n", encoding="utf-8")
    (folder / "bm25.txt").unlink()
    ingest(folder, cfg, embedder=fake_embedder)
    clean = make_cfg(index_dir=str(tmp_path / "clean"))
    ingest(folder, clean, embedder=fake_embedder)
    assert state(cfg.index_dir) == state(clean.index_dir)


def test_identical_files_give_identical_chunk_ids(tmp_path, make_cfg, fake_embedder):
    a = write_docs(tmp_path / "a", DOCS)
    b = write_docs(tmp_path / "b", DOCS)
    ingest(a, make_cfg(index_dir=str(tmp_path / "ia")), embedder=fake_embedder)
    ingest(b, make_cfg(index_dir=str(tmp_path / "ib")), embedder=fake_embedder)
    assert state(tmp_path / "ia")["rows"] == state(tmp_path / "ib")["rows"]


def test_model_mismatch_is_a_clear_error_with_the_fix(tmp_path, make_cfg, fake_embedder):
    from rag.testing import FakeEmbedder

    folder = write_docs(tmp_path / "docs", DOCS)
    cfg = make_cfg()
    ingest(folder, cfg, embedder=fake_embedder)
    other = make_cfg(embed_model="other-model")
    with pytest.raises(ModelMismatchError) as err:
        ingest(folder, other, embedder=FakeEmbedder(name="other-model"))
    assert "fake-embedder" in str(err.value) and "other-model" in str(err.value) and "--rebuild" in str(err.value)
    with pytest.raises(ModelMismatchError):
        Index.open(cfg.index_dir, embed_model="other-model")
    # --rebuild switches models and leaves a consistent index.
    report = ingest(folder, other, embedder=FakeEmbedder(name="other-model"), rebuild=True)
    assert report.files == 4 and Index.open(cfg.index_dir, embed_model="other-model").n_chunks == report.chunks


def test_missing_index_says_how_to_build_one(tmp_path):
    with pytest.raises(IndexMissingError, match="python -m rag.ingest"):
        Index.open(tmp_path / "nothing")


def test_second_ingest_is_refused_while_the_lock_is_held(tmp_path, make_cfg, fake_embedder):
    folder = write_docs(tmp_path / "docs", DOCS)
    cfg = make_cfg()
    with IngestLock(Path(cfg.index_dir)):
        with pytest.raises(IndexLockedError, match=f"pid {os.getpid()}"):
            ingest(folder, cfg, embedder=fake_embedder)
    assert ingest(folder, cfg, embedder=fake_embedder).files == 4  # released on exit


def test_lock_held_by_another_process_and_stale_lock_after_its_death(tmp_path, make_cfg, fake_embedder):
    folder = write_docs(tmp_path / "docs", DOCS)
    cfg = make_cfg(lock_wait_s=0.0)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from rag.ingest.build import IngestLock\n"
        f"with IngestLock(Path({str(cfg.index_dir)!r})):\n    print('locked', flush=True); time.sleep(60)")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(IndexLockedError, match=f"pid {holder.pid}"):
            ingest(folder, cfg, embedder=fake_embedder)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    # The dead holder's lock file is still there, with its pid: stale, and taken over.
    assert str(holder.pid) in (Path(cfg.index_dir) / ".lock").read_text()
    assert ingest(folder, cfg, embedder=fake_embedder).files == 4


def test_lock_wait_setting_waits_for_the_holder(tmp_path, make_cfg, fake_embedder):
    import threading

    folder = write_docs(tmp_path / "docs", DOCS)
    cfg = make_cfg(lock_wait_s=10.0)
    lock = IngestLock(Path(cfg.index_dir))
    lock.__enter__()
    threading.Timer(0.5, lock.__exit__, args=(None, None, None)).start()
    assert ingest(folder, cfg, embedder=fake_embedder).files == 4


def test_bad_files_are_reported_and_good_ones_indexed(tmp_path, make_cfg, fake_embedder):
    from pypdf import PdfWriter

    folder = write_docs(tmp_path / "docs", {**DOCS, "empty.txt": b"", "random.pdf": os.urandom(2048),
                                            "binary.md": b"\x00\x01\x02\x03" * 500, ".hidden.md": "# hidden\n\nx\n"})
    w = PdfWriter()
    w.add_blank_page(200, 200)
    w.encrypt("secret")
    with open(folder / "locked.pdf", "wb") as fh:
        w.write(fh)
    os.symlink(folder, folder / "loop")
    report = ingest(folder, make_cfg(max_file_mb=1.0), embedder=fake_embedder)
    reasons = {f.source: f.reason for f in report.failed}
    assert reasons["empty.txt"] == "empty file"
    assert reasons["random.pdf"].startswith("not a PDF")
    assert reasons["binary.md"].startswith("binary data")
    assert reasons["locked.pdf"].startswith("encrypted PDF")
    assert all(f.fix for f in report.failed)
    assert ".hidden.md" in {s.source for s in report.skipped}
    assert sorted(report.new) == sorted(DOCS)


def test_a_file_that_breaks_keeps_its_previous_version(tmp_path, make_cfg, fake_embedder):
    folder = write_docs(tmp_path / "docs", DOCS)
    cfg = make_cfg()
    ingest(folder, cfg, embedder=fake_embedder)
    (folder / "bm25.txt").write_bytes(b"\x00\xff" * 100)
    report = ingest(folder, cfg, embedder=fake_embedder)
    assert [f.source for f in report.failed] == ["bm25.txt"] and report.kept_previous == ["bm25.txt"]
    assert search_sources(cfg.index_dir, fake_embedder, "term frequency saturation k1")[0] == "bm25.txt"


def test_nothing_readable_exits_non_zero_with_a_message(tmp_path, capsys):
    folder = write_docs(tmp_path / "docs", {"a.txt": b"", "b.pdf": b"garbage"})
    assert ingest_main([str(folder), "--index", str(tmp_path / "index"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "nothing in" in err and "could be read" in err
    assert ingest_main([str(tmp_path / "missing"), "--index", str(tmp_path / "index")]) == 2
    write_docs(tmp_path / "none", {"image.png": b"\x89PNG"})
    assert ingest_main([str(tmp_path / "none"), "--index", str(tmp_path / "index")]) == 2
    assert "no supported documents" in capsys.readouterr().err


def test_write_failure_leaves_previous_generation_intact(tmp_path, make_cfg, fake_embedder, monkeypatch):
    folder = write_docs(tmp_path / "docs", DOCS)
    cfg = make_cfg()
    first = ingest(folder, cfg, embedder=fake_embedder)
    (folder / "more.txt").write_text("Another file about quantization.\n", encoding="utf-8")
    import rag.index.store

    def disk_full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rag.index.store.np, "save", disk_full)
    with pytest.raises(IngestError, match="No space left on device.*previous generation is untouched"):
        ingest(folder, cfg, embedder=fake_embedder)
    monkeypatch.undo()
    assert current_generation(Path(cfg.index_dir)).name == first.generation
    assert Index.open(cfg.index_dir).n_chunks == first.chunks
    assert ingest(folder, cfg, embedder=fake_embedder).new == ["more.txt"]  # and it recovers


@pytest.mark.parametrize("damage", ["truncate-vectors", "manifest-schema", "bad-current", "delete-faiss"])
def test_damaged_index_is_a_clear_error_naming_rebuild(tmp_path, make_cfg, fake_embedder, damage):
    folder = write_docs(tmp_path / "docs", DOCS)
    cfg = make_cfg()
    ingest(folder, cfg, embedder=fake_embedder)
    gen = current_generation(Path(cfg.index_dir))
    if damage == "truncate-vectors":
        data = (gen / "vectors.npy").read_bytes()
        (gen / "vectors.npy").write_bytes(data[: len(data) // 2])
    elif damage == "manifest-schema":
        m = json.loads((gen / "manifest.json").read_text())
        (gen / "manifest.json").write_text(json.dumps({**m, "schema_version": 99}))
    elif damage == "bad-current":
        (Path(cfg.index_dir) / "CURRENT").write_text("../../etc")
    else:
        (gen / "dense.faiss").unlink()
    with pytest.raises(IndexStateError, match="--rebuild"):
        Index.open(cfg.index_dir)
    if damage != "bad-current":
        assert ingest(folder, cfg, embedder=fake_embedder, rebuild=True).files == 4


KILL_SCRIPT = """
import sys
from rag.config import load_config
from rag.ingest.build import ingest
from rag.testing import FakeEmbedder
cfg = load_config(env={}, overrides={"index_dir": sys.argv[2], "embed_model": "fake-embedder", "rerank": False})
print("start", flush=True)
ingest(sys.argv[1], cfg, embedder=FakeEmbedder(delay=float(sys.argv[3]), batch_size=4))
print("done", flush=True)
"""


def _many_docs(n: int) -> dict[str, str]:
    return {f"doc{i:03d}.md": f"# Document {i}\n\nTopic number {i} talks about item{i} and shared words.\n\n"
            f"Second paragraph {i} mentions widget{i % 7}.\n" for i in range(n)}


@pytest.mark.slow
def test_kill_9_during_ingest_leaves_previous_generation_and_rerun_converges(tmp_path, make_cfg, fake_embedder):
    folder = write_docs(tmp_path / "docs", _many_docs(40))
    cfg = make_cfg()
    first = ingest(folder, cfg, embedder=fake_embedder)
    write_docs(folder, {f"extra{i:03d}.md": f"# Extra {i}\n\nExtra text {i} about gizmo{i}.\n" for i in range(40)})
    (folder / "doc000.md").unlink()
    for delay in (0.05, 0.4, 1.0, 2.5):  # kill at different stages: parse, early embed, late embed, write
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(folder), str(cfg.index_dir), "0.05"],
                                cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "start"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        idx = Index.open(cfg.index_dir)  # always loadable
        assert idx.n_chunks in (first.chunks, idx.n_chunks)
        assert Retriever(idx, fake_embedder).search("Topic number talks", k=3)
        idx.close()
    report = ingest(folder, cfg, embedder=fake_embedder)
    clean = make_cfg(index_dir=str(tmp_path / "clean"))
    ingest(folder, clean, embedder=fake_embedder)
    assert state(cfg.index_dir) == state(clean.index_dir)
    assert not list(Path(cfg.index_dir).glob(".tmp-*"))
    assert report.files == 79


@pytest.mark.slow
def test_shared_pdfs_bad_inputs_and_sample_data(tmp_path, make_cfg, fake_embedder):
    pdfs, bad = shared_path("pdfs"), shared_path("bad-inputs")
    folder = tmp_path / "mixed"
    shutil.copytree(pdfs, folder / "pdfs")
    shutil.copytree(bad, folder / "bad-inputs")
    shutil.copytree(ROOT / "data" / "docs", folder / "sample")
    cfg = make_cfg(ocr=False)  # the reasons without OCR; tests/test_ocr.py reads the scan with it
    report = ingest(folder, cfg, embedder=fake_embedder)
    reasons = {f.source: f.reason for f in report.failed}
    assert reasons == {
        "bad-inputs/password-protected.pdf": "encrypted PDF (password required)",
        "bad-inputs/image-only-scan.pdf": "no text layer (scanned images?)",
        "bad-inputs/mojibake-encoding.pdf": "text layer is unreadable (broken font encoding)",
    }
    good = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
                  and not p.relative_to(folder).as_posix().startswith("bad-inputs"))
    assert sorted(report.new) == good
    idx = Index.open(cfg.index_dir)
    alce = idx.source_chunks("pdfs/alce-paper.pdf")
    assert max(p for c in alce for p in c.pages) >= 20 and idx.is_paginated("pdfs/alce-paper.pdf")
    assert ingest(folder, cfg, embedder=fake_embedder).noop


def test_removing_every_document_commits_an_empty_index(tmp_path, make_cfg, fake_embedder):
    folder = write_docs(tmp_path / "docs", {"only.md": "# One\n\nThe only document.\n"})
    cfg = make_cfg()
    ingest(folder, cfg, embedder=fake_embedder)
    (folder / "only.md").unlink()
    report = ingest(folder, cfg)  # no embedder needed: nothing to embed
    assert report.removed == ["only.md"] and report.chunks == 0
    idx = Index.open(cfg.index_dir)
    assert idx.n_chunks == 0 and idx.files() == []
    assert Retriever(idx, fake_embedder).search("document") == []
