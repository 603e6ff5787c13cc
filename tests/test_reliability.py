"""Reliability: SIGKILL fault injection, concurrent sessions, hostile inputs, the offline guarantee."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, write_docs


@pytest.mark.slow
def test_sigkill_at_random_moments_never_loses_the_index():
    from eval.crash import run

    out = run(trials=4, files=30, seed=1, progress=False)
    assert out["all_ok"], out["results"]
    assert all(r["loads"] and r["hits"] > 0 for r in out["results"])


@pytest.mark.slow
def test_eight_concurrent_sessions_and_an_ingest_make_no_errors():
    from eval.concurrency import run

    out = run(sessions=8, seconds=4, hash_embedder=True, progress=False)
    assert out["errors"] == 0, out["error_samples"]
    assert min(out["per_session_requests"]) > 0
    assert len(out["generations_seen"]) == 2 and out["new_document_found"]


@pytest.mark.slow
@pytest.mark.parametrize("processes", [False, True])
def test_eight_sessions_writing_conversations_lose_no_message(processes):
    from eval.concurrency import run_conversations

    out = run_conversations(sessions=8, messages=6, processes=processes)
    assert out["errors"] == 0, out["error_samples"]
    assert out["lost_messages"] == 0 and out["messages_stored"] == out["messages_expected"] == 8 * 6 * 2


HOSTILE_SCRIPT = """
import json, resource, sys
from rag.config import load_config
from rag.models.embed import HashEmbedder
from rag.ingest.build import ingest
cfg = load_config(env={}, overrides={"index_dir": sys.argv[2], "embed_model": "hash-embedder", "rerank": False})
r = ingest(sys.argv[1], cfg, embedder=HashEmbedder(batch_size=256))
print(json.dumps({"new": r.new, "failed": [[f.source, f.reason] for f in r.failed],
                  "skipped": [f.source for f in r.skipped], "chunks": r.chunks,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


@pytest.mark.slow
def test_hostile_folder_is_ingested_with_reasons_and_bounded_memory(tmp_path):
    folder = write_docs(tmp_path / "docs", {
        "ok.md": "# Fine\n\nA normal document about quantization.\n",
        "gbk.txt": "中文编码测试：量化模型。".encode("gbk"),
        "latin1.txt": "Café crème brûlée, naïve façade.".encode("latin-1"),
        "zero.txt": b"",
        "random.pdf": os.urandom(4096),
        ".hidden.md": "# secret\n\nhidden\n",
        "a/b/c/d/e/f/g/h/i/j/k/l/m/n/deep.md": "# Deep\n\nA deeply nested document.\n",
    })
    (folder / "big.txt").write_bytes(b"word " * (10 * 1024 * 1024))  # 50 MB on one line
    os.symlink(folder / "a", folder / "a" / "b" / "loop")
    (folder / os.fsdecode(b"bad\xffname.txt")).write_text("Name is not UTF-8.\n", encoding="utf-8")
    (folder / "new\nline.md").write_text("# Newline\n\nA file name with a newline.\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-c", HOSTILE_SCRIPT, str(folder), str(tmp_path / "index")], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    failed = dict(report["failed"])
    assert failed["zero.txt"] == "empty file" and failed["random.pdf"].startswith("not a PDF")
    assert failed["a/b/loop"].startswith("symlink loop")
    assert len(failed) == 3
    assert {"ok.md", "gbk.txt", "latin1.txt", "big.txt", "a/b/c/d/e/f/g/h/i/j/k/l/m/n/deep.md",
            "new\nline.md", "bad\\xffname.txt"} <= set(report["new"])
    assert ".hidden.md" in report["skipped"]
    print(f"peak RSS with a 50 MB single-line file: {report['peak_rss_mb']:.0f} MB")  # reported, not asserted
    assert report["chunks"] > 1000  # the big file was chunked, not dropped


def test_models_pull_fails_clearly_offline(capsys, monkeypatch):
    from rag.cli.models import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["pull", "qwen2.5-1.5b", "--dir", "/tmp/rag-models-offline-test"]) == 2
    err = capsys.readouterr().err
    assert "offline" in err.lower() and "fix" in err.lower()


def test_the_suite_blocks_network_calls():
    """pytest-socket is active (pyproject addopts): a connection to a non-loopback host fails."""
    import socket

    from pytest_socket import SocketConnectBlockedError

    with pytest.raises(SocketConnectBlockedError):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
