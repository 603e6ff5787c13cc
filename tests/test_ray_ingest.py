"""Distributed ingest on a real local Ray cluster (rag.ingest.distributed): equal to a local ingest,
and a failed worker or an absent cluster leaves the index as it was.

The module's head is started with `ray start --head --block` as a child of this process and stopped by
ending that child (`ray stop` would stop every Ray cluster on the machine, not only this one).
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rag.answer.retrieve import Retriever
from rag.errors import IngestError
from rag.index.store import Index, current_generation
from rag.ingest.build import ingest
from rag.testing import DyingEmbedder, FailingEmbedder, FakeEmbedder

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")

from rag.ingest.distributed import ray_ingest  # noqa: E402  (after the skip: it needs ray)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "data" / "docs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """HOST:PORT of a two-CPU Ray head on this machine, for this module's tests."""
    port = _free_port()
    temp = tmp_path_factory.mktemp("ray")
    ray_bin = Path(sys.executable).with_name("ray")
    cmd = [str(ray_bin), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
           "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
           f"--ray-client-server-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}",
           f"--metrics-export-port={_free_port()}", f"--runtime-env-agent-port={_free_port()}"]
    log = open(temp / "head.log", "w")
    t0 = time.monotonic()
    # No 30 s drain on SIGTERM: that is for Serve replicas behind a load balancer, not for a test head.
    env = {**os.environ, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    head = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    address = f"127.0.0.1:{port}"
    while time.monotonic() - t0 < 120:
        if head.poll() is not None:
            pytest.fail(f"ray start exited with {head.returncode}: {(temp / 'head.log').read_text()[-2000:]}")
        if "Ray runtime started" in (temp / "head.log").read_text():
            break
        time.sleep(0.5)
    else:
        head.send_signal(signal.SIGTERM)
        pytest.fail(f"the Ray head did not start in 120 s: {(temp / 'head.log').read_text()[-2000:]}")
    print(f"\nRay head at {address} up in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    yield address
    head.send_signal(signal.SIGTERM)  # --block: ending it stops the head's processes
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
    log.close()


def state(index_dir: Path) -> dict:
    """What an ingest determines: chunks in row order, files, vectors, the manifest less its time."""
    gen = current_generation(index_dir)
    assert gen is not None
    con = sqlite3.connect(gen / "chunks.sqlite")
    rows = con.execute("SELECT row, id, source, text FROM chunks ORDER BY row").fetchall()
    files = con.execute("SELECT source, hash, chunks FROM files ORDER BY source").fetchall()
    con.close()
    manifest = json.loads((gen / "manifest.json").read_text())
    manifest.pop("created")
    return {"rows": rows, "files": files, "vectors": np.load(gen / "vectors.npy"), "manifest": manifest}


@pytest.mark.slow
def test_ray_ingest_of_data_docs_equals_a_local_ingest(ray_head, make_cfg, tmp_path):
    local = ingest(DOCS, make_cfg(index_dir=str(tmp_path / "local")), embedder=FakeEmbedder())
    seen: list[tuple[str, int, int]] = []
    t0 = time.perf_counter()
    distributed = ray_ingest(DOCS, make_cfg(index_dir=str(tmp_path / "ray")), address=ray_head,
                             make_embedder=FakeEmbedder, progress=lambda *p: seen.append(p))
    print(f"\nlocal ingest {local.seconds:.1f} s, Ray ingest {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    a, b = state(tmp_path / "local"), state(tmp_path / "ray")
    assert b["rows"] == a["rows"] and len(a["rows"]) == local.chunks > 0
    assert b["files"] == a["files"]
    np.testing.assert_allclose(b["vectors"], a["vectors"], atol=1e-6)
    assert b["manifest"] == a["manifest"]
    assert (distributed.new, distributed.failed, distributed.chunks_embedded) == (local.new, local.failed,
                                                                                   local.chunks_embedded)
    # progress as a local ingest shows it: every file parsed, every chunk embedded
    assert ("parse", len(local.new), len(local.new)) in seen
    assert ("embed", local.chunks, local.chunks) in seen

    again = ray_ingest(DOCS, make_cfg(index_dir=str(tmp_path / "ray")), address=ray_head, make_embedder=FakeEmbedder)
    assert again.noop and again.unchanged == len(local.new)


@pytest.mark.slow
def test_a_worker_failing_mid_ingest_keeps_the_previous_generation(ray_head, make_cfg, tmp_path):
    folder = tmp_path / "docs"
    shutil.copytree(DOCS, folder)
    cfg = make_cfg(index_dir=str(tmp_path / "index"))
    first = ingest(folder, cfg, embedder=FakeEmbedder())
    (folder / "new.md").write_text("# Speculative decoding\n\nA small draft model proposes tokens that the "
                                   "large model verifies in one pass.\n", encoding="utf-8")
    # The workers' embedder breaks on its first batch: the worker raises inside Ray, not here.
    with pytest.raises(IngestError, match="Ray worker failed while embedding.*previous generation stays"):
        ray_ingest(folder, cfg, address=ray_head, make_embedder=functools.partial(FailingEmbedder, fail_after=0))
    gen = current_generation(tmp_path / "index")
    assert gen is not None and gen.name == first.generation
    idx = Index.open(tmp_path / "index")
    try:
        hits = Retriever(idx, FakeEmbedder()).search("BM25 term frequency saturation", k=3)
        assert hits and "new.md" not in {h.chunk.source for h in hits}
        assert "new.md" not in {f.source for f in idx.files()}
    finally:
        idx.close()


@pytest.mark.slow
def test_a_worker_killed_mid_ingest_is_retried_and_the_result_equals_a_local_ingest(ray_head, make_cfg, tmp_path):
    marker = tmp_path / "killed-once"
    ingest(DOCS, make_cfg(index_dir=str(tmp_path / "local")), embedder=FakeEmbedder())
    report = ray_ingest(DOCS, make_cfg(index_dir=str(tmp_path / "ray")), address=ray_head,
                        make_embedder=functools.partial(DyingEmbedder, marker=str(marker)))
    assert marker.exists()  # a worker did die (SIGKILL in its first batch); Ray restarted it and retried
    a, b = state(tmp_path / "local"), state(tmp_path / "ray")
    assert b["rows"] == a["rows"] and report.chunks == len(a["rows"])
    np.testing.assert_allclose(b["vectors"], a["vectors"], atol=1e-6)


def test_an_unreachable_ray_address_is_a_clear_error_and_writes_nothing(make_cfg, tmp_path):
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    with pytest.raises(IngestError, match=rf"no Ray cluster answers at {address}.*ray start --head"):
        ray_ingest(DOCS, make_cfg(index_dir=str(tmp_path / "index")), address=address, make_embedder=FakeEmbedder)
    assert not (tmp_path / "index").exists()


def test_a_malformed_ray_address_names_the_form(make_cfg, tmp_path):
    with pytest.raises(IngestError, match="'headnode' is not HOST:PORT"):
        ray_ingest(DOCS, make_cfg(index_dir=str(tmp_path / "index")), address="headnode")
    assert not (tmp_path / "index").exists()


@pytest.mark.parametrize("how", ["flag", "setting"])
def test_the_command_line_sends_the_ingest_to_ray_by_flag_or_setting(how, tmp_path, monkeypatch, capsys):
    from rag.cli.ingest import main

    address = f"127.0.0.1:{_free_port()}"
    argv = [str(DOCS), "--index", str(tmp_path / "index"), "--quiet"]
    if how == "flag":
        argv += ["--ray", address]
    else:
        monkeypatch.setenv("RAG_RAY_ADDRESS", address)
    assert main(argv) == 2
    assert f"no Ray cluster answers at {address}" in capsys.readouterr().err
    assert not (tmp_path / "index").exists()
