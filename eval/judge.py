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
from typing import Any

from rag.answer.gate import p_yes_from

SYSTEM = "You check whether a claim is supported by the evidence. Answer with one word: yes or no."
QUESTION = "Is the claim fully supported by the evidence? Reply yes or no."
CUT = 0.5  # P(yes) at or above this counts as supported
EVIDENCE_CHARS = 6000  # a few passages; more would not fit a small judge's context with room to spare


class LlamaJudge:
    """Yes/no support judgements from a GGUF chat model (llama-cpp-python)."""

    def __init__(self, model_path: str | Path, *, n_ctx: int = 4096, n_threads: int | None = None) -> None:
        import llama_cpp

        from rag.models.llama import default_decode_threads, physical_cores

        self.path = Path(model_path)
        self.name = f"llm-judge:{self.path.name}"
        self.llm = llama_cpp.Llama(model_path=str(self.path), n_ctx=n_ctx, verbose=False, seed=0,
                                   n_threads=n_threads or default_decode_threads(),
                                   n_threads_batch=physical_cores())
        self.yes_ids = self._first_tokens(["yes", "Yes", " yes", " Yes"])
        self.no_ids = self._first_tokens(["no", "No", " no", " No"])
        self._memo: dict[tuple[str, tuple[str, ...]], float] = {}
        self._lock = threading.Lock()
        self.calls = 0

    def _first_tokens(self, words: Sequence[str]) -> list[int]:
        return sorted({self.llm.tokenize(w.encode(), add_bos=False, special=False)[0] for w in words})

    def p_yes(self, claim: str, evidence: Sequence[str]) -> float:
        key = (claim, tuple(evidence))
        with self._lock:
            if key in self._memo:
                return self._memo[key]
            text = "\n\n".join(" ".join(e.split()) for e in evidence)[:EVIDENCE_CHARS]
            seen: list[Any] = []

            def capture(_ids: Any, scores: Any) -> Any:
                seen.append(scores.copy())
                return scores

            self.llm.create_chat_completion(
                messages=[{"role": "system", "content": SYSTEM},
                          {"role": "user", "content": f"Evidence:\n{text}\n\nClaim: {claim}\n\n{QUESTION}"}],
                max_tokens=1, temperature=0.0, logits_processor=[capture])
            self.calls += 1
            p = p_yes_from(seen[0], self.yes_ids, self.no_ids) if seen else 0.0
            self._memo[key] = p
            return p

    def supports(self, claim: str, evidence: list[str]) -> bool:
        return bool(evidence) and self.p_yes(claim, evidence) >= CUT
