"""The shipped cross-lingual set (data/eval/crosslingual.jsonl): English questions answered only by
the Chinese documents of data/docs and Chinese questions answered only by the English ones, read by
the same loader as every set and scored per direction by eval.retrieval."""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from eval.datasets import SHIPPED, QASet, dataset_path, load_qa
from eval.harness import folder_documents
from eval.retrieval import evaluate
from rag.config import Config
from rag.ingest.chunk import chunk_document, estimate_tokens
from rag.records import Document
from rag.testing import FakeEmbedder

DOCS = Path(__file__).resolve().parents[1] / "data" / "docs"


@pytest.fixture(scope="module")
def qs() -> QASet:
    return load_qa(dataset_path("crosslingual"))


@pytest.fixture(scope="module")
def docs() -> dict[str, Document]:
    return {d.source: d for d in folder_documents(DOCS)}


def _norm(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).casefold()


def _doc_language(source: str) -> str:
    return "zh" if Path(source).stem.endswith("-zh") else "en"


def test_the_set_has_forty_questions_and_both_directions(qs: QASet) -> None:
    assert SHIPPED["crosslingual"].is_file()
    assert len(qs.questions) >= 40
    directions = Counter(q.direction for q in qs.questions)
    assert set(directions) == {"en→zh", "zh→en"}
    assert min(directions.values()) >= 15
    assert len({q.id for q in qs.questions}) == len(qs.questions)


def test_every_question_asks_in_one_language_about_documents_in_the_other(qs: QASet) -> None:
    for q in qs.questions:
        asked, answered_in = q.direction.split("→")
        assert q.lang == asked, q.id
        assert q.answerable and q.answers and q.gold, q.id
        assert all(_doc_language(g.source) == answered_in for g in q.gold), q.id


def test_every_gold_source_exists_and_its_chunks_hold_the_reference(qs: QASet, docs: dict[str, Document]) -> None:
    cfg = Config()
    chunks = {source: chunk_document(doc, max_tokens=cfg.chunk_tokens, overlap_tokens=cfg.chunk_overlap_tokens,
                                     count_tokens=estimate_tokens)
              for source, doc in docs.items()}
    for q in qs.questions:
        for g in q.gold:
            assert g.source in docs, f"{q.id}: {g.source} is not in data/docs"
            on_page = [c.text for c in chunks[g.source] if g.page in c.pages]
            assert on_page, f"{q.id}: {g.source} has no chunk on page {g.page}"
            assert any(_norm(a) in _norm(t) for a in q.answers for t in on_page), \
                f"{q.id}: none of {q.answers} is in a chunk of {g.source} p. {g.page}"


def test_no_answer_is_in_a_document_of_the_questions_language(qs: QASet, docs: dict[str, Document]) -> None:
    for q in qs.questions:
        for source, doc in docs.items():
            if _doc_language(source) == q.lang:
                assert not any(_norm(a) in _norm(doc.text) for a in q.answers), f"{q.id}: answer in {source}"


def test_retrieval_reports_each_direction_apart(qs: QASet, docs: dict[str, Document]) -> None:
    result = evaluate(qs, Config(), FakeEmbedder(), ks=(1, 5), docs=list(docs.values()), progress=False)
    assert result["unit"] == "page" and result["n_queries"] == len(qs.questions)
    by = result["by_direction"]
    assert {d: by[d]["n_queries"] for d in by} == dict(Counter(q.direction for q in qs.questions))
    for d in by:
        for mode in ("bm25", "dense", "hybrid"):
            assert 0.0 <= by[d][mode]["recall@1"] <= by[d][mode]["recall@5"] <= 1.0
    # the whole set's recall is the directions' recalls weighted by their sizes
    n = result["n_queries"]
    weighted = sum(by[d]["bm25"]["recall@5"] * by[d]["n_queries"] for d in by) / n
    assert weighted == pytest.approx(result["bm25"]["recall@5"], abs=1e-3)
