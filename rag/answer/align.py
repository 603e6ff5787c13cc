"""Citation alignment: each answer sentence cites the source that supports it, whatever the model wrote.

Small models put markers in the wrong place, on the wrong source, or leave them out. So the answer
is written first and citations are aligned afterwards (as RAGFlow does): a claim whose own markers
are backed by what they cite keeps them; any other claim is scored against every packed source
alone and cites the best one when that one supports it (and holds every number it states). A claim
that no source supports keeps what it had: the verifier then flags it. Text between sentences and
the sentences themselves are kept; only the markers change.

    >>> from rag.answer.verify import OfflineVerifier
    >>> align_citations("Q8_0 uses 8.5 bits per weight [1].", ["Q8_0 is big.", "Q8_0 uses 8.5 bits per weight."],
    ...                 OfflineVerifier(), threshold=0.4)
    ('Q8_0 uses 8.5 bits per weight.[2]', 1)
"""
from __future__ import annotations

from collections.abc import Sequence

from rag.answer.cite import sentence_citations, strip_markers
from rag.answer.verify import Verifier
from rag.answer.verify.features import content_tokens, is_claim, missing_numbers

MIN_ALIGNED_TOKENS = 2  # "HACKED." copied from an injected document is not a claim to credit to it


def best_source(claim: str, sources: Sequence[str], verifier: Verifier, *, threshold: float) -> int | None:
    """1-based number of the source that alone supports `claim` best, if it supports it at all."""
    scored = [(verifier.support(claim, [text]), n) for n, text in enumerate(sources, 1)
              if not missing_numbers(claim, [text])]
    if not scored:
        return None
    score, n = max(scored)
    return n if score >= threshold else None


def align_citations(text: str, sources: Sequence[str], verifier: Verifier, *,
                    threshold: float) -> tuple[str, int]:
    """(text with aligned markers, how many sentences got other markers than the model wrote)."""
    out: list[str] = []
    changed = 0
    at = 0
    for sentence in sentence_citations(text):
        out.append(text[at:sentence.start])
        at = sentence.end
        piece = text[sentence.start:sentence.end]
        cited = tuple(n for n in sentence.cited if 1 <= n <= len(sources))
        if not is_claim(sentence.text) or (cited and _backed(sentence.text, cited, sources, verifier, threshold)):
            if cited == sentence.cited:
                out.append(piece)
                continue
            new: tuple[int, ...] = cited  # drop numbers that point to no source
        elif len(content_tokens(sentence.text)) < MIN_ALIGNED_TOKENS:
            new = cited
        else:
            best = best_source(sentence.text, sources, verifier, threshold=threshold)
            new = (best,) if best is not None else cited
        if new != sentence.cited:
            changed += 1
        body = strip_markers(piece).rstrip()
        trail = piece[len(piece.rstrip()):]
        out.append(body + "".join(f"[{n}]" for n in new) + trail)
    out.append(text[at:])
    return "".join(out), changed


def _backed(claim: str, cited: tuple[int, ...], sources: Sequence[str], verifier: Verifier,
            threshold: float) -> bool:
    evidence = [sources[n - 1] for n in cited]
    return not missing_numbers(claim, evidence) and verifier.support(claim, evidence) >= threshold
