"""The faithfulness suite end to end on a tiny collection, its scoring rules, resume and the baseline gate."""
from __future__ import annotations

import doctest
import json
import math
from pathlib import Path

import pytest

import eval.faithfulness as F
from eval.datasets import Gold, Question, load_questions_jsonl
from eval.faithfulness import balanced_sample, evaluate, load_eval_set, ranked_keys, score
from rag.testing import FakeEmbedder
from tests.conftest import ROOT, shared_path, write_docs

DOCS = {
    "quant.md": "# Quantization\n\nQ4_K_M stores about 4.8 bits per weight.\n\n"
                "A 7B model in Q4_K_M needs about 4.4 GB of memory.\n",
    "cache.md": "# KV cache\n\nThe KV cache stores the keys and values of past tokens.\n\n"
                "Its size grows linearly with the context length.\n",
    "zh.md": "# 重排序\n\n交叉编码器重排序比向量检索更准确，但速度更慢。\n\n它的缺点是每个候选段落都要单独计算一次。\n",
}
QUESTIONS = [
    {"id": "en-1", "question": "How many bits per weight does Q4_K_M store?", "lang": "en",
     "answers": ["about 4.8 bits per weight", "4.8"], "gold": [{"source": "quant.md", "page": 1}], "type": "factoid"},
    {"id": "en-2", "question": "How does its size grow?", "lang": "en", "answers": ["linearly with the context length"],
     "gold": [{"source": "cache.md", "page": 1}], "type": "followup",
     "history": [{"role": "user", "content": "What does the KV cache store?"},
                 {"role": "assistant", "content": "The keys and values of past tokens [1]."}]},
    {"id": "zh-1", "question": "交叉编码器重排序的缺点是什么？", "lang": "zh",
     "answers": ["每个候选段落都要单独计算一次"], "gold": [{"source": "zh.md", "page": 1}], "type": "factoid"},
    {"id": "un-1", "question": "Who won the 1998 football world cup?", "lang": "en", "answers": [], "gold": [],
     "type": "unanswerable"},
]
KEYS = ("recall@5", "exact_match", "f1", "faithfulness", "hallucination_rate", "citation_precision",
        "citation_recall", "correct_refusal_rate", "false_refusal_rate")


def test_doctests() -> None:
    assert doctest.testmod(F).failed == 0


@pytest.fixture
def tiny_set(tmp_path):
    docs = write_docs(tmp_path / "docs", DOCS)
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in QUESTIONS), encoding="utf-8")
    return load_eval_set(path, docs_dir=docs)


@pytest.fixture
def count_asks(monkeypatch):
    calls: list[str] = []
    real = F.answer_question

    def counted(pipe, q, **kw):
        calls.append(q.id)
        return real(pipe, q, **kw)

    monkeypatch.setattr(F, "answer_question", counted)
    return calls


def run(tiny_set, make_cfg, out: Path, **overrides) -> dict:
    return evaluate(tiny_set, make_cfg(**overrides), out, embedder=FakeEmbedder(), progress=False)


# --- loading ---------------------------------------------------------------------------------------


def test_the_shipped_question_set_loads():
    qs = load_questions_jsonl(ROOT / "data/eval/questions.jsonl").questions
    assert len(qs) >= 50 and len({q.id for q in qs}) == len(qs)
    assert all(q.gold for q in qs if q.answerable)
    assert {q.type for q in qs} >= {"factoid", "followup", "unanswerable"}
    assert all(q.history for q in qs if q.type == "followup")
    assert not any(q.answerable for q in qs if q.type == "unanswerable")


def test_balanced_sample_is_seeded_half_unanswerable_and_in_file_order():
    qs = [Question(str(i), "q", ("a",) if i % 4 else ()) for i in range(40)]
    pick = balanced_sample(qs, 10)
    assert pick == balanced_sample(qs, 10)
    assert sum(not q.answerable for q in pick) == 5
    assert [int(q.id) for q in pick] == sorted(int(q.id) for q in pick)
    # not enough unanswerable: the rest comes from the answerable side
    assert sum(not q.answerable for q in balanced_sample(qs, 30)) == 10 and len(balanced_sample(qs, 30)) == 30


def test_squad_questions_point_at_their_paragraph():
    path = shared_path("data", "squad2-dev", "dev-v2.0.json")
    es = load_eval_set(path, "squad", limit=40)
    assert len(es.questions) == 40 and sum(q.answerable for q in es.questions) == 20
    docs = {d.source: d.text for d in es.docs}
    assert len(docs) == 646  # every paragraph is indexed, not only the sampled questions'
    for q in es.questions:
        (gold,) = q.gold
        source = gold.source
        if q.answerable:
            assert any(a in docs[source] for a in q.answers)


# --- scoring rules ---------------------------------------------------------------------------------


def test_a_chunk_is_relevant_when_it_holds_a_gold_page():
    retrieved = [["a.pdf", [1, 2]], ["b.md", [1]], ["a.pdf", [3]], ["a.pdf", [3]]]
    assert ranked_keys(retrieved, [Gold("a.pdf", 3), Gold("b.md", 9)]) == ["a.pdf#[1, 2]", "b.md#[1]", "gold"]
    assert ranked_keys(retrieved, [Gold("b.md")]) == ["a.pdf#[1, 2]", "gold", "a.pdf#[3]"]


def record(**kw) -> dict:
    base = {"model_refused": False, "evidence": 0.5, "answer": "", "retrieved": [], "sentences": [], "citations": []}
    return base | kw


def sentence(faithful: bool, *, support: float = 0.9) -> dict:
    return {"text": "s", "cited": [1], "support": support, "supported": faithful, "reason": "", "faithful": faithful}


def test_scoring_by_hand():
    qs = [Question("a", "q", ("4.4 GB",), (Gold("x.md", 1),)),
          Question("b", "q", ("linearly",), (Gold("y.md", 1),)),
          Question("u", "q", ())]
    recs = [
        # gold at rank 2; answer holds the reference; one of two sentences unsupported
        record(answer="It needs 4.4 GB. Also more.", retrieved=[["z.md", [1]], ["x.md", [1]]],
               sentences=[sentence(True), sentence(False, support=0.1)],
               citations=[{"recall": True, "precise": [True]}, {"recall": False, "precise": [False]}]),
        # refused by the threshold (evidence 0.1 < 0.2): scores 0, not judged for faithfulness
        record(answer="It grows linearly.", evidence=0.1, retrieved=[["y.md", [1]]], sentences=[sentence(True)],
               citations=[{"recall": True, "precise": [True]}]),
        # unanswerable, answered: faithfulness still judged
        record(answer="Brazil.", sentences=[sentence(True)], citations=[{"recall": None, "precise": []}]),
    ]
    v = score(qs, recs, abstain_threshold=0.2, judge="offline").values
    assert v["recall@5"] == [1.0, 1.0] and v["mrr"] == [0.5, 1.0]
    assert v["ndcg@10"] == pytest.approx([1 / math.log2(3), 1.0])
    assert v["answer_recall"] == [1.0, 0.0] and v["exact_match"] == [0.0, 0.0]
    assert v["false_refusal_rate"] == [0.0, 1.0] and v["correct_refusal_rate"] == [0.0]
    assert v["faithfulness"] == [0.5, 1.0] and v["hallucination_rate"] == [1.0, 0.0]
    assert v["citation_recall"] == [0.5]  # the third answer claims nothing citable
    assert v["citation_precision"] == [0.5, 0.0]  # no citation at all scores 0 (ALCE)


def test_a_question_naming_what_no_passage_mentions_is_scored_as_a_refusal_when_the_rule_is_on():
    q = Question(id="u", question="What is the size of Q5_K_S?", answers=(), lang="en", type="unanswerable")
    r = {"model_refused": False, "evidence": 0.9, "answer": "5 GB.", "retrieved": [], "sentences": [],
         "citations": [], "lang_ok": True, "fallback": "", "unmentioned": ["Q5_K_S"]}
    on = score([q], [r], abstain_threshold=0.39, judge="offline")
    off = score([q], [r], abstain_threshold=0.39, judge="offline", refuse_unmentioned=False)
    assert on.refused == [True] and on.always_refused == [True] and on.values["correct_refusal_rate"] == [1.0]
    assert off.refused == [False] and off.values["correct_refusal_rate"] == [0.0]


def test_the_gate_rule_is_scored_as_the_pipeline_applies_it():
    from rag.answer.gate import GateRule

    qs = [Question("a", "q", ("4.4 GB",), (Gold("x.md", 1),)), Question("b", "q", ("linearly",), (Gold("y.md", 1),)),
          Question("u", "q", ()), Question("v", "q", ())]
    recs = [record(answer="It needs 4.4 GB.", evidence=0.1, answerable=0.9),  # weak evidence, rescued by the model
            record(answer="It grows linearly.", evidence=0.1, answerable=0.7),  # weak, the model not sure: refused
            record(answer="Brazil.", evidence=0.9, answerable=0.3),  # strong evidence, the model says no: refused
            record(answer="Peru.", evidence=0.9, answerable=0.7)]  # strong, the model not sure: answered
    rule = GateRule(threshold=0.5, rescue=0.8)
    v = score(qs, recs, abstain_threshold=0.2, judge="offline", gate=lambda question: rule).values
    assert v["false_refusal_rate"] == [0.0, 1.0] and v["answer_recall"] == [1.0, 0.0]
    assert v["correct_refusal_rate"] == [1.0, 0.0]
    plain = score(qs, recs, abstain_threshold=0.2, judge="offline").values  # no gate: the evidence score alone
    assert plain["false_refusal_rate"] == [1.0, 1.0] and plain["correct_refusal_rate"] == [0.0, 0.0]


def test_llm_judge_faithfulness_counts_claims():
    qs = [Question("a", "q", ("x",))]
    sents = [sentence(True, support=1.0) | {"claims": 3}, sentence(False, support=0.0) | {"claims": 1}]
    recs = [record(answer="x", sentences=sents, citations=[{"recall": True, "precise": [True]}] * 2)]
    assert score(qs, recs, abstain_threshold=0.0, judge="llm").values["faithfulness"] == [0.75]


class AlwaysSupports:
    """A judge that backs every claim: what is left to decide is the pipeline's own number rule."""

    name = "always"

    def support(self, claim: str, evidence: list[str]) -> float:
        return 1.0


def test_citation_judge_applies_the_pipelines_support_rule():
    rule = F.JudgeRule(AlwaysSupports(), threshold=0.5)
    assert rule("The model needs 4.4 GB.", ["It needs about 4.4 GB of memory."])
    assert not rule("The model needs 4.8 GB.", ["It needs about 4.4 GB of memory."])  # a wrong figure never passes
    assert not rule("The model needs 4.4 GB.", [])
    rule.known("recorded", ["e"], False)  # a verdict the pipeline reached is reused, not recomputed
    assert not rule("recorded", ["e"])


# --- end to end ------------------------------------------------------------------------------------


def test_a_squad_file_is_indexed_from_its_paragraphs(make_cfg, tmp_path):
    data = {"data": [{"title": "Memory", "paragraphs": [
        {"context": "A 7B model in Q4_K_M needs about 4.4 GB of memory.",
         "qas": [{"id": "m1", "question": "How much memory does a 7B model in Q4_K_M need?",
                  "answers": [{"text": "4.4 GB", "answer_start": 35}]}]},
        {"context": "The KV cache grows linearly with the context length.",
         "qas": [{"id": "m2", "question": "Who won the 1998 world cup?", "is_impossible": True, "answers": []}]}]}]}
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    es = load_eval_set(path, "squad")
    assert es.docs_dir is None and [d.source for d in es.docs] == ["000-000", "000-001"]
    report = evaluate(es, make_cfg(), tmp_path / "out", embedder=FakeEmbedder(), progress=False)
    assert report["dataset"]["questions"] == 2 and report["dataset"]["answerable"] == 1
    assert report["metrics"]["recall@5"] == 1.0 and report["metrics"]["answer_recall"] == 1.0
    assert (tmp_path / "out" / "index.corpus").exists()  # the index is kept for the next run


def test_a_question_with_no_letters_is_left_out_and_named(make_cfg, tmp_path):
    """CMRC 2018's trial file holds an empty question (TRIAL_776_QUERY_4): the product refuses to take
    it, which ended a 100-question run after 68; it is left out before sampling and named instead."""
    data = {"data": [{"title": "Memory", "paragraphs": [
        {"context": "A 7B model in Q4_K_M needs about 4.4 GB of memory.",
         "qas": [{"id": "m1", "question": "How much memory does a 7B model in Q4_K_M need?",
                  "answers": [{"text": "4.4 GB", "answer_start": 35}]},
                 {"id": "m0", "question": " ？ ", "answers": [{"text": "4.4 GB", "answer_start": 35}]}]}]}]}
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    es = load_eval_set(path, "squad", limit=2)
    assert [q.id for q in es.questions] == ["m1"] and es.left_out == ("m0",)
    report = evaluate(es, make_cfg(), tmp_path / "out", embedder=FakeEmbedder(), progress=False)
    assert report["dataset"]["questions"] == 1 and report["dataset"]["left_out"] == ["m0"]
    assert "m0" in (tmp_path / "out" / "report.md").read_text(encoding="utf-8")



def test_end_to_end_report_plots_and_resume(tiny_set, make_cfg, tmp_path, count_asks, monkeypatch):
    out = tmp_path / "out"
    report = run(tiny_set, make_cfg, out)
    assert sorted(count_asks) == ["en-1", "en-2", "un-1", "zh-1"]
    for name in ("report.json", "report.md", "metrics.png", "abstention.png", "support_hist.png", "cache.jsonl"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert saved["metrics"] == report["metrics"]
    for key in KEYS:
        assert 0.0 <= saved["metrics"][key] <= 1.0, key
        assert saved["n"][key] >= 1 and saved["judges"][key]
        lo, hi = saved["ci95"][key]
        assert lo <= saved["metrics"][key] <= hi
    assert saved["n"]["correct_refusal_rate"] == 1 and saved["n"]["exact_match"] == 3
    assert saved["judges"]["faithfulness"] == "offline" and saved["mode"] == "extractive"
    assert saved["metrics"]["recall@5"] == 1.0  # three documents, top 5: the gold one is always there
    assert {"config", "models", "versions", "run_key", "definitions"} <= set(saved)
    assert saved["dataset"]["sha256"] and saved["dataset"]["corpus_sha256"]
    curve = saved["abstention"]["curve"]
    assert curve[-1]["coverage"] == 0.0
    at, = [p for p in curve if p["threshold"] == saved["abstention"]["threshold"]]
    assert at["correct_refusal_rate"] == saved["metrics"]["correct_refusal_rate"]
    assert at["false_refusal_rate"] == saved["metrics"]["false_refusal_rate"]
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "recall@5" in md and "abstention.png" in md and "formula" in md

    # A finished run is re-scored from the cache: the pipeline is not even opened.
    count_asks.clear()
    monkeypatch.setattr(F, "open_pipeline", lambda *a, **k: pytest.fail("the pipeline was opened"))
    again = run(tiny_set, make_cfg, out)
    assert count_asks == [] and again["metrics"] == report["metrics"]


def test_an_interrupted_run_resumes_from_its_cache(tiny_set, make_cfg, tmp_path, count_asks):
    out = tmp_path / "out"
    first = run(tiny_set, make_cfg, out)
    lines = (out / "cache.jsonl").read_text(encoding="utf-8").splitlines()
    # killed while writing the third line
    (out / "cache.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:25], encoding="utf-8")
    count_asks.clear()
    resumed = run(tiny_set, make_cfg, out)
    assert len(count_asks) == 2 and resumed["metrics"] == first["metrics"]


def test_a_new_threshold_is_scored_from_the_cache_but_new_settings_rerun(tiny_set, make_cfg, tmp_path, count_asks):
    out = tmp_path / "out"
    run(tiny_set, make_cfg, out, abstain_threshold=0.0)
    count_asks.clear()
    strict = run(tiny_set, make_cfg, out, abstain_threshold=1.01)  # above every evidence score
    assert count_asks == []
    assert strict["metrics"]["correct_refusal_rate"] == 1.0 and strict["metrics"]["false_refusal_rate"] == 1.0
    assert strict["metrics"]["faithfulness"] is None  # nothing answered, nothing to judge
    run(tiny_set, make_cfg, out, top_k=2)
    assert len(count_asks) == 4


def test_an_nli_judge_is_named_on_every_number_it_produced(tiny_set, make_cfg, tmp_path):
    from rag.testing import write_tiny_cross_encoder

    judge = "nli:" + str(write_tiny_cross_encoder(tmp_path / "nli"))
    report = evaluate(tiny_set, make_cfg(), tmp_path / "out", judge=judge, embedder=FakeEmbedder(), progress=False)
    assert report["judge"] == judge and report["config"]["verifier"] == judge
    assert {report["judges"][m] for m in ("faithfulness", "hallucination_rate", "citation_precision",
                                          "citation_recall")} == {judge}
    assert report["judges"]["f1"] != judge and report["judges"]["recall@5"] != judge
    assert 0.0 <= report["metrics"]["faithfulness"] <= 1.0


# --- the baseline gate -----------------------------------------------------------------------------


def test_baseline_gate_exits_1_when_a_metric_got_worse(tiny_set, make_cfg, tmp_path, monkeypatch, capsys):
    report = run(tiny_set, make_cfg, tmp_path / "first")
    base_path = tmp_path / "baseline.json"
    base_path.write_text(json.dumps(report), encoding="utf-8")
    monkeypatch.setattr(F, "evaluate", lambda *a, **k: json.loads(json.dumps(report)))
    monkeypatch.setattr(F, "load_eval_set", lambda *a, **k: tiny_set)
    argv = ["--out", str(tmp_path / "run"), "--baseline", str(base_path), "--max-drop", "0.05", "--quiet"]
    assert F.main(argv) == 0

    better = json.loads(json.dumps(report))
    better["metrics"]["f1"] = min(1.0, report["metrics"]["f1"] + 0.2)
    better["metrics"]["hallucination_rate"] = max(0.0, report["metrics"]["hallucination_rate"] - 0.2)
    base_path.write_text(json.dumps(better), encoding="utf-8")
    capsys.readouterr()
    assert F.main(argv) == 1
    out = capsys.readouterr().out
    assert "f1" in out and "worse than" in out
    saved = json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))
    assert [r["metric"] for r in saved["baseline"]["regressions"]][0] == "f1"


def test_without_an_independent_judge_the_peer_is_judged_by_the_offline_verifier(tiny_set, make_cfg):
    from eval.peer import peer_question
    from rag.pipeline import Pipeline
    from rag.testing import FakeGenerator

    reply = "Q4_K_M stores about 4.8 bits per weight. It was invented on the moon in 1802 by pirates."
    pipe = Pipeline(make_cfg(), embedder=FakeEmbedder(), generator=FakeGenerator(reply), reranker=None)
    pipe.ingest(tiny_set.docs_dir)
    record = peer_question(pipe, tiny_set.questions[0], independent=None, max_tokens=64)
    assert record["answer"] == reply and not record["model_refused"]
    assert [row["faithful"] for row in record["sentences"]] == [True, False]
    assert all(row["supported"] for row in record["sentences"])  # the recipe flags nothing


def test_cli_errors_say_what_to_do(tmp_path, capsys):
    assert F.main(["--dataset", str(tmp_path / "missing.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert F.main(["--judge", "llm"]) == 2
    assert "--model" in capsys.readouterr().err
    assert F.main(["--peer", "naive", "--out", str(tmp_path / "out")]) == 2
    assert "--peer needs --model" in capsys.readouterr().err


# --- real models -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_gguf_generative_run_with_the_llm_judge(tmp_path):
    """The generative path and the LLM judge with a random-weight GGUF: plumbing only, the text is meaningless."""
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gguf")
    from rag.testing import write_tiny_gguf

    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    out = tmp_path / "out"
    assert F.main(["--model", str(model), "--judge", "llm", "--limit", "3", "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["mode"] == "generative" and report["models"]["generator"] == str(model)
    assert report["judges"]["faithfulness"] == "llm"
    assert report["dataset"]["questions"] == 3
    for key in KEYS:
        value = report["metrics"][key]
        assert value is None or 0.0 <= value <= 1.0, key
    for name in ("report.md", "metrics.png", "abstention.png", "support_hist.png"):
        assert (out / name).exists()


@pytest.mark.slow
def test_shipped_set_against_the_committed_baseline(tmp_path):
    """The CI gate: extractive mode on data/eval, against eval/baseline/sample-extractive.json."""
    baseline = ROOT / "eval" / "baseline" / "sample-extractive.json"
    out = tmp_path / "out"
    code = F.main(["--out", str(out), "--baseline", str(baseline), "--max-drop", "0.05", "--quiet"])
    assert code == 0, (out / "report.md").read_text(encoding="utf-8")
