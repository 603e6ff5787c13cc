"""Retrieval quality on a public dataset: BM25, dense and hybrid side by side.

    python -m eval.retrieval --dataset PATH|sample|crosslingual [--format squad|cranfield|jsonl]
        [--docs DIR] [--k 1,5,20] [--model PATH.gguf] [--json]

Builds a temporary index from the dataset's passages with the same code as `rag.ingest.build` (SQuAD:
one document per paragraph; Cranfield: one per abstract; jsonl: `passages` [{title, text}] per
line), asks every answerable question and reports recall@k, MRR and nDCG@10 per retriever.
Metrics are computed over documents: chunk hits are collapsed to their document's first rank.

The shipped sets (`sample`, `crosslingual`: data/eval/README.md) name their gold by file and page
of a documents folder (`--docs`, default data/docs): the files are parsed with `rag.ingest.parse`,
and the ranked units are pages ('report.pdf#3'; a chunk over pages 3-4 counts for both), so a
multi-page PDF is not one easy target. Questions with a `direction` (en→zh, zh→en) are also
scored per direction.
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

from eval.datasets import FORMATS, SHIPPED, QASet, Question, dataset_path, guess_format, load_qa
from eval.metrics.retrieval import ndcg_at, recall_at, reciprocal_rank
from rag.errors import RagError
from rag.text import normalise

if TYPE_CHECKING:
    from rag.answer.generate import Generator
    from rag.answer.retrieve import SearchMode
    from rag.config import Config
    from rag.models.embed import Embedder
    from rag.records import Document, Hit

MODES: tuple[SearchMode, ...] = ("bm25", "dense", "hybrid")


def by_page(qs: QASet) -> bool:
    """Rank pages, not documents: every gold of the set names its page (the shipped sets)."""
    golds = [g for q in qs.questions for g in q.gold]
    return bool(golds) and all(g.page is not None for g in golds)


def unit(source: str, page: int | None) -> str:
    """The ranked unit: a document, or one page of it.

    >>> unit("a.pdf", 3), unit("003-012", None)
    ('a.pdf#3', '003-012')
    """
    return source if page is None else f"{source}#{page}"


def retrieval_items(qs: QASet) -> list[tuple[Question, dict[str, float]]]:
    """(question, {unit: gain}) of every answerable question with a relevant unit, in file order."""
    pages = by_page(qs)
    out = []
    for q in qs.questions:
        gains = {unit(g.source, g.page if pages else None): g.gain for g in q.gold}
        if q.answerable and any(v > 0 for v in gains.values()):
            out.append((q, gains))
    return out


def retrieval_queries(qs: QASet) -> list[tuple[str, dict[str, float]]]:
    """(question text, {unit: gain}) of `retrieval_items`."""
    return [(q.question, gains) for q, gains in retrieval_items(qs)]


def dedupe_sources(hits: Iterable[Hit], *, pages: bool = False) -> list[str]:
    """Ranked units of the hits, each at its first rank: sources, or with `pages` every page of a chunk."""
    seen: dict[str, None] = {}
    for h in hits:
        for p in h.chunk.pages if pages else (None,):
            seen.setdefault(unit(h.chunk.source, p), None)
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
             modes: Sequence[SearchMode] = MODES, docs: Sequence[Document] | None = None,
             limit: int | None = None, progress: bool = True, alphas: Sequence[float] = (),
             translator: Generator | None = None) -> dict:
    """Build an index over qs.docs (or `docs`, for a set whose documents live in a folder) and score
    every query (the first `limit`) under each retrieval mode; with directions, also per direction
    (`by_direction`: {direction: {n_queries, mode: metrics}}).

    The index is built by `rag.ingest.build` and searched by the Pipeline's own Retriever (the
    configured fusion, dense weight and candidates); only the query embeddings are batched.
    `alphas` adds a "hybrid@<alpha>" row per dense weight over the same index (tuning fusion_alpha
    without re-embedding the corpus). With a `translator` model, a "translated" row ranks by
    `Pipeline.retrieve` with that model loaded: a question over documents in another language is also
    searched in their language (rag.answer.translate), as the product does when a model is present.
    """
    from eval.harness import temporary_pipeline
    from rag.models.embed import embed_queries

    docs = list(docs if docs is not None else qs.docs)
    if not docs:
        raise RagError(f"{qs.name} brings no documents to index (fix: use a SQuAD, Cranfield or passages file, "
                       "or pass --docs with the folder a questions file is about)")
    items = retrieval_items(qs)[:limit] if limit else retrieval_items(qs)
    pages = by_page(qs)
    directions = sorted({q.direction for q, _ in items if q.direction})
    t0 = time.perf_counter()
    with temporary_pipeline(docs, cfg, embedder, generator=translator) as pipe:
        build_s = time.perf_counter() - t0
        retriever = pipe.retriever
        depth = max(max(ks), 10)
        qvecs = embed_queries(embedder, [normalise(q.question) for q, _ in items])  # as Retriever.candidates does
        rows = [*modes, *(["translated"] if translator is not None else [])]
        scores = {m: Scores(tuple(ks)) for m in rows}
        per_dir = {d: {m: Scores(tuple(ks)) for m in rows} for d in directions}
        sweep = {f"hybrid@{a:g}": (a, Scores(tuple(ks))) for a in alphas}
        iterator: Iterable[int] = range(len(items))
        if progress:
            from tqdm import tqdm

            iterator = tqdm(iterator, desc="queries", file=sys.stderr)
        for i in iterator:
            q, gains = items[i]
            for m in modes:
                hits = retriever.search_with_vector(q.question, qvecs[i], k=depth * 3, mode=m)
                ranked = dedupe_sources(hits, pages=pages)[:depth]
                scores[m].add(ranked, gains)
                if q.direction:
                    per_dir[q.direction][m].add(ranked, gains)
            if translator is not None:
                hits = pipe.retrieve(q.question, k=depth * 3, rerank=False)
                ranked = dedupe_sources(hits, pages=pages)[:depth]
                scores["translated"].add(ranked, gains)
                if q.direction:
                    per_dir[q.direction]["translated"].add(ranked, gains)
            default_alpha = retriever.alpha
            for alpha, sc in sweep.values():
                retriever.alpha = alpha
                hits = retriever.search_with_vector(q.question, qvecs[i], k=depth * 3, mode="hybrid")
                sc.add(dedupe_sources(hits, pages=pages)[:depth], gains)
            retriever.alpha = default_alpha
    out = {"n_queries": len(items), "n_docs": len(docs), "index_build_s": round(build_s, 1),
           "unit": "page" if pages else "document", **{m: scores[m].means() for m in rows},
           **{m: sc.means() for m, (_, sc) in sweep.items()}}
    if directions:
        out["by_direction"] = {d: {"n_queries": per_dir[d][modes[0]].n, **{m: per_dir[d][m].means() for m in rows}}
                               for d in directions}
    return out


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
    ap.add_argument("--dataset", required=True,
                    help="a dataset file, or a shipped set: " + ", ".join(SHIPPED))
    ap.add_argument("--format", choices=FORMATS, default=None, help="default: from the path")
    ap.add_argument("--docs", type=Path, help="documents of a shipped-format set (default: data/docs beside data/eval)")
    ap.add_argument("--k", default="1,5,20", help="comma-separated cut-offs for recall")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--config")
    ap.add_argument("--fusion", help="override fusion: auto | rrf | bm25 | dense")
    ap.add_argument("--alpha", type=float, help="override the dense weight of the score fusion")
    ap.add_argument("--limit", type=int, help="only the first N queries")
    ap.add_argument("--store", choices=("local", "milvus"), help="index backend (default: the configured one; "
                    "milvus: Milvus Lite in the temporary folder unless milvus_uri is set)")
    ap.add_argument("--alphas", default="", help="comma-separated dense weights to sweep (hybrid@ALPHA rows)")
    ap.add_argument("--model", help="a .gguf file: add a 'translated' row, questions also searched in the "
                    "documents' other languages as translated by this model (the product's search with a model)")
    args = ap.parse_args(argv)
    path = dataset_path(args.dataset)
    fmt = args.format or guess_format(path)
    try:
        cfg = load_config(args.config, overrides={"fusion": args.fusion, "fusion_alpha": args.alpha,
                                                  "store": args.store})
        qs = load_qa(path, fmt)
        docs = None
        if not qs.docs:
            from eval.harness import folder_documents

            docs = folder_documents(args.docs or path.parent.parent / "docs")
        alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
        translator = None
        if args.model:
            from rag.models.llama import load_generator

            translator = load_generator(cfg.with_overrides(llm_model=args.model))
        result = evaluate(qs, cfg, load_embedder(cfg), ks=[int(k) for k in args.k.split(",")], limit=args.limit,
                          docs=docs, progress=not args.json, alphas=alphas, translator=translator)
    except (RagError, OSError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = {"dataset": str(path), "format": fmt, "store": cfg.store, "fusion": cfg.fusion,
              "alpha": cfg.fusion_alpha, "embed_model": cfg.embed_model, "embed_backend": cfg.embed_backend,
              **result}
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print(f"{qs.name}: {result['n_queries']} queries over {result['n_docs']} documents, ranked by "
              f"{result['unit']} (store={cfg.store}, fusion={cfg.fusion}, alpha={cfg.fusion_alpha}, "
              f"embedder={cfg.embed_model} {cfg.embed_backend})")
        extra = ("translated",) if args.model else ()
        print(format_table(result, (*MODES, *extra, *(f"hybrid@{a:g}" for a in alphas))))
        for d, sub in result.get("by_direction", {}).items():
            print(f"\n{d}: {sub['n_queries']} queries")
            print(format_table(sub, (*MODES, *extra)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
