"""The answerability gate: before writing, the model is asked whether its passages answer the question.

    rule = gate_rule(cfg.gate_threshold, cfg.gate_rescue, model_file, question)   # None: no gate
    p = answerable_probability(generator, prompt, question)   # None: the generator cannot be asked
    refuse = rule.refuses(p, weak=evidence < cfg.abstain_threshold)

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

The rule has two numbers, both per model (`CALIBRATED`, chosen on shared data, never on the
shipped questions they are reported on): P(yes) below `threshold` refuses whatever the evidence
score says, and P(yes) at or above `rescue` answers a question that the lexical evidence score
alone would have refused (its false refusals are questions worded unlike their passage, which
the model reads past). Between the two the evidence score decides, as without a model.

Deliberately skipped: a separate gate model for a small writer (it would read the passages a
second time: seconds on 2 cores), and a trained combiner of gate and evidence (a 2-fold logistic
over both did worse than either alone on SQuAD 2.0: `eval.abstention`'s "combined" line).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from rag.answer.prompt import ANSWER_IN, Prompt, answer_language
from rag.text import sentence_language

# The last line of the gate's user message, in the question's language, as ANSWER_IN is.
GATE_QUESTION = {
    "en": "Do the passages above contain the answer to this question? Reply yes or no.",
    "zh": "上面的段落是否包含这个问题的答案？只回答 yes 或 no。",
    "ja": "上の段落にこの質問の答えは含まれていますか？ yes か no だけで答えてください。",
    "ko": "위 단락에 이 질문의 답이 있습니까? yes 또는 no로만 답하세요.",
}
YES_WORDS = ("yes", "Yes", " yes", " Yes", "YES")
NO_WORDS = ("no", "No", " no", " No", "NO")


@dataclass(frozen=True)
class GateRule:
    """When the gate refuses. `rescue` None: a weak evidence score refuses whatever the model says.

    >>> r = GateRule(threshold=0.6, rescue=0.75)
    >>> [r.refuses(p, weak=False) for p in (0.5, 0.7, 0.9)], [r.refuses(p, weak=True) for p in (0.5, 0.7, 0.9)]
    ([True, False, False], [True, True, False])
    >>> r.refuses(None, weak=True), r.refuses(None, weak=False)
    (True, False)
    """

    threshold: float  # P(yes) below this refuses
    rescue: float | None = None  # P(yes) at or above this answers despite a weak evidence score
    source: str = "settings"  # where the numbers come from, for reports

    def refuses(self, p_yes: float | None, *, weak: bool) -> bool:
        if p_yes is None:  # the model could not be asked: the evidence score alone decides
            return weak
        if p_yes < self.threshold:
            return True
        return weak and (self.rescue is None or p_yes < self.rescue)


# Per-model rules, by GGUF file name (rag.models.registry's `file`), one for CJK questions and one for
# the others (`rag.text.sentence_language`), since the false-refusal target must hold in each language. Chosen
# by `python -m eval.abstention --gate-model M --gate-prompt product --n 50 --rows FILE`, then
# `--choose-gate FILE` (the most correct refusals at ≤ 10 % false), on shared data only: SQuAD 2.0's
# half for the Latin rule (.48 correct at .08 false, against the evidence score's .34 at .06) and the
# CMRC 2018 trial with half its paragraphs left out (`--mismatched`) for the CJK one (.88 at .06,
# against .82 at .10). The shipped questions played no part in the choice.
# Qwen2.5-Coder-0.5B has no entry: its P(yes) hardly separates them (AUROC .58 on SQuAD, .81 shipped).
_QWEN15_SOURCE = "Qwen2.5-Coder-1.5B, product prompt, 2026-12-03; "
CALIBRATED: dict[str, dict[str, GateRule]] = {
    "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf": {
        "latin": GateRule(0.63, 0.75, _QWEN15_SOURCE + "SQuAD 2.0 half 50+50"),
        "cjk": GateRule(0.53, 0.70, _QWEN15_SOURCE + "CMRC 2018 trial, half its paragraphs left out, 50+50"),
    },
}


def gate_rule(threshold: float, rescue: float = 0.0, model_file: str | Path | None = None,
              question: str = "") -> GateRule | None:
    """The configured rule for `question`: `threshold` < 0 is the model's calibrated rule for the
    question's script (None when the model has none), 0 no gate, above 0 that threshold (and
    `rescue` when above 0).

    >>> m = "models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    >>> [gate_rule(-1, model_file=m, question=q).threshold for q in ("What is GGUF?", "什么是 GGUF？")]
    [0.63, 0.53]
    >>> gate_rule(-1, model_file="other.gguf") is None, gate_rule(0.0, model_file=None) is None
    (True, True)
    >>> gate_rule(0.5, 0.8)
    GateRule(threshold=0.5, rescue=0.8, source='settings')
    """
    if threshold < 0:
        rules = CALIBRATED.get(Path(model_file).name) if model_file else None
        if not rules:
            return None
        return rules["cjk" if sentence_language(question) == "cjk" else "latin"]
    if threshold == 0:
        return None
    return GateRule(threshold, rescue if rescue > 0 else None)


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
