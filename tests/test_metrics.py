"""Retrieval, answer, citation, abstention and bootstrap metrics against values worked out by hand."""
from __future__ import annotations

import doctest
import math

import pytest

import eval.metrics
from eval.metrics import answer, calibration, compare, retrieval
from eval.metrics.answer import (
    alce_citations,
    answer_recall,
    exact_match,
    longest_common_substring,
    mixed_segmentation,
    normalize_answer,
    share,
    token_f1,
    weighted_share,
)
from eval.metrics.calibration import (
    CurvePoint,
    abstention_curve,
    area_under_risk_coverage,
    bootstrap_ci,
    curve_band,
    refusal_rates,
    thresholds_from,
)
from eval.metrics.compare import regressions
from eval.metrics.retrieval import ndcg_at, recall_at, reciprocal_rank


@pytest.mark.parametrize("module", [answer, calibration, compare, retrieval])
def test_doctests(module) -> None:
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0


def test_the_package_re_exports_every_kind():
    assert set(eval.metrics.__all__) <= set(dir(eval.metrics))
    assert eval.metrics.token_f1 is token_f1 and eval.metrics.ndcg_at is ndcg_at
    assert eval.metrics.bootstrap_ci is bootstrap_ci and eval.metrics.regressions is regressions


# --- retrieval ---------------------------------------------------------------------------------


def test_recall_and_reciprocal_rank_by_hand():
    ranked = ["d3", "d1", "d7", "d2"]
    gains = {"d1": 1.0, "d2": 1.0, "d9": 0.0}  # a zero gain is not relevant
    assert recall_at(ranked, gains, 1) == 0.0
    assert recall_at(ranked, gains, 2) == 0.5
    assert recall_at(ranked, gains, 10) == 1.0
    assert recall_at(ranked, {}, 5) == 0.0
    assert reciprocal_rank(ranked, gains) == 0.5
    assert reciprocal_rank(ranked, {"zz": 1.0}) == 0.0


def test_ndcg_with_graded_gains_by_hand():
    # Cranfield-style grades: DCG = 3/log2(2) + 0 + 1/log2(4) = 3.5; ideal 3 + 2/log2(3) + 1/log2(4)
    gains = {"a": 3.0, "b": 2.0, "c": 1.0}
    assert ndcg_at(["a", "x", "c"], gains, 10) == pytest.approx(3.5 / (3 + 2 / math.log2(3) + 0.5))
    assert ndcg_at(["a", "b", "c"], gains, 10) == pytest.approx(1.0)
    assert ndcg_at(["x", "a"], gains, 1) == 0.0  # the cut-off drops the hit
    assert ndcg_at(["a"], {}, 10) == 0.0


# --- answers (SQuAD) ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("The Cat!", "cat"),
    ("  an  apple, a pear  ", "apple pear"),
    ("Theater of the absurd", "theater of absurd"),  # 'the' inside a word stays
    ("4.4 GB", "44 gb"),  # SQuAD drops every punctuation mark, decimal points included
])
def test_squad_normalization(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_is_the_best_over_references():
    assert exact_match("The Eiffel Tower.", ["Eiffel tower"]) == 1.0
    assert exact_match("Eiffel", ["Eiffel tower", "the tower"]) == 0.0
    assert exact_match("the tower", ["Eiffel tower", "the tower"]) == 1.0
    assert exact_match("anything", []) == 0.0


def test_token_f1_by_hand():
    # pred tokens [cat, sat, on, mat] vs ref [cat, on, mat]: P = 3/4, R = 1 → F1 = 6/7
    assert token_f1("The cat sat on the mat", ["cat on mat"]) == pytest.approx(6 / 7)
    # repeated tokens count once per occurrence in both: common 1, P = 1/2, R = 1 → 2/3
    assert token_f1("cat cat", ["cat"]) == pytest.approx(2 / 3)
    # the best reference wins
    assert token_f1("cat on mat", ["dog", "cat on mat"]) == 1.0
    assert token_f1("dog", ["cat"]) == 0.0


# --- answers (CMRC 2018, Chinese) --------------------------------------------------------------


def test_mixed_segmentation_keeps_latin_words_whole():
    assert mixed_segmentation("模型需要4.4 GB内存。") == ["模", "型", "需", "要", "4.4", "gb", "内", "存"]
    assert mixed_segmentation("《红楼梦》") == ["红", "楼", "梦"]


def test_chinese_f1_is_character_level_over_the_longest_common_substring():
    # 7 characters vs 3; longest common substring 天安门 = 3: P = 3/7, R = 1 → F1 = 0.6
    assert token_f1("北京天安门广场", ["天安门"]) == pytest.approx(0.6)
    # the same characters in another order share only runs of one: P = R = 1/3
    assert token_f1("天门安", ["天安门"]) == pytest.approx(1 / 3)
    assert longest_common_substring(list("天门安"), list("天安门")) == 1


def test_chinese_exact_match_ignores_punctuation_and_spaces():
    assert exact_match("天安门。", ["天安门"]) == 1.0
    assert exact_match("《 红楼梦 》", ["红楼梦"]) == 1.0
    assert exact_match("天安门广场", ["天安门"]) == 0.0


def test_answer_recall_wants_the_reference_inside_the_answer():
    assert answer_recall("A 7B model in Q4_K_M needs about 4.4 GB of memory.", ["4.4 GB"]) == 1.0
    assert answer_recall("It needs 4.4 GBs.", ["4.4 GB"]) == 0.0  # whole words only
    assert answer_recall("It needs 5 GB.", ["4.4 GB", "about 4.4 GB"]) == 0.0
    assert answer_recall("交叉编码器重排序比向量检索更准确。", ["更准确"]) == 1.0
    assert answer_recall("", ["x"]) == 0.0


# --- faithfulness and citations ----------------------------------------------------------------


def words_in(claim: str, evidence: list[str]) -> bool:
    """A fake judge: supported when every word of the claim is in the evidence."""
    have = set(" ".join(evidence).split())
    return all(w in have for w in claim.split())


SOURCES = ["alpha beta", "gamma", "alpha"]


@pytest.mark.parametrize("claim, cited, recall, precise", [
    ("alpha beta", [1, 2], True, (True, False)),   # [2] neither supports alone nor is needed
    ("alpha gamma", [3, 2], True, (True, True)),   # neither alone, but each is needed
    ("alpha", [1, 3], True, (True, True)),         # each supports alone
    ("alpha delta", [1], False, (False,)),         # unsupported: no citation is precise
    ("alpha", [], False, ()),                      # uncited: no recall
    ("alpha", [7], False, ()),                     # a citation to no source counts as none
])
def test_alce_citations(claim, cited, recall, precise):
    check = alce_citations(claim, cited, SOURCES, words_in)
    assert (check.recall, check.precise) == (recall, precise)


def test_answer_level_citation_scores_by_hand():
    # One answer of three sentences: recall 2/3; precision: 1 + 0 precise of 2, 0 of 1 → 1/3.
    checks = [alce_citations(c, n, SOURCES, words_in)
              for c, n in [("alpha beta", [1, 2]), ("alpha delta", [1]), ("gamma", [2])]]
    assert share([c.recall for c in checks]) == pytest.approx(2 / 3)
    assert share([p for c in checks for p in c.precise]) == pytest.approx(2 / 4)


def test_claim_weighted_faithfulness():
    # two sentences: 3 claims all supported, 1 claim not → 3/4 of the claims
    assert weighted_share([1.0, 0.0], [3, 1]) == pytest.approx(0.75)
    assert weighted_share([1.0], [0]) is None
    assert share([]) is None


# --- abstention --------------------------------------------------------------------------------

SCORES = [0.2, 0.4, 0.6, 0.8]
ANSWERABLE = [False, False, True, True]
WRONG = [True, True, False, True]  # the two unanswerable, and an answer that misses its reference


def test_refusal_rates():
    assert refusal_rates([True, False, False, True], ANSWERABLE) == (0.5, 0.5)
    assert refusal_rates([True], [True]) == (None, 1.0)


def test_abstention_curve_by_hand():
    points = abstention_curve(SCORES, ANSWERABLE, WRONG)
    got = [(p.threshold, p.coverage, round(p.risk, 4), p.correct_refusal_rate, p.false_refusal_rate) for p in points]
    assert got == [
        (0.2, 1.0, 0.75, 0.0, 0.0),     # nothing refused: 3 of 4 answered wrongly
        (0.4, 0.75, 0.6667, 0.5, 0.0),  # 0.2 refused
        (0.6, 0.5, 0.5, 1.0, 0.0),      # both unanswerable refused
        (0.8, 0.25, 1.0, 1.0, 0.5),     # only the wrong answer left
        (0.81, 0.0, 0.0, 1.0, 1.0),     # everything refused; risk of nothing answered is 0
    ]
    # AURC = .25·(0+1)/2 + .25·(1+.5)/2 + .25·(.5+2/3)/2 + .25·(2/3+.75)/2
    assert area_under_risk_coverage(points) == pytest.approx(0.125 + 0.1875 + 0.1458333 + 0.1770833, abs=1e-6)


def test_always_refused_questions_stay_refused_at_every_threshold():
    points = abstention_curve(SCORES, ANSWERABLE, WRONG, always_refused=[False, False, False, True])
    assert (points[0].coverage, round(points[0].risk, 4), points[0].false_refusal_rate) == (0.75, 0.6667, 0.5)


def test_abstention_curve_with_another_refusal_rule():
    at_or_below = abstention_curve(SCORES, ANSWERABLE, WRONG, thresholds=[0.4], refuses=lambda s, t: s <= t)
    assert at_or_below[0].coverage == 0.5


def test_thresholds_span_refuse_nothing_to_refuse_everything():
    assert thresholds_from([0.3, 0.1, 0.3]) == [0.1, 0.3, 0.31]
    assert thresholds_from([]) == [0.0]


def test_curve_band_contains_the_curve():
    scores = [i / 20 for i in range(20)]
    answerable = [i % 3 != 0 for i in range(20)]
    wrong = [not a or i % 5 == 0 for i, a in enumerate(answerable)]
    t = thresholds_from(scores)
    band = curve_band(scores, answerable, wrong, t, resamples=200)
    for p, cr, fr, risk in zip(abstention_curve(scores, answerable, wrong, thresholds=t),
                               band["correct_refusal_rate"], band["false_refusal_rate"], band["risk"]):
        assert cr[0] - 1e-9 <= p.correct_refusal_rate <= cr[1] + 1e-9
        assert fr[0] - 1e-9 <= p.false_refusal_rate <= fr[1] + 1e-9
        assert risk[0] - 1e-9 <= p.risk <= risk[1] + 1e-9


# --- bootstrap ---------------------------------------------------------------------------------


def test_bootstrap_of_a_constant_is_the_constant():
    assert bootstrap_ci([0.7] * 25) == (0.7, 0.7)
    assert bootstrap_ci([]) is None


def test_bootstrap_is_seeded_and_brackets_the_mean():
    values = [0.0, 1.0] * 50
    lo, hi = bootstrap_ci(values)
    assert bootstrap_ci(values) == (lo, hi)  # same seed, same interval
    assert lo < 0.5 < hi and 0.1 < hi - lo < 0.3  # ≈ ±1.96·0.5/√100 = ±0.098
    spread = [i / 99 for i in range(100)]
    assert bootstrap_ci(spread, seed=1) != bootstrap_ci(spread, seed=0)


# --- comparing reports -------------------------------------------------------------------------


def test_regressions_know_which_way_is_worse():
    base = {"f1": 0.60, "recall@5": 0.9, "hallucination_rate": 0.10, "false_refusal_rate": 0.2, "mrr": None}
    now = {"f1": 0.59, "recall@5": 0.8, "hallucination_rate": 0.20, "false_refusal_rate": 0.1, "mrr": 0.5}
    worse = regressions(now, base, max_drop=0.05, metrics=list(base))
    assert [(r.metric, round(r.change, 2)) for r in worse] == [("recall@5", -0.1), ("hallucination_rate", 0.1)]
    assert regressions(now, base, max_drop=0.2, metrics=list(base)) == []


def test_curve_point_area_of_a_perfect_selector_is_zero():
    assert area_under_risk_coverage([CurvePoint(0, 1.0, 0.0, 0, 0), CurvePoint(1, 0.0, 0.0, 1, 0)]) == 0.0
