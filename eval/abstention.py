"""When should the app refuse? Correct and false refusals of `rag.answer.abstain` on SQuAD 2.0.

    python -m eval.abstention --dataset ../shared/data/squad2-dev/dev-v2.0.json [--n 200] [--json]
    python -m eval.abstention --dataset ... --fit      # refit rag.answer.abstain's constants (prints them)
    python -m eval.abstention --dataset ... --n 100 --gate-model models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
    python -m eval.abstention --dataset ../shared/data/cmrc2018-trial/cmrc2018_trial.json --mismatched --n 100

The product answers the questions: every paragraph of the file (646 in the shared half of dev)
is indexed by `rag.ingest.build` (eval.harness), and each question goes through
`Pipeline.retrieve` (the configured fusion, dense weight, candidates and top_k) and
`rag.answer.abstain.evidence_score`, exactly as `Pipeline.stream` does before it decides to
refuse. A refusal (`should_abstain`) is correct on an unanswerable question (is_impossible) and
false on an answerable one. The curve lists both rates per threshold; the chosen threshold is the
one with the most correct refusals at ≤ 15 % false refusals. The reported questions
(n unanswerable + n answerable, seeded) are disjoint from those `--fit` learns from.

With `--gate-model`, a GGUF model also judges every reported question, by one of two prompts
(`--gate-prompt`): `product`, the answer prompt with its last line turned into a yes/no question
(`rag.answer.gate`, exactly what `Pipeline.stream` asks when `gate_threshold` > 0), or `passage`,
each of the top `--gate-passages` focused passages alone ("Does the passage contain the answer to
the question?"), P = the highest, judging stopped at the first passage above 0.5; or `strict`, the
same with the traps spelt out and three worked examples (STRICT_SYSTEM). Each judge —
lexical evidence score, model gate, and both combined by a logistic fitted with 2-fold
cross-validation on the reported questions — gets its AUROC, the refusal curve, the threshold with
the most correct refusals at ≤ 10 % false refusals, and the risk–coverage points. Judgements are
cached per model and prompt in `.eval-cache/abstention-gate-*.jsonl`, so a run can be extended.

`--mismatched` measures a set without unanswerable questions (CMRC 2018): a seeded half of its
paragraphs is left out of the collection, and the questions about that half must be refused
(`eval.datasets.with_mismatched_half`); `--fit --mismatched` fits the weights for CJK questions
(rag.answer.abstain.WEIGHTS_CJK) on the questions outside the reported ones.

The index is kept under `.eval-cache/abstention-index[-mismatched]` and rebuilt when the documents or the
ingest settings change. The reranker is off unless `--rerank` (then the evidence score is the
sigmoid of the cross-encoder logit, and `--fit` has nothing to fit).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from eval.datasets import Question, load_squad, with_mismatched_half
from eval.metrics.calibration import choose_threshold, fit_logistic, refusal_curve
from eval.metrics.retrieval import recall_at

if TYPE_CHECKING:
    from rag.config import Config
    from rag.models.embed import Embedder
    from rag.pipeline import Pipeline
    from rag.records import Document, Hit

SEED = 0
MAX_FALSE_REFUSALS = 0.10  # issue 12's target: at most one answerable question in ten refused
CACHE = Path(".eval-cache")


def sample(examples: Sequence[Question], n: int, *, seed: int = SEED) -> tuple[list[Question], list[Question]]:
    """(report set: n unanswerable + n answerable, fit set: all the other questions), seeded."""
    rng = random.Random(seed)
    unans = [e for e in examples if not e.answerable]
    ans = [e for e in examples if e.answerable]
    rng.shuffle(unans)
    rng.shuffle(ans)
    rest = unans[n:] + ans[n:]
    rng.shuffle(rest)
    return unans[:n] + ans[:n], rest


def retrieve(pipe: Pipeline, questions: Sequence[Question]) -> list[list[Hit]]:
    """The hits the product's evidence score reads: `Pipeline.retrieve` of each question (top_k)."""
    return [pipe.retrieve(q.question) for q in questions]


def evidence_scores(questions: Sequence[Question], hits: Sequence[Sequence[Hit]]) -> list[float]:
    from rag.answer.abstain import evidence_score

    return [evidence_score(q.question, hs) for q, hs in zip(questions, hits)]


def recall_at_k(questions: Sequence[Question], hits: Sequence[Sequence[Hit]]) -> float:
    """Mean recall of the answerable questions' gold paragraphs among their hits (all of them: top_k)."""
    found = [recall_at([h.chunk.source for h in hs], {g.source: g.gain for g in q.gold}, len(hs))
             for q, hs in zip(questions, hits) if q.answerable]
    return float(np.mean(found)) if found else 0.0


def fit(examples: Sequence[Question], hits: Sequence[Sequence[Hit]], *, limit: int = 1500,
        kinds: Sequence[str] = ("dense", "lexical"), calibrate_at: float | None = None) -> dict[str, list[float]]:
    """Sign-bounded logistic weights for rag.answer.abstain (answerable = 1), features of the best of
    the first HITS_CONSIDERED hits — the one with the highest window coverage. `kinds`: "dense"
    (with the cosine), "lexical" (without it: the weights for English questions without a dense
    score), "cjk" (without it, for CJK questions over CJK passages: the coverage weights fitted,
    the name / number / negation penalties those of "lexical"). With
    `calibrate_at`, the intercept is then moved by `calibrated`."""
    from rag.answer.abstain import HITS_CONSIDERED, hit_features

    signs = (1, 1, 1, -1, -1, -1, 1)
    xs, ys = [], []
    for e, hs in list(zip(examples, hits))[:limit]:
        feats = [hit_features(e.question, h) for h in hs[:HITS_CONSIDERED]]
        if not feats:
            continue  # nothing retrieved: the product refuses without reading features
        best = max(feats, key=lambda f: (f.window_coverage, f.dense or 0.0))
        xs.append(best.vector())
        ys.append(1 if e.answerable else 0)
    out = {}
    for kind in kinds:
        width = 7 if kind == "dense" else 6
        if kind == "cjk":
            # Mismatched paragraphs are off topic: they never miss just a name or a number, so
            # those penalties cannot be learnt from them and are borrowed from the SQuAD fit.
            from rag.answer.abstain import WEIGHTS_LEXICAL

            cov = fit_logistic([x[:3] for x in xs], ys, signs=signs[:3])
            w = [*cov[:3], *WEIGHTS_LEXICAL[3:6], cov[3]]
        else:
            w = fit_logistic([x[:width] for x in xs], ys, signs=signs[:width])
        if calibrate_at is not None:
            w = calibrated(w, [x[:width] for x in xs], ys, threshold=calibrate_at)
        out[kind] = [round(v, 3) for v in w]
    return out


def calibrated(w: Sequence[float], xs: Sequence[Sequence[float]], ys: Sequence[int], *, threshold: float,
               max_false: float = MAX_FALSE_REFUSALS) -> list[float]:
    """`w` with its intercept moved so that refusing below `threshold` (the product's one
    abstain_threshold) is the fit set's best point at ≤ `max_false` false refusals: one threshold
    for every language, each language's weights calibrated to it on its own fitting data.

    >>> [round(v, 6) for v in calibrated([1.0, 0.0], [[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1], threshold=0.5)]
    [1.0, -2.0]
    """
    from rag.text import logistic

    scores = [logistic(sum(a * b for a, b in zip(w[:-1], x)) + w[-1]) for x in xs]
    pts = refusal_curve([s for s, y in zip(scores, ys) if not y], [s for s, y in zip(scores, ys) if y],
                        sorted(set(scores)))
    cut = choose_threshold(pts, max_false=max_false)["threshold"]
    if cut <= 0.0:
        return list(w)
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    return [*w[:-1], w[-1] + logit(threshold) - logit(cut)]


PASSAGE_QUESTION = {
    "en": "Does the passage contain the answer to the question? Reply yes or no.",
    "zh": "这段文字是否包含这个问题的答案？只回答 yes 或 no。",
}


# The strict judge: the traps of questions written to look answerable, spelt out, and three worked
# examples (written for this project) as earlier turns, so that the model has seen a "no" whose
# passage shares every word but one with the question. The fixed prefix is read once and then found
# in llama.cpp's KV cache.
STRICT_SYSTEM = (
    "You check whether a passage answers a question. Reply yes only if the passage states the answer to "
    "exactly this question. Reply no when the passage is about the same topic but does not say it: the "
    "question names a different person, place, year or number than the passage, asks about something the "
    "passage never mentions, or turns the passage's statement around (not, never, first instead of last). "
    "Reply with one word: yes or no.")
STRICT_EXAMPLES = (
    ("The bridge was opened in 1932 by the mayor, Anna Berg. It carries four lanes of traffic.",
     "Who opened the bridge in 1932?", "yes"),
    ("The bridge was opened in 1932 by the mayor, Anna Berg. It carries four lanes of traffic.",
     "Who designed the bridge?", "no"),
    ("The bridge was opened in 1932 by the mayor, Anna Berg. It carries four lanes of traffic.",
     "How many lanes did the bridge carry before 1932?", "no"),
)


def passage_messages(question: str, passage: str, *, strict: bool = False) -> list[dict[str, str]]:
    """The one-passage judge prompt: passage first, then the question, then the yes/no line;
    `strict` adds STRICT_SYSTEM and the worked examples before it."""
    from rag.answer.prompt import answer_language

    def ask(p: str, q: str) -> dict[str, str]:
        return {"role": "user", "content": f"Passage:\n{p}\n\nQuestion: {q}\n\n{PASSAGE_QUESTION[answer_language(q)]}"}

    if not strict:
        return [{"role": "system", "content": "You judge whether a passage answers a question. Reply yes or no."},
                ask(passage, question)]
    shots = [m for p, q, a in STRICT_EXAMPLES for m in (ask(p, q), {"role": "assistant", "content": a})]
    return [{"role": "system", "content": STRICT_SYSTEM}, *shots, ask(passage, question)]


def gate_probability(generator, question: str, hits: Sequence[Hit], *, prompt_kind: str, passages: int,
                     passage_tokens: int, answer_tokens: int) -> float:
    """P(the hits answer the question) from the model, by the product's gate prompt or one passage at a time."""
    from rag.answer.focus import focus_passages
    from rag.answer.gate import answerable_probability
    from rag.answer.prompt import build_prompt

    if not hits:
        return 0.0
    focused = focus_passages(question, hits, budget=passage_tokens, count_tokens=generator.count_tokens)
    if prompt_kind == "product":
        prompt = build_prompt(question, hits, count_tokens=generator.count_tokens,
                              context_window=generator.context_window, answer_tokens=answer_tokens, passages=focused)
        p = answerable_probability(generator, prompt, question)
        return 0.0 if p is None else p
    best = 0.0
    for text in focused[:passages]:
        best = max(best, generator.yes_probability(passage_messages(question, text, strict=prompt_kind == "strict")))
        if best >= 0.5:  # settled: a passage answers it
            break
    return best


def judge_report(name: str, scores: Sequence[float], report: Sequence[Question]) -> dict:
    """AUROC, refusal curve, the ≤ 10 %-false threshold and risk–coverage of one judge's scores."""
    from eval.metrics.calibration import abstention_curve, auroc

    answerable = [e.answerable for e in report]
    thresholds = sorted({round(float(v), 3) for v in scores} | {round(t, 2) for t in np.arange(0.05, 1.0, 0.05)})
    s_unans = [s for e, s in zip(report, scores) if not e.answerable]
    s_ans = [s for e, s in zip(report, scores) if e.answerable]
    chosen = choose_threshold(refusal_curve(s_unans, s_ans, thresholds), max_false=MAX_FALSE_REFUSALS)
    rc = abstention_curve(scores, answerable, [not a for a in answerable],
                          thresholds=[round(t, 2) for t in np.arange(0.1, 1.0, 0.1)])
    return {"judge": name, "auroc": auroc([int(a) for a in answerable], list(scores)), "chosen": chosen,
            "risk_coverage": [{"threshold": p.threshold, "coverage": p.coverage, "risk": p.risk} for p in rc]}


def combined_scores(features: Sequence[Sequence[float]], labels: Sequence[int], *, seed: int = SEED) -> list[float]:
    """Logistic over the judges' scores, each question scored by a model fitted on the other fold."""
    from rag.text import logistic

    idx = list(range(len(labels)))
    random.Random(seed).shuffle(idx)
    folds = [idx[::2], idx[1::2]]
    out = [0.0] * len(labels)
    for k in (0, 1):
        train, test = folds[1 - k], folds[k]
        w = fit_logistic([list(features[i]) for i in train], [labels[i] for i in train],
                         signs=tuple(1 for _ in features[0]))
        for i in test:
            out[i] = logistic(sum(a * b for a, b in zip(w, features[i])) + w[-1])
    return out


def choose_gate(rows: Sequence[dict], *, abstain_threshold: float, max_false: float = MAX_FALSE_REFUSALS,
                grid: Sequence[float] = tuple(round(0.3 + 0.01 * i, 2) for i in range(70))) -> dict:
    """The gate rule (threshold, rescue) with the most correct refusals at ≤ `max_false` false
    refusals over `rows` ({answerable, evidence, p_yes}), the evidence score refusing below
    `abstain_threshold` as in the product; among equals the lowest rescue (answers most weak-evidence
    questions the model vouches for), then the lowest threshold. rescue None: no rescue.

    >>> rows = [{"answerable": a, "evidence": e, "p_yes": p} for a, e, p in
    ...         [(True, 0.2, 0.9), (True, 0.6, 0.7), (False, 0.6, 0.4), (False, 0.2, 0.6)]]
    >>> choose_gate(rows, abstain_threshold=0.39, grid=(0.5, 0.65, 0.8))
    {'threshold': 0.5, 'rescue': 0.65, 'correct_refusals': 1.0, 'false_refusals': 0.0, 'n': 4}
    """
    from rag.answer.gate import GateRule

    labels = [bool(r["answerable"]) for r in rows]
    best: tuple | None = None
    for t in grid:
        for rescue in [*(v for v in grid if v >= t), None]:
            rule = GateRule(t, rescue)
            refused = [rule.refuses(r["p_yes"], weak=r["evidence"] < abstain_threshold) for r in rows]
            correct = sum(f for f, a in zip(refused, labels) if not a) / max(1, labels.count(False))
            false = sum(f for f, a in zip(refused, labels) if a) / max(1, labels.count(True))
            if false > max_false:
                continue
            key = (correct, -(rescue if rescue is not None else 2.0), -t)
            if best is None or key > best[0]:
                best = (key, {"threshold": t, "rescue": rescue, "correct_refusals": round(correct, 3),
                              "false_refusals": round(false, 3), "n": len(rows)})
    return best[1] if best else {"threshold": 0.0, "rescue": None, "correct_refusals": 0.0, "false_refusals": 0.0,
                                 "n": len(rows)}


def cached_gate(path: Path, report: Sequence[Question], hits: Sequence[Sequence[Hit]], judge) -> list[float]:
    """`judge(question, hits)` for each question, read from and appended to the JSONL cache at `path`."""
    done: dict[str, float] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            done[row["id"]] = row["p_yes"]
    path.parent.mkdir(parents=True, exist_ok=True)
    # Answerable and unanswerable questions alternate, so a cache cut short is still a balanced sample.
    seen = {True: 0, False: 0}
    rank = []  # position of each question among those of its kind
    for e in report:
        rank.append(seen[e.answerable])
        seen[e.answerable] += 1
    order = sorted(range(len(report)), key=lambda i: (rank[i], report[i].answerable))
    with path.open("a", encoding="utf-8") as fh:
        for n, i in enumerate(order, 1):
            e = report[i]
            if e.id not in done:
                done[e.id] = judge(e.question, hits[i])
                fh.write(json.dumps({"id": e.id, "p_yes": round(done[e.id], 6)}) + "\n")
                fh.flush()
                print(f"gate {n}/{len(report)}", file=sys.stderr, flush=True)
    return [done[e.id] for e in report]


def open_pipeline(docs: Sequence[Document], cfg: Config, embedder: Embedder, *,
                  index_dir: Path = CACHE / "abstention-index") -> Pipeline:
    """A Pipeline over an index of `docs` (kept in `index_dir`); no generator, since only the
    evidence score before generation is measured. It reranks when cfg.rerank says so."""
    from eval.harness import index_documents
    from rag.pipeline import Pipeline

    return Pipeline(index_documents(docs, cfg, embedder, index_dir), embedder=embedder, generator=None)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eval.abstention", description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", help="SQuAD 2.0 JSON (or any SQuAD-format file, with --mismatched)")
    ap.add_argument("--mismatched", action="store_true",
                    help="leave a seeded half of the paragraphs out; questions about it must be refused")
    ap.add_argument("--n", type=int, default=200, help="unanswerable and answerable questions reported, each")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--fit", action="store_true", help="refit rag.answer.abstain's weights on the other questions")
    ap.add_argument("--rerank", action="store_true", help="rerank with the configured cross-encoder")
    ap.add_argument("--config", help="TOML config file")
    ap.add_argument("--gate-model", help="a GGUF model that also judges each question (see the docstring)")
    ap.add_argument("--gate-prompt", choices=("product", "passage", "strict"), default="passage")
    ap.add_argument("--gate-passages", type=int, default=3, help="passages judged one by one (--gate-prompt passage)")
    ap.add_argument("--rows", type=Path, help="with --gate-model: write each reported question's evidence score "
                                               "and P(yes) to this JSONL file (the input of --choose-gate)")
    ap.add_argument("--choose-gate", type=Path, nargs="+", metavar="ROWS",
                    help="choose the gate rule (rag.answer.gate.GateRule) over these --rows files pooled, and stop")
    args = ap.parse_args(argv)
    from rag.config import load_config

    if args.choose_gate:
        rows = [json.loads(line) for f in args.choose_gate for line in f.read_text(encoding="utf-8").splitlines()]
        print(json.dumps(choose_gate(rows, abstain_threshold=load_config(args.config).abstain_threshold)))
        return 0
    if not args.dataset:
        ap.error("--dataset is required (unless --choose-gate)")

    from rag.errors import RagError
    from rag.models.factory import load_embedder

    try:
        cfg = load_config(args.config, overrides={"rerank": args.rerank})
        qs = load_squad(args.dataset)
        if args.mismatched:
            qs = with_mismatched_half(qs, seed=SEED)
        suffix = "-mismatched" if args.mismatched else ""
        embedder = load_embedder(cfg)
        pipe = open_pipeline(qs.docs, cfg, embedder, index_dir=CACHE / f"abstention-index{suffix}")
    except RagError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report, rest = sample(qs.questions, args.n)
    if args.fit:
        rest = rest[:1500]
        if args.mismatched:  # weights for CJK questions, calibrated to the shared abstain_threshold
            print(json.dumps(fit(rest, retrieve(pipe, rest), kinds=("cjk",), calibrate_at=cfg.abstain_threshold)))
        else:
            print(json.dumps(fit(rest, retrieve(pipe, rest))))
        return 0
    hits = retrieve(pipe, report)
    recall = recall_at_k(report, hits)
    scores = evidence_scores(report, hits)
    s_unans = [s for e, s in zip(report, scores) if not e.answerable]
    s_ans = [s for e, s in zip(report, scores) if e.answerable]
    points = refusal_curve(s_unans, s_ans, [round(t, 2) for t in np.arange(0.01, 1.0, 0.01)])
    chosen = choose_threshold(points, max_false=MAX_FALSE_REFUSALS)
    shown = [p for p in points if round(p["threshold"] * 100) % 5 == 0]
    at_product = refusal_curve(s_unans, s_ans, [cfg.abstain_threshold])[0]
    judges = [judge_report("lexical evidence score", scores, report)]
    if args.gate_model:
        from rag.models.llama import LlamaCppGenerator

        gen = LlamaCppGenerator(args.gate_model, n_ctx=cfg.n_ctx, temperature=0.0)
        tag = f"{Path(args.gate_model).stem}-{args.gate_prompt}{args.gate_passages}-{cfg.passage_tokens}{suffix}"
        gate = cached_gate(CACHE / f"abstention-gate-{tag}.jsonl", report, hits, lambda q, hs: gate_probability(
            gen, q, hs, prompt_kind=args.gate_prompt, passages=args.gate_passages,
            passage_tokens=cfg.passage_tokens, answer_tokens=cfg.max_answer_tokens))
        judges.append(judge_report(f"gate {Path(args.gate_model).name} ({args.gate_prompt})", gate, report))
        labels = [int(e.answerable) for e in report]
        judges.append(judge_report("combined (2-fold logistic)", combined_scores(
            [(s, g) for s, g in zip(scores, gate)], labels), report))
        if args.rows:
            args.rows.write_text("".join(json.dumps({"set": qs.name + suffix, "id": e.id, "answerable": e.answerable,
                                                     "evidence": round(s, 6), "p_yes": g}) + "\n"
                                         for e, s, g in zip(report, scores, gate)), encoding="utf-8")
    if args.json:
        print(json.dumps({"n_unanswerable": len(s_unans), "n_answerable": len(s_ans), f"recall_at_{cfg.top_k}": recall,
                          "curve": shown, "chosen": chosen, "at_abstain_threshold": at_product, "judges": judges}))
        return 0
    print(f"{qs.name}: {len(s_unans)} unanswerable, {len(s_ans)} answerable; {len(qs.docs)} paragraphs; "
          f"answerable gold paragraph in top {cfg.top_k}: {recall:.3f}")
    print(f"{'threshold':>9} {'correct refusals':>17} {'false refusals':>15}")
    for p in shown:
        print(f"{p['threshold']:>9.2f} {p['correct_refusals']:>17.3f} {p['false_refusals']:>15.3f}")
    print(f"at abstain_threshold {cfg.abstain_threshold:.2f} (rag.config): "
          f"correct {at_product['correct_refusals']:.3f}, false {at_product['false_refusals']:.3f}")
    print(f"chosen (most correct refusals at ≤ {MAX_FALSE_REFUSALS:.0%} false): threshold {chosen['threshold']:.2f} → "
          f"correct {chosen['correct_refusals']:.3f}, false {chosen['false_refusals']:.3f} (goal: ≥ 0.80 at ≤ 0.10)")
    for j in judges:
        c = j["chosen"]
        rc = "  ".join(f"{p['threshold']:.1f}:{p['coverage']:.2f}/{p['risk']:.2f}" for p in j["risk_coverage"])
        print(f"{j['judge']}: AUROC {j['auroc']:.3f}; at ≤ {MAX_FALSE_REFUSALS:.0%} false: threshold "
              f"{c['threshold']:.3f} → correct {c['correct_refusals']:.3f}, false {c['false_refusals']:.3f}\n"
              f"  risk–coverage (threshold:coverage/risk) {rc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
