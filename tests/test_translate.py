"""Cross-lingual search: with a model loaded, a question over documents in another language is also
searched in that language, as the model translates it, and the rankings are interleaved."""
from __future__ import annotations

import pytest

from rag.answer.translate import SYSTEM, interleave, targets, translate_query, usable
from rag.ingest.build import ingest
from rag.pipeline import Pipeline
from rag.testing import FakeEmbedder, FakeGenerator
from tests.conftest import write_docs

QUESTION = "How many bytes of KV cache does one token need?"
TRANSLATION = "每个 token 需要多少字节的 KV 缓存？"
DOCS = {
    # The answer is only in the Chinese page; the English pages share the question's words but not the answer.
    "kv-zh.md": "# KV 缓存\n\n在 FP16 下，Llama 2 7B 每个 token 需要 524,288 字节的 KV 缓存，即 0.5 MiB。\n",
    "bytes.md": "# Bytes\n\nA byte holds eight bits. How many bytes a file needs depends on its encoding.\n",
    "tokens.md": "# Tokens\n\nOne token is about four characters of English text. A token is what the model reads.\n",
    "cache.md": "# Caches\n\nA cache keeps recent results so that the next request does not need them again.\n",
}
ANSWER = "Each token needs 524,288 bytes of KV cache [2]."


@pytest.fixture
def collection(tmp_path, make_cfg):
    cfg = make_cfg(top_k=2, abstain_threshold=0.0)
    emb = FakeEmbedder()
    ingest(write_docs(tmp_path / "docs", DOCS), cfg, embedder=emb)
    return cfg, emb


def sources(hits) -> list[str]:
    return [h.chunk.source for h in hits]


def test_an_english_question_finds_the_chinese_page_through_its_translation(collection):
    cfg, emb = collection
    gen = FakeGenerator(ANSWER, translations={QUESTION: TRANSLATION})
    alone = Pipeline(cfg.with_overrides(translate_queries=False), embedder=emb, generator=gen, reranker=None)
    assert "kv-zh.md" not in sources(alone.retrieve(QUESTION))  # no shared word: BM25 cannot find it
    assert gen.translated == []  # translation off: the model is not asked
    pipe = Pipeline(cfg, embedder=emb, generator=gen, reranker=None)
    hits = pipe.retrieve(QUESTION)
    assert gen.translated == [QUESTION]
    assert sources(hits)[1] == "kv-zh.md"  # interleaved: the question's own language first, then the translation's
    assert sources(hits)[0] == sources(alone.retrieve(QUESTION))[0]


def test_the_answer_cites_the_chinese_page_and_the_timings_say_what_translation_cost(collection):
    cfg, emb = collection
    gen = FakeGenerator(ANSWER, translations={QUESTION: TRANSLATION})
    ans = Pipeline(cfg, embedder=emb, generator=gen, reranker=None).ask(QUESTION)
    assert "524,288" in gen.prompts[0][-1]["content"]  # the Chinese passage reached the model
    assert "kv-zh.md" in {c.source for c in ans.citations} and "524,288" in ans.text
    assert ans.timings["translate"] >= 0


SENTENCE = "Each token needs 524,288 bytes of KV cache."
SENTENCE_ZH = "每个 token 需要 524,288 字节的 KV 缓存。"


def test_an_english_sentence_citing_the_chinese_passage_is_checked_in_chinese(collection):
    cfg, emb = collection
    gen = FakeGenerator(ANSWER, translations={QUESTION: TRANSLATION, SENTENCE: SENTENCE_ZH})
    ans = Pipeline(cfg, embedder=emb, generator=gen, reranker=None).ask(QUESTION)
    assert gen.translated == [QUESTION, SENTENCE]
    assert ans.mode == "generative" and ans.text == ANSWER
    (check,) = ans.sentences
    assert check.supported and check.cited == (2,) and ans.citations[0].source == "kv-zh.md"


def test_a_wrong_figure_stays_flagged_whatever_the_translation(collection):
    cfg, emb = collection
    wrong, wrong_zh = "Each token needs 4,096 bytes of KV cache.", "每个 token 需要 4,096 字节的 KV 缓存。"
    gen = FakeGenerator(wrong[:-1] + " [2].", translations={QUESTION: TRANSLATION, wrong: wrong_zh})
    ans = Pipeline(cfg, embedder=emb, generator=gen, reranker=None).ask(QUESTION)
    assert not any(s.supported and "4,096" in s.text for s in ans.sentences)  # the number check, in any language


def test_without_a_translation_the_sentence_is_not_supported_across_languages(collection):
    cfg, emb = collection
    gen = FakeGenerator(ANSWER, translations={QUESTION: TRANSLATION})  # the sentence comes back unchanged
    ans = Pipeline(cfg, embedder=emb, generator=gen, reranker=None).ask(QUESTION)
    assert SENTENCE in gen.translated
    assert not any(s.supported and s.text == SENTENCE for s in ans.sentences)


def test_evidence_is_judged_against_the_query_in_each_passages_language(collection):
    """Refusal reads the evidence of the Chinese hits against the Chinese query: a cross-lingual question
    that only the translation can match is not refused for having no word in common with its answer."""
    from rag.answer.abstain import evidence_score

    cfg, emb = collection
    gen = FakeGenerator(ANSWER, translations={QUESTION: TRANSLATION})
    pipe = Pipeline(cfg, embedder=emb, generator=gen, reranker=None)
    hits, queries = pipe._retrieve(QUESTION)
    assert queries == {"en": QUESTION, "zh": TRANSLATION}
    zh = [h for h in hits if h.chunk.source == "kv-zh.md"]
    assert pipe._evidence(QUESTION, hits, queries) >= evidence_score(TRANSLATION, zh) > evidence_score(QUESTION, zh)


def test_a_collection_in_the_questions_language_is_not_translated_for(tmp_path, make_cfg):
    cfg = make_cfg(top_k=2)
    emb = FakeEmbedder()
    ingest(write_docs(tmp_path / "docs", {k: v for k, v in DOCS.items() if k != "kv-zh.md"}), cfg, embedder=emb)
    gen = FakeGenerator(ANSWER, translations={QUESTION: TRANSLATION})
    Pipeline(cfg, embedder=emb, generator=gen, reranker=None).retrieve(QUESTION)
    assert gen.translated == []


def test_an_unusable_translation_changes_nothing(collection):
    cfg, emb = collection
    echo = FakeGenerator(ANSWER)  # replies with the question itself: not a translation
    with_echo = Pipeline(cfg, embedder=emb, generator=echo, reranker=None)
    hits, queries = with_echo._retrieve(QUESTION)
    assert echo.translated == [QUESTION] and queries == {}
    without = Pipeline(cfg.with_overrides(translate_queries=False), embedder=emb, generator=echo, reranker=None)
    assert sources(hits) == sources(without.retrieve(QUESTION))


def test_extractive_mode_searches_the_question_alone(collection):
    cfg, emb = collection
    hits, queries = Pipeline(cfg, embedder=emb, generator=None, reranker=None)._retrieve(QUESTION)
    assert queries == {} and "kv-zh.md" not in sources(hits)


@pytest.mark.parametrize(("reply", "target", "ok"), [
    (TRANSLATION, "zh", True),
    (QUESTION, "zh", False),                      # the question again
    ("Each token needs 0.5 MiB.", "zh", False),   # an answer in the wrong language
    ("How much KV cache does a token need?", "en", True),
    ("每个 token 需要多少 KV 缓存？", "en", False),
    ("很长" * 200, "zh", False),                   # a ramble, not a question
])
def test_usable_translations(reply, target, ok):
    assert usable(reply, QUESTION if target == "zh" else "每个 token 需要多少 KV 缓存？", target) is ok


def test_the_first_line_of_the_reply_is_the_translation_and_the_instruction_is_in_the_target_language():
    gen = FakeGenerator(translations={QUESTION: f'"{TRANSLATION}"\nNote: translated literally.'})
    assert translate_query(gen, QUESTION, "zh") == TRANSLATION
    assert "简体中文" in SYSTEM["zh"] and "English" in SYSTEM["en"]


def test_targets_are_the_other_languages_present():
    assert targets(QUESTION, {"en", "zh", "ja"}) == ["ja", "zh"]
    assert targets(TRANSLATION, {"en", "zh"}) == ["en"]
    assert targets(QUESTION, {"en", "fr"}) == []  # a language the writer models are not asked to translate into


def test_interleave_keeps_each_chunk_once_and_stops_at_k():
    from rag.records import Chunk, Hit

    def hit(i: int) -> Hit:
        return Hit(chunk=Chunk(id=str(i), source="d", text="", start=0, end=0, pages=(1,)), score=0.0)

    a, b = [hit(1), hit(2), hit(3)], [hit(2), hit(4)]
    assert [h.chunk.id for h in interleave([a, b], 3)] == ["1", "2", "4"]
    assert [h.chunk.id for h in interleave([a, []], 5)] == ["1", "2", "3"]
