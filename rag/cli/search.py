"""Search the index from the command line: the top chunks and the scores behind their rank.

    python -m rag.search "query" [--collection NAME | --index DIR] [--file NAME ...] [-k N]
                         [--mode hybrid|bm25|dense] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from rag.records import Hit


def hit_to_json(hit: Hit) -> dict[str, Any]:
    c = hit.chunk
    return {"chunk_id": c.id, "source": c.source, "pages": list(c.pages), "heading_path": list(c.heading_path),
            "text": c.text, "start": c.start, "end": c.end, "score": round(hit.score, 6),
            "bm25_score": hit.bm25_score, "bm25_rank": hit.bm25_rank, "dense_score": hit.dense_score,
            "dense_rank": hit.dense_rank, "fused_score": hit.fused_score, "rerank_score": hit.rerank_score}


def snippet(text: str, width: int = 240) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 1].rsplit(" ", 1)[0] + "…"


def format_hit(i: int, hit: Hit) -> str:
    c = hit.chunk
    where = hit.label + (f"  §  {' > '.join(c.heading_path)}" if c.heading_path else "")
    ranks = (f"fused {hit.score:.3f} · BM25 rank {hit.bm25_rank or '–'} ({hit.bm25_score or 0:.2f}) · "
             f"dense rank {hit.dense_rank or '–'} ({hit.dense_score or 0:.3f})")
    if hit.rerank_score is not None:
        ranks += f" · rerank {hit.rerank_score:.3f}"
    body = textwrap.indent(textwrap.fill(snippet(c.text), width=100), "    ")
    return f"{i:>2}. {where}\n    {ranks}\n{body}"


def main(argv: Sequence[str] | None = None) -> int:
    from rag.collections import config_for
    from rag.config import load_config
    from rag.errors import RagError
    from rag.pipeline import Pipeline
    from rag.question import check_question

    ap = argparse.ArgumentParser(prog="python -m rag.search", description=__doc__.split("\n")[0])
    ap.add_argument("query")
    ap.add_argument("--index", dest="index_dir")
    ap.add_argument("--collection", help="the collection to use (python -m rag.collections list); default: 'default'")
    ap.add_argument("--file", action="append", dest="files", help="only search this document (repeatable)")
    ap.add_argument("-k", type=int, default=5, help="number of hits (default 5)")
    ap.add_argument("--mode", choices=("hybrid", "bm25", "dense"), default="hybrid")
    ap.add_argument("--rerank", action="store_true", help="rerank with the cross-encoder when available")
    ap.add_argument("--config")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        check_question(args.query)
        cfg = load_config(args.config, overrides={"index_dir": args.index_dir})
        cfg = config_for(cfg, args.collection, index_given=args.index_dir is not None)
        pipe = Pipeline(cfg, generator=None)
        hits = (pipe.retrieve(args.query, k=args.k, rerank=True, files=args.files) if args.rerank
                else pipe.search(args.query, k=args.k, mode=args.mode, files=args.files))
    except RagError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([hit_to_json(h) for h in hits], indent=2, ensure_ascii=False))
    elif not hits:
        print("no results")
    else:
        print("\n\n".join(format_hit(i, h) for i, h in enumerate(hits, 1)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
