"""The LLM verifier: the local generator splits a sentence into atomic claims and judges each one.

    >>> parse_verdict("Supported."), parse_claims("- Paris is in France.", "s")
    (1, ['Paris is in France.'])

FActScore-style: support is the share of claims judged "Supported" against the cited evidence.

Deliberately skipped: few-shot prompts and a calibrated probability (a small local model's
verdict is a yes/no, so support moves in steps of 1/number of claims).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag.answer.generate import Generator, Message


_EXTRACT_PROMPT = (
    "Split the sentence into short, self-contained factual claims. Write one claim per line and "
    "nothing else. If the sentence states no fact, write NONE.\n\nSentence: {sentence}")
_JUDGE_PROMPT = (
    "Evidence:\n{evidence}\n\nClaim: {claim}\n\nIs the claim fully supported by the evidence above? "
    "Answer with exactly one of: Supported, Not supported.")


class LLMVerifier:
    """Atomic claims judged one by one by the local generator (FActScore-style); support = share supported.

    `generator` is anything with `stream(messages, max_tokens=..., temperature=...)` yielding text.
    """

    name = "llm"

    def __init__(self, generator: Generator, *, max_claims: int = 6) -> None:
        self.generator = generator
        self.max_claims = max_claims

    def _ask(self, prompt: str, max_tokens: int) -> str:
        messages: list[Message] = [{"role": "system", "content": "You check facts carefully and answer tersely."},
                                   {"role": "user", "content": prompt}]
        return "".join(self.generator.stream(messages, max_tokens=max_tokens, temperature=0))

    def claims(self, sentence: str) -> list[str]:
        return parse_claims(self._ask(_EXTRACT_PROMPT.format(sentence=sentence), 256), sentence)[: self.max_claims]

    def support(self, claim: str, evidence: Sequence[str]) -> float:
        claims = self.claims(claim)
        if not claims:
            return 1.0  # the judge found no factual claim in the sentence
        text = "\n\n".join(t.strip() for t in evidence if t and t.strip())
        verdicts = [parse_verdict(self._ask(_JUDGE_PROMPT.format(evidence=text, claim=c), 8)) for c in claims]
        return sum(verdicts) / len(verdicts)


def parse_claims(text: str, sentence: str) -> list[str]:
    """Claim lines from the model's reply, bullets and numbering stripped; the sentence if none parse.

    >>> parse_claims("1. Paris is in France.\\n- It is the capital.", "s")
    ['Paris is in France.', 'It is the capital.']
    >>> parse_claims("NONE", "In summary:")
    []
    """
    if text.strip().upper().startswith("NONE"):
        return []
    out = [re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", line).strip() for line in text.splitlines()]
    out = [c for c in out if c and not c.lower().startswith(("claims:", "here are"))]
    return out or [sentence]


def parse_verdict(text: str) -> int:
    """1 for 'Supported', 0 for 'Not supported' or anything unclear (unclear is not support).

    >>> parse_verdict(" Supported."), parse_verdict("Not supported"), parse_verdict("unsupported")
    (1, 0, 0)
    """
    low = text.strip().lower()
    if low.startswith(("not", "un", "no")) or "not supported" in low:
        return 0
    return 1 if low.startswith(("support", "yes")) else 0
