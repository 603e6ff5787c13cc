"""The reader's checks on an answer sentence: numbers with their units, Chinese numerals, table rows, names.

Each case goes through `check_sentences`, the function the pipeline calls on every answer, with the
offline verifier and no embedder, so what is asserted is what a user sees flagged.
"""
from __future__ import annotations

import pytest

from rag.answer.verify import OfflineVerifier, check_sentences, missing_quantities, quantities

VERIFIER = OfflineVerifier(None)


def check(sentence: str, source: str):
    (result,) = check_sentences([(sentence, (1,))], [source], VERIFIER, threshold=0.4)
    return result


@pytest.mark.parametrize(("sentence", "source"), [
    ("The Q4_K_M file of the 7B model is 4.4 GB.", "The Q4_K_M file of the 7B model is 4,400 MB on disk."),
    ("The corpus has about 117 million tokens.", "语料库约有 1.17 亿个 tokens。"),
    ("该模型有十二层。", "该模型有 12 层，隐藏维度为 384。"),
    ("准确率为百分之八十。", "在 50 个问题上，准确率为 80%。"),
    ("Reranking 50 passages takes about 200 ms.", "重排 50 个段落大约需要 0.2 秒。"),
    ("The model is 4.4 GB.", "The model is ４.４ GB."),  # full-width digits in the source (NFKC)
    ("两种方法都需要索引。", "Two methods both need an index: 两种方法都需要索引。"),
])
def test_the_same_figure_in_another_form_is_supported(sentence: str, source: str) -> None:
    assert not missing_quantities(sentence, [source])


@pytest.mark.parametrize(("sentence", "source", "missing"), [
    ("The model file is 4.4 GB.", "The model file is 4.4 MB.", "4.4 GB"),
    ("Reranking takes 0.2 s.", "Reranking takes 0.2 ms.", "0.2 s"),
    ("准确率为 85%。", "准确率为百分之八十。", "85%"),
    ("该模型有十三层。", "该模型有 12 层。", "十三"),
    ("It has 22M parameters.", "It has 22 billion parameters.", "22M"),
])
def test_a_figure_in_another_unit_or_value_is_flagged(sentence: str, source: str, missing: str) -> None:
    result = check(sentence, source)
    assert not result.supported
    assert missing in result.reason


def test_chinese_words_that_contain_numerals_are_not_numbers() -> None:
    assert [q.text for q in quantities("统一的接口让一些方法更简单。", claim=True)] == []
    assert [q.text for q in quantities("第一步是分块。", claim=True)] == []
    assert [(q.text, q.value) for q in quantities("三千五百万个段落", claim=True)] == [("三千五百万", 35_000_000.0)]


TABLE = ("Quantization: Q4_K_M | Bits per weight: 4.85 | Size: 4.4 GB\n"
         "Quantization: Q8_0 | Bits per weight: 8.5 | Size: 7.2 GB")


def test_a_table_value_read_from_the_wrong_row_is_flagged() -> None:
    wrong = check("Q8_0 uses 4.85 bits per weight.", TABLE)
    assert not wrong.supported and "another table row" in wrong.reason
    right = check("Q4_K_M uses 4.85 bits per weight.", TABLE)
    assert right.supported, right.reason


def test_a_table_value_of_a_claim_that_names_no_row_is_not_a_row_error() -> None:
    assert check("The smallest file uses 4.85 bits per weight.", TABLE).reason.find("table row") < 0


def test_a_name_the_source_never_mentions_is_flagged_even_with_high_overlap() -> None:
    source = "The magazine was founded in 1844 by Timothy Shay Arthur in Philadelphia."
    ok = check("The magazine was founded in 1844 by Timothy Shay Arthur.", source)
    assert ok.supported, ok.reason
    bad = check("The magazine was founded in 1844 by Timothy Shay Dwight in Philadelphia.", source)
    assert not bad.supported and "Dwight" in bad.reason


def test_a_one_word_answer_is_a_name() -> None:
    result = check("Lepidoptera.", "Indogrammodes is a genus of moths of the Crambidae family.")
    assert not result.supported and "Lepidoptera" in result.reason


@pytest.mark.parametrize("cited", [(), (1,)])
def test_world_knowledge_is_not_supported_by_an_unrelated_source(cited: tuple[int, ...]) -> None:
    source = "Q4_K_M stores about 4.85 bits per weight; a 7B model needs about 4.4 GB of memory."
    (result,) = check_sentences([("The capital of Peru is Lima.", cited)], [source], VERIFIER, threshold=0.4)
    assert not result.supported


def test_addresses_and_versions_are_compared_as_written() -> None:
    assert not missing_quantities("The server listens on 127.0.0.1.", ["It binds 127.0.0.1 only."])
    assert missing_quantities("Version 1.2.4 fixed it.", ["Version 1.2.3 fixed it."]) == ("1.2.4",)
