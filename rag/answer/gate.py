"""The answerability gate: before writing, the model is asked whether its passages answer the question.

    p = answerable_probability(generator, prompt, question)   # None: the generator cannot be asked
    refuse = p is not None and p < cfg.gate_threshold

The question is the answer prompt itself with its last line replaced by a yes/no question, and the
verdict is read from the first token's logits, not sampled:

    P(yes) = softmax over the first-token logits of {yes, Yes} ∪ {no, No}, summed per side

Sharing the answer prompt's messages up to the question means llama.cpp finds them already in its
KV cache when the answer is written next: the gate costs the few tokens of its last line and one
forward step, not a second read of the passages.

Why a model and not more features: the lexical evidence score (`rag.answer.abstain`) cannot see
that "How many bits does Q2_K use?" is not answered by a passage about Q4_K_M, and SQuAD 2.0's
unanswerable questions are written to look answerable. A 1.5B instruct model reading question and
passages together can (the README's refusal table).

Deliberately skipped: a separate gate model for a small writer (it would read the passages a
second time: seconds on 2 cores), and calibration beyond one threshold.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from rag.answer.prompt import ANSWER_IN, Prompt, answer_language

# The last line of the gate's user message, in the question's language, as ANSWER_IN is.
GATE_QUESTION = {
    "en": "Do the passages above contain the answer to this question? Reply yes or no.",
    "zh": "上面的段落是否包含这个问题的答案？只回答 yes 或 no。",
    "ja": "上の段落にこの質問の答えは含まれていますか？ yes か no だけで答えてください。",
    "ko": "위 단락에 이 질문의 답이 있습니까? yes 또는 no로만 답하세요.",
}
YES_WORDS = ("yes", "Yes", " yes", " Yes", "YES")
NO_WORDS = ("no", "No", " no", " No", "NO")


@runtime_checkable
class YesNoModel(Protocol):
    """A generator that can be asked a yes/no question and answer with P(yes) from its first token."""

    def yes_probability(self, messages: list[dict[str, str]]) -> float: ...


def p_yes_from(logits: Sequence[float], yes_ids: Sequence[int], no_ids: Sequence[int]) -> float:
    """P(yes) among the yes/no tokens.

    >>> round(p_yes_from([0.0, 2.0, 0.0, -1.0], yes_ids=[1], no_ids=[3]), 3)
    0.953
    """
    ys = [float(logits[i]) for i in yes_ids]
    ns = [float(logits[i]) for i in no_ids]
    top = max(ys + ns)
    y = sum(math.exp(v - top) for v in ys)
    n = sum(math.exp(v - top) for v in ns)
    return y / (y + n)


def gate_messages(prompt: Prompt, question: str) -> list[dict[str, str]]:
    """The answer prompt's messages with the last line of the user message replaced by the gate question.

    >>> from rag.answer.prompt import build_prompt
    >>> p = build_prompt("What is GGUF?", [], count_tokens=lambda s: len(s.split()), context_window=4096,
    ...                  answer_tokens=512)
    >>> gate_messages(p, "What is GGUF?")[-1]["content"].splitlines()[-2:]
    ['Question: What is GGUF?', 'Do the passages above contain the answer to this question? Reply yes or no.']
    """
    *head, last = prompt.messages
    lang = answer_language(question)
    body = last["content"]
    tail = "\n" + ANSWER_IN[lang]
    if body.endswith(tail):
        body = body[: -len(tail)]
    return [*map(dict, head), {"role": "user", "content": f"{body}\n{GATE_QUESTION[lang]}"}]


def answerable_probability(model: object, prompt: Prompt, question: str) -> float | None:
    """P(the passages answer the question) from `model`, or None when it cannot be asked."""
    if not isinstance(model, YesNoModel) or not prompt.sources:
        return None
    return model.yes_probability(gate_messages(prompt, question))
