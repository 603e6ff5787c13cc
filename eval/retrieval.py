"""Retrieval quality on a public dataset: BM25, dense and hybrid side by side.

    python -m eval.retrieval --dataset PATH [--format squad|cranfield|jsonl] [--k 1,5,20] [--json]

Builds a temporary index from the dataset's passages with the same code as `rag.ingest.build` (SQuAD:
one document per paragraph; Cranfield: one per abstract; jsonl: `passages` [{title, text}] per
line), asks every answerable question and reports recall@k, MRR and nDCG@10 per retriever.
Metrics are computed over documents: chunk hits are collapsed to their document's first rank.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from eval.datasets import FORMATS, QASet, guess_format, load_qa
from rag.errors import RagError

MODES = ("bm25", "dense", "hybrid")


def retrieval_queries(qs: QASet) -> list[tuple[str, dict[str, float]]]:
    """(question, {source: gain}) of every answerable question with a relevant document, in file order."""
    out = []
    for q in qs.questions:
        gains = {g.source: g.gain for g in q.gold}
        if q.answerable and any(v > 0 for v in gains.values()):
            out.append((q.question, gains))
    return out


# --- metrics (pure) ----------------------------------------------------------------------------------


def recall_at(ranked: Sequence[str], gains: dict[str, float], k: int) -> float:
    """Share of relevant documents in the top k (= hit rate when there is one gold document).

    >>> recall_at(["a", "b", "c"], {"b": 1, "z": 1}, 2)
    0.5
    """
    relevant = {d for d, g in gains.items() if g > 0}
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


def reciprocal_rank(ranked: Sequence[str], gains: dict[str, float]) -> float:
    """>>> reciprocal_rank(["a", "b"], {"b": 1})
    0.5
    """
    for i, d in enumerate(ranked, start=1):
        if gains.get(d, 0) > 0:
            return 1.0 / i
    return 0.0


def ndcg_at(ranked: Sequence[str], gains: dict[str, float], k: int = 10) -> float:
    """nDCG with linear gains and log2 discounts.

    >>> round(ndcg_at(["x", "a"], {"a": 1.0}, 10), 4)
    0.6309
    """
    dcg = sum(gains.get(d, 0.0) / math.log2(i + 1) for i, d in enumerate(ranked[:k], start=1))
    ideal = sorted((g for g in gains.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 1) for i, g in enumerate(ideal, start=1))
    return dcg / idcg if idcg else 0.0


def dedupe_sources(hits) -> list[str]:
    seen: dict[str, None] = {}
    for h in hits:
        seen.setdefault(h.chunk.source, None)
    return list(seen)


@dataclass
class Scores:
    ks: tuple[int, ...]
    sums: dict[str, float] = field(default_factory=dict)
    n: int = 0

    def add(self, ranked: list[str], gains: dict[str, float]) -> None:
        self.n += 1
        for k in self.ks:
            self.sums[f"recall@{k}"] = self.sums.get(f"recall@{k}", 0.0) + recall_at(ranked, gains, k)
        self.sums["mrr"] = self.sums.get("mrr", 0.0) + reciprocal_rank(ranked, gains)
        self.sums["ndcg@10"] = self.sums.get("ndcg@10", 0.0) + ndcg_at(ranked, gains, 10)

    def means(self) -> dict[str, float]:
        return {k: round(v / self.n, 4) if self.n else 0.0 for k, v in self.sums.items()}


def evaluate(qs: QASet, cfg, embedder, *, ks: Sequence[int] = (1, 5, 20), modes: Sequence[str] = MODES,
             limit: int | None = None, progress: bool = True) -> dict:
    """Build an index over qs.docs and score every query (the first `limit`) under each retrieval mode.

    The index is built by `rag.ingest.build` and searched by the Pipeline's own Retriever (the
    configured fusion, dense weight and candidates); only the query embeddings are batched.
    """
    from eval.harness import temporary_pipeline

    if not qs.docs:
        raise RagError(f"{qs.name} brings no documents to index (fix: use a SQuAD, Cranfield or passages file)")
    queries = retrieval_queries(qs)[:limit] if limit else retrieval_queries(qs)
    t0 = time.perf_counter()
    with temporary_pipeline(qs.docs, cfg, embedder) as pipe:
        build_s = time.perf_counter() - t0
        retriever = pipe.retriever
        depth = max(max(ks), 10)
        qvecs = embedder.embed([q for q, _ in queries])
        scores = {m: Scores(tuple(ks)) for m in modes}
        iterator: Iterable[int] = range(len(queries))
        if progress:
            from tqdm import tqdm

            iterator = tqdm(iterator, desc="queries", file=sys.stderr)
        for i in iterator:
            q, gains = queries[i]
            for m in modes:
                hits = retriever.search_with_vector(q, qvecs[i], k=depth * 3, mode=m)
                scores[m].add(dedupe_sources(hits)[:depth], gains)
    return {"n_queries": len(queries), "n_docs": len(qs.docs), "index_build_s": round(build_s, 1),
            **{m: scores[m].means() for m in modes}}


def format_table(result: dict, modes: Sequence[str] = MODES) -> str:
    keys = list(result[modes[0]].keys())
    lines = [f"{'metric':<12}" + "".join(f"{m:>10}" for m in modes)]
    for k in keys:
        lines.append(f"{k:<12}" + "".join(f"{result[m][k]:>10.3f}" for m in modes))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from rag.config import load_config
    from rag.models.factory import load_embedder

    ap = argparse.ArgumentParser(prog="python -m eval.retrieval", description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True, type=Path)
    ap.add_argument("--format", choices=FORMATS, default=None, help="default: from the path")
    ap.add_argument("--k", default="1,5,20", help="comma-separated cut-offs for recall")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--config")
    ap.add_argument("--fusion", help="override fusion: auto | rrf | bm25 | dense")
    ap.add_argument("--alpha", type=float, help="override the dense weight of the score fusion")
    ap.add_argument("--limit", type=int, help="only the first N queries")
    args = ap.parse_args(argv)
    fmt = args.format or guess_format(args.dataset)
    try:
        cfg = load_config(args.config, overrides={"fusion": args.fusion, "fusion_alpha": args.alpha})
        qs = load_qa(args.dataset, fmt)
        result = evaluate(qs, cfg, load_embedder(cfg), ks=[int(k) for k in args.k.split(",")], limit=args.limit,
                          progress=not args.json)
    except (RagError, OSError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = {"dataset": str(args.dataset), "format": fmt, "fusion": cfg.fusion, "alpha": cfg.fusion_alpha, **result}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{qs.name}: {result['n_queries']} queries over {result['n_docs']} documents "
              f"(fusion={cfg.fusion}, alpha={cfg.fusion_alpha})")
        print(format_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
