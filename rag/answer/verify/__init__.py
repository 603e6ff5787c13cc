"""Does the cited source support the sentence? Verifiers score a claim against evidence, 0..1.

Three backends behind one small protocol, picked by `load_verifier(cfg.verifier)`:

- `offline.OfflineVerifier` (default): no model beyond the embedder it is given; the claim
  features of `features` (coverage, numbers, names) and embedding similarity, combined by a
  fitted logistic model.
- `nli.NLIVerifier`: an NLI cross-encoder (local path or Hugging Face cache); entailment
  probability, max over evidence windows.
- `llm.LLMVerifier`: the local generator splits the sentence into atomic claims and judges each
  one "Supported" / "Not supported"; support is the share supported.

`check_sentences` turns scores into `SentenceCheck`s with a reason the UI can show, and the span
of each sentence in the answer. `features` is also what `rag.answer.abstain` reads before any
generation; it imports no backend.

    >>> [c.reason for c in check_sentences([("In summary:", ()), ("Paris is in Peru.", (9,))],
    ...                                    ["Paris is in France."], OfflineVerifier(), threshold=0.5)]
    ['no claim', 'cites missing source [9]']

Deliberately skipped: coreference across sentences, and contradiction detection beyond numbers
and names (the offline verifier measures support, it does not reason).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from rag.answer.cite import CitedSentence
from rag.answer.verify.features import (
    bigram_coverage,
    content_tokens,
    coverage,
    is_claim,
    missing_names,
    missing_numbers,
    names,
    numbers,
    split_sentences,
    windows,
)
from rag.answer.verify.llm import LLMVerifier, parse_claims, parse_verdict
from rag.answer.verify.nli import NLIVerifier, entailment_index, entailment_probs
from rag.answer.verify.offline import (
    NUMBER_PENALTY,
    WEIGHTS_EMBED,
    WEIGHTS_LEXICAL,
    OfflineVerifier,
    SupportFeatures,
    score_features,
)
from rag.answer.verify.quantities import Quantity, missing_quantities, quantities, wrong_row
from rag.errors import ConfigError, RagError
from rag.records import SentenceCheck

if TYPE_CHECKING:
    from rag.answer.generate import Generator
    from rag.models.embed import Embedder

__all__ = [
    "NUMBER_PENALTY", "WEIGHTS_EMBED", "WEIGHTS_LEXICAL", "LLMVerifier", "NLIVerifier", "OfflineVerifier",
    "SupportFeatures", "Verifier", "bigram_coverage", "check_sentences", "content_tokens", "coverage",
    "entailment_index", "entailment_probs", "is_claim", "load_verifier", "missing_names", "missing_numbers",
    "missing_quantities", "names", "numbers", "parse_claims", "parse_verdict", "Quantity", "quantities",
    "score_features", "split_sentences", "windows", "wrong_row",
]


@runtime_checkable
class Verifier(Protocol):
    name: str

    def support(self, claim: str, evidence: Sequence[str]) -> float:
        """0..1: how well the evidence (one or more source texts) supports the claim."""
        ...


def load_verifier(spec: str, *, embedder: Embedder | None = None, generator: Generator | None = None,
                  threshold: float | None = None) -> Verifier:
    """'offline' | 'nli:<hf name or path>' | 'llm' → a Verifier; errors say what to set instead.

    `threshold` is the support threshold verdicts are read at: the offline verifier then skips
    its embedding wherever the verdict is settled without it (`OfflineVerifier`)."""
    spec = (spec or "").strip()
    if spec == "offline":
        return OfflineVerifier(embedder, settle_at=threshold)
    if spec.startswith("nli:"):
        name = spec[4:].strip()
        if not name:
            raise ConfigError("verifier 'nli:' needs a model, e.g. 'nli:cross-encoder/nli-deberta-v3-small' "
                              "(a local path or a model in the Hugging Face cache)")
        return NLIVerifier(name)
    if spec == "llm":
        if generator is None or not callable(getattr(generator, "stream", None)):
            raise RagError("verifier 'llm' needs a local generator (fix: set llm_model to a .gguf file, "
                           "or use verifier='offline')")
        return LLMVerifier(generator)
    raise ConfigError(f"unknown verifier {spec!r} (known: 'offline', 'nli:<model>', 'llm')")


def check_sentences(sentences: Sequence[CitedSentence | tuple[str, tuple[int, ...]]], sources: Sequence[str],
                    verifier: Verifier, *, threshold: float) -> tuple[SentenceCheck, ...]:
    """One SentenceCheck per sentence; sources[n-1] is the text of source [n].

    A sentence is a `CitedSentence` of the answer (its span is copied into the check) or a bare
    (text, cited markers) pair, for a claim that is not part of an answer (span 0, 0).

    - uncited, no claim ('In summary:') → supported, reason 'no claim';
    - uncited claim → unsupported, reason 'no citation' (+ 'supported by [k]' when a source backs it;
      `support` is the best single source's, so the UI can say so);
    - cited → scored against the cited sources together; flagged below `threshold`, or when a
      number is missing from them whatever the verifier says (a wrong figure is never fine).
    """
    out = []
    for sentence in sentences:
        if isinstance(sentence, CitedSentence):
            text, cited, span = sentence.text, sentence.cited, (sentence.start, sentence.end)
        else:
            (text, cited), span = sentence, (0, 0)
        support, supported, reason = _check(text, cited, sources, verifier, threshold)
        out.append(SentenceCheck(text, tuple(cited), support, supported, reason, *span))
    return tuple(out)


def _check(text: str, cited: tuple[int, ...], sources: Sequence[str], verifier: Verifier,
           threshold: float) -> tuple[float, bool, str]:
    """(support, supported, reason) of one sentence; see `check_sentences`."""
    valid = tuple(n for n in dict.fromkeys(cited) if 1 <= n <= len(sources))
    if not cited:
        if not is_claim(text):
            return 1.0, True, "no claim"
        scores = [verifier.support(text, [s]) for s in sources]
        best = max(range(len(scores)), key=scores.__getitem__) if scores else -1
        s = scores[best] if scores else 0.0
        return s, False, f"no citation (supported by [{best + 1}])" if scores and s >= threshold else "no citation"
    if not valid:
        bad = ", ".join(f"[{n}]" for n in cited)
        return 0.0, False, f"cites missing source {bad}"
    evidence = [sources[n - 1] for n in valid]
    s = float(verifier.support(text, evidence))
    where = "cited source" + ("s" if len(valid) > 1 else "")
    miss = missing_numbers(text, evidence)
    if miss:
        label = "number" if len(miss) == 1 else "numbers"
        return s, False, f"{label} {', '.join(miss)} not in {where}"
    misplaced = wrong_row(text, evidence)
    if misplaced:
        label = "number" if len(misplaced) == 1 else "numbers"
        return s, False, f"{label} {', '.join(misplaced)} in another table row than the one named"
    gone = missing_names(text, evidence)
    if gone:  # like a wrong figure, a name the source never mentions is never fine
        return s, False, f"{'name' if len(gone) == 1 else 'names'} {', '.join(gone)} not in {where}"
    if s >= threshold:
        return s, True, ""
    if verifier.name == "offline":
        reason = f"low overlap with {where} ({s:.2f})"
    else:
        reason = f"not supported by {where} ({s:.2f})"
    return s, False, reason
