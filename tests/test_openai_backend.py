"""The OpenAI-compatible generator backend against a scripted fake server on 127.0.0.1, and one real
llama-cpp-python server (slow)."""
from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi", reason="the fake OpenAI server is a FastAPI app (serve extra)")

from rag.answer.gate import YesNoModel
from rag.errors import RagError
from rag.ingest.build import ingest
from rag.models.llama import load_generator
from rag.models.openai_backend import OpenAIGenerator, ServerError, estimate_tokens
from rag.pipeline import Pipeline
from rag.serve.app import serve_in_thread
from rag.testing import FakeEmbedder
from tests.conftest import write_docs
from tests.fake_openai import MEMORY, Script, fake_openai_server


@pytest.fixture
def fake():
    script = Script()
    with serve_in_thread(fake_openai_server(script)) as url:
        yield script, f"{url}/v1"


def gen_for(url: str, **kw) -> OpenAIGenerator:
    return OpenAIGenerator(url, **{"backoff_s": 0.01, **kw})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_streams_the_scripted_chunks_with_the_server_default_model(fake):
    script, url = fake
    gen = gen_for(url)
    assert gen.model == "fake-model"  # llm_model empty: the server's first model
    pieces = list(gen.stream([{"role": "user", "content": "q"}], max_tokens=50, temperature=0.0, stop=["\n\n"]))
    assert len(pieces) > 3 and "".join(pieces) == MEMORY
    sent = script.seen[-1]
    assert sent["stream"] is True and sent["model"] == "fake-model" and sent["temperature"] == 0.0
    assert sent["stop"] == ["\n\n"] and sent["max_tokens"] == 50


def test_429_then_success_is_retried_before_the_first_token(fake):
    script, url = fake
    gen = gen_for(url)
    script.fail_first = 2
    assert "".join(gen.stream([{"role": "user", "content": "q"}], max_tokens=50)) == MEMORY
    assert len(script.seen) == 3


def test_persistent_5xx_gives_up_with_the_url_and_the_fix(fake):
    script, url = fake
    gen = gen_for(url, retries=2)
    script.fail_first, script.fail_status = 10, 503
    with pytest.raises(ServerError) as err:
        list(gen.stream([{"role": "user", "content": "q"}], max_tokens=50))
    assert f"{url}/chat/completions" in str(err.value) and "3 tries" in str(err.value) and "fix:" in str(err.value)
    assert len(script.seen) == 3


def test_a_server_that_dies_mid_stream_is_a_clear_error_not_a_retry(fake):
    script, url = fake
    gen = gen_for(url)
    script.die_after = 3
    got = []
    with pytest.raises(ServerError) as err:
        for piece in gen.stream([{"role": "user", "content": "q"}], max_tokens=50):
            got.append(piece)
    assert "".join(got) == " ".join(MEMORY.split(" ")[:3])  # what came before the break was shown
    assert "stopped in the middle of the answer" in str(err.value) and url in str(err.value)
    assert len(script.seen) == 1  # text was shown: never asked again


def test_no_server_at_the_url_fails_at_load_naming_it():
    url = f"http://127.0.0.1:{free_port()}/v1"
    t0 = time.perf_counter()
    with pytest.raises(ServerError) as err:
        gen_for(url, retries=1)
    assert url in str(err.value) and "llama_cpp.server" in str(err.value) and "llm_base_url" in str(err.value)
    assert time.perf_counter() - t0 < 5


def test_tokens_are_counted_by_the_server_when_it_can_else_estimated(fake):
    script, url = fake
    gen = gen_for(url)
    assert gen.tokenizer.endswith("/tokenize")
    assert gen.count_tokens("one two three four five six seven") == 7  # the fake's tokenizer: words
    script.tokenize = False
    other = gen_for(url)
    text = "The KV cache stores the keys and values of past tokens."
    assert other.tokenizer == "estimate" and other.count_tokens(text) == estimate_tokens(text)
    assert estimate_tokens(text) >= len(text) / 4.13  # over-counts against the measured 4.13 chars/token


def test_the_api_key_comes_from_the_environment_is_sent_and_never_shown(fake, make_cfg, monkeypatch):
    script, url = fake
    script.key = "sk-very-secret"
    monkeypatch.setenv("MY_LLM_KEY", "sk-very-secret")
    cfg = make_cfg(llm_backend="openai", llm_base_url=url, llm_api_key_env="MY_LLM_KEY")
    gen = load_generator(cfg)
    assert "".join(gen.stream([{"role": "user", "content": "q"}], max_tokens=50)) == MEMORY
    assert script.auth[-1] == "Bearer sk-very-secret"
    assert "sk-very" not in repr(gen) + gen.name + repr(cfg) + str(vars(gen).get("api_key", ""))
    monkeypatch.setenv("MY_LLM_KEY", "wrong")
    with pytest.raises(ServerError) as err:
        load_generator(cfg)
    assert "401" in str(err.value) and "llm_api_key_env" in str(err.value) and "wrong" not in str(err.value)


def test_yes_probability_reads_top_logprobs_and_exists_only_when_the_server_has_them(fake, make_cfg):
    script, url = fake
    cfg = make_cfg(llm_backend="openai", llm_base_url=url, gate_threshold=0.5)  # the gate is off by default
    assert not isinstance(load_generator(cfg), YesNoModel)  # no logprobs: the gate is skipped, not guessed
    script.logprobs = {"No": -0.2, "Yes": -1.8, "The": -3.0}
    gen = load_generator(cfg)
    assert isinstance(gen, YesNoModel)
    p = gen.yes_probability([{"role": "user", "content": "Do the passages answer it? Reply yes or no."}])
    assert p == pytest.approx(1 / (1 + math.exp(1.6)), abs=1e-6)
    sent = script.seen[-1]
    assert sent["logprobs"] is True and sent["top_logprobs"] == 20 and sent["max_tokens"] == 1


@pytest.fixture
def collection(tmp_path, make_cfg):
    docs = write_docs(tmp_path / "docs", {
        "quant.md": "# Quantization\n\nQ4_K_M stores about 4.8 bits per weight.\n\n"
                    "A 7B model in Q4_K_M needs about 4.4 GB of memory.\n",
        "cache.md": "# KV cache\n\nThe KV cache stores the keys and values of past tokens.\n"})
    emb = FakeEmbedder()
    ingest(docs, make_cfg(), embedder=emb)
    return emb


def test_the_pipeline_answers_through_the_backend_with_the_same_checks(fake, make_cfg, collection):
    script, url = fake
    cfg = make_cfg(llm_backend="openai", llm_base_url=url, abstain_threshold=0.0)
    pipe = Pipeline(cfg, embedder=collection, reranker=None)
    ans = pipe.ask("How much memory does a 7B model need in Q4_K_M?")
    assert ans.mode == "generative" and ans.citations[0].source == "quant.md"
    assert all(s.supported for s in ans.sentences)
    assert '<source id="1">' in script.seen[-1]["messages"][-1]["content"]  # the pipeline's own prompt


def test_the_gate_refuses_through_the_backend_when_the_server_says_no(fake, make_cfg, collection):
    script, url = fake
    script.logprobs = {"No": -0.05, "Yes": -3.0}
    cfg = make_cfg(llm_backend="openai", llm_base_url=url, abstain_threshold=0.0, gate_threshold=0.5)
    ans = Pipeline(cfg, embedder=collection, reranker=None).ask("How much memory does a 7B model need?")
    assert ans.refused and ans.timings["answerable"] < 0.5


def test_a_server_dying_mid_answer_reaches_the_pipeline_caller_as_a_rag_error(fake, make_cfg, collection):
    script, url = fake
    script.die_after = 2
    cfg = make_cfg(llm_backend="openai", llm_base_url=url, abstain_threshold=0.0)
    with pytest.raises(RagError, match="stopped in the middle"):
        Pipeline(cfg, embedder=collection, reranker=None).ask("How much memory does a 7B model need?")


@pytest.mark.slow
def test_a_real_llama_cpp_server_answers_through_the_backend(tmp_path, make_cfg, collection):
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python's server extra is not installed")
    from rag.testing import write_tiny_gguf

    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rag.models.llama_server", "--model", str(model),
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "512", "--verbose", "false"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "NO_PROXY": "*"})
    try:
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server did not start: {proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.2)
        cfg = make_cfg(llm_backend="openai", llm_base_url=url, abstain_threshold=0.0, n_ctx=512, passage_tokens=40,
                       top_k=2, max_answer_tokens=16)
        gen = load_generator(cfg)
        assert gen.tokenizer.endswith("/extras/tokenize") and gen.count_tokens("hello world") > 0
        pieces = list(gen.stream([{"role": "user", "content": "hi"}], max_tokens=8, temperature=0.0))
        assert pieces and len("".join(pieces)) > 0  # the tiny model always runs to max_tokens
        ans = Pipeline(cfg, embedder=collection, generator=gen, reranker=None).ask("How much memory does a 7B "
                                                                                   "model need?")
        assert ans.mode in ("generative", "extractive", "refused") and ans.text  # random weights: any mode
        proc.kill()
        proc.wait(timeout=10)
        with pytest.raises(ServerError):
            list(gen_for(url, retries=0, probe=False, model=gen.model).stream([{"role": "user", "content": "hi"}],
                                                                               max_tokens=8))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
