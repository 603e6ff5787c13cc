"""Detector metrics, the detector-set loaders and the abstention curve, on tiny hand-made inputs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.abstention import sample
from eval.datasets import (
    BEGIN_LABELS,
    DetectorExample,
    Question,
    begin_label_counts,
    load_begin,
    load_detector,
    load_detector_jsonl,
    load_halueval_qa,
)
from eval.detector import evaluate, main, metrics, split_half
from eval.metrics.calibration import (
    auroc,
    balanced_accuracy,
    best_threshold,
    choose_threshold,
    confusion,
    fit_logistic,
    precision_recall_f1,
    refusal_curve,
)
from rag.errors import RagError

SHARED = Path(__file__).resolve().parents[2] / "shared"
DATA = SHARED / "data"

# --- metrics --------------------------------------------------------------------------------------

LABELS = [1, 1, 1, 0, 0]
FLAGGED = [True, True, False, True, False]  # tp 2, fn 1, fp 1, tn 1


def test_confusion_and_balanced_accuracy():
    assert confusion(LABELS, FLAGGED) == (2, 1, 1, 1)
    assert balanced_accuracy(LABELS, FLAGGED) == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert balanced_accuracy(LABELS, [True] * 5) == 0.5  # flag everything: recall 1, specificity 0


def test_precision_recall_f1():
    assert precision_recall_f1(LABELS, FLAGGED) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    p, r, f1 = precision_recall_f1([1, 0, 0, 0], [True, True, False, False])
    assert (p, r) == (0.5, 1.0) and f1 == pytest.approx(2 / 3)
    assert precision_recall_f1([1, 0], [False, False]) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("labels, scores, expected", [
    ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0),
    ([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1], 0.0),
    ([1, 1, 0, 0], [0.8, 0.5, 0.5, 0.2], 0.875),  # one tied pair counts a half: 3.5 of 4 pairs
    ([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5], 0.5),
    ([1, 0, 0], [0.3, 0.3, 0.1], 0.75),
    ([1, 1], [0.2, 0.9], 0.5),  # one class only
])
def test_auroc_rank_statistic(labels, scores, expected):
    assert auroc(labels, scores) == pytest.approx(expected)


def test_best_threshold():
    assert best_threshold([0, 0, 1, 1], [0.9, 0.75, 0.25, 0.2]) == (0.5, 1.0)
    t, acc = best_threshold([1, 0], [0.5, 0.5])
    assert acc == 0.5 and t < 0.5  # no threshold separates a tie; the lowest candidate wins


def test_metrics_use_support_below_threshold():
    m = metrics([1, 0, 1, 0], [0.1, 0.9, 0.6, 0.4], 0.5)
    assert m["n"] == 4 and m["balanced_accuracy"] == 0.5 and m["precision"] == 0.5 and m["recall"] == 0.5
    # hallucination score 1 - support: positives 0.9, 0.4 vs negatives 0.1, 0.6 → 3 of 4 pairs ordered
    assert m["auroc"] == pytest.approx(0.75)


def test_split_half_keeps_a_context_together():
    examples = [DetectorExample(f"ctx{i // 2}", f"r{i}", i % 2) for i in range(20)]
    a, b = split_half(examples)
    assert sorted(a + b) == list(range(20)) and len(a) == len(b) == 10
    assert {examples[i].context for i in a}.isdisjoint({examples[i].context for i in b})
    assert split_half(examples) == (a, b)  # seeded


def test_evaluate_half_picks_threshold_on_first_half():
    labels = [1, 0, 1, 0]
    supports = [0.2, 0.4, 0.6, 0.9]
    out = evaluate(labels, supports, 0.5, split="half", groups=([0, 1], [2, 3]))
    assert out["best_threshold"] == pytest.approx(0.3)  # from the first half only
    assert out["n"] == 2 and out["split"] == "half"
    assert out["balanced_accuracy"] == 0.5 and out["at_best"]["balanced_accuracy"] == 0.5


def test_fit_logistic_respects_signs():
    x = [[0.0, 1.0], [1.0, 0.0], [0.1, 0.9], [0.9, 0.2]]
    y = [0, 1, 0, 1]  # the second feature is anti-correlated, but bounded to be ≥ 0
    w = fit_logistic(x, y, signs=(1, 1))
    assert w[0] > 0 and w[1] == 0.0 and len(w) == 3


# --- loaders ------------------------------------------------------------------------------------

def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


HALU_ROW = {"knowledge": "Delhi is the seat of the company.", "question": "Where is the seat?",
            "right_answer": "Delhi", "hallucinated_answer": "Mumbai"}


def test_load_halueval_json_lines_and_list(tmp_path):
    lines = _write(tmp_path / "h.json", json.dumps(HALU_ROW) + "\n" + json.dumps(HALU_ROW) + "\n")
    listed = _write(tmp_path / "l.json", json.dumps([HALU_ROW]))
    ex = load_halueval_qa(lines)
    assert len(ex) == 4
    assert ex[0] == DetectorExample("Delhi is the seat of the company.", "Delhi", 0)
    assert ex[1].response == "Mumbai" and ex[1].label == 1
    assert load_halueval_qa(listed) == ex[:2]
    assert load_halueval_qa(listed, with_question=True)[0].response == "Q: Where is the seat? A: Delhi"


def test_load_begin_maps_labels(tmp_path):
    tsv = _write(tmp_path / "b.tsv", "model_name\tdata_source\tknowledge\tmessage\tresponse\tbegin_label\n"
                 "t5\twow\tK1\tM\tR1\tFully attributable\n"
                 "t5\twow\tK2\tM\tR2\tNot fully attributable\n"
                 "t5\twow\tK3\tM\tR3\tGeneric\n")
    assert [(e.context, e.response, e.label) for e in load_begin(tsv)] == \
        [("K1", "R1", 0), ("K2", "R2", 1), ("K3", "R3", 1)]
    assert begin_label_counts(tsv) == {"Fully attributable": 1, "Not fully attributable": 1, "Generic": 1}
    bad = _write(tmp_path / "bad.tsv", "knowledge\tresponse\tbegin_label\nK\tR\tMaybe\n")
    with pytest.raises(RagError, match="Maybe"):
        load_begin(bad)


def test_load_detector_jsonl(tmp_path):
    ok = _write(tmp_path / "d.jsonl", '{"context": "c", "response": "r", "label": 1}\n\n'
                                      '{"context": "c2", "response": "r2", "label": 0}\n')
    assert load_detector_jsonl(ok) == [DetectorExample("c", "r", 1), DetectorExample("c2", "r2", 0)]
    with pytest.raises(RagError, match="label 2"):
        load_detector_jsonl(_write(tmp_path / "x.jsonl", '{"context": "c", "response": "r", "label": 2}\n'))
    with pytest.raises(RagError, match="does not exist"):
        load_detector_jsonl(tmp_path / "missing.jsonl")
    assert load_detector(ok, "jsonl") == load_detector_jsonl(ok)
    with pytest.raises(RagError, match="halueval, begin, jsonl"):
        load_detector(ok, "csv")


# --- the CLI on a tiny file, without an embedder (no model loads) -----------------------------------

def test_detector_cli_json(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rows = [{"context": "The tower in Paris was completed in 1889.", "response": "It was completed in 1889.",
             "label": 0},
            {"context": "The tower in Paris was completed in 1889.", "response": "It was completed in 1925 in Rome.",
             "label": 1}]
    path = _write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows))
    assert main(["--dataset", str(path), "--format", "jsonl", "--no-embedder", "--json", "--verifier", "offline"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"n", "balanced_accuracy", "precision", "recall", "f1", "auroc", "threshold", "best_threshold",
            "split"} <= set(out)
    assert out["n"] == 2 and out["balanced_accuracy"] == 1.0 and out["auroc"] == 1.0


# --- abstention harness ---------------------------------------------------------------------------

def test_abstention_curve_and_choice():
    pts = refusal_curve([0.1, 0.2, 0.6, 0.9], [0.3, 0.7, 0.8, 0.9, 0.95], [0.25, 0.5, 0.75])
    assert [(p["correct_refusals"], p["false_refusals"]) for p in pts] == [(0.5, 0.0), (0.5, 0.2), (0.75, 0.4)]
    assert choose_threshold(pts, max_false=0.15)["threshold"] == 0.25  # equal refusals: the lower threshold
    assert choose_threshold(pts, max_false=0.5)["threshold"] == 0.75
    assert choose_threshold([{"threshold": 0.5, "correct_refusals": 1.0, "false_refusals": 0.9}],
                            max_false=0.15)["threshold"] == 0.0
    # a score equal to the threshold is answered, as rag.answer.abstain.should_abstain decides
    assert refusal_curve([0.5], [0.5], [0.5]) == [{"threshold": 0.5, "correct_refusals": 0.0, "false_refusals": 0.0}]


def test_abstention_sample_is_disjoint_and_balanced():
    exs = [Question(str(i), f"q{i}", () if i % 3 == 0 else ("a",)) for i in range(30)]
    report, rest = sample(exs, 4)
    assert sum(1 for e in report if not e.answers) == 4 and sum(1 for e in report if e.answers) == 4
    assert {e.id for e in report}.isdisjoint({e.id for e in rest}) and len(report) + len(rest) == 30


# --- the real shared files, when this checkout has them -----------------------------------------------

needs_shared = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is absent (a user's clone)")


@needs_shared
def test_real_halueval():
    ex = load_halueval_qa(DATA / "halueval-qa" / "qa_one-turn_data.json")
    assert len(ex) == 1000 and sum(e.label for e in ex) == 500
    assert all(e.context and e.response for e in ex)


@needs_shared
def test_real_begin():
    path = DATA / "begin-dev" / "begin_dev_wow.tsv"
    counts = begin_label_counts(path)
    assert set(counts) <= set(BEGIN_LABELS)
    ex = load_begin(path)
    assert len(ex) == sum(counts.values()) == 430
    assert sum(e.label for e in ex) == counts.get("Not fully attributable", 0) + counts.get("Generic", 0)
