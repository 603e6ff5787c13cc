"""rag.serve driven by the official `openai` client, as a user's script or chat client would drive it."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("fastapi", reason="rag.serve needs the serve extra: pip install -e '.[serve]'")
openai = pytest.importorskip("openai", reason="the tests drive rag.serve with the openai client (dev extra)")

from rag.errors import RagError  # noqa: E402
from rag.ingest.build import ingest  # noqa: E402
from rag.pipeline import Pipeline  # noqa: E402
from rag.serve.app import RateLimiter, ServeSettings, create_app, serve_in_thread  # noqa: E402
from rag.testing import FakeEmbedder, FakeGenerator, SlowGenerator  # noqa: E402
from tests.conftest import write_docs  # noqa: E402

DOCS = {
    "quant.md": "# Quantization\n\nQ4_K_M stores about 4.8 bits per weight.\n\n"
                "A 7B model in Q4_K_M needs about 4.4 GB of memory.\n",
    "cache.md": "# KV cache\n\nThe KV cache stores the keys and values of past tokens.\n\n"
                "Its size grows linearly with the context length.\n",
    "zh.md": "# 重排序\n\n交叉编码器重排序比向量检索更准确，但速度更慢。\n\n它的缺点是每个候选段落都要单独计算一次。\n",
}
MEMORY = "A 7B model in Q4_K_M needs about 4.4 GB of memory [1]."


@pytest.fixture
def served(tmp_path, make_cfg):
    """serve(reply, settings=, generator=, **cfg) → (openai client, base URL, the generator)."""
    docs = write_docs(tmp_path / "docs", DOCS)
    started = []

    def serve(reply: str | list[str] = MEMORY, *, settings: ServeSettings | None = None,
              generator: FakeGenerator | None = None, **overrides):
        cfg = make_cfg(**{"abstain_threshold": 0.0, "docs_dir": str(docs), **overrides})
        emb = FakeEmbedder()
        ingest(docs, cfg, embedder=emb)
        gen = generator or FakeGenerator(reply)
        pipe = Pipeline(cfg, embedder=emb, generator=gen, reranker=None)
        ctx = serve_in_thread(create_app(pipe, settings or ServeSettings(rate_limit=0)))
        url = ctx.__enter__()
        started.append(ctx)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=30)
        return client, url, gen

    yield serve
    for ctx in started:
        ctx.__exit__(None, None, None)


def post(url: str, body: bytes, *, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_models_lists_the_collection_named_after_its_index(served):
    client, _, _ = served()
    assert [m.id for m in client.models.list().data] == ["index"]


def test_non_streamed_answer_carries_markers_and_citations(served):
    client, _, gen = served()
    resp = client.chat.completions.create(model="index", messages=[
        {"role": "user", "content": "How much memory does a 7B model need in Q4_K_M?"}])
    text = resp.choices[0].message.content
    assert "[1]" in text and "4.4 GB" in text
    rag = resp.model_extra["rag"]
    assert rag["refused"] is False and rag["mode"] == "generative"
    cite = rag["citations"][0]
    assert cite["n"] == 1 and cite["file"] == "quant.md" and "4.4 GB" in cite["quote"]
    assert cite["support"] is not None and cite["support"] > 0.4
    assert rag["sentences"][0]["supported"]
    assert gen.prompts and '<source id="1">' in gen.prompts[0][-1]["content"]  # the pipeline's own prompt


def test_streamed_answer_joins_to_the_final_text_and_ends_with_citations(served):
    client, _, _ = served()
    stream = client.chat.completions.create(model="index", stream=True, messages=[
        {"role": "user", "content": "How much memory does a 7B model need in Q4_K_M?"}])
    chunks = list(stream)
    pieces = [c.choices[0].delta.content or "" for c in chunks]
    assert len([p for p in pieces if p]) > 1  # streamed in pieces, not in one go
    assert chunks[-1].choices[0].finish_reason == "stop"
    rag = chunks[-1].model_extra["rag"]
    assert "".join(pieces) == rag["answer"] and "[1]" in rag["answer"]
    assert rag["citations"][0]["file"] == "quant.md"


def test_history_is_passed_and_the_last_user_message_is_the_question(served):
    client, _, gen = served()
    client.chat.completions.create(model="index", messages=[
        {"role": "system", "content": "You are a pirate."},
        {"role": "user", "content": "What does Q4_K_M store?"},
        {"role": "assistant", "content": "About 4.8 bits per weight [1]."},
        {"role": "user", "content": [{"type": "text", "text": "How much memory does a 7B model need?"}]}])
    asked = gen.prompts[-1]
    assert "How much memory does a 7B model need?" in asked[-1]["content"]
    assert any("4.8 bits" in m["content"] for m in asked[:-1])  # the earlier turn is history
    assert not any("pirate" in m["content"] for m in asked)  # the prompt contract owns the system message


def test_a_refusal_is_a_normal_answer_with_a_flag(served):
    client, _, _ = served(abstain_threshold=0.99)  # no passage is evidence enough
    resp = client.chat.completions.create(model="index", messages=[
        {"role": "user", "content": "Who won the 1998 football world cup?"}])
    rag = resp.model_extra["rag"]
    assert rag["refused"] is True and rag["mode"] == "refused" and rag["citations"] == []
    assert resp.choices[0].message.content and resp.choices[0].finish_reason == "stop"


def test_a_retraction_is_flagged_and_the_text_after_it_is_the_answer(served):
    # The guard retracts a reply that cites nothing (twice), then the answer is quoted from the documents.
    client, _, _ = served(["The answer is probably something else entirely and goes on and on. " * 3])
    chunks = list(client.chat.completions.create(model="index", stream=True, messages=[
        {"role": "user", "content": "How much memory does a 7B model need in Q4_K_M?"}]))
    rag = chunks[-1].model_extra["rag"]
    retracted = [i for i, c in enumerate(chunks) if (c.model_extra.get("rag") or {}).get("retract")]
    after = "".join(c.choices[0].delta.content or "" for c in chunks[(retracted[-1] + 1 if retracted else 0):])
    assert after == rag["answer"]
    assert rag["mode"] == "extractive" and rag["fallback"]
    assert retracted, "the text shown before the fallback must be retracted"


def test_a_question_in_chinese_is_answered_in_chinese_from_the_chinese_document(served):
    client, _, _ = served("交叉编码器重排序比向量检索更准确，但速度更慢 [1]。")
    resp = client.chat.completions.create(model="index", messages=[
        {"role": "user", "content": "交叉编码器重排序有什么优缺点？"}])
    rag = resp.model_extra["rag"]
    assert "更准确" in resp.choices[0].message.content and not rag["refused"]
    assert rag["citations"][0]["file"] == "zh.md"


def test_search_returns_ranked_hits_with_files_and_text(served):
    _, url, _ = served()
    status, body = post(f"{url}/v1/search", json.dumps({"query": "KV cache context length", "k": 2}).encode())
    assert status == 200 and len(body["data"]) == 2
    assert body["data"][0]["file"] == "cache.md" and body["data"][0]["rank"] == 1
    assert "context length" in body["data"][0]["text"] or "KV cache" in body["data"][0]["text"]


def test_ingest_adds_a_document_that_answers_next(served, tmp_path):
    client, url, _ = served("Bananas are yellow when ripe [1].")
    boundary = "----ragtest"
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"fruit.md\"\r\n"
            "Content-Type: text/markdown\r\n\r\n# Fruit\n\nBananas are yellow when ripe.\n\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"evil.exe\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\nMZ\x90\x00\r\n"
            f"--{boundary}--\r\n").encode()
    status, body = post(f"{url}/v1/ingest", part, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200, body
    assert [s["file"] for s in body["saved"]] == ["fruit.md"] and body["generation"]
    assert body["rejected"][0]["file"] == "evil.exe" and "unsupported" in body["rejected"][0]["reason"]
    assert (tmp_path / "docs" / "fruit.md").is_file()
    resp = client.chat.completions.create(model="index", messages=[{"role": "user", "content": "What colour are "
                                                                                               "ripe bananas?"}])
    assert resp.model_extra["rag"]["citations"][0]["file"] == "fruit.md"


def test_a_wrong_token_is_401_and_the_right_one_passes(served):
    client, url, _ = served(settings=ServeSettings(api_key="s3cret", rate_limit=0))
    with pytest.raises(openai.AuthenticationError) as err:
        client.models.list()
    assert err.value.status_code == 401 and "RAG_API_KEY" in str(err.value)
    good = openai.OpenAI(base_url=f"{url}/v1", api_key="s3cret", max_retries=0)
    assert [m.id for m in good.models.list().data] == ["index"]
    with urllib.request.urlopen(f"{url}/healthz", timeout=10) as resp:  # health needs no token
        assert json.loads(resp.read())["status"] == "ok"


def test_an_oversized_request_is_413(served):
    client, url, gen = served(settings=ServeSettings(max_request_bytes=2000, rate_limit=0))
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="index", messages=[{"role": "user", "content": "x " * 2000}])
    assert err.value.status_code == 413 and not gen.prompts
    # without Content-Length too (a chunked body): read up to the limit, never further
    req = urllib.request.Request(f"{url}/v1/search", data=iter([b'{"query": "' + b"a" * 1500, b"a" * 1500 + b'"}']),
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as raw:
        urllib.request.urlopen(req, timeout=10)
    assert raw.value.code == 413


def test_a_burst_above_the_rate_limit_is_429_with_retry_after(served):
    client, _, _ = served(settings=ServeSettings(rate_limit=3))
    for _ in range(3):
        client.models.list()
    with pytest.raises(openai.RateLimitError) as err:
        client.models.list()
    assert err.value.status_code == 429 and int(err.value.response.headers["retry-after"]) >= 1


def test_malformed_json_and_bad_fields_are_422(served):
    _, url, gen = served()
    status, body = post(f"{url}/v1/chat/completions", b'{"model": "index", "messages": [')
    assert status == 422 and body["error"]["code"] == "invalid_json"
    status, body = post(f"{url}/v1/chat/completions", json.dumps({"messages": []}).encode())
    assert status == 422 and "messages" in body["error"]["message"]
    status, body = post(f"{url}/v1/chat/completions", json.dumps(
        {"messages": [{"role": "assistant", "content": "hi"}]}).encode())
    assert status == 422 and "question" in body["error"]["message"]
    status, body = post(f"{url}/v1/search", json.dumps({"query": "x", "mode": "fuzzy"}).encode())
    assert status == 422 and "mode" in body["error"]["message"]
    assert not gen.prompts


def test_an_unknown_model_is_404_naming_the_collection(served):
    client, _, _ = served()
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    assert "'index'" in str(err.value)


def test_no_cors_headers_by_default(served):
    _, url, _ = served()
    req = urllib.request.Request(f"{url}/v1/models", headers={"Origin": "https://evil.example"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert "access-control-allow-origin" not in {k.lower() for k in resp.headers}


def test_the_rate_limiter_refills_over_time():
    now = [0.0]
    rl = RateLimiter(60, clock=lambda: now[0])  # one a second, bursts of 60
    assert all(rl.wait("a") == 0.0 for _ in range(60))
    assert rl.wait("a") == pytest.approx(1.0) and rl.wait("b") == 0.0  # per client
    now[0] = 2.0
    assert rl.wait("a") == 0.0 and rl.wait("a") == 0.0 and rl.wait("a") > 0


class DyingGenerator(FakeGenerator):
    """Streams two words, then fails as a remote server that went away does; `deaths` times, then works."""

    def __init__(self, reply: str, *, deaths: int) -> None:
        super().__init__(reply)
        self.deaths = deaths

    def stream(self, messages, **kw):
        from rag.answer.translate import PROMPTS

        messages = list(messages)
        pieces = super().stream(messages, **kw)
        if self.deaths <= 0 or messages[0]["content"] in PROMPTS:  # a translation: not an answer
            yield from pieces
            return
        self.deaths -= 1
        yield next(pieces)
        yield next(pieces)
        raise RagError("the generation server at http://127.0.0.1:1/v1 stopped in the middle of the answer")


def test_a_generator_failing_mid_answer_reaches_the_client_as_an_error_and_the_server_stays_up(served):
    client, _, _ = served(generator=DyingGenerator(MEMORY, deaths=2))
    stream = client.chat.completions.create(model="index", stream=True, messages=[
        {"role": "user", "content": "How much memory does a 7B model need in Q4_K_M?"}])
    with pytest.raises(openai.APIError, match="stopped in the middle"):
        list(stream)
    with pytest.raises(openai.InternalServerError, match="stopped in the middle"):
        client.chat.completions.create(model="index", messages=[{"role": "user", "content": "How much memory?"}])
    assert "[1]" in client.chat.completions.create(model="index", messages=[
        {"role": "user", "content": "How much memory does a 7B model need?"}]).choices[0].message.content


def first_content(stream) -> str:
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            return chunk.choices[0].delta.content
    raise AssertionError("the stream ended without content")


def test_a_client_that_leaves_mid_stream_releases_the_generator(served):
    # 92 words at 0.15 s: the first answer would hold the model's lock for 14 s if the server kept it.
    gen = SlowGenerator([MEMORY + " " + " ".join(f"w{i}" for i in range(80)), MEMORY], delay=0.15)
    client, _, _ = served(generator=gen)
    question = [{"role": "user", "content": "How much memory does a 7B model need in Q4_K_M?"}]
    stream = client.chat.completions.create(model="index", stream=True, messages=question)
    assert first_content(stream)
    assert gen.active == 1
    stream.close()  # the client goes away, its answer unfinished
    gen.delay = 0.0
    t0 = time.monotonic()
    resp = client.chat.completions.create(model="index", messages=question)
    assert "4.4 GB" in resp.choices[0].message.content
    assert time.monotonic() - t0 < 5, "the second answer waited for the abandoned one"
    assert gen.active == 0


def test_answers_past_the_queue_limit_are_503_with_retry_after_and_the_queue_still_answers(served):
    gen = SlowGenerator([MEMORY + " " + " ".join(f"w{i}" for i in range(30)), MEMORY], delay=0.05)
    client, _, _ = served(generator=gen, settings=ServeSettings(rate_limit=0, max_queue=1))
    question = [{"role": "user", "content": "How much memory does a 7B model need in Q4_K_M?"}]
    stream = client.chat.completions.create(model="index", stream=True, messages=question)
    assert first_content(stream)
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="index", messages=question)
    assert err.value.status_code == 503 and "--max-queue" in str(err.value)
    assert int(err.value.response.headers["retry-after"]) >= 1
    rest = list(stream)  # the admitted one is not disturbed, and ends with its final chunk
    assert rest[-1].choices[0].finish_reason == "stop" and "rag" in rest[-1].model_extra
    assert "4.4 GB" in client.chat.completions.create(model="index", messages=question).choices[0].message.content


def test_a_streamed_answer_queued_for_the_model_gets_keepalives_and_then_its_answer(served):
    gen = SlowGenerator([MEMORY + " " + " ".join(f"w{i}" for i in range(20)), MEMORY], delay=0.05)
    client, url, _ = served(generator=gen, settings=ServeSettings(rate_limit=0, keepalive_s=0.1))
    question = [{"role": "user", "content": "How much memory does a 7B model need in Q4_K_M?"}]
    first = client.chat.completions.create(model="index", stream=True, messages=question)
    assert first_content(first)  # holds the model for about a second more
    body = json.dumps({"model": "index", "stream": True, "messages": question}).encode()
    req = urllib.request.Request(f"{url}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:  # a 5 s read timeout, never reached between lines
        lines = [line.decode() for line in resp]
    assert ": waiting for the model\n" in lines
    events = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assert lines[-2:] == ["data: [DONE]\n", "\n"] and events[-1]["rag"]["citations"][0]["file"] == "quant.md"
    assert list(first)[-1].choices[0].finish_reason == "stop"


def test_the_api_load_eval_streams_without_errors_while_an_upload_switches_generations():
    from eval.concurrency import ADDED_NAME, run_api

    out = run_api(clients=3, seconds=3, extractive=True, hash_embedder=True, progress=False)
    assert out["errors"] == 0, out["error_samples"]
    assert out["requests"] >= 3 and out["ttft_p50_ms"] > 0 and out["total_p95_ms"] >= out["total_p50_ms"]
    assert out["ingest_status"] == 200 and out["generation_after"] != out["generation_before"]
    assert out["new_document_found"] and out["generation_switched"], ADDED_NAME
