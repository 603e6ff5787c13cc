"""When should the app refuse? Correct and false refusals of `rag.answer.abstain` on SQuAD 2.0.

    python -m eval.abstention --dataset ../shared/data/squad2-dev/dev-v2.0.json [--n 200] [--json]
    python -m eval.abstention --dataset ... --fit      # refit rag.answer.abstain's constants (prints them)

Retrieval runs over every paragraph of the file (646 in the shared half of dev): BM25 (bm25s,
k1 1.2, b .75, `rag.index.tokenize` tokens) and all-MiniLM-L6-v2 cosine, fused as 0.7·bm25/max(bm25)
+ 0.3·cosine; the top 5 become `Hit`s. Each question gets `evidence_score(question, hits)`.
A refusal is correct on an unanswerable question (is_impossible) and false on an answerable one.
The curve lists both rates per threshold; the chosen threshold is the one with the most correct
refusals at ≤ 15 % false refusals. The reported questions (n unanswerable + n answerable,
seeded) are disjoint from those `--fit` learns from.

Paragraph and question embeddings are cached under `.eval-cache/` (keyed by model and texts).
Deliberately skipped: the reranker branch (sigmoid of the cross-encoder logit), which needs the
reranker model on disk.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from eval.datasets import QAExample, load_squad, squad_paragraphs

SEED = 0
MAX_FALSE_REFUSALS = 0.15
CACHE = Path(".eval-cache")


def sample(examples: Sequence[QAExample], n: int, *, seed: int = SEED) -> tuple[list[QAExample], list[QAExample]]:
    """(report set: n unanswerable + n answerable, fit set: all the other questions), seeded."""
    rng = random.Random(seed)
    unans = [e for e in examples if not e.answers]
    ans = [e for e in examples if e.answers]
    rng.shuffle(unans)
    rng.shuffle(ans)
    rest = unans[n:] + ans[n:]
    rng.shuffle(rest)
    return unans[:n] + ans[:n], rest


def _embed_cached(embedder, texts: list[str], tag: str) -> np.ndarray:
    key = hashlib.sha256(("\x00".join([embedder.name, *texts])).encode()).hexdigest()[:16]
    path = CACHE / f"abstention-{tag}-{key}.npy"
    if path.exists():
        return np.load(path)
    vecs = np.asarray(embedder.embed(texts), dtype=np.float32)
    CACHE.mkdir(exist_ok=True)
    np.save(path, vecs)
    return vecs


def retrieve(paragraphs: list[tuple[tuple[str, int], str]], questions: list[str], embedder, *, k: int = 5):
    """Top-k `Hit`s per question over all paragraphs (see the module docstring for the fusion)."""
    import bm25s

    from rag.records import Chunk, Hit
    from rag.index.tokenize import tokenize

    texts = [t for _, t in paragraphs]
    bm25 = bm25s.BM25(k1=1.2, b=0.75)
    bm25.index([tokenize(t) or ["\x00"] for t in texts], show_progress=False)
    n = len(texts)
    doc_vecs = _embed_cached(embedder, texts, "docs")
    q_vecs = _embed_cached(embedder, list(questions), "questions")
    found, scores = bm25.retrieve([tokenize(q) or ["\x00"] for q in questions], k=n, show_progress=False)
    chunks = [Chunk(id=f"{title}#{i}", source=f"{title} ¶{i}", text=t, start=0, end=len(t), pages=())
              for (title, i), t in paragraphs]
    out = []
    for qi in range(len(questions)):
        bm = np.zeros(n, dtype=np.float64)
        bm[found[qi]] = scores[qi]
        dense = doc_vecs @ q_vecs[qi]
        fused = 0.7 * bm / max(bm.max(), 1e-9) + 0.3 * dense
        top = np.argsort(-fused)[:k]
        bm_rank = {int(d): r + 1 for r, d in enumerate(found[qi][:100])}
        dense_rank = {int(d): r + 1 for r, d in enumerate(np.argsort(-dense)[:100])}
        out.append([Hit(chunks[d], score=float(fused[d]), bm25_score=float(bm[d]), bm25_rank=bm_rank.get(int(d)),
                        dense_score=float(dense[d]), dense_rank=dense_rank.get(int(d)), fused_score=float(fused[d]),
                        paginated=False) for d in top])
    return out


def curve(scores_unans: Sequence[float], scores_ans: Sequence[float],
          thresholds: Sequence[float]) -> list[dict[str, float]]:
    """Correct-refusal rate (unanswerable, score < t) and false-refusal rate (answerable) per t.

    >>> curve([0.1, 0.5], [0.4, 0.9], [0.45])
    [{'threshold': 0.45, 'correct_refusals': 0.5, 'false_refusals': 0.5}]
    """
    return [{"threshold": t,
             "correct_refusals": sum(s < t for s in scores_unans) / max(len(scores_unans), 1),
             "false_refusals": sum(s < t for s in scores_ans) / max(len(scores_ans), 1)} for t in thresholds]


def choose_threshold(points: Sequence[dict[str, float]], *, max_false: float = MAX_FALSE_REFUSALS) -> dict[str, float]:
    """The point with the most correct refusals among those with false refusals ≤ max_false
    (the lowest threshold among equals); threshold 0.0 (never refuse) if none qualifies."""
    ok = [p for p in points if p["false_refusals"] <= max_false]
    if not ok:
        return {"threshold": 0.0, "correct_refusals": 0.0, "false_refusals": 0.0}
    return max(ok, key=lambda p: (p["correct_refusals"], -p["threshold"]))


def fit(examples: Sequence[QAExample], hits: Sequence[Sequence], *, limit: int = 1500) -> dict[str, list[float]]:
    """Sign-bounded logistic weights for rag.answer.abstain (answerable = 1), features of the best of
    the first HITS_CONSIDERED hits — the one with the highest window coverage."""
    from eval.detector import fit_logistic
    from rag.answer.abstain import HITS_CONSIDERED, hit_features

    signs = (1, 1, 1, -1, -1, -1, 1)
    xs_dense, xs_lex, ys = [], [], []
    for e, hs in list(zip(examples, hits))[:limit]:
        feats = [hit_features(e.question, h) for h in hs[:HITS_CONSIDERED]]
        best = max(feats, key=lambda f: (f.window_coverage, f.dense or 0.0))
        xs_dense.append(best.vector())
        xs_lex.append(best.vector()[:6])
        ys.append(1 if e.answers else 0)
    dense = fit_logistic(xs_dense, ys, signs=signs)
    lexical = fit_logistic(xs_lex, ys, signs=signs[:6])
    return {"dense": [round(v, 3) for v in dense], "lexical": [round(v, 3) for v in lexical]}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eval.abstention", description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True, help="SQuAD 2.0 JSON")
    ap.add_argument("--n", type=int, default=200, help="unanswerable and answerable questions reported, each")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--fit", action="store_true", help="refit rag.answer.abstain's weights on the other questions")
    args = ap.parse_args(argv)

    from rag.answer.abstain import evidence_score
    from rag.config import load_config
    from rag.models.embed import load_embedder
    from rag.errors import RagError

    try:
        examples = load_squad(args.dataset)
        paragraphs = squad_paragraphs(args.dataset)
        embedder = load_embedder(load_config())
    except RagError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report, rest = sample(examples, args.n)
    if args.fit:
        rest = rest[:1500]
        print(json.dumps(fit(rest, retrieve(paragraphs, [e.question for e in rest], embedder))))
        return 0
    hits = retrieve(paragraphs, [e.question for e in report], embedder)
    gold = [{c.chunk.id for c in hs} for hs in hits]
    recall5 = np.mean([f"{e.gold[0][0]}#{e.gold[0][1]}" in g for e, g in zip(report, gold) if e.answers])
    scores = [evidence_score(e.question, hs) for e, hs in zip(report, hits)]
    s_unans = [s for e, s in zip(report, scores) if not e.answers]
    s_ans = [s for e, s in zip(report, scores) if e.answers]
    points = curve(s_unans, s_ans, [round(t, 2) for t in np.arange(0.01, 1.0, 0.01)])
    chosen = choose_threshold(points)
    shown = [p for p in points if round(p["threshold"] * 100) % 5 == 0]
    if args.json:
        print(json.dumps({"n_unanswerable": len(s_unans), "n_answerable": len(s_ans), "recall_at_5": float(recall5),
                          "curve": shown, "chosen": chosen}))
        return 0
    print(f"SQuAD 2.0: {len(s_unans)} unanswerable, {len(s_ans)} answerable; {len(paragraphs)} paragraphs; "
          f"answerable gold paragraph in top 5: {recall5:.3f}")
    print(f"{'threshold':>9} {'correct refusals':>17} {'false refusals':>15}")
    for p in shown:
        print(f"{p['threshold']:>9.2f} {p['correct_refusals']:>17.3f} {p['false_refusals']:>15.3f}")
    print(f"chosen (most correct refusals at ≤ {MAX_FALSE_REFUSALS:.0%} false): threshold {chosen['threshold']:.2f} → "
          f"correct {chosen['correct_refusals']:.3f}, false {chosen['false_refusals']:.3f} (goal: ≥ 0.80 at ≤ 0.15)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
