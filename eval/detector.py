"""How good is the verifier as a hallucination detector? Precision/recall on labelled responses.

    python -m eval.detector --dataset ../shared/data/halueval-qa/qa_one-turn_data.json --format halueval --split half
    python -m eval.detector --dataset ../shared/data/begin-dev/begin_dev_wow.tsv --format begin --split half
    python -m eval.detector --fit            # refit the offline verifier's constants (prints them)

Each example is scored as `verifier.support(response, [context])`; the hallucination score is
1 - support and a response is flagged when support < `support_threshold` (rag.config). The
positive class is "hallucinated". Reported: balanced accuracy, precision, recall, F1 and AUROC at
the product threshold, and the best threshold found on the data. With `--split half` examples are
grouped by context (HaluEval's right and hallucinated answer share one), shuffled with a fixed
seed, the threshold is chosen on the first half and everything is measured on the second.

The metric functions (eval.metrics.calibration) are pure and take plain lists. Deliberately skipped:
confidence intervals and per-source breakdowns.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from eval.datasets import DetectorExample, begin_label_counts, load_begin, load_detector, load_halueval_qa
from eval.metrics.calibration import auroc, balanced_accuracy, best_threshold, fit_logistic, precision_recall_f1

SEED = 0
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# Published figures on *other* data sets, printed for scale only.
ANCHORS = ("HHEM-2.1-open: balanced accuracy 76.6 on AggreFact (SOTA split); "
           "RAGTruth response-level F1: GPT-4 prompting 63.4, lexical-overlap floor ~61")


# ---------------------------------------------------------------------------------------------
# Figures (the metric functions are eval.metrics.calibration's; positive class = 1 = hallucinated)

def metrics(labels: Sequence[int], supports: Sequence[float], threshold: float) -> dict[str, float]:
    """All the reported figures at one support threshold."""
    flagged = [s < threshold for s in supports]
    p, r, f1 = precision_recall_f1(labels, flagged)
    return {"n": len(labels), "balanced_accuracy": balanced_accuracy(labels, flagged), "precision": p,
            "recall": r, "f1": f1, "auroc": auroc(labels, [1 - s for s in supports]), "threshold": threshold}


def split_half(examples: Sequence[DetectorExample], *, seed: int = SEED) -> tuple[list[int], list[int]]:
    """Indices of two halves, grouped by context so paired answers never straddle the split."""
    contexts = list(dict.fromkeys(e.context for e in examples))
    random.Random(seed).shuffle(contexts)
    first = set(contexts[: len(contexts) // 2])
    a = [i for i, e in enumerate(examples) if e.context in first]
    b = [i for i, e in enumerate(examples) if e.context not in first]
    return a, b


# ---------------------------------------------------------------------------------------------
# Running a verifier

def _progress(items, total: int, desc: str):
    if total <= 200:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, total=total, desc=desc, file=sys.stderr, leave=False)


def score_examples(verifier, examples: Sequence[DetectorExample]) -> list[float]:
    """support(response, [context]) for every example."""
    return [float(verifier.support(e.response, [e.context]))
            for e in _progress(examples, len(examples), verifier.name)]


def check_flags(verifier, examples: Sequence[DetectorExample], threshold: float) -> list[bool]:
    """The product's decision: the response, each sentence citing the context as [1], goes through
    `check_sentences` (support threshold plus the number, unit and table-row checks); flagged when any
    sentence is unsupported."""
    from rag.answer.verify import check_sentences, split_sentences

    return [any(not c.supported for c in check_sentences([(s, (1,)) for s in split_sentences(e.response)],
                                                         [e.context], verifier, threshold=threshold))
            for e in examples]


def flag_metrics(labels: Sequence[int], flagged: Sequence[bool]) -> dict[str, float]:
    p, r, f1 = precision_recall_f1(labels, flagged)
    return {"balanced_accuracy": balanced_accuracy(labels, flagged), "precision": p, "recall": r, "f1": f1}


def evaluate(labels: Sequence[int], supports: Sequence[float], threshold: float, *,
             split: str | None = None, groups: tuple[list[int], list[int]] | None = None) -> dict:
    """The report: product-threshold metrics plus best_threshold; with split='half', both are
    measured on the second half and best_threshold is chosen on the first."""
    if split == "half":
        if groups is None:
            raise ValueError("split='half' needs the two index groups")
        a, b = groups
        t_best, _ = best_threshold([labels[i] for i in a], [supports[i] for i in a])
        lb, sb = [labels[i] for i in b], [supports[i] for i in b]
        out = metrics(lb, sb, threshold)
        at_best = metrics(lb, sb, t_best)
    else:
        t_best, _ = best_threshold(labels, supports)
        out = metrics(labels, supports, threshold)
        at_best = metrics(labels, supports, t_best)
    out["best_threshold"] = t_best
    out["at_best"] = {k: at_best[k] for k in ("balanced_accuracy", "precision", "recall", "f1")}
    out["split"] = split or "none"
    return out


def build_verifier(spec: str, *, use_embedder: bool):
    """The verifier `spec` names, scoring exactly (no verdict threshold: AUROC needs every score)."""
    from rag.answer.verify import load_verifier
    from rag.config import load_config

    embedder = None
    if use_embedder and (spec == "offline"):
        from rag.models.factory import load_embedder

        embedder = load_embedder(load_config())
    return load_verifier(spec, embedder=embedder)


# ---------------------------------------------------------------------------------------------
# Fitting the offline verifier's constants

# Signs each offline feature's weight must have (SupportFeatures.vector order): coverage and
# similarity can only raise support; unsupported tokens, missing numbers and names only lower it.
FEATURE_SIGNS = (1, 1, 1, -1, -1, -1, 1)


def fit(data_dir: Path, *, use_embedder: bool = True) -> dict[str, list[float]]:
    """Weights for OfflineVerifier from the first halves of HaluEval QA and BEGIN (equal weight each).

    Prints held-out (second-half) figures per set. Returns {"lexical": [...], "embed": [...]}:
    paste them into WEIGHTS_LEXICAL / WEIGHTS_EMBED in rag/answer/verify/offline.py.
    """
    from rag.answer.verify import OfflineVerifier, score_features

    sets = {"halueval": load_halueval_qa(data_dir / "halueval-qa" / "qa_one-turn_data.json"),
            "begin": load_begin(data_dir / "begin-dev" / "begin_dev_wow.tsv")}
    embedder = build_verifier("offline", use_embedder=True).embedder if use_embedder else None
    variants = {"lexical": OfflineVerifier(None)} | ({"embed": OfflineVerifier(embedder)} if embedder else {})
    result: dict[str, list[float]] = {}
    for kind, verifier in variants.items():
        train_x, train_y, train_w, held = [], [], [], {}
        for name, examples in sets.items():
            feats = [verifier.features(e.response, [e.context])
                     for e in _progress(examples, len(examples), f"{kind} {name}")]
            a, b = split_half(examples)
            # Rows without a similarity (number-only or CJK claims) are scored by the lexical model.
            rows = [i for i in a if kind == "lexical" or feats[i].similarity is not None]
            for i in rows:
                train_x.append(feats[i].vector())
                train_y.append(1 - examples[i].label)  # the model predicts support
                train_w.append(1.0 / len(rows))
            held[name] = ([feats[i] for i in b], [examples[i].label for i in b])
        mean_w = sum(train_w) / len(train_w)
        w = fit_logistic(train_x, train_y, signs=FEATURE_SIGNS[: len(train_x[0])],
                         sample_weight=[v / mean_w for v in train_w])
        w = [round(v, 3) for v in w]
        result[kind] = w
        for name, (feats_b, labels_b) in held.items():
            sup = [score_features(f, weights=w if f.similarity is not None or kind == "lexical"
                                  else result["lexical"]) for f in feats_b]
            t, _ = best_threshold(labels_b, sup)
            m = metrics(labels_b, sup, 0.5)
            print(f"{kind:8s} {name:9s} held-out AUROC {m['auroc']:.3f}  bal.acc@0.5 {m['balanced_accuracy']:.3f}"
                  f"  best t {t:.3f}", file=sys.stderr)
    return result


# ---------------------------------------------------------------------------------------------
# CLI

def _report(out: dict, *, dataset: str, spec: str) -> str:
    split = " (second half; threshold chosen on the first)" if out["split"] == "half" else ""
    ab = out["at_best"]
    lines = [
        f"dataset {dataset}  verifier {spec}  n {out['n']}{split}",
        f"at support_threshold {out['threshold']:.3f}: balanced accuracy {out['balanced_accuracy']:.3f}  "
        f"precision {out['precision']:.3f}  recall {out['recall']:.3f}  F1 {out['f1']:.3f}",
        f"AUROC {out['auroc']:.3f}",
        *([f"with the product's sentence checks (numbers, units, table rows): balanced accuracy "
           f"{out['checks']['balanced_accuracy']:.3f}  precision {out['checks']['precision']:.3f}  "
           f"recall {out['checks']['recall']:.3f}  F1 {out['checks']['f1']:.3f}"] if "checks" in out else []),
        f"best threshold {out['best_threshold']:.3f}: balanced accuracy {ab['balanced_accuracy']:.3f}  "
        f"precision {ab['precision']:.3f}  recall {ab['recall']:.3f}  F1 {ab['f1']:.3f}",
        f"anchors (other data sets): {ANCHORS}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eval.detector", description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", help="path of the labelled file")
    ap.add_argument("--format", choices=("halueval", "begin", "jsonl"), default="jsonl")
    ap.add_argument("--verifier", default=None, help="offline | nli:NAME (default: the configured one)")
    ap.add_argument("--no-embedder", action="store_true", help="offline verifier without embeddings")
    ap.add_argument("--threshold", type=float, default=None, help="default: support_threshold from config")
    ap.add_argument("--split", choices=("half",), default=None)
    ap.add_argument("--with-question", action="store_true", help="HaluEval: prefix the question to the answer")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--fit", action="store_true", help="refit the offline verifier on HaluEval + BEGIN first halves")
    ap.add_argument("--data-dir", default=str(SHARED_DATA), help="for --fit")
    args = ap.parse_args(argv)

    from rag.config import load_config
    from rag.errors import RagError

    try:
        if args.fit:
            weights = fit(Path(args.data_dir), use_embedder=not args.no_embedder)
            print(json.dumps(weights))
            return 0
        if not args.dataset:
            ap.error("--dataset is required (or --fit)")
        cfg = load_config()
        spec = args.verifier or cfg.verifier
        threshold = cfg.support_threshold if args.threshold is None else args.threshold
        examples = load_detector(args.dataset, args.format, with_question=args.with_question)
        if args.format == "begin" and not args.json:
            print("BEGIN labels:", begin_label_counts(args.dataset), "(Generic counts as hallucinated)")
        verifier = build_verifier(spec, use_embedder=not args.no_embedder)  # exact scores, for AUROC
        supports = score_examples(verifier, examples)
        labels = [e.label for e in examples]
        groups = split_half(examples) if args.split == "half" else None
        out = evaluate(labels, supports, threshold, split=args.split, groups=groups)
        # The product's verdicts, as it computes them (the offline verifier settles at the threshold).
        product = verifier.at_threshold(threshold) if hasattr(verifier, "at_threshold") else verifier
        flags = check_flags(product, examples, threshold)
        held = groups[1] if groups else range(len(examples))
        out["checks"] = flag_metrics([labels[i] for i in held], [flags[i] for i in held])
    except RagError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()
                          if k not in ("at_best", "checks")} | {"checks": out["checks"]}))
    else:
        print(_report(out, dataset=args.dataset, spec=spec + (" (no embedder)" if args.no_embedder else "")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
