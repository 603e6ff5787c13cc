"""The shared text core: sentence spans, the CJK class, script detection, folding, the logistic."""
from __future__ import annotations

import doctest
import math
import re

import pytest

import rag.text
from rag.answer.cite import strip_markers
from rag.ingest.build import ingest
from rag.pipeline import Pipeline, answer_to_json
from rag.testing import FakeEmbedder, FakeGenerator
from rag.text import (
    ABBREVIATIONS,
    CJK_CHAR,
    fold,
    has_cjk,
    language,
    logistic,
    script_profile,
    sentence_language,
    sentence_spans,
)
from tests.conftest import write_docs

MARKER = re.compile(r"\[\d\]")


def test_doctests() -> None:
    assert doctest.testmod(rag.text).failed == 0


def sentences(text: str, **options: object) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text, **options)]  # type: ignore[arg-type]


# --- sentence spans ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("One. Two! Three? Four", ["One.", "Two!", "Three?", "Four"]),
    ("Pi is 3.14 here. It is 2.5 GB.", ["Pi is 3.14 here.", "It is 2.5 GB."]),
    ("Dr. Smith and Mr. Jones met. St. Paul is a city.", ["Dr. Smith and Mr. Jones met.", "St. Paul is a city."]),
    ("It is big, e.g. in Fig. 2 and cf. Eq. 3. Next.", ["It is big, e.g. in Fig. 2 and cf. Eq. 3.", "Next."]),
    ("J. R. Smith wrote it. The U.S. Army read it.", ["J. R. Smith wrote it.", "The U.S. Army read it."]),
    ("See No. 5 and nos. 6-7. The answer is no. Then stop.",
     ["See No. 5 and nos. 6-7.", "The answer is no.", "Then stop."]),  # 'no' is short only before a number
    ("Wait... Then go. Really?! Yes.", ["Wait...", "Then go.", "Really?!", "Yes."]),
    ('He said "stop." Then left.', ['He said "stop."', "Then left."]),  # the closing quote stays
    ("(It is in C.) Thus it ends.", ["(It is in C.)", "Thus it ends."]),
    ("  padded sentence.  ", ["padded sentence."]),
    ("", []),
])
def test_english_sentences(text: str, expected: list[str]) -> None:
    assert sentences(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("质量是五公斤。它很重！对吗？好", ["质量是五公斤。", "它很重！", "对吗？", "好"]),
    ("第一条；第二条。", ["第一条；", "第二条。"]),
    ("他说：“好。”然后走了。", ["他说：“好。”", "然后走了。"]),  # the closing quote stays with its sentence
    ("真的吗？！是的。", ["真的吗？！", "是的。"]),
    ("做完了.下一句。", ["做完了.", "下一句。"]),  # a Latin full stop before CJK text ends a sentence
    ("汉时……爰延为外黄乡啬夫。", ["汉时……爰延为外黄乡啬夫。"]),  # an ellipsis does not
    ("英文名S.K.母亲很高兴。", ["英文名S.K.母亲很高兴。"]),  # nor an initial
])
def test_cjk_sentences(text: str, expected: list[str]) -> None:
    assert sentences(text) == expected


def test_semicolons_can_be_kept_inside_a_sentence() -> None:
    assert sentences("甲是乙；丙是丁【1】。", semicolons=False) == ["甲是乙；丙是丁【1】。"]


@pytest.mark.parametrize("text, expected", [
    ("Heading\n\nBody text here", ["Heading", "Body text here"]),
    ("Steps:\n- install it\n- run it", ["Steps:", "- install it", "- run it"]),
    ("1. Install it\n2. Run it", ["1. Install it", "2. Run it"]),  # a list number ends nothing
    ("a line that wraps\nonto the next one. End.", ["a line that wraps\nonto the next one.", "End."]),
])
def test_lines_and_lists(text: str, expected: list[str]) -> None:
    assert sentences(text) == expected


def test_every_line_option() -> None:
    assert sentences("a line that wraps\nonto the next one.", every_line=True) == ["a line that wraps",
                                                                                  "onto the next one."]


def test_glued_sentences_are_cut_only_when_asked() -> None:
    text = "Arthur's Magazine was American.First for Women is German. The U.S.Army."
    assert sentences(text) == ["Arthur's Magazine was American.First for Women is German.", "The U.S.Army."]
    assert sentences(text, glued=True) == ["Arthur's Magazine was American.", "First for Women is German.",
                                           "The U.S.Army."]


def test_markers_after_the_full_stop_belong_to_the_sentence() -> None:
    text = "Mass is 5 kg.[1] Next one. [2] Last [3]. 质量是五公斤。[4]它很重！"
    assert sentences(text, marker=MARKER) == ["Mass is 5 kg.[1]", "Next one. [2]", "Last [3].",
                                              "质量是五公斤。[4]", "它很重！"]
    assert sentences(text)[0] == "Mass is 5 kg.[1] Next one."  # without the option a marker is just text


def test_trusting_case() -> None:
    text = "It is approx. five pages, etc. and more. Done."
    assert sentences(text, trust_case=True) == ["It is approx. five pages, etc. and more.", "Done."]
    assert sentences(text) == ["It is approx. five pages, etc.", "and more.", "Done."]


def test_spans_stay_inside_the_range_given() -> None:
    text = "Skip this. Keep one. Keep two. Skip too."
    a, b = text.index("Keep one"), text.index(" Skip too")
    assert sentences(text[a:b]) == [text[x:y] for x, y in sentence_spans(text, a, b)] == ["Keep one.", "Keep two."]


def test_spans_are_ordered_trimmed_and_disjoint() -> None:
    text = "A b. C d!\n\n- e f\n- g h. 一二。三四；五 [1]. Z"
    spans = sentence_spans(text, marker=MARKER)
    assert all(a < b for a, b in spans) and all(b1 <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))
    assert all(text[a:b] == text[a:b].strip() for a, b in spans)
    assert "".join("".join(text[a:b].split()) for a, b in spans) == "".join(text.split())  # nothing lost


def test_one_abbreviation_list() -> None:
    assert {"dr", "e.g", "fig", "inc", "approx", "no"} <= ABBREVIATIONS
    assert all(w == w.lower() and not w.endswith(".") for w in ABBREVIATIONS)


# --- characters and scripts -------------------------------------------------------------------------

@pytest.mark.parametrize("char", [
    "中", "\u3400", "\u4dbf",  # CJK unified ideographs and extension A
    "\uf900", "\ufa6d",  # compatibility ideographs
    "\U00020000", "\U0002a6df",  # extension B
    "々", "〇", "ひ", "カ", "ー", "ㇰ",  # iteration mark, ideographic zero, kana, phonetic extensions
    "한", "\u1100", "\u3131",  # Hangul syllables and jamo
])
def test_cjk_class_covers(char: str) -> None:
    assert CJK_CHAR.match(char) and has_cjk(f"abc{char}")


@pytest.mark.parametrize("char", ["a", "é", "Я", "1", "。", "，", "！", "Ａ", " "])
def test_cjk_class_excludes(char: str) -> None:
    assert not CJK_CHAR.match(char) and not has_cjk(char)


def test_script_profile() -> None:
    assert script_profile("GGUF 量化") == pytest.approx({"latin": 4 / 6, "cjk": 2 / 6, "other": 0.0})
    assert script_profile("Привет, world 2024") == pytest.approx(
        {"latin": 5 / 11, "cjk": 0.0, "other": 6 / 11})
    assert script_profile("café") == {"latin": 1.0, "cjk": 0.0, "other": 0.0}
    assert script_profile("2024 !!") == {"latin": 0.0, "cjk": 0.0, "other": 0.0}
    assert script_profile("ひらがなカタカナ한글") == {"latin": 0.0, "cjk": 1.0, "other": 0.0}
    assert script_profile("ｶﾀｶﾅ") == {"latin": 0.0, "cjk": 1.0, "other": 0.0}  # half-width, after NFKC


@pytest.mark.parametrize("text, expected", [
    ("How do I quantize a model?", "latin"),  # en
    ("向量检索是什么？", "cjk"),  # zh
    ("量子化とは何ですか？", "cjk"),  # ja
    ("양자화는 무엇입니까?", "cjk"),  # ko
    ("GGUF 量化怎么用", "cjk"),  # mixed: 2 of 6 letters, a Chinese question naming a product
    ("abcdefg 向量检", "cjk"),  # exactly 30 % CJK letters
    ("abcdefgh 向量", "latin"),  # 20 %
    ("How do I run 向量 search with llama.cpp?", "latin"),
    ("Как это работает?", "other"),
    ("Wie geht's Привет", "latin"),  # 8 of 14 letters
    ("Привет, world", "other"),  # 5 of 11: no majority
    ("2024", "other"),
    ("", "other"),
])
def test_language(text: str, expected: str) -> None:
    assert language(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("bge-reranker-v2-m3 有多少层？", "cjk"),  # 13 Latin letters of a name to 4 Han characters
    ("Sentence-Transformers 的 encode 函数有哪些参数？", "cjk"),
    ("Tantivy 默认的 k1 是多少？", "cjk"),
    ("What is 向量?", "latin"),  # an English question about a Chinese word stays English
    ("How do I run 向量 search with llama.cpp?", "latin"),
    ("all-MiniLM-L6-v2 Q4_K_M", "latin"),  # nothing but names: the whole text decides
    ("", "other"),
])
def test_sentence_language_sets_names_aside(text: str, expected: str) -> None:
    assert sentence_language(text) == expected


def test_fold() -> None:
    assert fold("ＧＧＵＦ　４.８ GB") == "gguf 4.8 gb"
    assert fold("Ⅻ ﬁ") == "xii fi"


# --- the logistic -----------------------------------------------------------------------------------

def test_logistic() -> None:
    assert logistic(0.0) == 0.5
    for z in (0.3, 1.0, 4.0):
        assert logistic(z) == pytest.approx(1 / (1 + math.exp(-z)))
        assert logistic(z) + logistic(-z) == pytest.approx(1.0)
    assert logistic(-1.0) < logistic(0.0) < logistic(1.0)
    assert 0.0 < logistic(-1e6) < 1e-20 and logistic(1e6) == pytest.approx(1.0)  # no overflow


# --- sentence checks carry their span in the answer ---------------------------------------------------

DOCS = {
    "quant.md": "# Quantization\n\nQ4_K_M stores about 4.8 bits per weight.\n\n"
                "A 7B model in Q4_K_M needs about 4.4 GB of memory.\n",
    "cache.md": "# KV cache\n\nThe KV cache stores the keys and values of past tokens.\n",
}


@pytest.mark.parametrize("reply", [
    "A 7B model in Q4_K_M needs about 4.4 GB of memory [1]. It uses 4.8 bits per weight.[1] The moon is cheese.",
    "In short:\n- Q4_K_M needs about 4.4 GB [1][2].\n- It stores 4.8 bits per weight [1].",
    "Q4_K_M 模型需要 4.4 GB 内存【1】。它每个权重 4.8 位[1]。",
])
def test_sentence_checks_slice_the_answer_text(tmp_path, make_cfg, reply: str) -> None:
    cfg = make_cfg(abstain_threshold=0.0)
    emb = FakeEmbedder()
    ingest(write_docs(tmp_path / "docs", DOCS), cfg, embedder=emb)
    question = ("7B 模型在 Q4_K_M 下需要多少内存？" if has_cjk(reply)  # the junk guard wants the question's language
                else "How much memory does a 7B model in Q4_K_M need?")
    answer = Pipeline(cfg, embedder=emb, generator=FakeGenerator(reply), reranker=None).ask(question)
    # (an answer none of whose claims is supported comes back as quotes: offsets must hold for both)
    assert answer.sentences and (answer.mode == "generative" or answer.fallback == "unsupported")
    ends = [0]
    for check in answer.sentences:
        piece = answer.text[check.start:check.end]
        assert piece == piece.strip() and strip_markers(piece) == check.text
        assert check.start >= ends[-1]  # in order, not overlapping
        ends.append(check.end)
    as_json = answer_to_json(answer)["sentences"]
    assert [(s["start"], s["end"]) for s in as_json] == [(c.start, c.end) for c in answer.sentences]


def test_an_indented_line_continues_its_list_item() -> None:
    # The shipped BM25 notes wrap list items; cutting there cost the extractive answer its figure.
    t = ("- Lucene, and Elasticsearch on top of it. Elasticsearch switched its default\n"
         "  similarity from TF-IDF to BM25 in version 5.0, released in 2016.\n"
         "- SQLite FTS5 provides a bm25() ranking function.")
    assert [t[a:b] for a, b in sentence_spans(t)] == [
        "- Lucene, and Elasticsearch on top of it.",
        "Elasticsearch switched its default\n  similarity from TF-IDF to BM25 in version 5.0, released in 2016.",
        "- SQLite FTS5 provides a bm25() ranking function."]
