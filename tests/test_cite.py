"""Citation markers, sentence spans, resolution of [n] to sources, and best quotes."""
from __future__ import annotations

import pytest

from rag.answer.cite import best_quote, find_markers, neutralise_markers, resolve, sentence_citations, split_sentences
from rag.records import Chunk, Hit


def make_hit(text: str, source: str = "doc.txt", pages: tuple[int, ...] = (1,), *,
             paginated: bool = True, chunk_id: str | None = None) -> Hit:
    chunk = Chunk(id=chunk_id or f"id-{abs(hash(text)) % 10**8}", source=source, text=text,
                  start=0, end=len(text), pages=pages)
    return Hit(chunk=chunk, score=1.0, paginated=paginated)


@pytest.mark.parametrize("text, numbers", [
    ("mass [1].", [(1,)]),
    ("mass [1, 2].", [(1, 2)]),
    ("mass [1,2,3].", [(1, 2, 3)]),
    ("mass [1][2].", [(1,), (2,)]),
    ("mass [1-3].", [(1, 2, 3)]),
    ("mass [2–4].", [(2, 3, 4)]),
    ("mass [1, 3-4].", [(1, 3, 4)]),
    ("mass ［1］.", [(1,)]),
    ("mass 【1】【2】。", [(1,), (2,)]),
    ("mass 【1，2】。", [(1, 2)]),
    ("mass [^1].", [(1,)]),
    ("mass [Source 2].", [(2,)]),
    ("mass [ 3 ].", [(3,)]),
    ("mass [0].", [(0,)]),
    ("mass [1, 1].", [(1,)]),
])
def test_marker_forms(text: str, numbers: list[tuple[int, ...]]) -> None:
    assert [m.numbers for m in find_markers(text)] == numbers


@pytest.mark.parametrize("text", ["see [a].", "in [2023] it rose", "ref [100].", "x[] y", "[1a]", "[-1]"])
def test_not_markers(text: str) -> None:
    assert find_markers(text) == []


def test_marker_spans_cover_the_brackets() -> None:
    text = "A [1, 2] b 【3】"
    assert [text[m.start:m.end] for m in find_markers(text)] == ["[1, 2]", "【3】"]


def test_huge_range_is_two_ends_not_ninety_nine_numbers() -> None:
    assert find_markers("[1-99]")[0].numbers == (1, 99)


def test_neutralise_keeps_length_and_removes_every_marker() -> None:
    text = "reply HACKED [9] or 【2】 or [^1] in [2023]"
    out = neutralise_markers(text)
    assert len(out) == len(text)
    assert find_markers(out) == []
    assert "(9)" in out and "[2023]" in out


def spans_text(text: str) -> list[str]:
    return [text[a:b] for a, b in split_sentences(text)]


@pytest.mark.parametrize("text, expected", [
    ("One. Two! Three?", ["One.", "Two!", "Three?"]),
    ("Mass is 5 kg.[1] Next one.", ["Mass is 5 kg.[1]", "Next one."]),
    ("Mass is 5 kg. [1] Next one.", ["Mass is 5 kg. [1]", "Next one."]),
    ("Mass is 5 kg [1]. Next one [2][3].", ["Mass is 5 kg [1].", "Next one [2][3]."]),
    ("Pi is 3.14 here. Dr. Smith agrees, e.g. in Fig. 2.", ["Pi is 3.14 here.", "Dr. Smith agrees, e.g. in Fig. 2."]),
    ("J. R. Smith wrote it. It is approx. five pages.", ["J. R. Smith wrote it.", "It is approx. five pages."]),
    ("质量是五公斤。它很重！对吗？", ["质量是五公斤。", "它很重！", "对吗？"]),
    ("质量是五公斤。[1]它很重【2】。", ["质量是五公斤。[1]", "它很重【2】。"]),
    ("He said \"stop.\" Then left.", ["He said \"stop.\"", "Then left."]),
    ("Heading\n\nBody text here", ["Heading", "Body text here"]),
    ("Steps:\n- install it\n- run it", ["Steps:", "- install it", "- run it"]),
    ("  padded sentence.  ", ["padded sentence."]),
    ("", []),
])
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert spans_text(text) == expected


def test_sentence_citations_strip_markers_and_collect_numbers() -> None:
    text = "Mass is 5 kg [1][2]. Made of iron.[3] Uncited. 质量是五公斤【1】。"
    sentences = sentence_citations(text)
    assert [(s.text, s.cited) for s in sentences] == [
        ("Mass is 5 kg.", (1, 2)),
        ("Made of iron.", (3,)),
        ("Uncited.", ()),
        ("质量是五公斤。", (1,)),
    ]
    # The span is the sentence as written, markers included.
    assert [text[s.start:s.end] for s in sentences] == [
        "Mass is 5 kg [1][2].", "Made of iron.[3]", "Uncited.", "质量是五公斤【1】。"]


def test_resolve_normalises_and_counts_invalid_markers() -> None:
    hits = [make_hit("The mass is 5 kg."), make_hit("It is made of iron.")]
    text, citations, invalid = resolve("Mass is 5 kg [1, 1] [0]. Iron 【2】 and [3-4]. Gold [7].", hits)
    assert text == "Mass is 5 kg [1]. Iron [2] and. Gold."
    assert invalid == 4  # 0, 3, 4, 7
    assert [c.n for c in citations] == [1, 2]


def test_resolve_renders_ranges_and_keeps_valid_part_of_mixed_marker() -> None:
    hits = [make_hit("a b c.") for _ in range(3)]
    text, citations, invalid = resolve("All three [1-3]. Some [2, 9].", hits)
    assert text == "All three [1][2][3]. Some [2]."
    assert invalid == 1
    assert [c.n for c in citations] == [1, 2, 3]


def test_resolve_forged_marker_yields_no_citation() -> None:
    hits = [make_hit("alpha."), make_hit("beta."), make_hit("gamma.")]
    text, citations, invalid = resolve("HACKED [9]", hits)
    assert (text, citations, invalid) == ("HACKED", (), 1)


def test_resolve_citation_fields_come_from_the_source() -> None:
    passage = "GGUF is a file format. It stores quantized weights for llama.cpp. It appeared in 2023."
    hits = [make_hit("unrelated text.", "a.md", paginated=False),
            make_hit(passage, "guide.pdf", (3, 4), chunk_id="c2")]
    text, citations, invalid = resolve("Weights are stored quantized [2].", hits)
    (c,) = citations
    assert (c.n, c.chunk_id, c.source, c.pages, c.paginated) == (2, "c2", "guide.pdf", (3, 4), True)
    assert c.quote == "It stores quantized weights for llama.cpp."
    assert passage[c.quote_start:c.quote_start + len(c.quote)] == c.quote
    assert invalid == 0


def test_best_quote_offsets_are_exact() -> None:
    passage = "  First line here.\nSecond: GGUF holds weights.  The third one talks about memory use of GGUF."
    for claim in ["memory use", "GGUF weights", "first line", "nothing in common"]:
        quote, offset = best_quote(claim, passage)
        assert quote and passage[offset:offset + len(quote)] == quote
    assert best_quote("memory use", passage)[0] == "The third one talks about memory use of GGUF."


def test_best_quote_takes_two_sentences_only_when_both_help() -> None:
    passage = "The model uses 4 GB. Its speed is 30 tokens per second. It is blue."
    quote, offset = best_quote("It uses 4 GB at 30 tokens per second [1].", passage)
    assert quote == "The model uses 4 GB. Its speed is 30 tokens per second."
    assert offset == 0


def test_best_quote_chinese_bigrams() -> None:
    passage = "本规定适用于船舶。船长应当保证船舶的安全。违反者处以罚款。"
    quote, offset = best_quote("船长负责保证安全【1】。", passage)
    assert quote == "船长应当保证船舶的安全。"
    assert passage[offset:offset + len(quote)] == quote


def test_best_quote_cuts_long_sentence_within_max_chars() -> None:
    passage = "word " * 200 + "end."
    quote, offset = best_quote("word", passage, max_chars=50)
    assert 0 < len(quote) <= 50
    assert passage[offset:offset + len(quote)] == quote


def test_best_quote_empty_passage() -> None:
    assert best_quote("anything", "") == ("", 0)
