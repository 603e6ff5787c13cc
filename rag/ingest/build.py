"""Ingest a folder into the index: incremental, crash-safe, and honest about every bad file.

    python -m rag.ingest <folder> [--index DIR] [--rebuild] [--json]

Per file: read → content hash → unchanged files are neither parsed nor embedded again; new and
changed files are parsed (rag.ingest.parse; PDF pages without a usable text layer are read by OCR
when `cfg.ocr` is on, counted as the progress stage "ocr"), chunked (rag.ingest.chunk), tokenized
(rag.index.tokenize) and embedded (rag.models.embed); files gone from the folder drop out. The
result is written as a new generation and switched to atomically (rag.index.store), or committed to
Milvus (rag.index.milvus, `store = "milvus"`), under an exclusive lock. Embeddings are also kept in
a crash-safe cache next to the index, so an ingest killed mid-way resumes without redoing them.
rag.ingest.distributed runs the parse and embed steps on Ray workers through
`ingest(parse_many=..., embedder=...)` and commits by this same code.
Deliberately skipped: watching the folder for changes (run the command again; it is cheap).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.config import Config
from rag.errors import IndexLockedError, IngestError, LoadError
from rag.index.store import ChunkRow, FileRecord, Previous, StoreWriter, check_compatible, open_writer
from rag.models.embed import BaseEmbedder, Embedder
from rag.records import Chunk, Document, Failure
from rag.text import normalise

if TYPE_CHECKING:
    from rag.ingest.ocr import PdfOcr

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stage, done, total)


# --- the lock -------------------------------------------------------------------------------------


class IngestLock:
    """One writer per index. flock is released by the kernel when its holder dies, so a lock file
    left by a killed process is detected as stale and taken over."""

    def __init__(self, index_dir: Path, *, wait_s: float = 0.0) -> None:
        self.path = Path(index_dir) / ".lock"
        self.wait_s = wait_s
        self.fd: int | None = None

    def __enter__(self) -> IngestLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise IndexLockedError(
                        f"another ingest is writing {self.path.parent} ({holder}); wait for it to finish, or set "
                        "RAG_LOCK_WAIT_S to wait automatically") from None
                time.sleep(0.2)
        previous = _read_holder(fd)
        if previous != "holder unknown":
            log.info("taking over a stale lock left by %s", previous)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "started": time.time()}).encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']}, started {time.strftime('%H:%M:%S', time.localtime(info['started']))}"
    except (ValueError, KeyError, OSError):
        return "holder unknown"


# --- the embedding cache --------------------------------------------------------------------------


class EmbeddingCache:
    """sqlite (WAL) map from (model, text hash) to vector; survives kill -9 between batches."""

    def __init__(self, path: Path, model: str, dim: int | None = None) -> None:
        self.model = model
        self.con = sqlite3.connect(path)
        self.con.execute("PRAGMA journal_mode = WAL")
        self.con.execute("CREATE TABLE IF NOT EXISTS vectors "
                         "(model TEXT, key TEXT, vec BLOB, PRIMARY KEY (model, key))")

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for lo in range(0, len(keys), 500):
            part = keys[lo:lo + 500]
            q = f"SELECT key, vec FROM vectors WHERE model = ? AND key IN ({','.join('?' * len(part))})"
            for k, blob in self.con.execute(q, (self.model, *part)):
                out[k] = np.frombuffer(blob, dtype=np.float32)
        return out

    def put_many(self, keys: Sequence[str], vecs: np.ndarray) -> None:
        self.con.executemany("INSERT OR REPLACE INTO vectors VALUES (?,?,?)",
                             ((self.model, k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in zip(keys, vecs)))
        self.con.commit()

    def clear(self) -> None:
        self.con.execute("DELETE FROM vectors")
        self.con.commit()

    def close(self) -> None:
        self.con.close()


# --- the report -----------------------------------------------------------------------------------


@dataclass
class IngestReport:
    folder: str
    index: str
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    skipped: list[Failure] = field(default_factory=list)
    kept_previous: list[str] = field(default_factory=list)  # failed now, so their earlier version stays indexed
    files: int = 0
    pages: int = 0
    ocr_pages: int = 0  # pages read by OCR in this run (rendered and recognised, text found or not)
    ocr_seconds: float = 0.0
    chunks: int = 0
    chunks_embedded: int = 0
    generation: str = ""
    noop: bool = False
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"{len(self.new)} new, {len(self.changed)} changed, {self.unchanged} unchanged, "
                 f"{len(self.removed)} removed, {len(self.failed)} failed"
                 + (f", {len(self.skipped)} skipped" if self.skipped else ""),
                 f"{self.files} files, {self.pages} pages"
                 + (f" ({self.ocr_pages} read by OCR in {self.ocr_seconds:.0f} s)" if self.ocr_pages else "")
                 + f", {self.chunks} chunks ({self.chunks_embedded} embedded) in {self.seconds:.1f} s"
                 + (" — nothing changed, index kept as it was" if self.noop else f" → {self.generation}")]
        for f in self.failed:
            lines.append(f"  FAILED  {f.source}: {f.reason}" + (f" (fix: {f.fix})" if f.fix else ""))
        for s in self.kept_previous:
            lines.append(f"  kept the previously indexed version of {s}")
        for f in self.skipped:
            lines.append(f"  skipped {f.source}: {f.reason}")
        return "\n".join(lines)


# --- building ---------------------------------------------------------------------------------------


def index_text(chunk: Chunk, title: str) -> str:
    """What the retrievers see for a chunk: its document title and heading path give context that a
    chunk cut from the middle of a section lacks ("Quantization > K-quants: ... 4.8 bits"), in the
    normalised form (`rag.text.normalise`); the stored chunk keeps the text as written."""
    context = [t for t in (title, *chunk.heading_path) if t]
    # Avoid repeating a title that the heading path already starts with (Markdown H1 = title).
    if len(context) > 1 and context[0] == context[1]:
        context = context[1:]
    text = (" > ".join(context) + "\n" + chunk.text) if context else chunk.text
    return normalise(text)  # the embedder reads what BM25 compares: '常⻅' and 'ＧＧＵＦ' as '常见', 'GGUF'


def settings_signature(cfg: Config) -> dict[str, Any]:
    """Settings that change chunk boundaries, text or tokens: a change re-processes every file
    (an index from before a key existed lacks it, so it is re-processed too)."""
    from rag import text
    from rag.index import tokenize
    from rag.ingest import parse

    return {"chunk_tokens": cfg.chunk_tokens, "chunk_overlap_tokens": cfg.chunk_overlap_tokens,
            "tokenizer": tokenize.TOKENIZER_VERSION, "extract": parse.EXTRACT_VERSION, "embed_model": cfg.embed_model,
            "normalise": text.NORMALISE_VERSION,  # what the embedder reads (index_text); BM25's is the tokenizer's
            "embed_backend": cfg.embed_backend,  # int8 vectors differ slightly: no mixing within an index
            "ocr": cfg.ocr}  # OCR on or off changes the text of scanned and garbage pages


def prepare_document(doc: Document, *, cfg: Config, count_tokens: Callable[[str], int]) -> list[ChunkRow]:
    from rag.index.tokenize import tokenize
    from rag.ingest.chunk import chunk_document

    chunks = chunk_document(doc, max_tokens=cfg.chunk_tokens, overlap_tokens=cfg.chunk_overlap_tokens,
                            count_tokens=count_tokens)
    return [ChunkRow(c, " ".join(tokenize(index_text(c, doc.title)))) for c in chunks]


@dataclass(frozen=True)
class ParsedFile:
    """One file parsed and chunked, ready to embed: all the ingest keeps of it (picklable, so a
    worker process can send it back)."""

    title: str
    kind: str
    pages: int
    paginated: bool
    rows: list[ChunkRow]
    ocr_pages: int = 0  # pages of this file read by OCR, and the seconds it took
    ocr_seconds: float = 0.0


# (source, file bytes) of the files to parse → (source, parsed file or why not), in any order
ParseMany = Callable[[list[tuple[str, bytes]]], Iterable[tuple[str, "ParsedFile | Failure"]]]


def parse_file(source: str, data: bytes, *, cfg: Config, count_tokens: Callable[[str], int],
               ocr: PdfOcr | None) -> ParsedFile:
    """Parse (rag.ingest.parse) and chunk one file; LoadError when it has nothing to index."""
    from rag.ingest.parse import parse

    pages0, seconds0 = (ocr.pages, ocr.seconds) if ocr is not None else (0, 0.0)
    doc = parse(source, data, ocr=ocr)
    rows = prepare_document(doc, cfg=cfg, count_tokens=count_tokens)
    if not rows:
        raise LoadError(source, "no text to index (the document is empty after parsing)",
                        "check that the file has text content")
    ocr_pages, ocr_seconds = (ocr.pages - pages0, ocr.seconds - seconds0) if ocr is not None else (0, 0.0)
    return ParsedFile(doc.title, doc.kind, len(doc.pages), doc.paginated, rows, ocr_pages, ocr_seconds)


def _embed_rows(rows: Sequence[ChunkRow], titles: dict[str, str], embedder: Embedder, cache: EmbeddingCache | None,
                progress: Progress | None, batch: int = 256) -> np.ndarray:
    texts = [index_text(r.chunk, titles.get(r.chunk.source, "")) for r in rows]
    keys = [EmbeddingCache.key(t) for t in texts]
    cached = cache.get_many(keys) if cache else {}
    out = np.zeros((len(rows), embedder.dim), dtype=np.float32)
    todo = []
    for i, k in enumerate(keys):
        if k in cached and cached[k].shape[0] == embedder.dim:
            out[i] = cached[k]
        else:
            todo.append(i)
    done = len(rows) - len(todo)
    if progress:
        progress("embed", done, len(rows))
    # embed_iter, where the embedder has it, lets one that runs elsewhere (rag.ingest.distributed)
    # take every text at once and still hand back slices for the cache and the progress bar.
    todo_texts = [texts[i] for i in todo]
    slices = (embedder.embed_iter(todo_texts, every=batch) if isinstance(embedder, BaseEmbedder) else
              ((lo, embedder.embed(todo_texts[lo:lo + batch])) for lo in range(0, len(todo), batch)))
    for lo, vecs in slices:
        part = todo[lo:lo + len(vecs)]
        out[part] = vecs
        if cache:
            cache.put_many([keys[i] for i in part], vecs)
        done += len(part)
        if progress:
            progress("embed", done, len(rows))
    return out


def _manifest(cfg: Config, embedder_dim: int, folder: str, languages: Iterable[str] | None) -> dict[str, Any]:
    return {"embed_model": cfg.embed_model, "embed_dim": embedder_dim, "folder": folder,
            "embed_languages": sorted(languages) if languages else None, "settings": settings_signature(cfg),
            "created": time.time()}


def build_index(docs: Iterable[Document], index_dir: Path, cfg: Config, embedder: Embedder, *,
                progress: Progress | None = None) -> Path:
    """A fresh index from parsed documents (used by the eval suite for dataset passages)."""
    index_dir = Path(index_dir)
    rows: list[ChunkRow] = []
    files: list[FileRecord] = []
    titles: dict[str, str] = {}
    now = time.time()
    for doc in docs:
        doc_rows = prepare_document(doc, cfg=cfg, count_tokens=embedder.count_tokens)
        rows.extend(doc_rows)
        titles[doc.source] = doc.title
        h = hashlib.sha256(doc.text.encode("utf-8", "surrogatepass")).hexdigest()
        files.append(FileRecord(doc.source, h, len(doc.text), doc.kind, doc.title, len(doc.pages), len(doc_rows),
                                doc.paginated, now))
    rows.sort(key=lambda r: (r.chunk.source, r.chunk.ordinal))
    vectors = _embed_rows(rows, titles, embedder, None, progress)
    writer = open_writer(cfg.with_overrides(index_dir=str(index_dir)))
    try:
        with IngestLock(index_dir, wait_s=cfg.lock_wait_s):
            writer.prepare(rebuild=True)
            name = writer.commit(fresh=rows, vectors=vectors, keep=set(), files=sorted(files, key=lambda f: f.source),
                                 manifest=_manifest(cfg, embedder.dim, "", embedder.languages), cfg=cfg)
    finally:
        writer.close()
    return index_dir / name


def ingest(folder: str | Path, cfg: Config, *, embedder: Embedder | None = None, rebuild: bool = False,
           progress: Progress | None = None, parse_many: ParseMany | None = None) -> IngestReport:
    """Bring the index at cfg.index_dir in line with `folder`. Raises IngestError when nothing
    could be read, IndexLockedError when another ingest holds the lock.

    `parse_many` hands the new and changed files to another runner (rag.ingest.distributed: Ray
    workers) instead of parsing them here one by one; what it returns is committed exactly as a
    local parse would be. `embedder` then is that runner's embedder too."""
    from rag.ingest.discover import discover

    t0 = time.perf_counter()
    folder = Path(folder)
    index_dir = Path(cfg.index_dir)
    report = IngestReport(folder=str(folder), index=str(index_dir))
    try:
        found, problems = discover(folder, follow_symlinks=cfg.follow_symlinks)
    except LoadError as err:
        raise IngestError(f"cannot ingest {folder}: {err.reason}" + (f" (fix: {err.fix})" if err.fix else "")) from err
    report.failed += [p for p in problems if p.kind != "skipped"]
    report.skipped += [p for p in problems if p.kind == "skipped"]

    writer = open_writer(cfg)  # connects first: an unreachable store fails before anything is written
    try:
        with IngestLock(index_dir, wait_s=cfg.lock_wait_s):
            _ingest_locked(report, writer, found, folder, cfg, embedder, rebuild, progress, parse_many)
            report.seconds = time.perf_counter() - t0
            _write_report(index_dir, report)
    finally:
        writer.close()
    return report


def _ingest_locked(report: IngestReport, writer: StoreWriter, found: Sequence[Any], folder: Path, cfg: Config,
                   embedder: Embedder | None, rebuild: bool, progress: Progress | None,
                   parse_many: ParseMany | None = None) -> None:
    from rag.ingest.discover import read_bytes

    writer.prepare(rebuild=rebuild)
    prev = writer.previous()
    prev_files: dict[str, FileRecord] = {}
    same_settings = False
    if prev is not None:
        if not rebuild:
            check_compatible(prev.manifest, prev.label, embed_model=cfg.embed_model, where=prev.where)
            prev_files = writer.files()
            same_settings = prev.manifest.get("settings") == settings_signature(cfg)

    count_tokens = None  # resolved lazily: a no-op run never loads the embedding model
    ocr = _ocr_reader(cfg, progress) if parse_many is None else None  # its model loads on the first page OCR reads
    new_rows: dict[str, list[ChunkRow]] = {}
    keep: set[str] = set()  # sources whose stored chunks carry over
    records: dict[str, FileRecord] = {}
    titles: dict[str, str] = {}
    max_bytes = int(cfg.max_file_mb * 1024 * 1024)
    # (source, previous record, hash, size, outcome) in folder order, so the report lists files in
    # the same order whether they were parsed here or by parse_many; None = parse_many's to fill.
    outcomes: list[tuple[str, FileRecord | None, str, int, ParsedFile | Failure | None]] = []
    deferred: list[tuple[str, bytes]] = []
    for i, f in enumerate(found):
        if progress and parse_many is None:
            progress("parse", i, len(found))
        before = prev_files.get(f.source)
        digest, size = "", 0
        try:
            data = read_bytes(f, max_bytes=max_bytes)
            digest, size = hashlib.sha256(data).hexdigest(), len(data)
            if before is not None and before.hash == digest and same_settings:
                keep.add(f.source)
                records[f.source] = before
                titles[f.source] = before.title
                report.unchanged += 1
                continue
            if parse_many is not None:
                deferred.append((f.source, data))
                outcomes.append((f.source, before, digest, size, None))
                continue
            if count_tokens is None:
                embedder = embedder or _load_embedder(cfg)
                count_tokens = embedder.count_tokens
            result: ParsedFile | Failure = parse_file(f.source, data, cfg=cfg, count_tokens=count_tokens, ocr=ocr)
            del data
        except LoadError as err:
            result = Failure(f.source, err.reason, err.fix)
        outcomes.append((f.source, before, digest, size, result))
    if deferred and parse_many is not None:
        done = len(found) - len(deferred)
        parsed: dict[str, ParsedFile | Failure] = {}
        for source, got in parse_many(deferred):
            parsed[source] = got
            done += 1
            if progress:
                progress("parse", done, len(found))
        del deferred
        outcomes = [(s, b, d, z, parsed.get(s) if r is None else r) for s, b, d, z, r in outcomes]
    for source, before, digest, size, outcome in outcomes:
        if isinstance(outcome, Failure) or outcome is None:
            report.failed.append(outcome or Failure(source, "the parse step returned nothing for it",
                                                    "run the ingest again"))
            if before is not None:
                keep.add(source)
                records[source] = before
                titles[source] = before.title
                report.kept_previous.append(source)
            continue
        if ocr is None:
            report.ocr_pages += outcome.ocr_pages
            report.ocr_seconds += outcome.ocr_seconds
        new_rows[source] = outcome.rows
        titles[source] = outcome.title
        records[source] = FileRecord(source, digest, size, outcome.kind, outcome.title, outcome.pages,
                                     len(outcome.rows), outcome.paginated, time.time())
        (report.changed if before is not None else report.new).append(source)
    if progress:
        progress("parse", len(found), len(found))
    if ocr is not None:
        report.ocr_pages, report.ocr_seconds = ocr.pages, ocr.seconds
    report.ocr_seconds = round(report.ocr_seconds, 1)
    report.removed = sorted(set(prev_files) - set(records))

    if not records and prev is not None and prev_files and not report.failed:
        pass  # every document was removed from the folder: commit an empty generation
    elif not records:
        if found or report.failed:
            raise IngestError(f"nothing in {folder} could be read: {len(report.failed)} file(s) failed "
                              "(see the reasons above) and none was indexed before")
        from rag.ingest.parse import SUPPORTED_SUFFIXES

        supported = " ".join(sorted(SUPPORTED_SUFFIXES))
        raise IngestError(f"no supported documents in {folder} (supported: {supported}); "
                          "fix: point the command at the folder that holds your documents")

    report.files = len(records)
    report.pages = sum(r.pages for r in records.values())
    if prev is not None and not new_rows and not report.removed and not rebuild:
        report.noop, report.generation = True, prev.generation
        report.chunks = sum(r.chunks for r in records.values())
    else:
        _commit(report, cfg, writer, prev, keep, new_rows, records, titles, embedder, progress, folder)


class _DimOnly(BaseEmbedder):
    """Stands in for the embedder when there is nothing to embed: it knows the dimension only."""

    def __init__(self, name: str, dim: int, languages: Iterable[str] | None) -> None:
        self.name, self.dim, self.languages = name, dim, frozenset(languages) if languages else None


def _ocr_reader(cfg: Config, progress: Progress | None) -> PdfOcr | None:
    """The OCR reader when `cfg.ocr` is on and the `ocr` extra is installed, else None (a scanned
    PDF then fails with the reason and the fix: install the extra or turn the setting on)."""
    from rag.ingest.ocr import load_ocr, ocr_available

    if not cfg.ocr:
        return None
    if not ocr_available():
        log.info("OCR is on but the 'ocr' extra is not installed: scanned pages are reported, not read")
        return None
    return load_ocr(progress=(lambda done, total: progress("ocr", done, total)) if progress else None)


def _load_embedder(cfg: Config) -> Embedder:
    from rag.models.factory import load_embedder

    return load_embedder(cfg)


def _commit(report: IngestReport, cfg: Config, writer: StoreWriter, prev: Previous | None, keep: set[str],
            new_rows: dict[str, list[ChunkRow]], records: dict[str, FileRecord], titles: dict[str, str],
            embedder: Embedder | None, progress: Progress | None, folder: Path) -> None:
    if not records and prev is not None:  # an empty collection needs no model, only the dimension
        dim = int(prev.manifest.get("embed_dim") or prev.manifest.get("dim") or 0)
        embedder = embedder or _DimOnly(cfg.embed_model, dim, prev.manifest.get("embed_languages"))
    embedder = embedder or _load_embedder(cfg)
    fresh = [r for source in sorted(records) for r in new_rows.get(source, [])]
    index_dir = Path(cfg.index_dir)
    cache = EmbeddingCache(index_dir / "embed-cache.sqlite", f"{cfg.embed_model}|{cfg.embed_backend}")
    try:
        vectors = (_embed_rows(fresh, titles, embedder, cache, progress) if fresh
                   else np.zeros((0, embedder.dim), dtype=np.float32))
        report.chunks_embedded = len(fresh)
        name = writer.commit(fresh=fresh, vectors=vectors, keep=keep, files=[records[s] for s in sorted(records)],
                             manifest=_manifest(cfg, embedder.dim, str(folder.resolve()), embedder.languages), cfg=cfg)
        cache.clear()  # everything is in the committed generation now
    except OSError as err:
        raise IngestError(f"could not write the new index generation in {index_dir}: {err.strerror or err} "
                          "(the previous generation is untouched; fix: free disk space or check permissions, then "
                          "run the ingest again)") from err
    finally:
        cache.close()
    report.generation = name
    report.chunks = sum(len(new_rows[s]) if s in new_rows else records[s].chunks for s in records)


def _write_report(index_dir: Path, report: IngestReport) -> None:
    path = index_dir / "last_ingest.json"
    tmp = index_dir / f".last_ingest.json.tmp-{os.getpid()}"
    try:
        tmp.write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        log.warning("could not write %s: %s", path, err)
