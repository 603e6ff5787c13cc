"""The chat page: its safe rendering (app.render, fast), then the page itself driven headlessly with
streamlit.testing.v1.AppTest over a small real index (slow).

The index is built once per session with the real all-MiniLM-L6-v2 (bundled, offline); each page
test works on its own copy of the index and documents folder. No GGUF model unless a test adds one
(extractive mode), and the reranker is configured to a folder that does not exist (a missing
reranker must only cost a notice).
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

from app.render import answer_html, chat_to_markdown, chunk_html, html_text, md_escape, refusal_html
from rag.answer.cite import sentence_citations
from rag.records import Answer, Chunk, Citation, Hit, SentenceCheck
from tests.conftest import make_pdf, write_docs

APP = str(Path(__file__).resolve().parents[1] / "app" / "chat.py")
TIMEOUT = 120  # the first run loads the embedder

DOCS = {
    "quantization.md": (
        "# Quantization\n\n"
        "Quantization stores model weights with fewer bits. A 7B model quantized to Q4_K_M needs about "
        "4.8 GB of memory, while the same model in Q8_0 needs about 7.7 GB. Q4_K_M keeps most of the quality "
        "of the full-precision model.\n\n"
        "## Choosing a level\n\nUse Q8_0 when memory allows; it is almost lossless. Use Q4_K_M on laptops.\n"),
    "bm25.txt": (
        "BM25 is a lexical ranking function. It scores documents by term frequency and inverse document "
        "frequency, with saturation controlled by k1 and length normalisation controlled by b. Typical values "
        "are k1 = 1.2 and b = 0.75.\n"),
    "gpu.md": (
        "# Running on a GPU\n\n"
        "Offloading layers to the GPU with n_gpu_layers speeds up generation. Setting n_gpu_layers to -1 "
        "offloads every layer when the model fits in video memory.\n"),
}
QUESTION = "How much memory does a 7B model need in Q4_K_M?"


PDF_PAGES = ["Small boards. This guide covers single-board computers for local language models.",
             ("The Raspberry Pi 5 generates about six tokens per second with a 1B model in Q4_K_M. "
              "Cooling matters: without a fan the board throttles after a few minutes.")]


HOSTILE = ("GGUF needs 4.8 GB <script>alert(1)</script> ![x](http://evil/beacon.png) "
           "[click](javascript:alert(2)) <img src=x onerror=alert(3)> :red[red] $x$ www.evil.com")


def hostile_answer(**kw) -> Answer:
    chunk = Chunk("c1", "evil.md", HOSTILE, 0, len(HOSTILE), (1,))
    text = "GGUF needs 4.8 GB [1]. " + HOSTILE + " [1]."
    first, second = sentence_citations(text)  # the sentences as the pipeline checks them
    checks = (SentenceCheck(first.text, first.cited, 0.9, True, "", first.start, first.end),
              SentenceCheck(second.text, first.cited, 0.1, False, "low overlap with cited source (0.10) <b>",
                            second.start, second.end))
    base = dict(question="q <i>", query="q", mode="extractive", text=text, raw_text=text,
                citations=(Citation(1, "c1", "evil.md", (1,), "GGUF needs 4.8 GB", 0, False),),
                sentences=checks, sources=(Hit(chunk, 0.9),))
    return Answer(**{**base, **kw})


def only_our_tags(fragment: str) -> bool:
    tags = set(re.findall(r"<\s*/?\s*([a-zA-Z]+)", fragment))
    return tags <= {"div", "span", "sup", "mark", "br", "b"}


def test_html_text_leaves_nothing_for_html_or_markdown_to_parse():
    out = html_text(HOSTILE + "\nline\r\nend")
    assert only_our_tags(out) and out.count("<br>") == 2
    for ch in "<>[]()!:$*_`":
        assert ch not in out.replace("<br>", "")
    assert "www&#46;evil&#46;com" in out  # no autolink either


def test_answer_html_marks_flagged_sentences_and_citations():
    out = answer_html(hostile_answer())
    assert only_our_tags(out) and "\n" not in out  # one line: Markdown reads it as one HTML block
    assert out.count('class="rag-cite"') == 2 and "&#91;1&#93;" in out
    flagged = re.findall(r'<span class="rag-flagged" title="([^"]*)"', out)
    assert len(flagged) == 1 and "low overlap with cited source" in flagged[0] and "<b>" not in flagged[0]
    assert "javascript" in out and "javascript&#58;" in out  # shown as text, not a link


def test_answer_html_marks_the_span_each_check_names():
    text = "GGUF needs 4.8 GB [1]. It is fast [1]."
    first, second = sentence_citations(text)
    checks = (SentenceCheck(first.text, first.cited, 0.1, False, "bad", first.start, first.end),
              SentenceCheck(second.text, second.cited, 0.9, True, "", second.start, second.end))
    out = answer_html(hostile_answer(text=text, sentences=checks))
    [flagged] = re.findall(r'<span class="rag-flagged"[^>]*>(.*?) ⚠</span>', out)
    assert "GGUF needs 4&#46;8 GB" in flagged and "rag-cite" in flagged and "fast" not in flagged
    assert "It is fast" in out and out.count('class="rag-cite"') == 2


def test_answer_html_keeps_bold_and_bullets_from_a_model():
    text = "Memory:\n- **Q4_K_M** needs 4.8 GB [1].\n- Q8_0 needs 7.7 GB [1]."
    out = answer_html(hostile_answer(text=text, sentences=(), mode="generative"))
    assert "<b>Q4&#95;K&#95;M</b>" in out and out.count("• ") == 2 and only_our_tags(out)


def test_chunk_html_highlights_the_quote_and_refusals_look_different():
    out = chunk_html(HOSTILE, 0, len("GGUF needs 4.8 GB"))
    assert re.search(r"<mark[^>]*>GGUF needs 4&#46;8 GB</mark>", out) and only_our_tags(out)
    refusal = refusal_html(hostile_answer(mode="refused", text="The documents do not contain an answer."))
    assert 'class="rag-refusal"' in refusal and "Not found in the documents" in refusal


def test_md_escape_and_the_markdown_export_are_inert():
    assert md_escape("[a](javascript:x) ![i](http://e/b.png)") == (
        "\\[a\\]\\(javascript\\:x\\) \\!\\[i\\]\\(http\\:\\/\\/e\\/b\\.png\\)")
    export = chat_to_markdown([{"question": "q", "answer": hostile_answer()}])
    assert "![" not in export.replace("\\![", "") and "<script>" not in export.replace("\\<script\\>", "")
    assert "- [1] evil.md — “GGUF needs 4.8 GB”" in export
    assert "Flagged by the verifier" in export and "low overlap" in export


def test_missing_llama_cpp_is_reported_and_the_app_answers_extractively(tmp_path, monkeypatch):
    from app.resources import generator_for
    from rag.config import load_config

    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")  # configured and present; llama-cpp-python, to run it, is not
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    gen, error = generator_for(load_config(env={}, overrides={"llm_model": str(model)}))
    assert gen is None  # the page then answers extractively, and the sidebar shows the error:
    assert "llama_cpp" in error and "pip install -e '.[llm]'" in error


@pytest.fixture(scope="session")
def built(tmp_path_factory, minilm):
    """(docs folder, index folder) built once with the real embedder."""
    from rag.config import load_config
    from rag.ingest.build import ingest

    root = tmp_path_factory.mktemp("app-corpus")
    docs = write_docs(root / "docs", {**DOCS, "boards.pdf": make_pdf(PDF_PAGES)})
    cfg = load_config(env={}, overrides={"index_dir": str(root / "index"), "rerank": False, "embed_model": minilm.name})
    ingest(docs, cfg, embedder=minilm)
    return docs, root / "index"


@pytest.fixture
def env(tmp_path, monkeypatch, built):
    """A private copy of the collection, and the RAG_* settings the app reads."""
    docs, index = built
    shutil.copytree(docs, tmp_path / "docs")
    shutil.copytree(index, tmp_path / "index")
    monkeypatch.chdir(tmp_path)  # no rag.toml, no models/ folder: extractive mode
    for key in [k for k in os.environ if k.startswith("RAG_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "index"))
    monkeypatch.setenv("RAG_EMBED_MODEL", "sentence-transformers/all-MiniLM-L6-v2")  # the model `built` used
    monkeypatch.setenv("RAG_DOCS_DIR", str(tmp_path / "docs"))
    monkeypatch.setenv("RAG_RERANKER_MODEL", str(tmp_path / "no-such-reranker"))
    return tmp_path


def start() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def ask(at: AppTest, question: str) -> AppTest:
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at


def html_blocks(at: AppTest, cls: str) -> list[str]:
    return [m.value for m in at.markdown if f'class="{cls}"' in m.value]


def plain(markdown: str) -> str:
    """What a reader sees of md_escape'd text: the backslash escapes removed."""
    return re.sub(r"\\(.)", r"\1", markdown)


def texts(elements) -> str:
    return "\n".join(plain(str(e.value)) for e in elements)


@pytest.mark.slow
def test_answer_with_citation_card(env):
    at = ask(start(), QUESTION)
    answers = html_blocks(at, "rag-answer")
    assert len(answers) == 1
    assert "4&#46;8 GB" in answers[0]  # the figure, escaped like every document text
    assert 'class="rag-cite"' in answers[0] and "&#91;1&#93;" in answers[0]  # an inline [1] marker
    assert "Extractive answer" in texts(at.caption)
    cards = [e for e in at.expander if plain(e.label).startswith("[1]")]
    assert cards and "quantization" in cards[0].label
    card_html = texts(cards[0].markdown)
    assert "<mark" in card_html and "Q4&#95;K&#95;M" in card_html  # the quoted span, highlighted
    [details] = cards[0].expander  # the scores are for whoever tunes retrieval: behind "details"
    assert "retrieval" in texts(details.caption) and "rerank off" in texts(details.caption)
    # elsewhere the evidence is in words: on the answer's status line and on every card
    assert re.search(r"Evidence: (strong|weak) — ", texts(at.caption))
    labels = [plain(e.label) for e in at.expander if plain(e.label).startswith("[")]
    assert labels and all(re.search(r" · evidence: (strong|weak|none)$", label) for label in labels), labels
    outside = texts(at.tabs[0].caption).replace(texts(details.caption), "")
    assert not re.search(r"\d\.\d", " ".join(labels) + outside)  # no raw score outside details
    assert "Reranking is off" in texts(at.sidebar.caption)  # the missing reranker's one-line notice


@pytest.mark.slow
def test_follow_up_uses_the_conversation(env):
    at = ask(start(), QUESTION)
    at = ask(at, "And in Q8_0?")
    assert len(html_blocks(at, "rag-answer")) == 2
    assert len(at.session_state.turns) == 2
    second = at.session_state.turns[1]["answer"]
    assert second.query != second.question  # rewritten into a standalone query
    assert "7&#46;7 GB" in html_blocks(at, "rag-answer")[1]
    export = chat_to_markdown(at.session_state.turns)
    assert "## 2. And in Q8\\_0?" in export and "[1] quantization.md" in export
    assert not at.sidebar.download_button[0].disabled
    at.button(key="new-chat").click().run()
    assert at.session_state.turns == [] and not html_blocks(at, "rag-answer")


@pytest.mark.slow
def test_refusal_looks_different_and_shows_nearest_sources(env, monkeypatch):
    monkeypatch.setenv("RAG_ABSTAIN_THRESHOLD", "1.01")  # no evidence is enough: always refuse
    at = ask(start(), "Who won the football world cup in 1998?")
    assert html_blocks(at, "rag-refusal") and not html_blocks(at, "rag-answer")
    assert "Evidence&#58; none — " in html_blocks(at, "rag-refusal")[0]  # below the gate's threshold
    assert "Nearest sources" in texts(at.caption)
    assert len(at.expander) >= 1
    cards = [plain(e.label) for e in at.tabs[0].expander if e.label != "details"]
    assert cards and all(label.endswith(" · evidence: none") for label in cards), cards


@pytest.mark.slow
def test_upload_good_and_bad_files(env):
    at = start()
    good = b"# Zebras\n\nThe plains zebra sleeps standing up for about seven hours a day.\n"
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 64
    at.file_uploader[0].set_value([("zebras.md", good, "text/markdown"), ("photo.pdf", png, "application/pdf")])
    at.run()
    assert not at.exception, at.exception
    assert "Added zebras.md" in texts(at.success)
    assert "Rejected photo.pdf: the content is a PNG image" in texts(at.error)  # reported with its reason
    assert (env / "docs" / "zebras.md").exists() and not (env / "docs" / "photo.pdf").exists()
    at = ask(at, "How long does the plains zebra sleep?")
    assert any("zebras.md" in plain(e.label) for e in at.expander if plain(e.label).startswith("["))


@pytest.mark.slow
def test_upload_rejects_traversal_names_and_files_over_the_limit(env, monkeypatch):
    monkeypatch.setenv("RAG_MAX_FILE_MB", str(2000 / 2**20))  # 2000 bytes
    at = start()
    at.file_uploader[0].set_value([("../../etc/x.txt", b"Escaped text about otters and their dens.", "text/plain"),
                                   ("big.txt", b"x" * 2001, "text/plain")])
    at.run()
    assert not at.exception, at.exception
    assert "Added x.txt" in texts(at.success)
    assert (env / "docs" / "x.txt").exists() and not (env / "etc").exists()
    assert "Rejected big.txt" in texts(at.error) and "limit" in texts(at.error)
    assert not (env / "docs" / "big.txt").exists()


@pytest.mark.slow
def test_cited_pdf_page_opens_with_the_quote_highlighted(env):
    at = ask(start(), "How many tokens per second does the Raspberry Pi 5 generate with a 1B model?")
    cards = [e for e in at.expander if "boards.pdf" in plain(e.label)]
    assert cards and "p. 1-2" in plain(cards[0].label)  # the chunk spans both pages
    cards[0].toggle[0].set_value(True).run()
    assert not at.exception, at.exception
    card = next(e for e in at.expander if "boards.pdf" in plain(e.label))
    assert "page 2 of 2" in texts(card.caption)  # the page the quote is on
    assert card.image and card.image[0].value  # the page rendered by pypdfium2
    page = card.markdown[-1].value
    assert "Raspberry Pi 5" in page and "<mark" in page and "throttles" in page  # the whole page, quote marked


@pytest.mark.slow
def test_delete_a_document(env):
    at = start()
    at.button(key="delete-bm25.txt").click().run()
    at.button(key="confirm-delete").click().run()
    assert not at.exception, at.exception
    assert "Deleted bm25.txt" in texts(at.success)
    assert not (env / "docs" / "bm25.txt").exists()
    assert "Documents (3)" in [t.label for t in at.tabs][1]
    assert not any(b.key == "delete-bm25.txt" for b in at.button)


@pytest.mark.slow
def test_empty_index_teaches_how_to_start(env, monkeypatch):
    monkeypatch.setenv("RAG_INDEX_DIR", str(env / "no-index-yet"))
    at = start()
    assert "No index yet" in texts(at.info)
    assert any("python -m rag.ingest" in c.value for c in at.code)
    assert at.file_uploader  # uploading is the other way in
    at.file_uploader[0].set_value(("first.md", b"# First\n\nThe first document mentions capybaras.", "text/markdown"))
    at.run()
    assert not at.exception, at.exception
    assert "No index yet" not in texts(at.info)  # the index exists now
    assert (env / "no-index-yet" / "CURRENT").exists()


@pytest.mark.slow
def test_model_mismatch_explains_how_to_rebuild(env, monkeypatch, built):
    monkeypatch.setenv("RAG_EMBED_MODEL", "someone/other-embedder")
    monkeypatch.delenv("RAG_DOCS_DIR")  # the folder to rebuild from comes from the index's manifest
    at = start()
    assert "someone/other-embedder" in texts(at.error)
    assert f"python -m rag.ingest {built[0].resolve()} --index {env / 'index'} --rebuild" in [c.value for c in at.code]
    assert not at.chat_input  # no questions against vectors from another model


@pytest.mark.slow
def test_no_html_or_beacons_from_documents(env):
    evil = (b"# Beacon test\n\nThe quokka telemetry note: ![x](http://127.0.0.1:9/beacon.png) "
            b"<script>alert(1)</script> <img src=x onerror=alert(2)> [click](javascript:alert(3)) quokka.\n")
    at = start()
    at.file_uploader[0].set_value(("evil.md", evil, "text/markdown"))
    at.run()
    at = ask(at, "What is the quokka telemetry note?")
    shown = "\n".join(m.value for m in at.markdown)
    assert "quokka" in shown
    for needle in ("<script", "<img", "](http", "](javascript", "onerror="):
        assert needle not in shown


@pytest.mark.slow
def test_with_a_gguf_model_junk_is_never_shown_as_an_answer(env, monkeypatch):
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gguf")
    from rag.testing import write_tiny_gguf

    monkeypatch.setenv("RAG_LLM_MODEL", str(write_tiny_gguf(env / "tiny.gguf")))
    monkeypatch.setenv("RAG_MAX_ANSWER_TOKENS", "40")
    at = start()
    assert "GGUF loaded: tiny.gguf · CPU" in texts(at.sidebar.success)
    assert not at.sidebar.slider(key="temperature").disabled
    at = ask(at, QUESTION)
    answer = at.session_state.turns[0]["answer"]
    # random weights write junk or claims nothing supports: the answer is quotes, and says why
    assert answer.mode == "extractive" and answer.fallback
    assert "sentences quoted from the" in texts(at.caption)
    assert answer.sentences and all(s.supported for s in answer.sentences)


# --- collections, saved conversations, the file filter, bad questions ---------------------------------


def by_label(elements, label: str):
    return next(e for e in elements if e.label == label)


def conversation_buttons(at: AppTest) -> list:
    return [b for b in at.sidebar.button if (b.key or "").startswith("conv-")]


def saved(env):
    from rag.conversations import ConversationStore

    return ConversationStore(env / "rag-data" / "conversations.sqlite")


@pytest.mark.slow
def test_create_a_collection_upload_into_it_switch_and_delete(env):
    from rag import collections as colls
    from rag.config import load_config

    at = start()
    assert at.sidebar.selectbox(key="collection-picker").value == "default"
    by_label(at.sidebar.text_input, "New collection").input("Animals").run()
    at.sidebar.button(key="create-collection").click().run()
    assert not at.exception, at.exception
    cfg = load_config()
    animals = colls.get_collection(cfg, "Animals")
    assert at.sidebar.selectbox(key="collection-picker").value == animals.id
    assert "No index yet" in texts(at.info)  # a new, empty collection
    at.file_uploader[0].set_value(("zebras.md", b"# Zebras\n\nThe plains zebra sleeps standing up for about "
                                                b"seven hours a day.\n", "text/markdown"))
    at.run()
    assert (animals.docs_dir / "zebras.md").exists() and not (env / "docs" / "zebras.md").exists()
    at = ask(at, "How long does the plains zebra sleep?")
    assert {h.chunk.source for h in at.session_state.turns[0]["answer"].sources} == {"zebras.md"}
    assert [b.label for b in conversation_buttons(at)] == ["How long does the plains zebra sleep?"]

    at.sidebar.selectbox(key="collection-picker").set_value("default").run()  # switch back
    assert not at.exception, at.exception
    assert at.session_state.turns == [] and conversation_buttons(at) == []  # conversations are per collection
    assert "Documents (4)" in [t.label for t in at.tabs][1]

    at.sidebar.selectbox(key="collection-picker").set_value(animals.id).run()
    at.sidebar.text_input(key=f"rename-collection-{animals.id}").input("Zoo").run()
    at.sidebar.button(key="rename-collection").click().run()
    assert colls.get_collection(cfg, "Zoo").id == animals.id
    at.sidebar.button(key="delete-collection").click().run()
    warning = texts(at.sidebar.warning)
    assert "Delete collection “Zoo”" in warning and "never touched" in warning
    at.sidebar.button(key="confirm-delete-collection").click().run()
    assert not at.exception, at.exception
    assert not animals.folder.exists() and [c.name for c in colls.list_collections(cfg)] == ["default"]
    assert at.sidebar.selectbox(key="collection-picker").value == "default"
    assert saved(env).conversations(animals.id) == []  # its conversations went with it


@pytest.mark.slow
def test_file_filter_limits_the_sources(env):
    at = start()
    at.multiselect(key="files-default").set_value(["gpu.md"]).run()
    at = ask(at, QUESTION)  # the answer is in quantization.md, which the filter leaves out
    answer = at.session_state.turns[0]["answer"]
    assert answer.sources and {h.chunk.source for h in answer.sources} == {"gpu.md"}


@pytest.mark.slow
def test_conversation_survives_a_reload_and_can_be_renamed_exported_deleted(env):
    at = ask(start(), QUESTION)
    [conv] = saved(env).conversations("default")
    assert at.query_params.get("chat") in (conv.id, [conv.id])  # in the address: a reload reopens it

    reloaded = AppTest.from_file(APP, default_timeout=TIMEOUT)  # a new session, as after a reload
    reloaded.query_params["chat"] = conv.id
    reloaded.run()
    assert not reloaded.exception, reloaded.exception
    assert len(html_blocks(reloaded, "rag-answer")) == 1 and "4&#46;8 GB" in html_blocks(reloaded, "rag-answer")[0]
    assert any(plain(e.label).startswith("[1]") for e in reloaded.expander)  # its citation card, as it was

    fresh = start()  # a new session without the address: the conversation is listed, one click opens it
    assert not html_blocks(fresh, "rag-answer")
    [button] = conversation_buttons(fresh)
    assert button.label == QUESTION
    button.click().run()
    assert len(html_blocks(fresh, "rag-answer")) == 1
    fresh = ask(fresh, "And in Q8_0?")  # a follow-up is added to the same conversation
    assert saved(env).get(conv.id).messages == 4

    fresh.sidebar.text_input(key=f"conv-title-{conv.id}").input("Memory of quantized models").run()
    fresh.sidebar.button(key="rename-conversation").click().run()
    assert [b.label for b in conversation_buttons(fresh)] == ["Memory of quantized models"]
    export = fresh.sidebar.download_button(key="export-conversation")
    assert export.proto.label == "Export (Markdown)" and export.proto.url and not export.proto.disabled
    markdown = chat_to_markdown([t.as_dict() for t in saved(env).turns(conv.id)], title="Memory")
    assert "## 2. And in Q8\\_0?" in markdown and "- [1] quantization.md" in markdown

    fresh.sidebar.button(key="delete-conversation").click().run()
    fresh.sidebar.button(key="confirm-delete-conversation").click().run()
    assert not fresh.exception, fresh.exception
    assert saved(env).conversations("default") == [] and conversation_buttons(fresh) == []
    assert fresh.session_state.turns == []


@pytest.mark.slow
@pytest.mark.parametrize("question", ["?", "  ...!  "])
def test_an_empty_question_is_not_asked(env, question):
    at = ask(start(), question)
    assert "Please ask a question" in texts(at.warning)
    assert at.session_state.turns == [] and not html_blocks(at, "rag-answer")
    assert saved(env).conversations("default") == []


@pytest.mark.slow
def test_a_very_long_question_is_folded_and_cut_for_retrieval(env):
    question = QUESTION + " " + "Please be precise and cite the page. " * 150
    at = ask(start(), question)
    assert any(e.label.startswith("Whole question (5,") for e in at.expander)
    assert "Only the first 1,000 characters were used" in texts(at.caption)
    answer = at.session_state.turns[0]["answer"]
    assert len(answer.query) <= 1000 and answer.question == question.strip()
    assert "4&#46;8 GB" in html_blocks(at, "rag-answer")[0]  # the question's start still finds the answer


@pytest.mark.slow
def test_deleting_a_filtered_document_leaves_a_working_filter(env):
    at = start()
    at.multiselect(key="files-default").set_value(["bm25.txt", "gpu.md"]).run()
    at.button(key="delete-bm25.txt").click().run()
    at.button(key="confirm-delete").click().run()
    assert not at.exception, at.exception
    assert at.multiselect(key="files-default").value == ["gpu.md"]
    at = ask(at, QUESTION)
    assert {h.chunk.source for h in at.session_state.turns[0]["answer"].sources} == {"gpu.md"}


@pytest.mark.slow
def test_a_model_server_dying_mid_answer_is_an_error_naming_it_and_the_app_keeps_answering(env, monkeypatch):
    pytest.importorskip("fastapi")
    from rag.serve.app import serve_in_thread
    from tests.fake_openai import Script, fake_openai_server

    script = Script(reply="A 7B model quantized to Q4_K_M needs about 4.8 GB of memory [1].", die_after=3)
    server = serve_in_thread(fake_openai_server(script))
    url = server.__enter__()
    port = int(url.rsplit(":", 1)[1])
    try:
        monkeypatch.setenv("RAG_LLM_BACKEND", "openai")
        monkeypatch.setenv("RAG_LLM_BASE_URL", f"{url}/v1")
        at = ask(start(), QUESTION)  # the server breaks the stream off after three pieces
        assert f"{url}/v1/chat/completions" in texts(at.error) and "stopped in the middle" in texts(at.error)
        assert not html_blocks(at, "rag-answer") and at.session_state.turns == []
        server.__exit__(None, None, None)  # now gone altogether
        server = None
        at = ask(at, QUESTION)
        assert f"{url}/v1/chat/completions" in texts(at.error) and "did not answer" in texts(at.error)
        script.die_after = None
        server = serve_in_thread(fake_openai_server(script), port=port)  # back, at the same address
        server.__enter__()
        at = ask(at, QUESTION)
        [answer] = html_blocks(at, "rag-answer")
        assert "4&#46;8 GB" in answer and at.session_state.turns[0]["answer"].mode == "generative"
    finally:
        if server is not None:
            server.__exit__(None, None, None)


# --- the tabs: the open one survives reruns, the chat input is the Chat tab's --------------------------


def open_tab(at: AppTest, page: str) -> AppTest:
    """Open a tab as a click does: the page keeps the open tab in the session's `page`."""
    at.session_state["page"] = page
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.mark.slow
def test_an_upload_on_the_documents_tab_stays_there_and_says_added(env):
    at = open_tab(start(), "docs")
    assert not at.chat_input  # the input belongs to the Chat tab
    at.file_uploader[0].set_value(("zebras.md", b"# Zebras\n\nThe plains zebra sleeps standing up.\n",
                                   "text/markdown"))
    at.run()  # the upload reruns the page, and the Documents label now counts 5
    assert not at.exception, at.exception
    assert at.session_state.page == "docs"
    assert "Documents (5)" in at.tabs[1].label
    assert "Added zebras.md" in texts(at.tabs[1].success)  # on the Documents tab, where the upload was
    assert not texts(at.tabs[0].success)
    assert not at.chat_input


@pytest.mark.slow
@pytest.mark.parametrize("page", ["docs", "models"])
def test_the_chat_input_is_only_on_the_chat_tab(env, page):
    at = start()
    assert len(at.chat_input) == 1 and at.session_state.page == "chat"
    at = open_tab(at, page)
    assert not at.chat_input
    assert at.session_state.page == page
    at = open_tab(at, "chat")
    assert len(at.chat_input) == 1


@pytest.mark.slow
def test_a_chinese_browser_gets_the_chinese_ui(env, monkeypatch):
    monkeypatch.setenv("RAG_ABSTAIN_THRESHOLD", "1.01")  # always refuse: the refusal card in Chinese too
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.context["locale"] = "zh-CN"
    at.run()
    assert not at.exception, at.exception
    assert [t.label for t in at.tabs][0].endswith("聊天") and "文档 (4)" in at.tabs[1].label
    assert at.chat_input[0].placeholder == "就你的文档提问"
    at = ask(at, "谁赢得了1998年世界杯？")
    refusal = html_blocks(at, "rag-refusal")[0]
    assert "文档中没有找到答案" in refusal and "证据：无" in refusal
    assert any(plain(e.label).endswith("证据: 无") for e in at.tabs[0].expander)


@pytest.mark.slow
def test_other_browsers_get_english(env):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.context["locale"] = "de-DE"
    at.run()
    assert at.tabs[0].label.endswith("Chat") and at.chat_input[0].placeholder.startswith("Ask a question")
