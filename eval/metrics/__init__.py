"""Evaluation metrics, grouped by kind: pure functions over ids, strings, flags and scores.

- `eval.metrics.retrieval`: recall@k, MRR, nDCG@k over ranked document ids.
- `eval.metrics.answer`: exact match, token F1 and answer recall (SQuAD and CMRC 2018 rules),
  ALCE citation recall/precision, faithfulness shares.
- `eval.metrics.calibration`: refusal rates and curves (risk–coverage, AURC), detector scores
  (balanced accuracy, precision/recall/F1, AUROC, best threshold), bootstrap intervals, the
  sign-bounded logistic fit.
- `eval.metrics.compare`: regressions of a report against a baseline.

The names are re-exported here, so `from eval.metrics import token_f1` keeps working.
"""
from __future__ import annotations

from eval.metrics.answer import (
    CitationCheck,
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
    auroc,
    balanced_accuracy,
    best_threshold,
    bootstrap_ci,
    choose_threshold,
    confusion,
    curve_band,
    fit_logistic,
    precision_recall_f1,
    refusal_curve,
    refusal_rates,
    thresholds_from,
)
from eval.metrics.compare import LOWER_IS_BETTER, Regression, regressions
from eval.metrics.retrieval import ndcg_at, recall_at, reciprocal_rank

__all__ = [
    "CitationCheck", "CurvePoint", "LOWER_IS_BETTER", "Regression", "abstention_curve", "alce_citations",
    "answer_recall", "area_under_risk_coverage", "auroc", "balanced_accuracy", "best_threshold", "bootstrap_ci",
    "choose_threshold", "confusion", "curve_band", "exact_match", "fit_logistic", "longest_common_substring",
    "mixed_segmentation", "ndcg_at", "normalize_answer", "precision_recall_f1", "recall_at", "reciprocal_rank",
    "refusal_curve", "refusal_rates", "regressions", "share", "thresholds_from", "token_f1", "weighted_share",
]
