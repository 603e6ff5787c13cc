"""Japanese and Korean: tokenised into character bigrams like Chinese (kana and Hangul neither vanish
nor merge into one token), found by BM25 from a question sharing words with the passage, and
answered, instructed and refused in the question's own language rather than in Chinese."""
from __future__ import annotations

import pytest

from rag.answer.gate import GATE_QUESTION, gate_messages
from rag.answer.prompt import (
    ANSWER_IN,
    REFUSAL_EN,
    REFUSAL_JA,
    REFUSAL_KO,
    REFUSAL_ZH,
    RETRY_NOTE,
    answer_language,
    build_prompt,
    is_refusal,
    refusal_text,
)
from rag.index.tokenize import tokenize
from rag.text import cjk_language, language

JA_PASSAGE = "量子化によって、モデルのメモリ使用量はおよそ四分の一になります。"
KO_PASSAGE = "양자화를 사용하면 모델의 메모리 사용량이 약 4분의 1로 줄어듭니다."
JA_QUESTION = "量子化でメモリ使用量はどうなりますか？"
KO_QUESTION = "양자화를 하면 메모리 사용량은 어떻게 됩니까?"


# --- tokens ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [JA_PASSAGE, KO_PASSAGE, "カタカナとひらがな", "한국어 문장입니다"])
def test_kana_and_hangul_become_bigrams_and_every_letter_is_kept(text):
    tokens = tokenize(text)
    letters = [c for c in text if c.isalpha()]
    assert tokens and max(len(t) for t in tokens if not t.isascii()) == 2  # no giant token
    assert set(letters) <= set("".join(tokens))  # no letter vanishes


def test_japanese_bigrams_run_across_kana_and_kanji_and_korean_ones_stop_at_spaces():
    assert tokenize("メモリ使用量") == ["メモ", "モリ", "リ使", "使用", "用量"]
    assert tokenize("메모리 사용량") == ["메모", "모리", "사용", "용량"]


def test_half_width_katakana_gives_the_same_tokens_as_full_width():
    assert tokenize("ﾒﾓﾘ") == tokenize("メモリ") == ["メモ", "モリ"]


def test_bm25_finds_the_japanese_and_the_korean_passage(tmp_path, make_cfg, fake_embedder):
    from rag.answer.retrieve import Retriever
    from rag.index.store import Index
    from rag.ingest.build import ingest
    from tests.conftest import write_docs

    folder = write_docs(tmp_path / "docs", {
        "ja.md": f"# 量子化\n\n{JA_PASSAGE}\n", "ko.md": f"# 양자화\n\n{KO_PASSAGE}\n",
        "zh.md": "# 量化\n\n量化把模型权重的位数减少，显存占用大约变为四分之一。\n",
        "en.md": "# Quantization\n\nQuantization shrinks the weights to about a quarter of their memory.\n",
    })
    cfg = make_cfg()
    ingest(folder, cfg, embedder=fake_embedder)
    idx = Index.open(cfg.index_dir)
    try:
        retriever = Retriever(idx, fake_embedder)
        assert retriever.search(JA_QUESTION, k=4, mode="bm25")[0].chunk.source == "ja.md"
        assert retriever.search(KO_QUESTION, k=4, mode="bm25")[0].chunk.source == "ko.md"
    finally:
        idx.close()


# --- which language ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "lang"), [
    (JA_QUESTION, "ja"), ("GGUFファイルの先頭の4バイトは何ですか？", "ja"), ("量子化の利点は？", "ja"), ("ｶﾀｶﾅ", "ja"),
    (KO_QUESTION, "ko"), ("GGUF 파일이란?", "ko"), ("韓國語 한자 섞인 문장입니다", "ko"),
    ("量化的优点是什么？", "zh"), ("马丁・波特是谁？", "zh"), ("GGUF 是什么格式", "zh"),
])
def test_cjk_language_tells_japanese_korean_and_chinese_apart(text, lang):
    assert language(text) == "cjk"
    assert cjk_language(text) == lang
    assert answer_language(text) == lang


# --- instructions and refusals ------------------------------------------------------------------------


@pytest.mark.parametrize(("question", "refusal"), [
    (JA_QUESTION, REFUSAL_JA), (KO_QUESTION, REFUSAL_KO), ("量化的优点是什么？", REFUSAL_ZH),
    ("What does quantization save?", REFUSAL_EN),
])
def test_the_refusal_is_in_the_questions_language(question, refusal):
    assert refusal_text(question) == refusal
    assert is_refusal(refusal)


@pytest.mark.parametrize("question", [JA_QUESTION, KO_QUESTION])
def test_the_answer_instruction_retry_note_and_gate_question_are_in_the_questions_language(question):
    lang = answer_language(question)
    prompt = build_prompt(question, [], count_tokens=lambda s: len(s), context_window=4096, answer_tokens=256)
    assert prompt.messages[-1]["content"].splitlines()[-1] == ANSWER_IN[lang]
    retry = build_prompt(question, [], count_tokens=lambda s: len(s), context_window=4096, answer_tokens=256,
                         retry=True)
    assert retry.messages[-1]["content"].splitlines()[-1] == RETRY_NOTE[lang]
    assert gate_messages(prompt, question)[-1]["content"].endswith(GATE_QUESTION[lang])
    assert {"ja": "日本語", "ko": "한국어"}[lang] in ANSWER_IN[lang]


@pytest.mark.parametrize("text", [
    "申し訳ありませんが、資料にはその情報が記載されていません。",
    "提供された文書には答えがありません。",
    "죄송합니다. 제공된 문서에는 그 정보가 없습니다.",
    "문서에 언급되어 있지 않습니다.",
])
def test_a_models_japanese_or_korean_refusal_is_recognised(text):
    assert is_refusal(text)


@pytest.mark.parametrize("text", [
    "量子化によりメモリは約四分の一になります [1]。",
    "GGUF には記載がない制限はありません。",
    "양자화는 메모리를 줄입니다.",
])
def test_japanese_and_korean_answers_are_not_refusals(text):
    assert not is_refusal(text)


@pytest.fixture
def collection(tmp_path, make_cfg, fake_embedder):
    from rag.ingest.build import ingest
    from tests.conftest import write_docs

    folder = write_docs(tmp_path / "docs", {"ja.md": f"# 量子化\n\n{JA_PASSAGE}\n",
                                            "ko.md": f"# 양자화\n\n{KO_PASSAGE}\n"})
    cfg = make_cfg(abstain_threshold=0.0)
    ingest(folder, cfg, embedder=fake_embedder)
    return cfg, fake_embedder


@pytest.mark.parametrize(("question", "refusal"), [
    ("ソニーの創業者は誰ですか？", REFUSAL_JA),
    ("소니의 창업자는 누구입니까?", REFUSAL_KO),
    ("索尼的创始人是谁？", REFUSAL_ZH),
])
def test_the_pipeline_refuses_weak_evidence_in_the_questions_language(collection, question, refusal):
    from rag.pipeline import Pipeline
    from rag.testing import FakeGenerator

    cfg, emb = collection
    gen = FakeGenerator("should never be produced [1].")
    ans = Pipeline(cfg.with_overrides(abstain_threshold=1.01), embedder=emb, generator=gen, reranker=None).ask(question)
    assert ans.refused and ans.text == refusal and gen.prompts == []


@pytest.mark.parametrize(("question", "refusal"), [(JA_QUESTION, REFUSAL_JA), (KO_QUESTION, REFUSAL_KO)])
def test_a_models_refusal_in_another_language_is_shown_in_the_questions(collection, question, refusal):
    from rag.pipeline import Pipeline
    from rag.testing import FakeGenerator

    cfg, emb = collection
    ans = Pipeline(cfg, embedder=emb, generator=FakeGenerator(REFUSAL_ZH), reranker=None).ask(question)
    assert ans.refused and ans.text == refusal
