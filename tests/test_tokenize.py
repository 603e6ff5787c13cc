"""BM25 token specifications: English stemming and stopwords, CJK bigrams, identifiers."""
from __future__ import annotations

import doctest
import sys

import pytest

import rag.index.tokenize
from rag.index.tokenize import cjk_bigrams, tokenize, tokenize_with


def test_doctests() -> None:
    assert doctest.testmod(rag.index.tokenize).failed == 0


@pytest.mark.parametrize("text, expected", [
    ("The cats are running quickly", ["cat", "run", "quick"]),
    ("Retrieval-augmented generation", ["retrieval-augmented", "retriev", "augment", "generat"]),
    ("What is the capital of France?", ["capit", "franc"]),
    ("It's not what they'd do", ["not"]),  # negations stay: they change the question
    ("the and of", []),
    ("", []),
])
def test_english_is_stemmed_without_stopwords(text: str, expected: list[str]) -> None:
    assert tokenize(text) == expected


def test_queries_and_documents_meet_on_stems() -> None:
    assert set(tokenize("indexing documents")) <= set(tokenize("The index holds every document."))


@pytest.mark.parametrize("text, expected", [
    ("向量检索", ["向量", "量检", "检索"]),
    ("书", ["书"]),
    ("向量，检索。", ["向量", "检索"]),  # punctuation ends a run
    ("東京タワー", ["東京", "京タ", "タワ", "ワー"]),
    ("한국어", ["한국", "국어"]),
])
def test_cjk_runs_become_bigrams(text: str, expected: list[str]) -> None:
    assert tokenize(text) == expected


def test_cjk_bigrams_helper() -> None:
    assert cjk_bigrams("检索增强") == ["检索", "索增", "增强"]
    assert cjk_bigrams("检") == ["检"]


@pytest.mark.parametrize("text", ["GGUF 量化", "GGUF量化", "ＧＧＵＦ　量化"])
def test_mixed_script_is_handled_per_run(text: str) -> None:
    assert tokenize(text) == ["gguf", "量化"]


@pytest.mark.parametrize("text, expected", [
    ("Q4_K_M", ["q4_k_m", "q4", "k"]),  # 'm' is a stopword fragment; the whole id stays
    ("llama-2-7b.Q4_K_M.gguf", ["llama-2-7b.q4_k_m.gguf", "llama", "2", "7b", "q4_k_m", "q4", "k", "gguf"]),
    ("rated 4.8 by 1,000 users", ["rate", "4.8", "1,000", "user"]),
    ("GGUFv3 and v1.2.3", ["ggufv3", "v1.2.3", "v1", "2", "3"]),
    ("7B model", ["7b", "model"]),
])
def test_numbers_and_identifiers_stay_searchable(text: str, expected: list[str]) -> None:
    assert tokenize(text) == expected


def test_an_identifier_query_matches_its_document() -> None:
    doc = set(tokenize("Download mistral-7b-instruct.Q4_K_M.gguf and run it."))
    assert set(tokenize("Q4_K_M")) <= doc
    assert set(tokenize("mistral 7B")) <= doc


def test_options_can_be_turned_off() -> None:
    text = "The cats are running"
    plain = tokenize_with(text, stem=False, stopwords=False, cjk=cjk_bigrams)
    assert plain == ["the", "cats", "are", "running"]
    assert tokenize_with("向量检索", stem=True, stopwords=True, cjk=list) == ["向", "量", "检", "索"]


def test_missing_stemmer_warns_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "Stemmer", None)  # import Stemmer now raises ImportError
    rag.index.tokenize._stemmer.cache_clear()
    try:
        with pytest.warns(UserWarning, match="PyStemmer"):
            assert tokenize("The cats are running") == ["cats", "running"]
    finally:
        rag.index.tokenize._stemmer.cache_clear()
