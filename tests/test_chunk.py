"""Chunking specifications: exact spans, structure, overlap, bounds, stable ids."""
from __future__ import annotations

import doctest
import re
import time

import pytest

import rag.ingest.chunk
from rag.ingest.chunk import chunk_document, chunk_id, estimate_tokens
from rag.records import PAGE_JOINER, Chunk, Document, Page

CJK_PUNCT = "，。！？；、：）」"


def doc_of(*pages: str, kind: str = "txt", source: str = "doc.txt") -> Document:
    return Document(source, kind, tuple(Page(i + 1, t) for i, t in enumerate(pages)))


def assert_well_formed(doc: Document, chunks: list[Chunk], max_tokens: int) -> None:
    text = doc.text
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.text == text[c.start:c.end]
        assert c.text and c.text == c.text.strip()
        assert c.source == doc.source
        assert c.id == chunk_id(doc.source, c.start, c.end, c.text)
        assert estimate_tokens(c.text) <= max_tokens


def test_doctests() -> None:
    assert doctest.testmod(rag.ingest.chunk).failed == 0


@pytest.mark.parametrize("text, expected", [
    ("", 0),
    ("hello world", 2),
    ("tokenization", 3),  # 12 letters: a word plus word pieces
    ("向量检索", 4),
    ("3.5", 3),  # digits, point, digits
    ("2024", 1),
    ("123456789", 2),
    ("...", 3),  # BERT splits every punctuation mark
    ("GGUF 量化!", 4),
])
def test_estimate_tokens(text: str, expected: int) -> None:
    assert estimate_tokens(text) == expected


def test_short_document_is_one_chunk() -> None:
    doc = doc_of("  Retrieval finds passages. Generation writes the answer.\n\n")
    [chunk] = chunk_document(doc)
    assert chunk.text == "Retrieval finds passages. Generation writes the answer."
    assert (chunk.start, chunk.pages, chunk.heading_path, chunk.ordinal) == (2, (1,), (), 0)


def test_english_splits_at_sentences_not_abbreviations_or_decimals() -> None:
    sentences = ["Dr. Smith measured 3.5 times more recall, e.g. on SQuAD.",
                 "The index is rebuilt nightly.",
                 "Queries are answered in milliseconds."]
    doc = doc_of(" ".join(sentences))
    chunks = chunk_document(doc, max_tokens=20, overlap_tokens=0)  # the first one is 20 tokens
    assert_well_formed(doc, chunks, 20)
    assert [c.text for c in chunks] == [sentences[0], sentences[1] + " " + sentences[2]]


def test_paragraphs_are_packed_whole() -> None:
    paras = ["Alpha one. Alpha two.", "Beta one. Beta two.", "Gamma one. Gamma two."]
    doc = doc_of("\n\n".join(paras))
    chunks = chunk_document(doc, max_tokens=13, overlap_tokens=0)
    assert [c.text for c in chunks] == ["Alpha one. Alpha two.\n\nBeta one. Beta two.",
                                        "Gamma one. Gamma two."]


def test_long_sentence_splits_at_whitespace_never_inside_a_word() -> None:
    words = [f"word{i:03d}" for i in range(300)]
    doc = doc_of(" ".join(words))
    chunks = chunk_document(doc, max_tokens=20, overlap_tokens=0)
    assert_well_formed(doc, chunks, 20)
    assert [w for c in chunks for w in c.text.split()] == words


def test_chinese_cuts_after_punctuation_when_there_is_some() -> None:
    text = ("向量检索是一种常见的技术，它把文本变成向量，然后按相似度查找最近的片段，"
            "再把这些片段交给生成模型，模型根据片段回答问题并给出引用。下一句很短。")
    doc = doc_of(text)
    chunks = chunk_document(doc, max_tokens=16, overlap_tokens=0)  # the longest clause is 16
    assert_well_formed(doc, chunks, 16)
    assert len(chunks) > 3
    for c in chunks:
        assert c.end == len(text) or text[c.end - 1] in CJK_PUNCT, c.text
    assert "".join(c.text for c in chunks) == text


def test_chinese_without_punctuation_cuts_at_a_fixed_count() -> None:
    text = "检索增强生成" * 50  # 300 characters, no boundary anywhere
    doc = doc_of(text)
    chunks = chunk_document(doc, max_tokens=64, overlap_tokens=0)
    assert [len(c.text) for c in chunks] == [64, 64, 64, 64, 44]


def test_mixed_script_never_cuts_inside_a_latin_word() -> None:
    text = "使用GGUF格式和Q4_K_M量化" * 30  # no spaces, no CJK punctuation
    doc = doc_of(text)
    chunks = chunk_document(doc, max_tokens=25, overlap_tokens=0)
    assert_well_formed(doc, chunks, 25)
    for c in chunks[:-1]:
        assert not (text[c.end - 1].isascii() and text[c.end - 1].isalnum()
                    and text[c.end].isascii() and text[c.end].isalnum()), c.text
    assert "".join(c.text for c in chunks) == text


def test_list_lines_are_sentences() -> None:
    text = "Steps:\n- install the package\n- build the index\n- ask a question"
    doc = doc_of(text)
    chunks = chunk_document(doc, max_tokens=8, overlap_tokens=0)
    assert [c.text for c in chunks] == ["Steps:\n- install the package", "- build the index",
                                        "- ask a question"]


def test_pages_follow_the_span_across_a_page_break() -> None:
    p3 = "The first page ends with this paragraph about retrieval."
    p4 = "The second page opens with generation. It also cites sources."
    doc = Document("paper.pdf", "pdf", (Page(3, p3), Page(4, p4)), paginated=True)
    [both] = chunk_document(doc)
    assert both.pages == (3, 4) and both.text == p3 + PAGE_JOINER + p4
    assert both.label() == "paper.pdf p. 3-4"
    chunks = chunk_document(doc, max_tokens=13, overlap_tokens=0)
    assert_well_formed(doc, chunks, 13)
    assert [c.pages for c in chunks] == [(3,), (4,), (4,)]
    assert chunks[1].start == doc.page_starts[1]


def test_empty_page_in_the_middle_is_not_claimed() -> None:
    doc = doc_of("Short one.", "", "Short two.")
    [chunk] = chunk_document(doc)
    assert chunk.pages == (1, 3)


def test_markdown_heading_paths() -> None:
    md = ("Preamble text.\n"
          "# A\n\nUnder A.\n\n"
          "## B\nUnder B.\n"
          "### C ###\n\nUnder C.\n"
          "## D\n\n"
          "```python\n# a comment, not a heading\nx = 1\n```\n"
          "# Empty\n"
          "# E\nUnder E.")
    doc = doc_of(md, kind="md", source="notes.md")
    chunks = chunk_document(doc)
    assert_well_formed(doc, chunks, 200)
    assert [(c.heading_path, c.text.splitlines()[0]) for c in chunks] == [
        ((), "Preamble text."),
        (("A",), "Under A."),
        (("A", "B"), "Under B."),
        (("A", "B", "C"), "Under C."),
        (("A", "D"), "```python"),  # the fenced comment stays in the code
        (("E",), "Under E."),  # '# Empty' has no body: no chunk
    ]
    assert not any(line.startswith("## ") for c in chunks for line in c.text.splitlines())


def test_hash_lines_are_not_headings_in_plain_text() -> None:
    doc = doc_of("# a shell comment\necho hello", kind="txt")
    [chunk] = chunk_document(doc)
    assert chunk.heading_path == () and chunk.text.startswith("# a shell comment")


def test_overlap_repeats_whole_trailing_sentences() -> None:
    sentences = [f"Sentence number {n} talks about topic {n}." for n in range(12)]
    doc = doc_of(" ".join(sentences))
    chunks = chunk_document(doc, max_tokens=30, overlap_tokens=10)
    assert_well_formed(doc, chunks, 30)
    for prev, nxt in zip(chunks, chunks[1:]):
        assert prev.start < nxt.start < prev.end  # overlapping spans
        shared = doc.text[nxt.start:prev.end]
        assert shared in sentences  # exactly one whole sentence (8 tokens ≤ 10)
        assert estimate_tokens(shared) <= 10
    assert {s for c in chunks for s in sentences if s in c.text} == set(sentences)


def test_no_overlap_across_sections_or_when_zero() -> None:
    md = "# One\n" + " ".join(f"One says {n}." for n in range(20)) + "\n# Two\nTwo says hi."
    doc = doc_of(md, kind="md")
    chunks = chunk_document(doc, max_tokens=20, overlap_tokens=8)
    last_of_one = [c for c in chunks if c.heading_path == ("One",)][-1]
    [two] = [c for c in chunks if c.heading_path == ("Two",)]
    assert two.text == "Two says hi." and two.start > last_of_one.end
    plain = chunk_document(doc, max_tokens=20, overlap_tokens=0)
    assert all(a.end < b.start for a, b in zip(plain, plain[1:]))


def test_custom_counter_bounds_the_chunks() -> None:
    doc = doc_of(" ".join(f"w{i}" for i in range(100)))
    chunks = chunk_document(doc, max_tokens=7, overlap_tokens=0, count_tokens=lambda t: len(t.split()))
    assert [len(c.text.split()) for c in chunks] == [7] * 14 + [2]


def test_ids_are_stable_and_depend_on_the_source() -> None:
    text = "Stable ids matter. Re-ingesting changes nothing.\n\nA second paragraph."
    first = chunk_document(doc_of(text, source="a.txt"), max_tokens=8, overlap_tokens=2)
    again = chunk_document(doc_of(text, source="a.txt"), max_tokens=8, overlap_tokens=2)
    other = chunk_document(doc_of(text, source="b.txt"), max_tokens=8, overlap_tokens=2)
    assert [c.id for c in first] == [c.id for c in again]
    assert len({c.id for c in first}) == len(first) > 1
    assert not {c.id for c in first} & {c.id for c in other}
    assert re.fullmatch(r"[0-9a-f]{20}", first[0].id)
    assert chunk_id("a.txt", 0, 4, "abcd") == chunk_id("a.txt", 0, 4, "abcd")
    assert chunk_id("a.txt", 0, 4, "abcd") != chunk_id("a.txt", 1, 5, "abcd")


@pytest.mark.parametrize("max_tokens, overlap", [(0, 0), (10, 10), (10, -1)])
def test_bad_sizes_are_refused(max_tokens: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="tokens"):
        chunk_document(doc_of("text"), max_tokens=max_tokens, overlap_tokens=overlap)


def test_empty_documents_give_no_chunks() -> None:
    assert chunk_document(Document("e.txt", "txt", ())) == []
    assert chunk_document(doc_of("  \n\n \t", "")) == []
    assert chunk_document(doc_of("# Only a heading\n\n## And another", kind="md")) == []


@pytest.mark.parametrize("unit", ["retrieval is fast ", "retrieval ", "检索增强生成很快", "aGVsbG8gd29y"])
def test_two_megabytes_on_one_line_is_linear(unit: str) -> None:
    text = unit * (2_000_000 // len(unit.encode()))
    doc = doc_of(text)
    t0 = time.perf_counter()
    chunks = chunk_document(doc)
    assert time.perf_counter() - t0 < 5
    assert chunks[0].start == 0 and chunks[-1].end == len(text.rstrip())
    assert max(estimate_tokens(c.text) for c in chunks) <= 200


# --- property test over random documents ---------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

_body_chars = st.sampled_from(list("abcdeXYZ 019.,!?;-_\n\n\t") + list("向量检索。，！？；")
                              + ["e.g. ", "Dr. ", "3.5", "\n- "])
_paragraph = st.lists(_body_chars, min_size=1, max_size=60).map("".join)
_block = st.one_of(
    st.tuples(st.just("h"), st.integers(1, 4), st.sampled_from(["Intro", "用法", "A b"])),
    st.tuples(st.just("p"), _paragraph),
)


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(pages=st.lists(st.lists(_block, max_size=6), min_size=1, max_size=4),
                  max_tokens=st.integers(4, 40), overlap=st.integers(0, 10))
def test_random_documents(pages: list[list[tuple]], max_tokens: int, overlap: int) -> None:
    hypothesis.assume(overlap < max_tokens)
    texts, headings = [], []  # headings: (start, end, level, title) in document offsets
    offset = 0
    for blocks in pages:
        page = ""
        for block in blocks:
            if block[0] == "h":
                line = "#" * block[1] + " " + block[2]
                start = offset + len(page) + (1 if page else 0)
                headings.append((start, start + len(line), block[1], block[2]))
                page += ("\n" if page else "") + line + "\n"
            else:
                page += block[1].replace("#", "")
        texts.append(page)
        offset += len(page) + len(PAGE_JOINER)
    doc = doc_of(*texts, kind="md")
    text = doc.text
    chunks = chunk_document(doc, max_tokens=max_tokens, overlap_tokens=overlap)
    assert_well_formed(doc, chunks, max_tokens)

    covered = bytearray(len(text))
    for c in chunks:
        covered[c.start:c.end] = b"\x01" * (c.end - c.start)
        assert not any(c.start < h_end and h_start < c.end for h_start, h_end, _, _ in headings)
        before = [h for h in headings if h[1] <= c.start]
        stack: list[tuple[int, str]] = []
        for _, _, level, title in before:
            stack = [s for s in stack if s[0] < level] + [(level, title)]
        assert c.heading_path == tuple(t for _, t in stack)
        assert c.pages == tuple(p.number for p, s in zip(doc.pages, doc.page_starts)
                                if p.text and s < c.end and s + len(p.text) > c.start)
    in_heading = bytearray(len(text))
    for h_start, h_end, _, _ in headings:
        in_heading[h_start:h_end] = b"\x01" * (h_end - h_start)
    missed = [i for i, ch in enumerate(text) if not ch.isspace() and not in_heading[i] and not covered[i]]
    assert not missed, (text, missed)
