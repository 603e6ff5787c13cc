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
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from rag.records import Document, Page

MODES = ("bm25", "dense", "hybrid")


@dataclass(frozen=True)
class RetrievalSet:
    docs: list[Document]
    queries: list[tuple[str, dict[str, float]]]  # (question, {source: gain}); gain > 0 = relevant
    name: str = ""


def _doc(source: str, title: str, text: str) -> Document:
    return Document(source=source, kind="txt", pages=(Page(1, text),), title=title)


def load_squad_retrieval(path: Path) -> RetrievalSet:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    docs, queries = [], []
    for a, article in enumerate(data["data"]):
        for p, para in enumerate(article["paragraphs"]):
            source = f"{a:03d}-{p:03d}"
            docs.append(_doc(source, article.get("title", "").replace("_", " "), para["context"]))
            for qa in para["qas"]:
                if qa.get("is_impossible") or not qa.get("answers"):
                    continue
                queries.append((qa["question"], {source: 1.0}))
    return RetrievalSet(docs, queries, Path(path).name)


def load_cranfield(folder: Path) -> RetrievalSet:
    folder = Path(folder) if Path(folder).is_dir() else Path(folder).parent

    def blocks(text: str) -> list[dict[str, str]]:
        out = []
        for part in re.split(r"^\.I\s+", text, flags=re.M)[1:]:
            ident, _, rest = part.partition("\n")
            fields = dict(re.findall(r"^\.([TABW])\n(.*?)(?=^\.[TABWI]\b|\Z)", rest, flags=re.M | re.S))
            out.append({"id": ident.strip(), **{k: " ".join(v.split()) for k, v in fields.items()}})
        return out

    docs = [_doc(b["id"], b.get("T", ""), b.get("W", "")) for b in blocks(
        (folder / "cran.all.1400").read_text(encoding="utf-8", errors="replace"))]
    qs = blocks((folder / "cran.qry").read_text(encoding="utf-8", errors="replace"))
    rel: dict[int, dict[str, float]] = {}
    for line in (folder / "cranqrel").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            q, d, code = int(parts[0]), parts[1], int(parts[2])
            if 1 <= code <= 4:  # Cleverdon's scale: 1 = complete answer … 4 = minimum interest
                rel.setdefault(q, {})[d] = float(5 - code)
    # cranqrel numbers queries 1..225 in file order, not by their .I id.
    queries = [(q["W"], rel[i]) for i, q in enumerate(qs, start=1) if rel.get(i)]
    return RetrievalSet(docs, queries, "cranfield")


def load_jsonl_retrieval(path: Path) -> RetrievalSet:
    docs: dict[str, Document] = {}
    by_text: dict[str, str] = {}
    queries = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        gold: dict[str, float] = {}
        for i, p in enumerate(row.get("passages", [])):
            text = p["text"] if isinstance(p, dict) else str(p)
            source = by_text.get(text)
            if source is None:
                source = by_text[text] = f"{len(docs):06d}"
                docs[source] = _doc(source, p.get("title", "") if isinstance(p, dict) else "", text)
            if i == 0 or (isinstance(p, dict) and p.get("gold")):
                gold[source] = 1.0
        if row.get("answers"):
            queries.append((row["question"], gold))
    return RetrievalSet(list(docs.values()), queries, Path(path).name)


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


def evaluate(rs: RetrievalSet, cfg, embedder, *, ks: Sequence[int] = (1, 5, 20), modes: Sequence[str] = MODES,
             index_dir: Path | None = None, progress: bool = True) -> dict:
    """Build an index over rs.docs and score every query under each retrieval mode."""
    from rag.index.store import Index
    from rag.ingest.build import build_index
    from rag.answer.retrieve import Retriever

    tmp = None
    if index_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="rag-eval-")
        index_dir = Path(tmp.name) / "index"
    t0 = time.perf_counter()
    build_index(rs.docs, index_dir, cfg, embedder)
    build_s = time.perf_counter() - t0
    index = Index.open(index_dir)
    retriever = Retriever(index, embedder, fusion=cfg.fusion, alpha=cfg.fusion_alpha, candidates=cfg.candidates)
    depth = max(max(ks), 10)
    qvecs = embedder.embed([q for q, _ in rs.queries])
    scores = {m: Scores(tuple(ks)) for m in modes}
    iterator = range(len(rs.queries))
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="queries", file=sys.stderr)
    for i in iterator:
        q, gains = rs.queries[i]
        for m in modes:
            hits = retriever.search_with_vector(q, qvecs[i], k=depth * 3, mode=m)
            scores[m].add(dedupe_sources(hits)[:depth], gains)
    index.close()
    if tmp is not None:
        tmp.cleanup()
    return {"n_queries": len(rs.queries), "n_docs": len(rs.docs), "index_build_s": round(build_s, 1),
            **{m: scores[m].means() for m in modes}}


def format_table(result: dict, modes: Sequence[str] = MODES) -> str:
    keys = list(result[modes[0]].keys())
    lines = [f"{'metric':<12}" + "".join(f"{m:>10}" for m in modes)]
    for k in keys:
        lines.append(f"{k:<12}" + "".join(f"{result[m][k]:>10.3f}" for m in modes))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from rag.config import load_config
    from rag.models.embed import load_embedder
    from rag.errors import RagError

    ap = argparse.ArgumentParser(prog="python -m eval.retrieval", description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True, type=Path)
    ap.add_argument("--format", choices=("squad", "cranfield", "jsonl"), default=None)
    ap.add_argument("--k", default="1,5,20", help="comma-separated cut-offs for recall")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--config")
    ap.add_argument("--fusion", help="override fusion: auto | rrf | bm25 | dense")
    ap.add_argument("--alpha", type=float, help="override the dense weight of the score fusion")
    ap.add_argument("--limit", type=int, help="only the first N queries")
    args = ap.parse_args(argv)
    fmt = args.format or ("cranfield" if args.dataset.is_dir() or "cran" in args.dataset.name
                          else "jsonl" if args.dataset.suffix == ".jsonl" else "squad")
    try:
        cfg = load_config(args.config, overrides={"fusion": args.fusion, "fusion_alpha": args.alpha})
        rs = {"squad": load_squad_retrieval, "cranfield": load_cranfield, "jsonl": load_jsonl_retrieval}[fmt](args.dataset)
        if args.limit:
            rs = RetrievalSet(rs.docs, rs.queries[:args.limit], rs.name)
        result = evaluate(rs, cfg, load_embedder(cfg), ks=[int(k) for k in args.k.split(",")],
                          progress=not args.json)
    except (RagError, OSError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = {"dataset": str(args.dataset), "format": fmt, "fusion": cfg.fusion, "alpha": cfg.fusion_alpha, **result}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{rs.name}: {result['n_queries']} queries over {result['n_docs']} documents "
              f"(fusion={cfg.fusion}, alpha={cfg.fusion_alpha})")
        print(format_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
