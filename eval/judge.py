"""An independent judge for the faithfulness eval: a GGUF model asked yes/no, read from its first token.

The product's own verifier must never grade itself. This judge is another method (a generative
model's next-token probabilities, not lexical features) and may be another model than the writer:

    P(yes) = softmax over the first-token logits of {yes, Yes} ∪ {no, No}, summed per side

for the prompt "Is the claim fully supported by the evidence? Reply yes or no." (the probe that
separated supported from unsupported claims with AUROC .92 for Qwen2.5-Coder-1.5B on held-out
claims). Evidence comes first and the claim last, so consecutive claims against the same passage
share the prompt prefix in llama.cpp's KV cache. Verdicts are memoised for the run.

Deliberately skipped: claim decomposition (one judgement per sentence) and calibration beyond the
fixed 0.5 cut.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

SYSTEM = "You check whether a claim is supported by the evidence. Answer with one word: yes or no."
QUESTION = "Is the claim fully supported by the evidence? Reply yes or no."
CUT = 0.5  # P(yes) at or above this counts as supported
EVIDENCE_CHARS = 6000  # a few passages; more would not fit a small judge's context with room to spare


class LlamaJudge:
    """Yes/no support judgements from a GGUF chat model: `LlamaCppGenerator.yes_probability`, memoised."""

    def __init__(self, model_path: str | Path, *, n_ctx: int = 4096, n_threads: int | None = None) -> None:
        from rag.models.llama import LlamaCppGenerator, default_decode_threads, physical_cores

        self.generator = LlamaCppGenerator(model_path, n_ctx=n_ctx, n_threads=n_threads or default_decode_threads(),
                                           n_threads_batch=physical_cores(), temperature=0.0)
        self.path = self.generator.path
        self.name = f"llm-judge:{self.path.name}"
        self._memo: dict[tuple[str, tuple[str, ...]], float] = {}
        self._lock = threading.Lock()
        self.calls = 0

    def p_yes(self, claim: str, evidence: Sequence[str]) -> float:
        key = (claim, tuple(evidence))
        with self._lock:
            if key in self._memo:
                return self._memo[key]
            text = "\n\n".join(" ".join(e.split()) for e in evidence)[:EVIDENCE_CHARS]
            p = self.generator.yes_probability([
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"Evidence:\n{text}\n\nClaim: {claim}\n\n{QUESTION}"}])
            self.calls += 1
            self._memo[key] = p
            return p

    def supports(self, claim: str, evidence: list[str]) -> bool:
        return bool(evidence) and self.p_yes(claim, evidence) >= CUT
