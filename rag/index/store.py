"""The on-disk index: one folder per generation, switched atomically, opened read-only.

Layout of `<index_dir>/`:

    CURRENT              name of the live generation, replaced atomically (os.replace)
    .lock                held (flock) by the one ingest that may write
    last_ingest.json     the summary of the latest ingest run, no-op runs included
    gen-000007/
        manifest.json    schema version, embedding model and dimension, counts, dense index type
        chunks.sqlite    chunks (row = position in the vector/BM25 arrays) and files (content hashes);
                         chunks.page_labels (printed page numbers, JSON) and chunks.ocr_pages (pages
                         read by OCR, JSON) are absent in indexes written before they existed, which
                         read as having no labels and no OCR pages
        vectors.npy      float32 L2-normalised embeddings, row-aligned with chunks (memory-mapped)
        dense.faiss      FAISS inner-product index over vectors (Flat, or HNSW above a size)
        bm25/            bm25s arrays (memory-mapped)

Writers build a complete generation in a temporary folder, fsync it, rename it into place and
only then point CURRENT at it, so a kill at any moment leaves the previous generation intact.
The retriever and the ingest reach a store through two small interfaces defined here, `Store`
(read: candidates with both scores, chunks by key, files) and `StoreWriter` (the previous state,
then one commit); `open_store` and `open_writer` pick the backend from `cfg.store`: this module's
`Index`/`LocalWriter`, or Milvus (rag.index.milvus).
Deliberately skipped: in-place updates (every ingest writes a whole generation; unchanged chunks
are copied, not re-embedded).
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from rag.errors import IndexMissingError, IndexStateError, ModelMismatchError
from rag.records import Chunk

if TYPE_CHECKING:  # for annotations only: faiss is imported where an index is read or built
    import faiss

    from rag.config import Config

SCHEMA_VERSION = 1
CURRENT = "CURRENT"
GEN_PREFIX = "gen-"
REBUILD_HINT = "python -m rag.ingest <folder> --rebuild"

_SCHEMA = """
CREATE TABLE chunks (
    row INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, source TEXT NOT NULL, ordinal INTEGER NOT NULL,
    start INTEGER NOT NULL, "end" INTEGER NOT NULL, pages TEXT NOT NULL, heading TEXT NOT NULL,
    text TEXT NOT NULL, tokens TEXT NOT NULL, page_labels TEXT NOT NULL DEFAULT '',
    ocr_pages TEXT NOT NULL DEFAULT ''
);
CREATE INDEX chunks_source ON chunks(source);
CREATE TABLE files (
    source TEXT PRIMARY KEY, hash TEXT NOT NULL, size INTEGER NOT NULL, kind TEXT NOT NULL,
    title TEXT NOT NULL, pages INTEGER NOT NULL, chunks INTEGER NOT NULL, paginated INTEGER NOT NULL,
    ingested_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class FileRecord:
    source: str
    hash: str
    size: int
    kind: str
    title: str
    pages: int
    chunks: int
    paginated: bool
    ingested_at: float


def current_generation(index_dir: Path) -> Path | None:
    """The live generation folder, or None when nothing was ever committed."""
    try:
        name = (index_dir / CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if not name.startswith(GEN_PREFIX) or "/" in name or not (index_dir / name).is_dir():
        raise IndexStateError(f"{index_dir / CURRENT} points to {name!r}, which is not a generation folder "
                              f"(fix: {REBUILD_HINT})")
    return index_dir / name


def read_manifest(gen: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((gen / "manifest.json").read_text(encoding="utf-8"))
        return manifest
    except (OSError, ValueError) as err:
        raise IndexStateError(f"{gen / 'manifest.json'} is missing or damaged ({err}) (fix: {REBUILD_HINT})") from err


def check_compatible(manifest: dict[str, Any], gen: Path | str, *, embed_model: str | None,
                     where: str | None = None) -> None:
    """Refuse indexes from another schema or embedding model, with the fix in the message.
    `where` names the collection when it is not a folder (a Milvus URI and prefix)."""
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise IndexStateError(f"index {gen} has schema version {version!r}, this program reads {SCHEMA_VERSION} "
                              f"(fix: {REBUILD_HINT})")
    if embed_model is not None and manifest.get("embed_model") != embed_model:
        raise ModelMismatchError(
            f"index {where or Path(gen).parent} was built with embedding model {manifest.get('embed_model')!r}, "
            f"but the configured model is {embed_model!r}; vectors from different models cannot be compared "
            f"(fix: rebuild with `{REBUILD_HINT}`, or set RAG_EMBED_MODEL={manifest.get('embed_model')})")


def connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    con = sqlite3.connect(uri, uri=True, check_same_thread=False)
    con.execute("PRAGMA query_only = ON" if readonly else "PRAGMA journal_mode = OFF")
    return con


def row_to_chunk(row: Sequence[Any]) -> Chunk:
    """A Chunk from the CHUNK_COLUMNS of a row, optionally followed by its `page_labels` and
    `ocr_pages` columns (see `labelled_columns`)."""
    cid, source, ordinal, start, end, pages, heading, text = row[:8]
    labels = row[8] if len(row) > 8 else ""
    ocr = row[9] if len(row) > 9 else ""
    return Chunk(id=cid, source=source, text=text, start=start, end=end, pages=tuple(json.loads(pages)),
                 heading_path=tuple(json.loads(heading)), ordinal=ordinal,
                 page_labels=tuple(json.loads(labels)) if labels else (),
                 ocr_pages=tuple(json.loads(ocr)) if ocr else ())


CHUNK_COLUMNS = 'id, source, ordinal, start, "end", pages, heading, text'


def labelled_columns(con: sqlite3.Connection) -> str:
    """CHUNK_COLUMNS plus the page labels and the OCR pages: each column where the index has it,
    else '' (none), so an index written before they existed opens as it is."""
    names = {r[1] for r in con.execute("PRAGMA table_info(chunks)")}
    return CHUNK_COLUMNS + "".join(f", {c}" if c in names else ", ''" for c in ("page_labels", "ocr_pages"))
FILE_COLUMNS = "source, hash, size, kind, title, pages, chunks, paginated, ingested_at"


def row_to_file(r: Sequence[Any]) -> FileRecord:
    return FileRecord(source=r[0], hash=r[1], size=r[2], kind=r[3], title=r[4], pages=r[5], chunks=r[6],
                      paginated=bool(r[7]), ingested_at=r[8])


class Lexical(Protocol):
    """The part of a loaded `bm25s.BM25` the index scores with (bm25s ships no type information)."""

    def get_tokens_ids(self, query_tokens: list[str]) -> list[int]: ...

    def get_scores_from_ids(self, query_tokens_ids: list[int]) -> np.ndarray: ...


@dataclass(frozen=True)
class Pool:
    """The candidates of one query: the lexical top-n and the dense top-n, each scored on both sides.

    `rows` are the store's integer keys (row numbers here, key hashes in Milvus); `bm25` is the full
    BM25 score and `dense` the exact inner product of every candidate, whichever side found it.
    """

    rows: np.ndarray  # int64
    bm25: np.ndarray  # float64, aligned with rows
    dense: np.ndarray
    lexical: np.ndarray  # bool: among the lexical top-n (with a positive score)
    nearest: np.ndarray  # bool: among the dense top-n

    @staticmethod
    def empty() -> Pool:
        z = np.zeros(0)
        return Pool(z.astype(np.int64), z, z, z.astype(bool), z.astype(bool))


class Store(Protocol):
    """What the retriever, the pipeline and the UI read from an index, whatever holds it."""

    manifest: dict[str, Any]
    n_chunks: int

    @property
    def embed_model(self) -> str: ...

    @property
    def generation(self) -> str: ...

    def stale(self) -> bool:
        """True when an ingest has committed a newer generation than this view."""
        ...

    def candidates(self, tokens: list[str], query_vec: np.ndarray, n: int, *,
                   sources: Sequence[str] | None = None) -> Pool:
        """The lexical and the dense top-n; with `sources`, only among those documents' chunks, chosen
        before the top-n is cut (a file filter costs no recall)."""
        ...

    def chunks(self, rows: Iterable[int]) -> list[Chunk]: ...

    def chunk_by_id(self, chunk_id: str) -> Chunk | None: ...

    def source_chunks(self, source: str) -> list[Chunk]: ...

    def files(self) -> list[FileRecord]: ...

    def is_paginated(self, source: str) -> bool: ...

    def close(self) -> None: ...


def open_store(cfg: Config, *, reuse: Store | None = None) -> Store:
    """The configured store's live generation (`reuse`: a stale view whose connection may be reused)."""
    if cfg.store == "milvus":
        from rag.index.milvus import MilvusStore

        return MilvusStore.open(cfg, reuse=reuse if isinstance(reuse, MilvusStore) else None)
    return Index.open(cfg.index_dir, embed_model=cfg.embed_model)


class Index:
    """A read-only view of one generation. Thread-safe for concurrent searches."""

    def __init__(self, gen: Path, manifest: dict[str, Any]) -> None:
        import faiss

        self.path = gen
        self.manifest = manifest
        self.n_chunks = int(manifest["chunks"])
        self._db = connect(gen / "chunks.sqlite", readonly=True)
        self._db_lock = threading.Lock()
        try:
            self._columns = labelled_columns(self._db)
            self.vectors = np.load(gen / "vectors.npy", mmap_mode="r")
            # Memory-mapped like vectors.npy: opening costs nothing and pages load on first touch
            # (read in full, the HNSW file of 100k chunks took 0.2-0.4 s of a 1 s load budget).
            flags = getattr(faiss, "IO_FLAG_MMAP_IFC", 0) | getattr(faiss, "IO_FLAG_READ_ONLY", 0)
            self.dense: faiss.Index | None = (faiss.read_index(str(gen / "dense.faiss"), flags) if self.n_chunks
                                              else None)
            self.bm25 = _load_bm25(gen / "bm25") if self.n_chunks else None
        except Exception as err:  # any damage reads the same to the user
            raise IndexStateError(f"index generation {gen} is damaged ({type(err).__name__}: {err}) "
                                  f"(fix: {REBUILD_HINT})") from err
        if self.vectors.shape[0] != self.n_chunks or (self.dense is not None and self.dense.ntotal != self.n_chunks):
            raise IndexStateError(f"index generation {gen} is inconsistent: manifest says {self.n_chunks} chunks, "
                                  f"vectors hold {self.vectors.shape[0]} (fix: {REBUILD_HINT})")
        if self.dense is not None and hasattr(self.dense, "hnsw"):
            self.dense.hnsw.efSearch = int(manifest.get("hnsw_ef_search", 128))
        self._paginated: dict[str, bool] = {}  # filled on demand: reading all file rows took 0.6 s at 100k

    @classmethod
    def open(cls, index_dir: str | Path, *, embed_model: str | None = None) -> Index:
        index_dir = Path(index_dir)
        gen = current_generation(index_dir)
        if gen is None:
            raise IndexMissingError(f"no index at {index_dir} yet (fix: python -m rag.ingest <folder> "
                                    f"--index {index_dir})")
        manifest = read_manifest(gen)
        check_compatible(manifest, gen, embed_model=embed_model)
        return cls(gen, manifest)

    def close(self) -> None:
        self._db.close()

    @property
    def generation(self) -> str:
        return self.path.name

    def stale(self) -> bool:
        return current_generation(self.path.parent) != self.path

    @property
    def embed_model(self) -> str:
        model: str = self.manifest["embed_model"]
        return model

    def is_paginated(self, source: str) -> bool:
        known = self._paginated.get(source)
        if known is None:
            with self._db_lock:
                r = self._db.execute("SELECT paginated FROM files WHERE source = ?", (source,)).fetchone()
            known = self._paginated[source] = bool(r and r[0])
        return known

    def chunks(self, rows: Iterable[int]) -> list[Chunk]:
        rows = [int(r) for r in rows]
        if not rows:
            return []
        marks = ",".join("?" * len(rows))
        with self._db_lock:
            found = {r[0]: row_to_chunk(r[1:]) for r in self._db.execute(
                f"SELECT row, {self._columns} FROM chunks WHERE row IN ({marks})", rows)}
        return [found[r] for r in rows]

    def chunk_by_id(self, chunk_id: str) -> Chunk | None:
        with self._db_lock:
            r = self._db.execute(f"SELECT {self._columns} FROM chunks WHERE id = ?", (chunk_id,)).fetchone()
        return row_to_chunk(r) if r else None

    def source_chunks(self, source: str) -> list[Chunk]:
        with self._db_lock:
            rows = self._db.execute(f"SELECT {self._columns} FROM chunks WHERE source = ? ORDER BY ordinal",
                                    (source,)).fetchall()
        return [row_to_chunk(r) for r in rows]

    def source_rows(self, sources: Iterable[str]) -> np.ndarray:
        """Sorted row numbers of every chunk of these documents (the file filter of a question)."""
        names = sorted(set(sources))
        if not names:
            return np.zeros(0, dtype=np.int64)
        marks = ",".join("?" * len(names))
        with self._db_lock:
            rows = [r[0] for r in self._db.execute(f"SELECT row FROM chunks WHERE source IN ({marks})", names)]
        return np.array(sorted(rows), dtype=np.int64)

    def files(self) -> list[FileRecord]:
        with self._db_lock:
            rows = self._db.execute(f"SELECT {FILE_COLUMNS} FROM files ORDER BY source").fetchall()
        return [row_to_file(r) for r in rows]

    # --- scoring primitives; rag.answer.retrieve fuses the candidates

    def candidates(self, tokens: list[str], query_vec: np.ndarray, n: int, *,
                   sources: Sequence[str] | None = None) -> Pool:
        """The lexical and the dense top-n, each with its full BM25 score and exact inner product.
        With `sources`, BM25 ranks only their rows and the dense side scores them exactly instead of
        asking the ANN index (whose top-n could all lie outside the filter)."""
        pool = np.arange(self.n_chunks) if sources is None else self.source_rows(sources)
        if self.n_chunks == 0 or len(pool) == 0:
            return Pool.empty()
        full_bm25 = self.bm25_scores(tokens)
        lex_n = min(n, len(pool))
        lex = pool[np.argpartition(-full_bm25[pool], lex_n - 1)[:lex_n]] if lex_n < len(pool) else pool
        lex = lex[full_bm25[lex] > 0]
        if sources is None:
            dense_rows, _ = self.dense_search(query_vec, n)
        else:
            pool_dense = self.dense_scores(query_vec, pool)
            dense_rows = pool[np.argpartition(-pool_dense, lex_n - 1)[:lex_n]] if lex_n < len(pool) else pool
        rows = np.unique(np.concatenate([lex, dense_rows]).astype(np.int64))
        return Pool(rows, full_bm25[rows].astype(np.float64), self.dense_scores(query_vec, rows).astype(np.float64),
                    np.isin(rows, lex), np.isin(rows, dense_rows))

    def bm25_scores(self, tokens: list[str]) -> np.ndarray:
        """BM25 score of every chunk for these query tokens (zeros when none is in the vocabulary)."""
        if self.bm25 is None:
            return np.zeros(0, dtype=np.float32)
        ids = self.bm25.get_tokens_ids(tokens)
        if not ids:
            return np.zeros(self.n_chunks, dtype=np.float32)
        return np.asarray(self.bm25.get_scores_from_ids(ids), dtype=np.float32)

    def dense_search(self, query_vec: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, inner-product scores) of the k nearest chunks."""
        if self.dense is None or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        import faiss

        # One query is one thread's work: the rest of an OpenMP team only waits at its barrier, and on
        # a busy 2-core machine that wait made a Flat search of 10k chunks take 28 ms instead of 0.3 ms.
        # The setting belongs to the calling thread and is restored, so index builds keep every core.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            scores, rows = self.dense.search(np.asarray(query_vec, dtype=np.float32).reshape(1, -1),
                                             min(k, self.n_chunks))
        finally:
            faiss.omp_set_num_threads(threads)
        keep = rows[0] >= 0
        return rows[0][keep], scores[0][keep]

    def dense_scores(self, query_vec: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Exact inner products for given rows (used to score lexical candidates densely)."""
        if len(rows) == 0:
            return np.zeros(0, dtype=np.float32)
        order = np.argsort(rows)
        out = np.empty(len(rows), dtype=np.float32)
        out[order] = np.asarray(self.vectors[np.asarray(rows)[order]]) @ np.asarray(query_vec, dtype=np.float32)
        return out


def _load_bm25(path: Path) -> Lexical:
    import bm25s

    model: Lexical = bm25s.BM25.load(str(path), mmap=True, show_progress=False)
    return model


# --- writing a generation -------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkRow:
    """A chunk as stored: the record plus its lexical tokens (kept so unchanged chunks are not re-tokenized)."""

    chunk: Chunk
    tokens: str  # space-joined; tokens never contain spaces


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for p in sorted(path.rglob("*")):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    for d in [path, *[p for p in path.rglob("*") if p.is_dir()]]:
        _fsync_dir(d)


def next_generation_name(index_dir: Path) -> str:
    nums = [int(p.name[len(GEN_PREFIX):]) for p in index_dir.glob(GEN_PREFIX + "*")
            if p.is_dir() and p.name[len(GEN_PREFIX):].isdigit()]
    return f"{GEN_PREFIX}{max(nums, default=0) + 1:06d}"


def build_dense(vectors: np.ndarray, *, exact_max: int, hnsw_m: int, ef_search: int) -> faiss.Index:
    """Flat (exact) inner product up to `exact_max` vectors, HNSW above it."""
    import faiss

    dim = vectors.shape[1]
    index: faiss.Index
    if len(vectors) <= exact_max:
        index = faiss.IndexFlatIP(dim)
    else:
        hnsw = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 80
        hnsw.hnsw.efSearch = ef_search
        index = hnsw
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def write_generation(index_dir: Path, *, rows: Sequence[ChunkRow], vectors: np.ndarray, files: Sequence[FileRecord],
                     manifest: dict[str, Any], bm25_k1: float, bm25_b: float, exact_max: int, hnsw_m: int,
                     ef_search: int) -> Path:
    """Write a complete generation next to the live one and switch CURRENT to it atomically.

    `rows` must already be in their final order (source, ordinal) and aligned with `vectors`.
    """
    import faiss

    index_dir.mkdir(parents=True, exist_ok=True)
    name = next_generation_name(index_dir)
    tmp = index_dir / f".tmp-{name}-{os.getpid()}"
    tmp.mkdir()
    con = connect(tmp / "chunks.sqlite", readonly=False)
    con.executescript(_SCHEMA)
    con.executemany(
        'INSERT INTO chunks (row, id, source, ordinal, start, "end", pages, heading, text, tokens, page_labels, '
        'ocr_pages) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)',
        ((i, r.chunk.id, r.chunk.source, r.chunk.ordinal, r.chunk.start, r.chunk.end, json.dumps(r.chunk.pages),
          json.dumps(r.chunk.heading_path, ensure_ascii=False), r.chunk.text, r.tokens,
          json.dumps(r.chunk.page_labels, ensure_ascii=False) if r.chunk.page_labels else "",
          json.dumps(r.chunk.ocr_pages) if r.chunk.ocr_pages else "")
         for i, r in enumerate(rows)))
    con.executemany("INSERT INTO files VALUES (?,?,?,?,?,?,?,?,?)",
                    ((f.source, f.hash, f.size, f.kind, f.title, f.pages, f.chunks, int(f.paginated), f.ingested_at)
                     for f in files))
    con.commit()
    con.close()

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    np.save(tmp / "vectors.npy", vectors)
    dense = build_dense(vectors, exact_max=exact_max, hnsw_m=hnsw_m, ef_search=ef_search)
    faiss.write_index(dense, str(tmp / "dense.faiss"))
    if rows:
        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every build at DEBUG to our handlers
        bm25 = bm25s.BM25(k1=bm25_k1, b=bm25_b)
        bm25.index([r.tokens.split() or [""] for r in rows], show_progress=False)
        bm25.save(str(tmp / "bm25"), show_progress=False)
    manifest = {**manifest, "schema_version": SCHEMA_VERSION, "generation": name, "chunks": len(rows),
                "files": len(files), "dim": int(vectors.shape[1]) if vectors.ndim == 2 else 0,
                "dense_index": "flat" if len(vectors) <= exact_max else f"hnsw(M={hnsw_m})",
                "hnsw_ef_search": ef_search, "bm25": {"k1": bm25_k1, "b": bm25_b}}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    _fsync_tree(tmp)
    final = index_dir / name
    os.rename(tmp, final)
    _fsync_dir(index_dir)
    pointer = index_dir / f".{CURRENT}.tmp-{os.getpid()}"
    with open(pointer, "w", encoding="utf-8") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(pointer, index_dir / CURRENT)  # the commit point
    _fsync_dir(index_dir)
    return final


def collect_garbage(index_dir: Path, *, keep: int = 2) -> None:
    """Remove abandoned temporary folders and all but the newest `keep` generations (readers of the
    previous generation keep working while a new one goes live)."""
    import shutil

    live = current_generation(index_dir)
    for p in index_dir.glob(".tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in index_dir.glob(f".{CURRENT}.tmp-*"):
        p.unlink(missing_ok=True)
    gens = sorted(p for p in index_dir.glob(GEN_PREFIX + "*") if p.is_dir())
    if live is None:
        return
    newer_than_live = [g for g in gens if g.name > live.name]
    for g in newer_than_live:  # renamed into place but never committed: a kill between rename and switch
        shutil.rmtree(g, ignore_errors=True)
    older = [g for g in gens if g.name < live.name]
    for g in older[:max(0, len(older) - (keep - 1))]:
        shutil.rmtree(g, ignore_errors=True)


def read_rows(gen: Path, sources: Iterable[str]) -> dict[str, list[tuple[int, ChunkRow]]]:
    """Stored chunks of the given sources from a generation, with their row numbers, by source."""
    con = connect(gen / "chunks.sqlite", readonly=True)
    out: dict[str, list[tuple[int, ChunkRow]]] = {}
    try:
        columns = labelled_columns(con)
        for source in sources:
            rows = con.execute(f"SELECT row, tokens, {columns} FROM chunks WHERE source = ? ORDER BY ordinal",
                               (source,)).fetchall()
            out[source] = [(r[0], ChunkRow(row_to_chunk(r[2:]), r[1])) for r in rows]
    finally:
        con.close()
    return out


def read_files(gen: Path) -> dict[str, FileRecord]:
    con = connect(gen / "chunks.sqlite", readonly=True)
    try:
        rows = con.execute(f"SELECT {FILE_COLUMNS} FROM files").fetchall()
    finally:
        con.close()
    return {r[0]: row_to_file(r) for r in rows}


# --- the write side, as the ingest sees it ----------------------------------------------------------


@dataclass(frozen=True)
class Previous:
    """The committed state an ingest starts from."""

    generation: str
    manifest: dict[str, Any]
    label: str  # names the generation in messages: its folder, or the Milvus URI and prefix
    where: str  # names the collection in messages


class StoreWriter(Protocol):
    """What `rag.ingest.build` needs of a store: the committed state, then one commit.

    The caller holds `IngestLock` on cfg.index_dir around both (one ingest at a time).
    """

    def prepare(self, *, rebuild: bool) -> None:
        """Clear what a killed ingest left behind; with `rebuild`, start from an empty collection."""
        ...

    def previous(self) -> Previous | None: ...

    def files(self) -> dict[str, FileRecord]:
        """The committed files by source (read only once `previous()` passed `check_compatible`)."""
        ...

    def commit(self, *, fresh: Sequence[ChunkRow], vectors: np.ndarray, keep: set[str], files: Sequence[FileRecord],
               manifest: dict[str, Any], cfg: Config) -> str:
        """Make `fresh` (new and changed files' chunks, in (source, ordinal) order, aligned with
        `vectors`) plus the stored chunks of the `keep` sources the live collection, described by
        `files` (sorted by source); anything else goes. Returns the new generation's name."""
        ...

    def close(self) -> None: ...


def open_writer(cfg: Config) -> StoreWriter:
    """The configured store's writer. Connects first: an unreachable Milvus fails here, before
    anything is written locally."""
    if cfg.store == "milvus":
        from rag.index.milvus import MilvusWriter

        return MilvusWriter.connect(cfg)
    return LocalWriter(Path(cfg.index_dir))


class LocalWriter:
    """Writes whole generations into a folder (`write_generation`); unchanged chunks are copied."""

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = index_dir

    def prepare(self, *, rebuild: bool) -> None:
        collect_garbage(self.index_dir)  # a rebuild needs nothing more: every file counts as new

    def previous(self) -> Previous | None:
        gen = current_generation(self.index_dir)
        if gen is None:
            return None
        return Previous(gen.name, read_manifest(gen), str(gen), str(self.index_dir))

    def files(self) -> dict[str, FileRecord]:
        gen = current_generation(self.index_dir)
        return read_files(gen) if gen is not None else {}

    def commit(self, *, fresh: Sequence[ChunkRow], vectors: np.ndarray, keep: set[str], files: Sequence[FileRecord],
               manifest: dict[str, Any], cfg: Config) -> str:
        prev = current_generation(self.index_dir)
        kept = read_rows(prev, sorted(keep)) if (prev is not None and keep) else {}
        prev_vectors = np.load(prev / "vectors.npy", mmap_mode="r") if (prev is not None and kept) else None
        by_source: dict[str, list[tuple[ChunkRow, int]]] = {}
        for i, r in enumerate(fresh):
            by_source.setdefault(r.chunk.source, []).append((r, i))
        ordered: list[tuple[ChunkRow, int | None, int | None]] = []  # (row, its row in prev, its row in fresh)
        for source in sorted({f.source for f in files}):
            if source in by_source:
                ordered += [(r, None, i) for r, i in by_source[source]]
            else:
                ordered += [(r, p, None) for p, r in kept.get(source, [])]
        dim = vectors.shape[1] if vectors.ndim == 2 else int(manifest.get("embed_dim") or 0)
        out = np.zeros((len(ordered), dim), dtype=np.float32)
        reuse = [(i, p) for i, (_, p, _) in enumerate(ordered) if p is not None]
        if reuse:
            assert prev_vectors is not None  # rows are reused only from the kept rows of prev
            idx, prev_idx = zip(*reuse)
            order = np.argsort(prev_idx)  # sorted reads from the memory map
            out[np.asarray(idx)[order]] = prev_vectors[np.asarray(prev_idx)[order]]
        new = [(i, f) for i, (_, _, f) in enumerate(ordered) if f is not None]
        if new:
            out[[i for i, _ in new]] = vectors[[f for _, f in new]]
        gen = write_generation(self.index_dir, rows=[r for r, _, _ in ordered], vectors=out, files=files,
                               manifest=manifest, bm25_k1=cfg.bm25_k1, bm25_b=cfg.bm25_b,
                               exact_max=cfg.dense_exact_max, hnsw_m=cfg.hnsw_m, ef_search=cfg.hnsw_ef_search)
        collect_garbage(self.index_dir)
        return gen.name

    def close(self) -> None:
        pass
