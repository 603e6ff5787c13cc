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
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from eval.datasets import FORMATS, QASet, guess_format, load_qa
from eval.metrics.retrieval import ndcg_at, recall_at, reciprocal_rank
from rag.errors import RagError

if TYPE_CHECKING:
    from rag.answer.retrieve import SearchMode
    from rag.config import Config
    from rag.models.embed import Embedder
    from rag.records import Hit

MODES: tuple[SearchMode, ...] = ("bm25", "dense", "hybrid")


def retrieval_queries(qs: QASet) -> list[tuple[str, dict[str, float]]]:
    """(question, {source: gain}) of every answerable question with a relevant document, in file order."""
    out = []
    for q in qs.questions:
        gains = {g.source: g.gain for g in q.gold}
        if q.answerable and any(v > 0 for v in gains.values()):
            out.append((q.question, gains))
    return out


def dedupe_sources(hits: Iterable[Hit]) -> list[str]:
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


def evaluate(qs: QASet, cfg: Config, embedder: Embedder, *, ks: Sequence[int] = (1, 5, 20),
             modes: Sequence[SearchMode] = MODES,
             limit: int | None = None, progress: bool = True, alphas: Sequence[float] = ()) -> dict:
    """Build an index over qs.docs and score every query (the first `limit`) under each retrieval mode.

    The index is built by `rag.ingest.build` and searched by the Pipeline's own Retriever (the
    configured fusion, dense weight and candidates); only the query embeddings are batched.
    `alphas` adds a "hybrid@<alpha>" row per dense weight over the same index (tuning fusion_alpha
    without re-embedding the corpus).
    """
    from eval.harness import temporary_pipeline
    from rag.models.embed import embed_queries

    if not qs.docs:
        raise RagError(f"{qs.name} brings no documents to index (fix: use a SQuAD, Cranfield or passages file)")
    queries = retrieval_queries(qs)[:limit] if limit else retrieval_queries(qs)
    t0 = time.perf_counter()
    with temporary_pipeline(qs.docs, cfg, embedder) as pipe:
        build_s = time.perf_counter() - t0
        retriever = pipe.retriever
        depth = max(max(ks), 10)
        qvecs = embed_queries(embedder, [q for q, _ in queries])
        scores = {m: Scores(tuple(ks)) for m in modes}
        sweep = {f"hybrid@{a:g}": (a, Scores(tuple(ks))) for a in alphas}
        iterator: Iterable[int] = range(len(queries))
        if progress:
            from tqdm import tqdm

            iterator = tqdm(iterator, desc="queries", file=sys.stderr)
        for i in iterator:
            q, gains = queries[i]
            for m in modes:
                hits = retriever.search_with_vector(q, qvecs[i], k=depth * 3, mode=m)
                scores[m].add(dedupe_sources(hits)[:depth], gains)
            default_alpha = retriever.alpha
            for alpha, sc in sweep.values():
                retriever.alpha = alpha
                hits = retriever.search_with_vector(q, qvecs[i], k=depth * 3, mode="hybrid")
                sc.add(dedupe_sources(hits)[:depth], gains)
            retriever.alpha = default_alpha
    return {"n_queries": len(queries), "n_docs": len(qs.docs), "index_build_s": round(build_s, 1),
            **{m: scores[m].means() for m in modes}, **{m: sc.means() for m, (_, sc) in sweep.items()}}


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
    ap.add_argument("--alphas", default="", help="comma-separated dense weights to sweep (hybrid@ALPHA rows)")
    args = ap.parse_args(argv)
    fmt = args.format or guess_format(args.dataset)
    try:
        cfg = load_config(args.config, overrides={"fusion": args.fusion, "fusion_alpha": args.alpha})
        qs = load_qa(args.dataset, fmt)
        alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
        result = evaluate(qs, cfg, load_embedder(cfg), ks=[int(k) for k in args.k.split(",")], limit=args.limit,
                          progress=not args.json, alphas=alphas)
    except (RagError, OSError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = {"dataset": str(args.dataset), "format": fmt, "fusion": cfg.fusion, "alpha": cfg.fusion_alpha,
              "embed_model": cfg.embed_model, "embed_backend": cfg.embed_backend, **result}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{qs.name}: {result['n_queries']} queries over {result['n_docs']} documents "
              f"(fusion={cfg.fusion}, alpha={cfg.fusion_alpha}, embedder={cfg.embed_model} {cfg.embed_backend})")
        print(format_table(result, (*MODES, *(f"hybrid@{a:g}" for a in alphas))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
