"""The same real model in this process and behind a real OpenAI-compatible server gives the same results.

`python -m rag.models.llama_server` (llama-cpp-python's `server` extra, with the product's weight-repack
rule) serves Qwen2.5-Coder-0.5B-Instruct on 127.0.0.1; the shipped set's seeded 20 questions run once
through the in-process generator and once through `llm_backend = "openai"`, over one index. The two
runs' 95 % bootstrap intervals of every headline metric must overlap: what differs between the two
paths is transport (and sampling at temperature 0.1), not answers. (Not a paired test: a metric's
values are over the questions a run answered, which may differ.) Then the server is killed in the
middle of an answer: the caller gets a RagError naming the URL.

Slow: 20 answers a run, twice: 256 s on 2 idle cores.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eval.faithfulness import DEFAULT_DATASET, evaluate, load_eval_set
from rag.config import load_config
from rag.errors import RagError
from rag.pipeline import Pipeline
from tests.real_models import pulled

pytestmark = pytest.mark.slow

MODEL = "qwen2.5-coder-0.5b"
LIMIT = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def model_path() -> str:
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python's server extra is not installed")
    return pulled(MODEL)


def start_server(model: str, n_ctx: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    # one decode thread and the physical cores for reading, as the in-process default does
    proc = subprocess.Popen([sys.executable, "-m", "rag.models.llama_server", "--model", model, "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", "1",
                             "--n_threads_batch", str(max(1, (os.cpu_count() or 2))), "--seed", "0",
                             "--verbose", "false"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "NO_PROXY": "*"})
    deadline = time.monotonic() + 120
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                assert proc.stderr is not None
                pytest.fail(f"llama_cpp.server did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)


@pytest.fixture(scope="module")
def server(model_path):
    cfg = load_config(env={})
    proc, url = start_server(model_path, cfg.n_ctx)
    yield proc, url
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("eval")


@pytest.fixture(scope="module")
def runs(model_path, server, eval_dir) -> tuple[dict, dict]:
    _, url = server
    out = eval_dir
    es = load_eval_set(DEFAULT_DATASET, None, limit=LIMIT)
    cfg = load_config(env={}, overrides={"rerank": False})
    local = evaluate(es, cfg, out / "in-process", model=model_path, progress=False)
    remote = evaluate(es, cfg.with_overrides(llm_backend="openai", llm_base_url=url), out / "server",
                      model=model_path, index=out / "in-process" / "index", progress=False)
    return local, remote


def test_both_paths_answer_every_question_in_generative_mode(runs) -> None:
    local, remote = runs
    for report in (local, remote):
        assert report["mode"] == "generative"
        assert report["dataset"]["questions"] == LIMIT
    assert local["dataset"]["sha256"] == remote["dataset"]["sha256"]
    assert local["dataset"]["corpus_sha256"] == remote["dataset"]["corpus_sha256"]


def test_every_headline_metric_agrees_within_bootstrap_noise(runs) -> None:
    local, remote = runs
    apart = {}
    for metric, a in local["metrics"].items():
        b = remote["metrics"][metric]
        if a is None or b is None:
            assert a is None and b is None, (metric, a, b)  # a metric only one path could score
            continue
        ci_a, ci_b = local["ci95"][metric] or [a, a], remote["ci95"][metric] or [b, b]
        if ci_a[1] + 1e-9 < ci_b[0] or ci_b[1] + 1e-9 < ci_a[0]:  # the two intervals do not overlap
            apart[metric] = {"in-process": a, "ci": ci_a, "server": b, "server ci": ci_b}
    assert not apart, apart


def test_killing_the_server_mid_answer_is_an_error_naming_it(model_path, server, runs, eval_dir) -> None:
    """The server is killed as soon as the answer's first token arrives from it (not at the first text
    the pipeline shows: the junk guard may hold a short answer back until the model has finished)."""
    from rag.answer.translate import PROMPTS

    proc, url = server
    cfg = load_config(env={}, overrides={"rerank": False, "llm_backend": "openai", "llm_base_url": url,
                                         "llm_model": model_path, "abstain_threshold": 0.0, "gate_threshold": 0.0,
                                         "index_dir": str(eval_dir / "in-process" / "index")})
    pipe = Pipeline(cfg)
    gen = pipe.generator
    assert gen is not None
    backend_stream = gen.stream
    received = []

    def stream(messages, **kw):
        for piece in backend_stream(messages, **kw):
            yield piece
            if messages[0]["content"] not in PROMPTS and not received:  # the answer, not a query translation
                received.append(piece)
                proc.kill()
                proc.wait(timeout=30)

    gen.stream = stream  # type: ignore[method-assign]
    with pytest.raises(RagError) as err:
        list(pipe.stream("How many bits per weight does Q4_K_M use on average?"))
    assert received, "the server was never seen answering"
    assert "127.0.0.1" in str(err.value), str(err.value)
