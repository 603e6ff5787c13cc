"""The offline verifier: claim features combined by a fitted logistic model, no model of its own.

    >>> v = OfflineVerifier()
    >>> v.support("It was built in 1889.", ["The tower was built in 1889."]) > 0.5
    True

Lexical coverage of the claim's content tokens (stemmed Latin words, CJK bigrams), numbers and
name-like words that must appear in the evidence (`features`), and — with an embedder — cosine
similarity to the best evidence window, combined by a logistic model whose constants were
fitted by `python -m eval.detector --fit`.

Embedding is the costly part (every window of every cited passage), so with `settle_at` (the
product's support threshold) the similarity is computed only when it could change the verdict:
its term in the logistic model is bounded, and when the lexical features alone put the score on
one side of the threshold whatever the similarity, the lower bound is returned, with the same
verdict the full score would give and no embedding.

Deliberately skipped: contradiction detection beyond numbers and names (this verifier measures
support, it does not reason).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from rag.answer.verify.features import (
    bigram_coverage,
    content_tokens,
    coverage,
    missing_names,
    missing_numbers,
    names,
    windows,
)
from rag.answer.verify.quantities import quantities
from rag.index.tokenize import tokenize
from rag.text import CJK_CHAR, language, logistic

if TYPE_CHECKING:
    from rag.models.embed import Embedder


@dataclass(frozen=True)
class SupportFeatures:
    """What the offline verifier looks at, each 0..1 except `unsupported_tokens` (a count) and n_tokens."""

    coverage: float  # claim tokens found anywhere in the evidence
    window_coverage: float  # … found in the single best window (1-2 sentences)
    bigram_coverage: float  # claim token pairs found adjacent in the evidence
    unsupported_tokens: float  # claim tokens found nowhere (a CJK bigram counts one half)
    number_missing: float  # share of the claim's numbers missing from the evidence
    name_missing: float  # share of the claim's name-like words missing
    similarity: float | None  # cosine to the best window/whole text; None without a usable embedder
    n_tokens: int

    def vector(self) -> list[float]:
        """Inputs of the logistic model, in the order of the weight tuples below."""
        base = [self.coverage, self.window_coverage, self.bigram_coverage,
                math.log1p(self.unsupported_tokens), self.number_missing, self.name_missing]
        # Only similarity above 0.5 counts: below it MiniLM pairs are topical, not paraphrases, and
        # a short correct answer ("Delhi") is far from any sentence.
        return base + ([max(self.similarity - 0.5, 0.0)] if self.similarity is not None else [])


# Logistic weights (features in SupportFeatures.vector order, then the intercept). Fitted by
# `python -m eval.detector --fit`: L2-regularised logistic regression on the first halves (seeded
# shuffle, seed 0, grouped by context) of HaluEval QA and BEGIN dev, each set weighing the same;
# the second halves are held out. Weights are bounded to the sign a support signal must have
# (coverage and similarity up, misses down) so a data-set quirk cannot invert one — HaluEval's
# correct answers are short spans, which makes raw similarity look like a sign of hallucination.
WEIGHTS_LEXICAL = (0.0, 0.942, 2.214, -2.323, -0.961, -1.627, -0.751)
WEIGHTS_EMBED = (0.0, 0.824, 2.213, -2.328, -0.958, -1.623, 0.458, -0.765)
# A number that is not in the source is the most harmful hallucination; the fit sees few of them.
NUMBER_PENALTY = 0.5  # support is multiplied by this when any claimed number is missing


class OfflineVerifier:
    """Lexical + numeric + name checks, plus embedding similarity when an embedder is given."""

    name = "offline"

    def __init__(self, embedder: Embedder | None = None, *, settle_at: float | None = None,
                 cache_size: int = 4096) -> None:
        self.embedder = embedder
        self.settle_at = settle_at  # the verdict threshold; None: always compute the similarity
        self._cache: dict[str, np.ndarray] = {}  # text → embedding; evidence repeats across sentences
        self._cache_size = cache_size

    def at_threshold(self, threshold: float | None) -> OfflineVerifier:
        """A twin reading verdicts at `threshold` (see `settle_at`), sharing the embedder and its cache."""
        twin = OfflineVerifier(self.embedder, settle_at=threshold, cache_size=self._cache_size)
        twin._cache = self._cache
        return twin

    def support(self, claim: str, evidence: Sequence[str]) -> float:
        feats = self.features(claim, evidence, similarity=False)
        if feats.n_tokens == 0 and feats.number_missing == 0:
            return 1.0  # nothing checkable is claimed ("Yes.", "In summary:")
        texts = [t for t in evidence if t and t.strip()]
        if not self._can_embed(claim, texts):
            return score_features(feats)
        low, high = sorted(score_features(replace(feats, similarity=s)) for s in (0.0, 1.0))
        if self.settle_at is not None and (low >= self.settle_at or high < self.settle_at):
            return low  # settled: no similarity could move it across the threshold
        sim = self._similarity(claim, texts, [w for t in texts for w in windows(t)])
        return score_features(replace(feats, similarity=sim))

    def features(self, claim: str, evidence: Sequence[str], *, similarity: bool = True) -> SupportFeatures:
        """The features of `claim` against `evidence`; `similarity=False` skips the embedding
        (the field is then None, as without an embedder)."""
        claim_toks = content_tokens(claim)
        texts = [t for t in evidence if t and t.strip()]
        ev_toks_seq = [tokenize(t) for t in texts]
        ev_toks = {t for toks in ev_toks_seq for t in toks}
        wins = [w for t in texts for w in windows(t)]
        win_cov = max((coverage(claim_toks, tokenize(w)) for w in wins), default=0.0) if claim_toks else 1.0
        found = set(claim_toks) & ev_toks
        nums = {q.text for q in quantities(claim, claim=True)}
        miss_nums = missing_numbers(claim, texts)
        claim_names = names(claim) if language(claim) != "cjk" else []
        miss_names = missing_names(claim, texts)
        return SupportFeatures(
            coverage=coverage(claim_toks, ev_toks) if texts else 0.0,
            window_coverage=win_cov if texts else 0.0,
            bigram_coverage=max((bigram_coverage(claim_toks, toks) for toks in ev_toks_seq), default=0.0),
            unsupported_tokens=_unsupported_count(set(claim_toks) - found),
            number_missing=len(miss_nums) / len(nums) if nums else 0.0,
            name_missing=len(miss_names) / len(claim_names) if claim_names else 0.0,
            similarity=self._similarity(claim, texts, wins) if similarity else None,
            n_tokens=len(set(claim_toks)),
        )

    def _can_embed(self, claim: str, texts: list[str]) -> bool:
        emb = self.embedder
        if emb is None or not texts:
            return False
        langs = getattr(emb, "languages", None)
        # An English-only model says nothing useful about a Chinese claim.
        return langs is None or language(claim) in langs

    def _similarity(self, claim: str, texts: list[str], wins: list[str]) -> float | None:
        if not self._can_embed(claim, texts):
            return None
        cands = list(dict.fromkeys(wins + texts))
        vecs = self._embed([claim] + cands)
        return float(np.clip(np.max(vecs[1:] @ vecs[0]), 0.0, 1.0))

    def _embed(self, texts: list[str]) -> np.ndarray:
        assert self.embedder is not None  # _similarity checked
        have = {t: self._cache[t] for t in texts if t in self._cache}
        todo = [t for t in dict.fromkeys(texts) if t not in have]
        if todo:
            have.update(zip(todo, np.asarray(self.embedder.embed(todo), dtype=np.float32)))
            if len(self._cache) + len(todo) > self._cache_size:
                self._cache.clear()  # crude but bounded; evidence repeats within one answer
            self._cache.update((t, have[t]) for t in todo)
        return np.stack([have[t] for t in texts])


def _unsupported_count(tokens: set[str]) -> float:
    """Missing tokens; a CJK bigram counts one half, since one new character breaks two bigrams.

    >>> _unsupported_count({"mumbai", "中国", "国的"})
    2.0
    """
    return sum(0.5 if CJK_CHAR.match(t) else 1.0 for t in tokens)


def score_features(feats: SupportFeatures, *, weights: Sequence[float] | None = None) -> float:
    """The logistic combination: logistic(w·x + b), with the number penalty applied after."""
    x = feats.vector()
    w = weights if weights is not None else (WEIGHTS_EMBED if feats.similarity is not None else WEIGHTS_LEXICAL)
    p = logistic(float(np.dot(w[:-1], x) + w[-1]))
    return p * NUMBER_PENALTY if feats.number_missing > 0 else p
