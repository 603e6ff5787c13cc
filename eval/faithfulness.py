"""The whole Pipeline over a question set: retrieval, answers, faithfulness, citations, abstention.

    python -m eval.faithfulness [--dataset PATH] [--format jsonl|squad] [--docs DIR | --index DIR]
        [--model PATH.gguf] [--judge offline|nli:NAME|llm] [--limit N] [--out DIR]
        [--baseline report.json --max-drop X]

Writes `report.json`, `report.md` and three plots to `--out` (default `eval-out/<set>-<mode>`).
Every question's result is appended to `<out>/cache.jsonl` as soon as it is known, keyed by
(question id, run key): an interrupted run resumes where it stopped, and a finished one is
re-scored without running the pipeline again.

Datasets (`--dataset` takes a path or a shipped set's name, `eval.datasets.SHIPPED`):
- default: `sample`, `data/eval/questions.jsonl` over the sample collection `data/docs/`;
- `crosslingual`: `data/eval/crosslingual.jsonl`, English questions answered only by the Chinese
  documents of `data/docs/` and the reverse; the report adds `by_direction` (en→zh, zh→en);
- `--format jsonl`: that format (gold = [{source, page}], documents from `--docs`), or rows with
  `passages` (the index is built from the passages);
- `--format squad`: SQuAD 2.0 / CMRC 2018; one document per paragraph, every paragraph indexed.
All are read by `eval.datasets.load_qa` (the source ids and gold rules are described there).
  `--limit N` takes a seeded sample, half answerable and half unanswerable where the set has both.

Without `--model` the pipeline runs in extractive mode. The judge (`--judge`, the pipeline's
`verifier` setting) scores every answer sentence; faithfulness and citation numbers are its
verdicts, and the report says so.

Abstention: the pipeline is run with its evidence threshold disabled, so every question gets an
answer and an evidence score; the configured threshold is then applied with
`rag.answer.abstain.should_abstain` to the score the pipeline compares (as recorded, to 4 decimals). That
reproduces the pipeline's decisions, draws the whole curve over thresholds from one run and scores
a new threshold from the cache. The price: in generative mode the model also answers the
questions the threshold refuses. Embeddings are memoised for the run (`MemoEmbedder`): the same
chunk sentences come back question after question.

Deliberately skipped: paraphrase-aware answer matching, and judging answers the model refused.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import math
import platform
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eval import metrics as M
from eval.datasets import Gold, Question, dataset_path, load_qa
from eval.harness import hash_documents
from eval.metrics.calibration import Refuses
from eval.metrics.retrieval import ndcg_at, recall_at, reciprocal_rank
from rag.answer.abstain import should_abstain
from rag.answer.gate import GateRule, gate_rule
from rag.config import Config, as_dict
from rag.errors import RagError
from rag.question import has_words
from rag.records import Document

GateFor = Callable[[str], "GateRule | None"]  # a question's gate rule

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = ROOT / "data" / "eval" / "questions.jsonl"
SCHEMA = 1
SAMPLE_SEED = 0
RETRIEVAL_DEPTH = 10  # nDCG@10 needs ten results; the answer itself uses cfg.top_k of them
# Run-key fields left out: where things live, and the threshold that is applied after the run.
_NOT_IN_KEY = ("index_dir", "docs_dir", "abstain_threshold", "gate_threshold", "gate_rescue", "refuse_unmentioned")

HEADLINE = ("recall@5", "mrr", "ndcg@10", "exact_match", "f1", "answer_recall", "faithfulness",
            "hallucination_rate", "silent_hallucination_rate", "citation_precision", "citation_recall",
            "correct_refusal_rate", "false_refusal_rate", "language_match", "fallback_rate")

# metric → (group, over which questions, formula). Rendered in the report's header.
DEFINITIONS: dict[str, tuple[str, str, str]] = {
    "recall@5": ("retrieval", "answerable questions with gold",
                 "1 if a gold passage is among the top 5 retrieved, else 0; mean over questions"),
    "mrr": ("retrieval", "answerable questions with gold",
            "mean of 1 / rank of the first gold passage (0 if not in the top 10)"),
    "ndcg@10": ("retrieval", "answerable questions with gold",
                "DCG@10 / ideal DCG@10, gain 1 for the gold passage, discount 1 / log2(rank + 1)"),
    "exact_match": ("answers", "answerable questions",
                    "max over references of [normalise(answer) == normalise(reference)]; a refusal scores 0"),
    "f1": ("answers", "answerable questions",
           "max over references of 2PR / (P + R) over shared tokens (SQuAD words; CMRC characters and "
           "longest common substring for Chinese)"),
    "answer_recall": ("answers", "answerable questions",
                      "1 if a normalised reference occurs inside the normalised answer; the telling one for "
                      "extractive answers, which are whole sentences (EM ≈ 0 by construction)"),
    "faithfulness": ("faithfulness", "answered questions",
                     "supported sentences / all sentences of the answer (judge: llm → supported claims / all "
                     "claims); mean over answers"),
    "hallucination_rate": ("faithfulness", "answered questions",
                           "answers with at least one unsupported sentence / answers; an answer with no "
                           "sentence at all (junk) counts as unsupported"),
    "silent_hallucination_rate": ("faithfulness", "answered questions",
                                  "answers with a sentence the independent judge finds unsupported while the "
                                  "product did not flag it / answers (only with --judge-model: the product's "
                                  "verifier never grades itself)"),
    "citation_recall": ("citations", "answered questions",
                        "ALCE: sentences whose cited sources together support them / sentences that claim "
                        "something; mean over answers"),
    "citation_precision": ("citations", "answered questions",
                           "ALCE: citations that support their sentence alone or are needed for its joint "
                           "support (and the sentence is supported) / citations; mean over answers, 0 without "
                           "citations"),
    "correct_refusal_rate": ("abstention", "unanswerable questions", "refused / unanswerable"),
    "language_match": ("answers", "answered questions",
                       "answers (and refusals) written in the question's language (Chinese or not, by script)"),
    "fallback_rate": ("answers", "answered questions",
                      "answers where the junk guard replaced the model's text by the extractive answer"),
    "false_refusal_rate": ("abstention", "answerable questions", "refused / answerable"),
}
LOWER_IS_BETTER = M.LOWER_IS_BETTER


# --- question sets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalSet:
    name: str
    path: Path
    format: str
    questions: tuple[Question, ...]
    sha256: str  # of the question file
    docs_dir: Path | None = None  # documents to ingest (the sample collection) …
    docs: tuple[Document, ...] = ()  # … or documents built from the dataset's passages
    sample: dict = field(default_factory=dict)  # how --limit chose the questions
    left_out: tuple[str, ...] = ()  # ids of the file's questions no one could ask (no letters or digits)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def balanced_sample(questions: Sequence[Question], n: int, *, seed: int = SAMPLE_SEED) -> list[Question]:
    """n questions, half unanswerable where there are enough (the rest from the other side),
    chosen with a seeded RNG and kept in file order.

    >>> qs = [Question(str(i), "q", ("a",) if i % 3 else ()) for i in range(9)]
    >>> [q.id for q in balanced_sample(qs, 4)]
    ['0', '3', '5', '8']
    """
    if n >= len(questions):
        return list(questions)
    yes = [i for i, q in enumerate(questions) if q.answerable]
    no = [i for i, q in enumerate(questions) if not q.answerable]
    n_no = min(len(no), n // 2)
    n_yes = min(len(yes), n - n_no)
    n_no = min(len(no), n - n_yes)
    rng = random.Random(seed)
    chosen = set(rng.sample(yes, n_yes)) | set(rng.sample(no, n_no))
    return [q for i, q in enumerate(questions) if i in chosen]


def load_eval_set(path: Path, fmt: str | None = None, *, docs_dir: Path | None = None,
                  limit: int | None = None) -> EvalSet:
    """The questions (eval.datasets.load_qa) and the collection they are about: the documents the
    file brings, or for the shipped format the `docs_dir` folder (default: docs/ beside the file's folder)."""
    path = Path(path)
    if not path.is_file():
        raise RagError(f"dataset {path} does not exist (fix: pass --dataset with the path of a questions file)")
    fmt = fmt or ("jsonl" if path.suffix == ".jsonl" else "squad")
    qs = load_qa(path, fmt)
    # A question the product refuses to take (rag.question: no letters or digits; CMRC's trial file has
    # an empty one) is left out, before sampling, and named in the report rather than ending the run.
    left_out = tuple(q.id for q in qs.questions if not has_words(q.question))
    questions = [q for q in qs.questions if has_words(q.question)]
    if not qs.docs:
        docs_dir = Path(docs_dir) if docs_dir else path.parent.parent / "docs"
        if not docs_dir.is_dir():
            docs_dir = None  # fine with --index; evaluate() says what to pass otherwise
    if not questions:
        raise RagError(f"{path} holds no questions")
    total = len(questions)
    sample: dict = {}
    if limit and limit < total:
        questions = balanced_sample(questions, limit)
        sample = {"limit": limit, "of": total, "seed": SAMPLE_SEED, "rule": "seeded, half unanswerable"}
    name = "sample" if path.resolve() == DEFAULT_DATASET.resolve() else path.stem
    return EvalSet(name, _shown(path), fmt, tuple(questions), file_sha256(path),
                   docs_dir=docs_dir if not qs.docs else None, docs=qs.docs, sample=sample, left_out=left_out)


def _shown(path: Path) -> Path:
    """Relative to the checkout when inside it, so that reports from two clones compare equal."""
    try:
        return path.resolve().relative_to(ROOT)
    except ValueError:
        return path


def corpus_sha256(es: EvalSet) -> str:
    """Identity of the collection behind the questions: file hashes, or the passages' text."""
    h = hashlib.sha256()
    if es.docs_dir is not None:
        for p in sorted(x for x in Path(es.docs_dir).rglob("*") if x.is_file() and not x.name.startswith(".")):
            h.update(f"{p.relative_to(es.docs_dir).as_posix()}\0{file_sha256(p)}\n".encode())
    hash_documents(h, es.docs)
    return h.hexdigest()


# --- the cache -------------------------------------------------------------------------------------


class Cache:
    """One JSON line per finished question: {"id", "key", "record"}. The last line of a killed run
    may be cut short; it is ignored and that question runs again."""

    def __init__(self, path: Path, key: str) -> None:
        self.path = Path(path)
        self.key = key
        self.records: dict[str, dict] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and row.get("key") == key and "record" in row:
                    self.records[str(row["id"])] = row["record"]

    def get(self, qid: str) -> dict | None:
        return self.records.get(qid)

    def put(self, qid: str, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"id": qid, "key": self.key, "record": record}, ensure_ascii=False) + "\n")
        self.records[qid] = record


@functools.lru_cache(maxsize=1)
def code_sha256() -> str:
    """Hash of the rag package's source: a changed verifier or refusal rule invalidates the cache.
    Taken once per process, as the code it runs was loaded (config.py acts through the settings,
    which the run key holds already)."""
    h = hashlib.sha256()
    pkg = Path(__file__).resolve().parents[1] / "rag"
    for p in sorted(x for x in pkg.rglob("*.py") if x.name != "config.py"):
        h.update(p.relative_to(pkg).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def run_key(cfg: Config, es: EvalSet, *, judge: str, model: str | None, corpus: str) -> str:
    """Hash of what decides a question's result: settings, judge, model file, questions, collection, code."""
    settings = {k: v for k, v in as_dict(cfg).items() if k not in _NOT_IN_KEY}
    model_id = None
    if model:
        p = Path(model)
        model_id = [p.name, p.stat().st_size if p.is_file() else None]
    blob = json.dumps({"schema": SCHEMA, "settings": settings, "judge": judge, "model": model_id,
                       "dataset": es.sha256, "corpus": corpus, "code": code_sha256()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --- one question ----------------------------------------------------------------------------------


class JudgeRule:
    """The pipeline's support rule as a predicate: the verdict of `rag.answer.verify.check_sentences`
    on the claim citing all of `evidence` (the judge's score ≥ threshold and no claimed number
    missing). Memoised, because ALCE asks about the same (sentence, sources) pairs the pipeline
    has already judged; `known` records those."""

    def __init__(self, verifier, threshold: float) -> None:
        self.verifier = verifier
        self.threshold = threshold
        self._memo: dict[tuple[str, tuple[str, ...]], bool] = {}

    def known(self, claim: str, evidence: Sequence[str], verdict: bool) -> None:
        self._memo[(claim, tuple(evidence))] = verdict

    def __call__(self, claim: str, evidence: list[str]) -> bool:
        from rag.answer.verify import check_sentences

        key = (claim, tuple(evidence))
        if key not in self._memo:
            cites_all = tuple(range(1, len(evidence) + 1))
            self._memo[key] = bool(evidence) and check_sentences(
                [(claim, cites_all)], evidence, self.verifier, threshold=self.threshold)[0].supported
        return self._memo[key]


def independent_verdicts(text: str, cited: Sequence[int], sources: Sequence[str], judge) -> dict:
    """The independent judge on one sentence: supported by what it cites, else by any packed source."""
    valid = [n for n in dict.fromkeys(cited) if 1 <= n <= len(sources)]
    by_cited = bool(valid) and judge.supports(text, [sources[n - 1] for n in valid])
    faithful = by_cited or judge.supports(text, list(sources))
    return {"judge_faithful": bool(faithful), "judge_cited": bool(by_cited)}


def answer_question(pipe, q: Question, *, judge: str, independent=None) -> dict:
    """Ask, retrieve ten for the ranking metrics, and judge citations: the cache record.

    With `independent` (eval.judge.LlamaJudge), every claim sentence also gets that judge's verdict,
    and citations are judged by it (ALCE) instead of by the product's own verifier."""
    from rag.answer.cite import strip_markers

    answer = pipe.ask(q.question, history=[{"role": r, "content": c} for r, c in q.history])
    hits = pipe.retrieve(answer.query, k=max(RETRIEVAL_DEPTH, pipe.cfg.top_k))
    threshold = pipe.cfg.support_threshold
    sources = [h.chunk.text for h in answer.sources]
    sentences, citations = [], []
    if not answer.refused:
        verifier = pipe.verifier
        supports = JudgeRule(verifier, threshold)
        for s in answer.sentences:  # the pipeline has judged each sentence against its cited sources
            valid = [n for n in dict.fromkeys(s.cited) if 1 <= n <= len(sources)]
            if valid:
                supports.known(s.text, [sources[n - 1] for n in valid], s.supported)
        for s in answer.sentences:
            row = {"text": s.text, "cited": list(s.cited), "support": round(float(s.support), 4),
                   "supported": s.supported, "reason": s.reason,
                   "faithful": bool(s.supported or (not s.cited and s.support >= threshold))}
            if judge == "llm" and callable(getattr(verifier, "claims", None)):
                row["claims"] = len(verifier.claims(s.text))
            if independent is not None and s.reason != "no claim":
                row.update(independent_verdicts(s.text, s.cited, sources, independent))
            sentences.append(row)
            if s.reason == "no claim":
                citations.append({"recall": None, "precise": []})
            else:
                check = M.alce_citations(s.text, s.cited, sources,
                                         independent.supports if independent is not None else supports)
                citations.append({"recall": check.recall, "precise": list(check.precise)})
    return {
        "query": answer.query, "mode": answer.mode, "model_refused": answer.refused,
        "evidence": float(answer.timings.get("evidence", 0.0)),
        "answerable": answer.timings.get("answerable"),
        "answer": "" if answer.refused else strip_markers(answer.text), "text": answer.text,
        "retrieved": [[h.chunk.source, list(h.chunk.pages)] for h in hits],
        "sentences": sentences, "citations": citations,
        "reranked": pipe.cfg.rerank and pipe.reranker is not None,
        "notices": list(answer.notices), "timings": answer.timings, "fallback": answer.fallback,
        "lang_ok": language_ok(q.question, answer.text), "judged": independent is not None,
        "unmentioned": list(answer.unmentioned),
    }


def language_ok(question: str, text: str) -> bool:
    """The answer is written in the question's language (Chinese, Japanese, Korean vs the rest), judged
    by script (`rag.answer.prompt.answer_language`)."""
    from rag.answer.guard import wrong_language
    from rag.answer.prompt import answer_language

    if answer_language(question) != "en":
        return answer_language(text) == answer_language(question)
    return not wrong_language(text, question)


# --- scoring ---------------------------------------------------------------------------------------


def ranked_keys(retrieved: Sequence[Sequence], gold: Sequence[Gold]) -> list[str]:
    """Retrieved chunks as a ranked list for eval.retrieval: every chunk on a gold page becomes the
    one relevant item 'gold' (gold pages are alternatives: each holds an answer), others keep their
    (source, pages); duplicates collapse to their first rank.

    >>> ranked_keys([["a.pdf", [2]], ["b.md", [1]], ["a.pdf", [3, 4]]], [Gold("a.pdf", 4)])
    ['a.pdf#[2]', 'b.md#[1]', 'gold']
    """
    out: dict[str, None] = {}
    for source, pages in retrieved:
        hit = any(source == g.source and (g.page is None or g.page in pages) for g in gold)
        out.setdefault("gold" if hit else f"{source}#{list(pages)}", None)
    return list(out)


GATE_RECORD_ONLY = 1e-12  # a gate threshold no P(yes) falls under: the gate asks and records, never refuses


def gated(record: dict, rule: GateRule | None) -> bool:
    """Whether the answerability gate refuses this record whatever its evidence score (None: no gate).

    >>> from rag.answer.gate import GateRule
    >>> gated({"answerable": 0.2}, GateRule(0.5)), gated({"answerable": 0.2}, None), gated({}, GateRule(0.5))
    (True, False, False)
    """
    p = record.get("answerable")
    return rule is not None and p is not None and float(p) < rule.threshold


def rescued(record: dict, rule: GateRule | None) -> bool:
    """Whether the gate's P(yes) answers this record even if its evidence score is weak.

    >>> from rag.answer.gate import GateRule
    >>> rescued({"answerable": 0.8}, GateRule(0.5, 0.75)), rescued({"answerable": 0.8}, GateRule(0.5))
    (True, False)
    """
    p = record.get("answerable")
    return (rule is not None and rule.rescue is not None and p is not None and float(p) >= rule.threshold
            and float(p) >= rule.rescue)


@dataclass
class Scored:
    """Per-question values of each metric (the input of means and bootstrap intervals)."""

    values: dict[str, list[float]]
    refused: list[bool]
    wrong: list[bool]
    evidence: list[float]
    always_refused: list[bool]


def score(questions: Sequence[Question], records: Sequence[dict], *, abstain_threshold: float,
          judge: str, refuses: Refuses = should_abstain, gate: GateFor | None = None,
          refuse_unmentioned: bool = True) -> Scored:
    values: dict[str, list[float]] = {m: [] for m in HEADLINE}
    refused_all, wrong_all, evidence_all, always_all = [], [], [], []
    for q, r in zip(questions, records):
        rule = gate(q.question) if gate is not None else None
        always = (bool(r["model_refused"]) or gated(r, rule)
                  or refuse_unmentioned and bool(r.get("unmentioned")))  # as the pipeline refuses them
        refused = always or (refuses(r["evidence"], abstain_threshold) and not rescued(r, rule))
        ans_text = "" if refused else r["answer"]
        full_text = r["answer"]  # what answering would give, for the curve
        refused_all.append(refused)
        always_all.append(always)
        evidence_all.append(float(r["evidence"]))
        wrong_all.append(not q.answerable or not M.answer_recall(full_text, q.answers))
        if q.answerable:
            values["false_refusal_rate"].append(float(refused))
            values["exact_match"].append(M.exact_match(ans_text, q.answers) if ans_text else 0.0)
            values["f1"].append(M.token_f1(ans_text, q.answers) if ans_text else 0.0)
            values["answer_recall"].append(M.answer_recall(ans_text, q.answers) if ans_text else 0.0)
            if q.gold:
                ranked = ranked_keys(r["retrieved"], q.gold)
                values["recall@5"].append(recall_at(ranked, {"gold": 1.0}, 5))
                values["mrr"].append(reciprocal_rank(ranked, {"gold": 1.0}))
                values["ndcg@10"].append(ndcg_at(ranked, {"gold": 1.0}, 10))
        else:
            values["correct_refusal_rate"].append(float(refused))
        if not refused and "lang_ok" in r:
            values["language_match"].append(float(r["lang_ok"]))
            values["fallback_rate"].append(float(bool(r.get("fallback"))))
        sents = r["sentences"]
        if refused:
            continue
        if not sents:  # answered with nothing checkable: junk counts as unsupported, not as absent
            values["faithfulness"].append(0.0)
            values["hallucination_rate"].append(1.0)
            values["citation_precision"].append(0.0)
            if r.get("judged"):
                values["silent_hallucination_rate"].append(0.0)  # nothing shown as supported
            continue
        claims = [s for s in sents if s.get("reason") != "no claim"]
        if r.get("judged"):
            faithful = [bool(s.get("judge_faithful", True)) for s in claims]
            values["faithfulness"].append(M.share(faithful) if faithful else 1.0)
            values["hallucination_rate"].append(float(not all(faithful)))
            values["silent_hallucination_rate"].append(float(any(
                s["supported"] and not s.get("judge_faithful", True) for s in claims)))
        elif judge == "llm" and all("claims" in s for s in sents):
            faith = M.weighted_share([s["support"] for s in sents], [s["claims"] for s in sents])
            faith = 1.0 if faith is None else faith  # no factual claim at all: nothing unsupported
        else:
            faith = M.share([s["faithful"] for s in sents])
        if not r.get("judged"):
            values["faithfulness"].append(faith)
            values["hallucination_rate"].append(float(not all(s["faithful"] for s in sents)))
        recalls = [c["recall"] for c in r["citations"] if c["recall"] is not None]
        if recalls:
            values["citation_recall"].append(M.share(recalls))
        precise = [p for c in r["citations"] for p in c["precise"]]
        values["citation_precision"].append(M.share(precise) if precise else 0.0)
    return Scored(values, refused_all, wrong_all, evidence_all, always_all)


def judge_of(metric: str, judge: str) -> str:
    group = DEFINITIONS[metric][0]
    if group in ("faithfulness", "citations"):
        return judge
    return {"retrieval": "gold passages", "answers": "string match against references",
            "abstention": "pipeline refusal (evidence threshold, refusal detection)"}[group]


def _round(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


def build_report(es: EvalSet, questions: Sequence[Question], records: Sequence[dict], *, cfg: Config,
                 judge: str, model: str | None, key: str, corpus: str, seconds: float,
                 refuses: Refuses = should_abstain) -> dict:
    def gate(question: str) -> GateRule | None:
        return gate_rule(cfg.gate_threshold, cfg.gate_rescue, model, question)

    sc = score(questions, records, abstain_threshold=cfg.abstain_threshold, judge=judge, refuses=refuses, gate=gate,
               refuse_unmentioned=cfg.refuse_unmentioned)
    metrics, n, ci = {}, {}, {}
    for m in HEADLINE:
        vals = sc.values[m]
        metrics[m] = _round(M.share(vals))
        n[m] = len(vals)
        band = M.bootstrap_ci(vals)
        ci[m] = [_round(band[0]), _round(band[1])] if band else None
    answerable = [q.answerable for q in questions]
    # the configured threshold is a point of its own, so the report can say exactly what it does
    thresholds = sorted(set(M.thresholds_from(sc.evidence)) | {float(cfg.abstain_threshold)})
    curve = M.abstention_curve(sc.evidence, answerable, sc.wrong, always_refused=sc.always_refused,
                               thresholds=thresholds, refuses=refuses)
    band = M.curve_band(sc.evidence, answerable, sc.wrong, thresholds, always_refused=sc.always_refused,
                        refuses=refuses)
    support = {"answerable": [], "unanswerable": []}
    for q, r in zip(questions, records):
        support["answerable" if q.answerable else "unanswerable"] += [s["support"] for s in r["sentences"]]
    def subset(keep: Sequence[int]) -> dict:
        sub = score([questions[i] for i in keep], [records[i] for i in keep],
                    abstain_threshold=cfg.abstain_threshold, judge=judge, refuses=refuses, gate=gate,
                    refuse_unmentioned=cfg.refuse_unmentioned)
        return {"n": len(keep), **{m: _round(M.share(sub.values[m])) for m in HEADLINE}}

    by_type = {t: subset([i for i, q in enumerate(questions) if q.type == t])
               for t in sorted({q.type for q in questions})}
    # cross-lingual sets: an English question over Chinese documents is not the same task as the reverse
    by_direction = {d: subset([i for i, q in enumerate(questions) if q.direction == d])
                    for d in sorted({q.direction for q in questions if q.direction})}
    reranked = any(r.get("reranked") for r in records)
    notices = sorted({x for r in records for x in r.get("notices", [])})
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dataset": {"path": str(es.path), "name": es.name, "format": es.format, "sha256": es.sha256,
                    "corpus_sha256": corpus, "questions": len(questions),
                    "answerable": sum(answerable), "unanswerable": len(questions) - sum(answerable),
                    "sample": es.sample or None, "left_out": list(es.left_out) or None},
        "mode": "generative" if model else "extractive",
        "judge": judge,
        "models": {"embedder": cfg.embed_model, "reranker": cfg.reranker_model if reranked else None,
                   "generator": str(model) if model else None, "judge": judge},
        "config": {k: v for k, v in as_dict(cfg).items() if k not in ("index_dir", "docs_dir")},
        "run_key": key,
        "versions": versions(),
        "metrics": metrics,
        "n": n,
        "ci95": ci,
        "judges": {m: judge_of(m, judge) for m in HEADLINE},
        "definitions": {m: {"group": g, "over": over, "formula": f} for m, (g, over, f) in DEFINITIONS.items()},
        "abstention": {
            "threshold": cfg.abstain_threshold,
            "gate": gate_summary(questions, records, gate),
            "aurc": _round(M.area_under_risk_coverage(curve)),
            "curve": [{"threshold": p.threshold, "coverage": _round(p.coverage), "risk": _round(p.risk),
                       "correct_refusal_rate": _round(p.correct_refusal_rate),
                       "false_refusal_rate": _round(p.false_refusal_rate),
                       "ci95": {k: [_round(v[i][0]), _round(v[i][1])] for k, v in band.items()}}
                      for i, p in enumerate(curve)],
        },
        "scores": {
            "evidence": {"answerable": [e for e, a in zip(sc.evidence, answerable) if a],
                         "unanswerable": [e for e, a in zip(sc.evidence, answerable) if not a]},
            "sentence_support": support,
        },
        "by_type": by_type,
        "by_direction": by_direction,
        "notices": notices,
        "seconds": round(seconds, 1),
    }


def gate_summary(questions: Sequence[Question], records: Sequence[dict], gate: GateFor) -> dict | None:
    """How the answerability gate's P(yes) separates answerable from unanswerable questions (AUROC), and
    what its thresholds alone refuse; None when no record has a gate score."""
    pairs = [(q.answerable, float(r["answerable"])) for q, r in zip(questions, records)
             if r.get("answerable") is not None]
    rules = {q.question: gate(q.question) for q, r in zip(questions, records) if r.get("answerable") is not None}
    asked = [q for q, r in zip(questions, records) if r.get("answerable") is not None]
    if not pairs:
        return None
    labels = [int(a) for a, _ in pairs]
    scores = [p for _, p in pairs]
    refused = [gated({"answerable": p}, rules[q.question]) for q, p in zip(asked, scores)]
    correct, false = M.refusal_rates(refused, [bool(x) for x in labels])
    used = sorted({(g.threshold, g.rescue, g.source) for g in rules.values() if g is not None}, key=str)
    return {"rules": [{"threshold": t, "rescue": r, "source": src} for t, r, src in used], "n": len(pairs),
            "auroc": _round(M.auroc(labels, scores)) if 0 < sum(labels) < len(labels) else None,
            "correct_refusal_rate": _round(correct), "false_refusal_rate": _round(false),
            "answerable": [p for p, a in zip(scores, labels) if a],
            "unanswerable": [p for p, a in zip(scores, labels) if not a]}


def versions() -> dict:
    import subprocess
    from importlib import metadata

    import rag

    out = {"python": platform.python_version(), "platform": platform.platform(), "rag": rag.__version__}
    for dist in ("numpy", "torch", "sentence-transformers", "faiss-cpu", "bm25s", "llama-cpp-python", "matplotlib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    try:
        root = Path(__file__).resolve().parents[1]
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        out["git"] = (commit + ("+dirty" if dirty else "")) if commit else None
    except (OSError, subprocess.SubprocessError):
        out["git"] = None
    return out


# --- running ---------------------------------------------------------------------------------------


class MemoEmbedder:
    """An embedder that remembers every text it embedded. Over a question set the same chunk
    sentences are embedded again and again (extractive answers, the offline judge's windows);
    embeddings are deterministic, so remembering them changes no result, only the run time."""

    def __init__(self, inner, *, max_items: int = 200_000) -> None:
        self.inner = inner
        self.name, self.dim = inner.name, inner.dim
        self.languages = getattr(inner, "languages", None)
        self.max_items = max_items
        self._memo: dict[str, object] = {}

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def embed(self, texts: Sequence[str], **kw):
        import numpy as np

        todo = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if todo:
            if len(self._memo) + len(todo) > self.max_items:
                self._memo.clear()
            self._memo.update(zip(todo, np.asarray(self.inner.embed(todo), dtype=np.float32)))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._memo[t] for t in texts])


def open_pipeline(es: EvalSet, cfg: Config, out: Path, *, index: Path | None, model: str | None, embedder=None):
    """A Pipeline over the set's collection: `index` as given, or one kept in `<out>/index`
    (ingested incrementally from the docs folder, or built from the passages when they changed)."""
    from rag.pipeline import Pipeline

    if embedder is None:
        from rag.models.factory import load_embedder

        embedder = load_embedder(cfg)
    if index is not None:
        cfg = cfg.with_overrides(index_dir=str(index))
    else:
        cfg = cfg.with_overrides(index_dir=str(out / "index"))
        if es.docs_dir is not None:
            from rag.ingest.build import ingest

            ingest(es.docs_dir, cfg, embedder=embedder)
        else:
            from eval.harness import index_documents

            cfg = index_documents(es.docs, cfg, embedder, out / "index")
    # Every question gets an answer; the configured thresholds are applied when scoring. The gate still
    # asks its question (when the configured rule has one for the model) and records P(yes) without refusing.
    asks = gate_rule(cfg.gate_threshold, cfg.gate_rescue, model) is not None
    run_cfg = cfg.with_overrides(abstain_threshold=-math.inf, gate_threshold=GATE_RECORD_ONLY if asks else 0.0,
                                 gate_rescue=0.0, refuse_unmentioned=False)
    embedder = MemoEmbedder(embedder)
    if model:
        return Pipeline(run_cfg.with_overrides(llm_model=str(model)), embedder=embedder)
    return Pipeline(run_cfg, embedder=embedder, generator=None)


def index_corpus_sha256(index: Path) -> str:
    """Identity of an existing index's collection: its files' sources and content hashes."""
    from rag.index.store import current_generation, read_files

    gen = current_generation(Path(index))
    if gen is None:
        raise RagError(f"no index in {index} (fix: build one with python -m rag.ingest DOCS --index {index})")
    h = hashlib.sha256()
    for source, rec in sorted(read_files(gen).items()):
        h.update(f"{source}\0{rec.hash}\n".encode())
    return h.hexdigest()


def evaluate(es: EvalSet, cfg: Config, out: Path, *, judge: str = "offline", model: str | None = None,
             index: Path | None = None, embedder=None, progress: bool = True, judge_model: str | None = None,
             peer: str | None = None) -> dict:
    """Run (or resume) the set, write report.json, report.md and the plots into `out`; the report."""
    from eval.report import write_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = cfg.with_overrides(verifier=judge)
    t0 = time.perf_counter()
    if index is None and es.docs_dir is None and not es.docs:
        raise RagError(f"no documents for the questions of {es.path} (fix: pass --docs DIR with the collection "
                       "they are about, or --index DIR with an index of it)")
    corpus = index_corpus_sha256(index) if index is not None else corpus_sha256(es)
    if peer and not model:
        raise RagError("--peer needs --model (the peer uses the same model; add --judge-model for an independent "
                       "judge of both sides)")
    independent_name = f"llm-judge:{Path(judge_model).name}" if judge_model else None
    key = run_key(cfg, es, judge=f"{judge}+{independent_name}+{peer}" if (judge_model or peer) else judge,
                  model=model, corpus=corpus)
    cache = Cache(out / "cache.jsonl", key)
    todo = [q for q in es.questions if cache.get(q.id) is None]
    if todo:
        pipe = open_pipeline(es, cfg, out, index=index, model=model, embedder=embedder)
        independent = None
        if judge_model:
            from eval.judge import LlamaJudge

            independent = LlamaJudge(judge_model)
        items: Iterable[Question] = todo
        if progress:
            from tqdm import tqdm

            items = tqdm(todo, desc="questions", unit="q", file=sys.stderr,
                         initial=len(es.questions) - len(todo), total=len(es.questions))
        for q in items:
            if peer == "naive":
                from eval.peer import peer_question

                cache.put(q.id, peer_question(pipe, q, independent=independent, max_tokens=cfg.max_answer_tokens))
            else:
                cache.put(q.id, answer_question(pipe, q, judge=judge, independent=independent))
    records = [cache.get(q.id) for q in es.questions]
    report = build_report(es, es.questions, records, cfg=cfg, judge=independent_name or judge, model=model, key=key,
                          corpus=corpus, seconds=time.perf_counter() - t0)
    if peer:
        report["mode"] = f"peer-{peer}"
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    write_report(report, out)
    return report


def compare_to_baseline(report: dict, baseline: dict, *, max_drop: float) -> tuple[list[M.Regression], list[str]]:
    """Regressions beyond `max_drop`, and notes on what differs between the two runs."""
    notes = []
    ds, base_ds = report["dataset"], baseline.get("dataset", {})
    for what, a, b in (("dataset", ds["sha256"], base_ds.get("sha256")),
                       ("collection", ds["corpus_sha256"], base_ds.get("corpus_sha256")),
                       ("judge", report.get("judge"), baseline.get("judge")),
                       ("mode", report.get("mode"), baseline.get("mode")),
                       ("models", report.get("models"), baseline.get("models"))):
        if a != b:
            notes.append(f"{what} differs from the baseline's ({b} → {a})")
    return M.regressions(report["metrics"], baseline.get("metrics", {}), max_drop=max_drop, metrics=HEADLINE), notes


def format_table(report: dict) -> str:
    lines = [f"{'metric':<22}{'value':>8}  {'95% CI':<16}{'n':>6}  judge"]
    for m in HEADLINE:
        v, ci = report["metrics"][m], report["ci95"][m]
        vs = f"{v:.3f}" if v is not None else "—"
        cis = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "—"
        lines.append(f"{m:<22}{vs:>8}  {cis:<16}{report['n'][m]:>6}  {report['judges'][m]}")
    return "\n".join(lines)


DIRECTION_COLUMNS = ("recall@5", "mrr", "answer_recall", "f1", "faithfulness", "false_refusal_rate",
                     "language_match")


def format_directions(report: dict) -> str:
    """One row per direction of a cross-lingual set (en→zh, zh→en)."""
    lines = [f"{'direction':<10}{'n':>5}" + "".join(f"{c:>20}" for c in DIRECTION_COLUMNS)]
    for d, row in report["by_direction"].items():
        lines.append(f"{d:<10}{row['n']:>5}" + "".join(f"{_fmt(row.get(c)):>20}" for c in DIRECTION_COLUMNS))
    return "\n".join(lines)


def format_side_by_side(report: dict, peer: dict) -> str:
    """The product and the peer, metric by metric, same questions and judge."""
    lines = [f"{'metric':<26}{'this project':>14}{peer['mode']:>14}   n   judge"]
    for m in HEADLINE:
        a, b = report["metrics"][m], peer["metrics"][m]
        lines.append(f"{m:<26}{_fmt(a):>14}{_fmt(b):>14}{report['n'][m]:>5}   {report['judges'][m]}")
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def main(argv: Sequence[str] | None = None) -> int:
    from rag.config import load_config

    ap = argparse.ArgumentParser(prog="python -m eval.faithfulness", description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", type=dataset_path, default=DEFAULT_DATASET,
                    help="questions file, or a shipped set: sample (default: data/eval/questions.jsonl, "
                         "over data/docs) or crosslingual")
    ap.add_argument("--format", choices=("jsonl", "squad"), help="default: from the file name")
    ap.add_argument("--docs", type=Path, help="documents of a jsonl set (default: data/docs beside data/eval)")
    ap.add_argument("--index", type=Path, help="use this existing index instead of building one")
    ap.add_argument("--model", help="a .gguf file: generative mode (default: extractive)")
    ap.add_argument("--judge", default="offline", help="offline | nli:<hf name or path> | llm (default: offline)")
    ap.add_argument("--judge-model", help="a .gguf file: the independent judge of faithfulness and citations "
                                          "(yes/no from its first token; also gives the silent hallucination rate)")
    ap.add_argument("--peer", choices=("naive",), help="also run the plain 'stuff the top k into a prompt' recipe "
                                                       "(same retrieval, model and judge) and print both")
    ap.add_argument("--limit", type=int, help="a seeded sample of N questions, half unanswerable")
    ap.add_argument("--out", type=Path, help="output folder (default: eval-out/<set>-<mode>)")
    ap.add_argument("--config", help="TOML config file")
    ap.add_argument("--baseline", type=Path, help="report.json to compare with")
    ap.add_argument("--max-drop", type=float, default=0.02,
                    help="tolerated worsening of each headline metric (default: %(default)s)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.judge == "llm" and not args.model:
            raise RagError("--judge llm needs the generator (fix: pass --model PATH.gguf, or use --judge offline)")
        for what, path in (("model", args.model), ("judge model", args.judge_model)):
            if path and not Path(path).is_file():
                raise RagError(f"{what} file {path} does not exist (fix: pass the path of a .gguf file, "
                               "e.g. from python -m rag.models pull qwen2.5-coder-1.5b)")
        cfg = load_config(args.config)
        es = load_eval_set(args.dataset, args.format, docs_dir=args.docs, limit=args.limit)
        out = args.out or Path("eval-out") / f"{es.name}-{'generative' if args.model else 'extractive'}"
        baseline = json.loads(args.baseline.read_text(encoding="utf-8")) if args.baseline else None
        report = evaluate(es, cfg, out, judge=args.judge, model=args.model, index=args.index,
                          progress=not args.quiet, judge_model=args.judge_model)
        peer_report = None
        if args.peer:
            peer_report = evaluate(es, cfg, out / f"peer-{args.peer}", judge=args.judge, model=args.model,
                                   index=args.index, progress=not args.quiet, judge_model=args.judge_model,
                                   peer=args.peer)
    except (RagError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{es.name}: {report['dataset']['questions']} questions ({report['dataset']['answerable']} answerable), "
          f"{report['mode']} mode, judge {report['judge']}, {report['seconds']} s")
    if es.left_out:
        print(f"left out, having no letters or digits: {', '.join(es.left_out)}")
    print(format_table(report) if peer_report is None else format_side_by_side(report, peer_report))
    if report["by_direction"]:
        print(format_directions(report))
    print(f"report: {out / 'report.md'}")
    if baseline is not None:
        from eval.report import write_report

        worse, notes = compare_to_baseline(report, baseline, max_drop=args.max_drop)
        report["baseline"] = {"path": str(args.baseline), "max_drop": args.max_drop, "notes": notes,
                              "regressions": [{"metric": r.metric, "baseline": r.baseline, "current": r.current}
                                              for r in worse]}
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        write_report(report, out)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        if worse:
            print(f"\nworse than {args.baseline} by more than {args.max_drop}:")
            print(f"{'metric':<22}{'baseline':>10}{'now':>10}{'change':>10}")
            for r in worse:
                print(f"{r.metric:<22}{r.baseline:>10.3f}{r.current:>10.3f}{r.change:>+10.3f}")
            return 1
        print(f"no headline metric worse than {args.baseline} by more than {args.max_drop}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
