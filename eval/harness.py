"""How the harnesses drive the product: an index of a dataset's documents built by the product's
own `rag.ingest.build.build_index`, and a `Pipeline` over it. Retrieval, fusion, reranking and
the evidence score are then the product's, never a copy of them.

    cfg = index_documents(qs.docs, cfg, embedder, out / "index")   # built once, reused while unchanged
    pipe = Pipeline(cfg, embedder=embedder, generator=None, reranker=None)

    with temporary_pipeline(qs.docs, cfg, embedder) as pipe:        # a throw-away index
        hits = pipe.retrieve("question")

    docs = folder_documents(Path("data/docs"))                     # a folder's files, parsed

Deliberately skipped: ingesting from files with the incremental machinery (a harness that keeps its
index calls `rag.ingest.build.ingest`); `folder_documents` parses every file, every time.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.config import Config
from rag.records import Document

if TYPE_CHECKING:
    from rag.models.embed import Embedder
    from rag.pipeline import Pipeline

log = logging.getLogger(__name__)


def hash_documents(h: Any, docs: Iterable[Document]) -> None:
    """Feed what identifies a collection built from passages (source, title, text) into hasher `h`."""
    for d in docs:
        h.update(f"{d.source}\0{d.title}\0{d.text}\n".encode("utf-8", "surrogatepass"))


def index_documents(docs: Iterable[Document], cfg: Config, embedder: Embedder, index_dir: Path, *,
                    reuse: bool = True) -> Config:
    """`cfg` pointing at `index_dir`, which then holds an index of `docs` built by `build_index`.

    With `reuse`, an index already there is kept when the stamp beside it says it holds the same
    documents under the same ingest settings (`rag.ingest.build.settings_signature`).
    """
    from rag.index.store import current_generation
    from rag.ingest.build import build_index, settings_signature

    docs = list(docs)
    index_dir = Path(index_dir)
    cfg = cfg.with_overrides(index_dir=str(index_dir))
    h = hashlib.sha256()
    hash_documents(h, docs)
    want = json.dumps({"documents": h.hexdigest(), "settings": settings_signature(cfg)}, sort_keys=True)
    stamp = index_dir.parent / f"{index_dir.name}.corpus"
    if reuse and current_generation(index_dir) is not None and stamp.exists() and stamp.read_text() == want:
        return cfg
    log.info("indexing %d documents into %s", len(docs), index_dir)
    build_index(docs, index_dir, cfg, embedder)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(want)
    return cfg


def folder_documents(folder: Path) -> list[Document]:
    """Every supported file under `folder` (hidden ones skipped), parsed by `rag.ingest.parse` in path
    order; a source is the path relative to `folder`, as `rag.ingest` names it."""
    from rag.errors import RagError
    from rag.ingest.parse import parse, suffix_kind

    folder = Path(folder)
    if not folder.is_dir():
        raise RagError(f"documents folder {folder} does not exist (fix: pass --docs with the folder the "
                       "questions are about)")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(folder).parts))
    return [parse(p.relative_to(folder).as_posix(), p.read_bytes()) for p in files
            if suffix_kind(p.name) is not None]


@contextlib.contextmanager
def temporary_pipeline(docs: Iterable[Document], cfg: Config, embedder: Embedder, **pipeline_kw: Any
                       ) -> Iterator[Pipeline]:
    """A Pipeline over a fresh index of `docs` in a temporary folder, removed afterwards.

    No generator and no reranker unless given in `pipeline_kw`: retrieval harnesses measure the
    fused ranking (pass `reranker=...` to measure the reranked one).
    """
    from rag.pipeline import Pipeline

    with tempfile.TemporaryDirectory(prefix="rag-eval-") as tmp:
        run_cfg = index_documents(docs, cfg, embedder, Path(tmp) / "index", reuse=False)
        pipe = Pipeline(run_cfg, embedder=embedder, **({"generator": None, "reranker": None} | pipeline_kw))
        try:
            yield pipe
        finally:
            pipe.index.close()  # the folder goes next; an open memory map would keep it busy
