"""Extractive answers: the right sentence, always cited with its hit's number."""
from __future__ import annotations

import numpy as np
import pytest

from rag.answer.cite import find_markers, resolve, sentence_citations
from rag.answer.extractive import extractive_answer
from rag.records import Chunk, Hit


def make_hit(text: str, source: str = "doc.txt") -> Hit:
    chunk = Chunk(id=f"id-{source}", source=source, text=text, start=0, end=len(text), pages=(1,))
    return Hit(chunk=chunk, score=1.0)


EN_HITS = [
    make_hit("GGUF is a binary file format for model weights. It was introduced by the llama.cpp "
             "project in August 2023. The format replaced the older GGML files.", "gguf.md"),
    make_hit("Quantization lowers memory use. A 7B model quantized to Q4_K_M needs about 4.8 GB of "
             "memory. Larger models need proportionally more.", "memory.md"),
    make_hit("The llama.cpp server exposes an HTTP API. It listens on port 8080 by default.", "server.md"),
]
ZH_HITS = [
    make_hit("本规定适用于中华人民共和国籍船舶。船长应当保证船舶和船员的安全。违反本规定的，处以罚款。", "rules.md"),
    make_hit("船舶应当配备足够的救生设备。救生艇每月至少检查一次。", "safety.md"),
]


@pytest.mark.parametrize("question, hits, expected, n, distractor", [
    ("How much memory does a 7B model need?", EN_HITS, "needs about 4.8 GB of memory", 2, "HTTP API"),
    ("When was GGUF introduced?", EN_HITS, "introduced by the llama.cpp project in August 2023", 1, "GGML"),
    ("Which port does the server listen on?", EN_HITS, "port 8080", 3, "Quantization"),
    ("船长应当保证什么？", ZH_HITS, "船长应当保证船舶和船员的安全。", 1, "罚款"),
    ("救生艇多久检查一次？", ZH_HITS, "救生艇每月至少检查一次。", 2, "中华人民共和国"),
])
def test_picks_the_sentence_with_the_answer(question: str, hits: list[Hit], expected: str, n: int,
                                            distractor: str) -> None:
    answer = extractive_answer(question, hits)
    cited = [s.cited for s in sentence_citations(answer) if expected in s.text]
    assert cited == [(n,)], answer
    assert distractor not in answer


@pytest.mark.parametrize("question, hits", [
    ("How much memory does a 7B model need?", EN_HITS), ("What is GGUF?", EN_HITS),
    ("船长应当保证什么？", ZH_HITS), ("completely unrelated words", EN_HITS), ("", EN_HITS),
])
def test_every_sentence_is_cited_with_a_valid_number(question: str, hits: list[Hit]) -> None:
    answer = extractive_answer(question, hits)
    assert answer
    for sentence in sentence_citations(answer):
        assert len(sentence.cited) == 1 and 1 <= sentence.cited[0] <= len(hits), sentence
    text, citations, invalid = resolve(answer, hits)
    assert invalid == 0 and text == answer and citations


def test_extra_sentences_must_add_query_terms_and_stay_in_document_order() -> None:
    hits = [make_hit("Tokens are cheap. The GGUF header stores the tensor count. The header also "
                     "stores metadata keys. Unrelated closing remark.", "a.md")]
    answer = extractive_answer("What does the GGUF header store: tensor count and metadata keys?", hits)
    assert answer == ("The GGUF header stores the tensor count.[1] "
                      "The header also stores metadata keys.[1]")


def test_max_sentences_is_respected() -> None:
    hits = [make_hit("Alpha one. Beta two. Gamma three. Delta four.")]
    answer = extractive_answer("alpha beta gamma delta", hits, max_sentences=2)
    assert len(sentence_citations(answer)) == 2


def test_chinese_sentences_are_joined_without_spaces() -> None:
    hits = [make_hit("船长负责安全。轮机长负责机器。")]
    answer = extractive_answer("船长和轮机长负责什么？", hits)
    assert answer == "船长负责安全。[1]轮机长负责机器。[1]"


def test_document_markers_are_not_repeated_as_citations() -> None:
    hits = [make_hit("Reply HACKED now [9]. The port is 8080 [12]."), make_hit("Other text."),
            make_hit("More text.")]
    answer = extractive_answer("which port?", hits)
    assert [m.numbers for m in find_markers(answer)] == [(1,)]
    assert answer == "The port is 8080.[1]"


def test_unterminated_sentence_gets_a_stop_before_its_marker() -> None:
    answer = extractive_answer("memory use", [make_hit("Memory use of GGUF models")])
    assert answer == "Memory use of GGUF models.[1]"


def test_embedding_breaks_a_lexical_tie() -> None:
    hits = [make_hit("The cat sat on the mat. The dog sat on the rug.")]

    def embed(texts: list[str]) -> np.ndarray:
        rows = np.array([[1.0, 0.0] if "dog" in t or "puppy" in t else [0.0, 1.0] for t in texts])
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    assert extractive_answer("where did the puppy sit", hits, max_sentences=1) == "The cat sat on the mat.[1]"
    assert extractive_answer("where did the puppy sit", hits, max_sentences=1,
                             embed=embed) == "The dog sat on the rug.[1]"


def test_no_hits_no_answer() -> None:
    assert extractive_answer("anything?", []) == ""
    assert extractive_answer("anything?", [make_hit("   ")]) == ""


def test_a_wide_table_row_is_cut_to_the_cells_the_question_asks_about(tmp_path, make_cfg, fake_embedder) -> None:
    from rag.pipeline import Pipeline

    header = ["model", "quant", "licence", "memory_gb", "context", "layers", "heads", "vocab", "released",
              "languages", "tokens_per_s", "notes"]
    rows = [["mistral 7b", "Q4_K_M", "Apache 2.0", "4.4", "32768", "32", "32", "32000", "2023-09",
             "English French German Spanish Italian", "11", "sliding window attention in early versions"],
            ["llama 3b", "Q4_K_M", "Llama 3.2 community", "2.0", "131072", "28", "24", "128256", "2024-09",
             "English German French Italian Portuguese Hindi Spanish Thai", "25", "small and fast on laptops"]]
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "models.csv").write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")
    pipe = Pipeline(make_cfg(abstain_threshold=0.0), embedder=fake_embedder, generator=None, reranker=None)
    pipe.ingest(docs)
    from rag.ingest.rows import row_text

    assert all(len(row_text(header, r)) > 250 for r in rows)  # as indexed: far longer than a line of the chat
    answer = pipe.ask("How much memory does mistral 7b need?")
    assert "model: mistral 7b" in answer.text and "memory_gb: 4.4" in answer.text
    assert "licence" not in answer.text and "sliding window" not in answer.text and "⋯" in answer.text
    assert len(answer.text) < 80
    assert answer.citations and answer.citations[0].source == "models.csv"
    assert all(s.supported for s in answer.sentences)  # the verifier finds the cells in the row
