"""The evidence score in words (rag.answer.abstain.evidence_band): 'none' where the refusal gate
refuses, 'strong' from halfway between its threshold and 1, 'weak' between; and the per-passage
score the source cards band is the one the gate takes the best of."""
from __future__ import annotations

import pytest

from app.render import EVIDENCE_BANDS, evidence_text
from rag.answer.abstain import HITS_CONSIDERED, evidence_band, evidence_score, hit_evidence, should_abstain
from rag.config import Config
from rag.records import Chunk, Hit
from rag.text import logistic

THRESHOLD = Config().abstain_threshold  # the shipped gate's own cut


@pytest.mark.parametrize(("score", "band"), [
    (0.0, "none"), (THRESHOLD - 0.001, "none"), (THRESHOLD, "weak"), ((1 + THRESHOLD) / 2 - 0.001, "weak"),
    ((1 + THRESHOLD) / 2, "strong"), (1.0, "strong")])
def test_bands_cut_at_the_refusal_threshold(score, band):
    assert evidence_band(score, THRESHOLD) == band


@pytest.mark.parametrize("threshold", [0.0, 0.2, THRESHOLD, 0.8, 1.01])
def test_none_is_exactly_what_the_gate_refuses(threshold):
    for i in range(101):
        score = i / 100
        assert (evidence_band(score, threshold) == "none") == should_abstain(score, threshold)


def test_bands_follow_a_changed_threshold():
    assert evidence_band(0.5, 0.39) == "weak" and evidence_band(0.5, 0.6) == "none"
    assert evidence_band(0.75, 0.39) == "strong" and evidence_band(0.75, 0.6) == "weak"
    assert evidence_band(0.5, 0.0) == "strong"  # a gate that never refuses: no 'none' band


def hit(text: str, **scores) -> Hit:
    return Hit(Chunk(f"c-{abs(hash(text))}", "doc.md", text, 0, len(text), (1,)), 0.5, **scores)


def test_the_gate_scores_the_best_of_the_passages_the_cards_band():
    question = "How much memory does a 7B model need in Q4_K_M?"
    hits = [hit("Zebras sleep standing up."), hit("A 7B model in Q4_K_M needs about 4.8 GB of memory."),
            hit("BM25 ranks by term frequency."), hit("A 7B model in Q4_K_M needs 4.8 GB of memory, always.")]
    per_hit = [hit_evidence(question, h) for h in hits]
    assert evidence_score(question, hits) == max(per_hit[:HITS_CONSIDERED])
    assert per_hit[1] > per_hit[0]  # the passage that answers is the stronger evidence
    assert evidence_band(per_hit[1], THRESHOLD) != "none" and evidence_band(per_hit[0], THRESHOLD) == "none"


def test_a_reranked_hit_is_banded_by_its_logit():
    h = hit("anything", rerank_score=2.0)
    assert hit_evidence("what?", h) == logistic(2.0) == evidence_score("what?", [h])


def test_every_band_has_words_and_no_number():
    assert set(EVIDENCE_BANDS) == {"strong", "weak", "none"}
    for band in EVIDENCE_BANDS:
        for lang in ("en", "zh"):
            text = evidence_text(band, lang)
            assert " — " in text and not any(c.isdigit() for c in text), text
        assert evidence_text(band).startswith(f"Evidence: {band} — ")
