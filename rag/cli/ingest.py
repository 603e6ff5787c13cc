"""`python -m rag.ingest FOLDER`: build or update the index of a folder, with progress bars and a report.

    python -m rag.ingest FOLDER [--index DIR]            # the default collection
    python -m rag.ingest [FOLDER] --collection NAME      # a collection of rag.collections

With --collection and no FOLDER, the collection's own documents folder is ingested; a FOLDER given
becomes the collection's documents folder (recorded, so the chat page uploads there too).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from rag.config import load_config
from rag.errors import RagError
from rag.ingest.build import Progress, ingest


def _tqdm_progress() -> Progress:
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def update(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        # OCR pages are found file by file: a bar that filled up opens again when the next file adds some
        if bar is None or (bar.disable and done < total):
            bar = bars[stage] = tqdm(total=total, initial=done, file=sys.stderr, leave=True,
                                     desc={"parse": "parsing", "embed": "embedding", "ocr": "OCR"}.get(stage, stage),
                                     unit={"parse": "file", "ocr": "page"}.get(stage, "chunk"))
        if bar.total != total:
            bar.total = total
        if done > bar.n:
            bar.update(done - bar.n)
        if done >= total and not bar.disable:
            bar.close()
            bar.disable = True

    return update


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rag.ingest",
                                 description="Build or update the index of a folder of documents.")
    ap.add_argument("folder", type=Path, nargs="?", help="folder of documents (searched recursively)")
    ap.add_argument("--index", dest="index_dir", help="index folder (default: ./rag-index or RAG_INDEX_DIR)")
    ap.add_argument("--collection", help="ingest into this collection (python -m rag.collections list)")
    ap.add_argument("--config", help="TOML config file")
    ap.add_argument("--rebuild", action="store_true", help="ignore the existing index and build from scratch")
    ap.add_argument("--embed-model", help="embedding model: HF name or local path")
    ap.add_argument("--ray", dest="ray_address", metavar="ADDRESS",
                    help="parse and embed on the Ray cluster at HOST:PORT (or auto); needs the ray extra")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        folder = args.folder
        cfg = load_config(args.config, overrides={"index_dir": args.index_dir, "embed_model": args.embed_model,
                                                  "docs_dir": str(folder) if folder else None,
                                                  "ray_address": args.ray_address})
        if args.collection is not None:
            from rag.collections import config_for, set_documents_folder

            cfg = config_for(cfg, args.collection, index_given=args.index_dir is not None)
            if folder is None:
                folder = Path(cfg.docs_dir or ".")
                folder.mkdir(parents=True, exist_ok=True)
            elif folder.resolve() != Path(cfg.docs_dir or ".").resolve():
                cfg = set_documents_folder(cfg, args.collection, folder)
        elif folder is None:
            ap.error("the folder of documents is required without --collection")
        progress = None if (args.quiet or args.json) else _tqdm_progress()
        if cfg.ray_address.strip():
            from rag.ingest.distributed import ray_ingest

            report = ray_ingest(folder, cfg, rebuild=args.rebuild, progress=progress)
        else:
            report = ingest(folder, cfg, rebuild=args.rebuild, progress=progress)
    except RagError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        print(report.summary())
        print(f"report: {Path(cfg.index_dir) / 'last_ingest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
