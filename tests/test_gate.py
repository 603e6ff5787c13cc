"""The answerability gate: the model asked yes/no before it writes, sharing the answer prompt's prefix."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from rag.answer.gate import GATE_QUESTION, gate_messages
from rag.answer.prompt import ANSWER_IN, build_prompt
from rag.ingest.build import ingest
from rag.pipeline import Pipeline
from rag.testing import FakeEmbedder, FakeGenerator
from tests.conftest import write_docs

DOCS = {"quant.md": "# Quantization\n\nQ4_K_M stores about 4.8 bits per weight.\n\n"
                    "A 7B model in Q4_K_M needs about 4.4 GB of memory.\n",
        "zh.md": "# 缓存\n\n上下文为 4096 个词元时，KV 缓存共 2 GiB。\n"}


class GatedGenerator(FakeGenerator):
    """A scripted writer whose yes/no answer is fixed, recording what it was asked."""

    def __init__(self, reply: str, p_yes: float) -> None:
        super().__init__(reply)
        self.p_yes = p_yes
        self.asked: list[list[dict[str, str]]] = []

    def yes_probability(self, messages: list[dict[str, str]]) -> float:
        self.asked.append(messages)
        return self.p_yes

    def stream(self, messages, *, max_tokens: int, temperature: float | None = None,
               stop: Sequence[str] = ()) -> Iterator[str]:
        yield from super().stream(messages, max_tokens=max_tokens, temperature=temperature, stop=stop)


@pytest.fixture
def collection(tmp_path, make_cfg):
    cfg = make_cfg(abstain_threshold=0.0, gate_threshold=0.5)
    emb = FakeEmbedder()
    ingest(write_docs(tmp_path / "docs", DOCS), cfg, embedder=emb)
    return cfg, emb


@pytest.mark.parametrize("question, lang", [("How much memory does a 7B model need?", "en"),
                                            ("KV 缓存有多大？", "zh")])
def test_gate_question_shares_the_answer_prompt_up_to_the_question(collection, question, lang):
    cfg, emb = collection
    hits = Pipeline(cfg, embedder=emb, generator=None, reranker=None).retrieve(question)
    prompt = build_prompt(question, hits, count_tokens=lambda s: len(s.split()), context_window=4096,
                          answer_tokens=512)
    asked = gate_messages(prompt, question)
    assert asked[:-1] == list(prompt.messages[:-1])  # system, example, history: identical
    answer_user, gate_user = prompt.messages[-1]["content"], asked[-1]["content"]
    shared = answer_user[: -len(ANSWER_IN[lang])]
    assert gate_user == shared + GATE_QUESTION[lang] and f"Question: {question}\n" in shared
    assert '<source id="1">' in shared  # the passages are in the shared part: read once


def test_a_no_from_the_gate_refuses_without_writing(collection):
    cfg, emb = collection
    gen = GatedGenerator("Canberra is the capital of Australia [1].", p_yes=0.1)
    ans = Pipeline(cfg, embedder=emb, generator=gen, reranker=None).ask("What is the capital of Australia?")
    assert ans.refused and gen.prompts == [] and len(gen.asked) == 1
    assert ans.timings["answerable"] == 0.1 and ans.sources  # nearest passages still shown


def test_a_yes_from_the_gate_lets_the_model_answer(collection):
    cfg, emb = collection
    gen = GatedGenerator("A 7B model in Q4_K_M needs about 4.4 GB of memory [1].", p_yes=0.9)
    ans = Pipeline(cfg, embedder=emb, generator=gen, reranker=None).ask("How much memory does a 7B model need?")
    assert ans.mode == "generative" and not ans.refused and "4.4 GB" in ans.text
    assert len(gen.asked) == 1 and len(gen.prompts) == 1


def test_chinese_question_is_refused_in_chinese(collection):
    cfg, emb = collection
    gen = GatedGenerator("不会被写出 [1]。", p_yes=0.0)
    ans = Pipeline(cfg, embedder=emb, generator=gen, reranker=None).ask("北京到上海的高铁需要多长时间？")
    assert ans.refused and ans.text == "文档中没有找到这个问题的答案。"
    assert gen.asked[0][-1]["content"].endswith(GATE_QUESTION["zh"])


def test_threshold_zero_turns_the_gate_off(collection):
    cfg, emb = collection
    gen = GatedGenerator("A 7B model in Q4_K_M needs about 4.4 GB of memory [1].", p_yes=0.0)
    ans = Pipeline(cfg.with_overrides(gate_threshold=0.0), embedder=emb, generator=gen,
                   reranker=None).ask("How much memory does a 7B model need?")
    assert not ans.refused and gen.asked == [] and "answerable" not in ans.timings


def test_by_default_the_model_is_not_asked(collection, make_cfg):
    cfg, emb = collection
    gen = GatedGenerator("A 7B model in Q4_K_M needs about 4.4 GB of memory [1].", p_yes=0.0)
    ans = Pipeline(make_cfg(abstain_threshold=0.0), embedder=emb, generator=gen,
                   reranker=None).ask("How much memory does a 7B model need?")
    assert not ans.refused and gen.asked == []


def test_a_generator_that_cannot_be_asked_is_not_gated(collection):
    cfg, emb = collection
    gen = FakeGenerator("A 7B model in Q4_K_M needs about 4.4 GB of memory [1].")
    ans = Pipeline(cfg, embedder=emb, generator=gen, reranker=None).ask("How much memory does a 7B model need?")
    assert not ans.refused and "answerable" not in ans.timings


# --- the rule: weak evidence, the model's rescue, the per-model default

MEMORY_Q = "How much memory does a 7B model need?"
MEMORY_A = "A 7B model in Q4_K_M needs about 4.4 GB of memory [1]."


@pytest.mark.parametrize("p_yes, refused", [(0.9, False), (0.7, True), (0.3, True)])
def test_a_confident_yes_answers_what_the_evidence_score_alone_refuses(collection, p_yes, refused):
    cfg, emb = collection
    weak = cfg.with_overrides(abstain_threshold=0.999, gate_threshold=0.5, gate_rescue=0.8)  # every score is weak
    gen = GatedGenerator(MEMORY_A, p_yes=p_yes)
    ans = Pipeline(weak, embedder=emb, generator=gen, reranker=None).ask(MEMORY_Q)
    assert ans.refused is refused and len(gen.asked) == 1
    assert gen.prompts == ([] if refused else [gen.prompts[0]]) and (refused or "4.4 GB" in ans.text)


def test_without_a_rescue_weak_evidence_refuses_before_the_model_is_asked(collection):
    cfg, emb = collection
    gen = GatedGenerator(MEMORY_A, p_yes=0.99)
    ans = Pipeline(cfg.with_overrides(abstain_threshold=0.999), embedder=emb, generator=gen,
                   reranker=None).ask(MEMORY_Q)
    assert ans.refused and gen.asked == [] and gen.prompts == []  # no prompt read for a refusal


class ModelFileGenerator(GatedGenerator):
    def __init__(self, path: str, p_yes: float) -> None:
        super().__init__(MEMORY_A, p_yes)
        self.path = path


@pytest.mark.parametrize("file, asked", [("models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", True),
                                         ("models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", False)])
def test_by_default_only_a_calibrated_model_is_asked(collection, make_cfg, file, asked):
    from rag.answer.gate import CALIBRATED

    cfg, emb = collection
    rule = CALIBRATED["qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"]["latin"]  # an English question
    gen = ModelFileGenerator(file, p_yes=rule.threshold - 0.05)  # a no from the calibrated model
    pipe = Pipeline(make_cfg(abstain_threshold=0.0), embedder=emb, generator=gen, reranker=None)
    assert pipe.cfg.gate_threshold == -1.0  # the shipped default: the model's own rule
    ans = pipe.ask(MEMORY_Q)
    assert bool(gen.asked) is asked and ans.refused is asked


def test_each_script_has_its_own_calibrated_cut(collection, make_cfg):
    from rag.answer.gate import CALIBRATED

    cfg, emb = collection
    rules = CALIBRATED["qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"]
    p = (rules["latin"].threshold + rules["cjk"].threshold) / 2  # a no in English, a yes in Chinese
    gen = ModelFileGenerator("models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", p_yes=p)
    pipe = Pipeline(make_cfg(abstain_threshold=0.0), embedder=emb, generator=gen, reranker=None)
    assert pipe.ask(MEMORY_Q).refused and not pipe.ask("KV 缓存有多大？").refused


@pytest.mark.slow
def test_llama_cpp_yes_probability_is_a_probability(tmp_path):
    pytest.importorskip("llama_cpp")
    from rag.models.llama import LlamaCppGenerator
    from rag.testing import write_tiny_gguf

    gen = LlamaCppGenerator(write_tiny_gguf(tmp_path / "tiny.gguf"), n_ctx=2048, seed=1)
    messages = [{"role": "user", "content": "Is water wet? Reply yes or no."}]
    p = gen.yes_probability(messages)
    assert 0.0 < p < 1.0 and gen.yes_probability(messages) == pytest.approx(p)  # deterministic
    # It leaves the model usable for writing, with the same lock.
    assert isinstance("".join(gen.stream(messages, max_tokens=3)), str)


@pytest.mark.slow
def test_the_eval_judge_reads_the_same_probability_and_memoises_it(tmp_path):
    pytest.importorskip("llama_cpp")
    from eval.judge import LlamaJudge
    from rag.testing import write_tiny_gguf

    judge = LlamaJudge(write_tiny_gguf(tmp_path / "tiny.gguf"), n_ctx=2048)
    p = judge.p_yes("Water is wet.", ["Water is a liquid."])
    assert 0.0 < p < 1.0
    assert judge.p_yes("Water is wet.", ["Water is a liquid."]) == p and judge.calls == 1
