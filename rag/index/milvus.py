"""The Milvus store (`store = "milvus"`): chunks, vectors and the lexical side in Milvus collections.

`milvus_uri` ending in `.db` runs Milvus Lite inside this process (PyPI `milvus-lite`); an
`http://host:19530` URL talks to a Milvus server or cluster with the same code. Four collections
share the prefix `milvus_prefix`:

    <prefix>_chunks   key (int64, from the chunk id), id, source, text, tokens, meta (JSON: span,
                      pages, headings, labels), gen, vector (FLAT, inner product), lexical (sparse)
    <prefix>_files    one row per (generation, source): the FileRecord as JSON, or a tombstone
    <prefix>_terms    document frequency of every token
    <prefix>_meta     "state": manifest, committed generation, chunk count and token total;
                      "lock": the ingest lease; "retire:<gen>:<n>": keys to delete once <gen> is live

Lexical side: sparse vectors built from the project's own tokens (rag.index.tokenize), not
Milvus's BM25 function. A chunk stores w(t) = tf / (tf + k1·(1 - b + b·dl/avgdl)) at hashed index
h(t); the query vector holds count(t)·idf(t) with idf = ln(1 + (N - df + .5)/(df + .5)) from the
terms collection, so the inner product is bm25s's Lucene BM25 of the local store. Every candidate
(lexical or dense) is then re-scored exactly from its stored tokens with the current N, avgdl and
df, so the fusion in rag.answer.retrieve gets the same numbers as from the local store; only the
lexical top-n can differ, when avgdl has drifted since a chunk was written. Measured against
Milvus's BM25 function in the README (eval.retrieval --store milvus). The BM25 function was not
chosen: Milvus Lite has one analyzer per field (standard or jieba, no stemming) where this project
mixes English and Chinese, and it keeps IDF statistics per segment.

Commit protocol (crash-safe, one ingest at a time): rows of generation H = G+1 are written with
gen = H and are invisible to readers (they filter gen <= G) until the single "state" row says H;
keys to delete are recorded in "retire" rows first and deleted after the switch; `prepare`
removes what a killed ingest left (gen > G) and finishes any retirement. A chunk whose key is
already live is not written again (same key = same content under the same settings).

Deliberately skipped: the atomic switch for removals (readers may see a retired chunk for the
moment between the switch and its deletion); a settings change or `--rebuild` drops and refills
the collections, so the collection is not searchable during that ingest; the lease in "lock" is
advisory (no compare-and-set in Milvus), the flock on index_dir serialises ingests of one machine;
re-weighting stored chunks when avgdl drifts (the exact re-scoring keeps fused scores right).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.errors import IndexLockedError, IndexMissingError, IndexStateError, MissingDependencyError
from rag.index.store import SCHEMA_VERSION, ChunkRow, FileRecord, Pool, Previous, check_compatible
from rag.records import Chunk

if TYPE_CHECKING:
    from rag.config import Config

BATCH = 512  # rows per insert / keys per `in` filter
MAX_TEXT = 65_535  # Milvus VARCHAR limit
QUERY_WINDOW = 16_384  # Milvus's largest offset + limit of one query
LEASE_S = 900.0  # an ingest lease not refreshed for this long is taken over
_DUMMY = [1.0, 0.0]  # Milvus wants a vector field in every collection; the side tables carry this one


class StoreUnreachableError(IndexStateError):
    """The configured Milvus cannot be reached (an IndexStateError: the index cannot be opened, and
    the UI's status reports it like a missing one)."""


def resolve_uri(cfg: Config) -> str:
    """The Milvus URI to use: `milvus_uri`, or `<index_dir>/milvus.db` (Milvus Lite) when empty."""
    uri = cfg.milvus_uri.strip()
    return uri or str(Path(cfg.index_dir) / "milvus.db")


def chunk_key(chunk_id: str) -> int:
    """The int64 primary key of a chunk: the first 60 bits of its content-hash id.

    >>> chunk_key("0000000000000ffabcd")
    255
    """
    return int(chunk_id[:15], 16)


def term_index(term: str) -> int:
    """The sparse-vector dimension of a token: 32 bits of its BLAKE2b hash (below 2**32 - 1)."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8", "surrogatepass"), digest_size=4).digest(),
                          "little") % (2**32 - 1)


def term_key(term: str) -> str:
    """The terms collection's key: the token itself, or a hash of a very long one."""
    return term if len(term) <= 200 else "#" + hashlib.sha256(term.encode("utf-8", "surrogatepass")).hexdigest()


def idf(df: int, n: int) -> float:
    """Lucene's BM25 idf, as bm25s computes it (method="lucene").

    >>> round(idf(1, 3), 4)
    0.9808
    """
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def tf_weight(tf: int, dl: int, avgdl: float, k1: float, b: float) -> float:
    """The document side of Lucene BM25: tf / (tf + k1·(1 - b + b·dl/avgdl)).

    >>> round(tf_weight(2, 10, 10.0, 1.2, 0.75), 4)
    0.625
    """
    return tf / (tf + k1 * (1 - b + b * dl / avgdl)) if avgdl > 0 else 0.0


def doc_length(tokens: Sequence[str]) -> int:
    """Token count, 1 for a chunk without tokens (bm25s indexes it as one empty token)."""
    return len(tokens) or 1


def _lit(value: Any) -> str:
    """A value as a Milvus filter literal (JSON's string escapes are Milvus's)."""
    return json.dumps(value, ensure_ascii=False)


def _connect(uri: str) -> Any:
    """A MilvusClient for `uri`, or a RagError that names the URI and the fix."""
    try:
        from pymilvus import MilvusClient
    except ImportError as err:
        raise MissingDependencyError("pymilvus", "milvus") from err
    if uri.endswith(".db"):
        try:
            import milvus_lite  # noqa: F401  (pymilvus starts it for a .db URI)
        except ImportError as err:
            raise MissingDependencyError("milvus_lite", "milvus") from err
        Path(uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        client = MilvusClient(uri=uri, timeout=30)
        client.list_collections()
    except Exception as err:  # pymilvus raises its own exceptions and grpc's for a dead address
        reason = getattr(err, "message", "") or str(err) or type(err).__name__
        raise StoreUnreachableError(
            f"cannot reach Milvus at {uri} ({reason}); nothing was read or written (fix: start the Milvus server "
            "at that address, set milvus_uri to a reachable one, or to a path ending in .db to run Milvus Lite "
            "in this process, or set store = \"local\")") from err
    return client


class _Collections:
    """The four collections of one prefix on one client, and the reads both sides share."""

    def __init__(self, client: Any, uri: str, prefix: str) -> None:
        self.client, self.uri, self.prefix = client, uri, prefix
        self.chunks, self.files_c = f"{prefix}_chunks", f"{prefix}_files"
        self.terms, self.meta = f"{prefix}_terms", f"{prefix}_meta"
        self.where = f"Milvus {uri} (collections {prefix}_*)"

    def exists(self) -> bool:
        return bool(self.client.has_collection(self.meta))

    def load(self) -> None:
        for name in (self.chunks, self.files_c, self.terms, self.meta):
            if self.client.has_collection(name):
                self.client.load_collection(name)

    def get_meta(self, key: str) -> Any:
        rows = self.client.query(self.meta, filter=f"key == {_lit(key)}", output_fields=["value"], limit=1)
        return json.loads(rows[0]["value"]) if rows else None

    def meta_like(self, prefix: str) -> list[tuple[str, Any]]:
        rows = self.client.query(self.meta, filter=f"key like {_lit(prefix + '%')}", output_fields=["key", "value"],
                                 limit=16_384)
        return [(r["key"], json.loads(r["value"])) for r in rows]

    def put_meta(self, rows: dict[str, Any]) -> None:
        self.client.upsert(self.meta, [{"key": k, "value": json.dumps(v, ensure_ascii=False), "v": _DUMMY}
                                       for k, v in rows.items()])

    def state(self) -> dict[str, Any] | None:
        if not self.exists():
            return None
        self.load()
        state: dict[str, Any] | None = self.get_meta("state")
        return state

    def query_all(self, name: str, expr: str, fields: list[str]) -> Iterator[dict[str, Any]]:
        """Every row matching `expr`: one query up to Milvus's 16,384-row window, an iterator beyond."""
        rows = self.client.query(name, filter=expr, output_fields=fields, limit=QUERY_WINDOW)
        if len(rows) < QUERY_WINDOW:
            yield from rows
            return
        it = self.client.query_iterator(name, batch_size=1000, filter=expr, output_fields=fields)
        try:
            while page := it.next():
                yield from page
        finally:
            it.close()

    def by_keys(self, keys: Sequence[int], fields: list[str], committed: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for lo in range(0, len(keys), BATCH):
            part = [int(k) for k in keys[lo:lo + BATCH]]
            out += self.client.query(self.chunks, filter=f"key in {part} and gen <= {committed}",
                                     output_fields=fields, limit=len(part))
        return out

    def files_at(self, committed: int) -> dict[str, tuple[str, FileRecord | None]]:
        """(row key, record or None for a removed file) of the newest row of each source up to `committed`."""
        best: dict[str, tuple[int, str, FileRecord | None]] = {}
        for r in self.query_all(self.files_c, f"gen <= {committed}", ["key", "source", "gen", "record"]):
            if r["source"] not in best or r["gen"] > best[r["source"]][0]:
                rec = FileRecord(**json.loads(r["record"])) if r["record"] else None
                best[r["source"]] = (r["gen"], r["key"], rec)
        return {s: (k, rec) for s, (_, k, rec) in best.items()}

    def dfs(self, terms: Iterable[str]) -> dict[str, int]:
        keys = sorted({term_key(t) for t in terms})
        out: dict[str, int] = {}
        for lo in range(0, len(keys), BATCH):
            part = keys[lo:lo + BATCH]
            for r in self.client.query(self.terms, filter=f"term in {_lit(part)}", output_fields=["term", "df"],
                                       limit=len(part)):
                out[r["term"]] = int(r["df"])
        return out


def _row_to_chunk(r: dict[str, Any]) -> Chunk:
    m = json.loads(r["meta"])
    return Chunk(id=r["id"], source=r["source"], text=r["text"], start=m["start"], end=m["end"],
                 pages=tuple(m["pages"]), heading_path=tuple(m["heading"]), ordinal=m["ordinal"],
                 page_labels=tuple(m.get("labels", ())), ocr_pages=tuple(m.get("ocr", ())))


CHUNK_FIELDS = ["key", "id", "source", "text", "meta"]


class MilvusStore:
    """A read-only view of the committed generation of one prefix. Thread-safe (pymilvus is)."""

    def __init__(self, cols: _Collections, state: dict[str, Any]) -> None:
        self.cols = cols
        self.committed = int(state["committed"])
        self.manifest: dict[str, Any] = state["manifest"]
        self.n_chunks = int(state["n"])
        self.total_len = int(state["total_len"])
        self.k1, self.b = float(self.manifest["bm25"]["k1"]), float(self.manifest["bm25"]["b"])
        self._files: dict[str, FileRecord] | None = None

    @classmethod
    def open(cls, cfg: Config, *, reuse: MilvusStore | None = None) -> MilvusStore:
        uri = resolve_uri(cfg)
        if reuse is not None and reuse.cols.uri == uri and reuse.cols.prefix == cfg.milvus_prefix:
            cols = reuse.cols
        else:
            cols = _Collections(_connect(uri), uri, cfg.milvus_prefix)
        state = cols.state()
        if state is None or int(state.get("committed", 0)) == 0:
            raise IndexMissingError(f"no index in {cols.where} yet (fix: python -m rag.ingest <folder> with "
                                    "store = \"milvus\" and the same milvus_uri and milvus_prefix)")
        check_compatible(state["manifest"], f"{cols.where} gen {state['committed']}", embed_model=cfg.embed_model,
                         where=cols.where)
        return cls(cols, state)

    @property
    def embed_model(self) -> str:
        model: str = self.manifest["embed_model"]
        return model

    @property
    def generation(self) -> str:
        return f"gen-{self.committed:06d}"

    def stale(self) -> bool:
        state = self.cols.get_meta("state")
        return state is None or int(state["committed"]) != self.committed

    def close(self) -> None:
        pass  # the client is shared with a re-opened view; pymilvus closes it at exit

    # --- scoring

    def bm25(self, query: Sequence[str], docs: Sequence[Sequence[str]], df: dict[str, int]) -> np.ndarray:
        """Exact Lucene BM25 of each tokenised doc for the query tokens (duplicates count, as in bm25s)."""
        avgdl = self.total_len / self.n_chunks if self.n_chunks else 0.0
        weights = {t: c * idf(df[term_key(t)], self.n_chunks) for t, c in Counter(query).items()
                   if df.get(term_key(t), 0) > 0}
        out = np.zeros(len(docs), dtype=np.float64)
        for i, toks in enumerate(docs):
            tf = Counter(toks)
            dl = doc_length(toks)
            out[i] = sum(w * tf_weight(tf[t], dl, avgdl, self.k1, self.b) for t, w in weights.items() if t in tf)
        return out

    def candidates(self, tokens: list[str], query_vec: np.ndarray, n: int, *,
                   sources: Sequence[str] | None = None) -> Pool:
        if self.n_chunks == 0 or (sources is not None and not sources):
            return Pool.empty()
        c = self.cols
        live = f"gen <= {self.committed}"
        if sources is not None:  # the file filter, applied by Milvus before either top-n is cut
            live += f" and source in [{', '.join(_lit(s) for s in sources)}]"
        df = c.dfs(tokens)
        sparse: dict[int, float] = {}
        for t, cnt in Counter(tokens).items():
            if df.get(term_key(t), 0) > 0:
                sparse[term_index(t)] = sparse.get(term_index(t), 0.0) + cnt * idf(df[term_key(t)], self.n_chunks)
        lex: list[int] = []
        if sparse:
            res = c.client.search(c.chunks, data=[sparse], anns_field="lexical", limit=min(n, self.n_chunks),
                                  filter=live, search_params={"metric_type": "IP"}, output_fields=["key"])
            lex = [int(h["entity"]["key"]) for h in res[0]]
        qv = np.asarray(query_vec, dtype=np.float32).reshape(-1)
        res = c.client.search(c.chunks, data=[qv.tolist()], anns_field="vector", limit=min(n, self.n_chunks),
                              filter=live, search_params={"metric_type": "IP"}, output_fields=["key"])
        near = [int(h["entity"]["key"]) for h in res[0]]
        fields = ["key", "source", "meta", "tokens", "vector"]
        got = {int(r["key"]): r for r in c.by_keys(sorted(set(lex + near)), fields, self.committed)}
        # In (source, ordinal) order, the local store's row order, so that ties fall the same way.
        order = sorted(got, key=lambda k: (got[k]["source"], json.loads(got[k]["meta"])["ordinal"]))
        rows = np.asarray(order, dtype=np.int64)
        bm25 = self.bm25(tokens, [got[k]["tokens"].split() for k in rows.tolist()], df)
        vecs = np.asarray([got[k]["vector"] for k in rows.tolist()], dtype=np.float32).reshape(len(rows), -1)
        dense = (vecs @ qv).astype(np.float64) if len(rows) else np.zeros(0)
        return Pool(rows, bm25, dense, np.isin(rows, lex) & (bm25 > 0), np.isin(rows, near))

    # --- chunks and files

    def chunks(self, rows: Iterable[int]) -> list[Chunk]:
        keys = [int(r) for r in rows]
        found = {int(r["key"]): _row_to_chunk(r) for r in self.cols.by_keys(keys, CHUNK_FIELDS, self.committed)}
        return [found[k] for k in keys]

    def chunk_by_id(self, chunk_id: str) -> Chunk | None:
        rows = self.cols.client.query(self.cols.chunks, filter=f"id == {_lit(chunk_id)} and gen <= {self.committed}",
                                      output_fields=CHUNK_FIELDS, limit=1)
        return _row_to_chunk(rows[0]) if rows else None

    def source_chunks(self, source: str) -> list[Chunk]:
        rows = self.cols.query_all(self.cols.chunks, f"source == {_lit(source)} and gen <= {self.committed}",
                                   CHUNK_FIELDS)
        return sorted((_row_to_chunk(r) for r in rows), key=lambda ch: ch.ordinal)

    def _file_map(self) -> dict[str, FileRecord]:
        if self._files is None:
            self._files = {s: rec for s, (_, rec) in self.cols.files_at(self.committed).items() if rec is not None}
        return self._files

    def files(self) -> list[FileRecord]:
        return [self._file_map()[s] for s in sorted(self._file_map())]

    def is_paginated(self, source: str) -> bool:
        rec = self._file_map().get(source)
        return bool(rec and rec.paginated)


class MilvusWriter:
    """The ingest's side: `prepare`, `previous`, `files`, then one `commit` (see the module docstring)."""

    def __init__(self, cols: _Collections, prefix: str) -> None:
        self.cols = cols
        self.prefix = prefix
        self.holder = f"{socket.gethostname()} pid {os.getpid()}"
        self._leased = False

    @classmethod
    def connect(cls, cfg: Config) -> MilvusWriter:
        uri = resolve_uri(cfg)
        return cls(_Collections(_connect(uri), uri, cfg.milvus_prefix), cfg.milvus_prefix)

    # --- the lease

    def _take_lease(self) -> None:
        lease = self.cols.get_meta("lock")
        now = time.time()
        if lease and lease.get("holder") != self.holder and float(lease.get("until", 0)) > now:
            until = time.strftime("%H:%M:%S", time.localtime(float(lease["until"])))
            raise IndexLockedError(f"another ingest ({lease.get('holder')}) is writing {self.cols.where}; wait for it "
                                   f"to finish (a lease left by a killed ingest expires at {until})")
        self.cols.put_meta({"lock": {"holder": self.holder, "until": now + LEASE_S}})
        self._leased = True

    def close(self) -> None:
        if self._leased:
            try:
                self.cols.client.delete(self.cols.meta, filter=f"key == {_lit('lock')}")
            except Exception:  # the lease expires by itself; a failed release must not hide the ingest's result
                pass
            self._leased = False

    # --- the collections

    def _create(self, dim: int) -> None:
        from pymilvus import DataType

        client = self.cols.client

        def side(name: str, fields: list[tuple[str, Any, dict[str, Any]]]) -> None:
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            for fname, kind, kw in fields:
                schema.add_field(fname, kind, **kw)
            schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)
            params = client.prepare_index_params()
            params.add_index("v", index_type="FLAT", metric_type="IP")
            create(name, schema, params)

        def create(name: str, schema: Any, params: Any) -> None:
            # sync=False: pymilvus otherwise polls the index state every 0.5 s (2 s of a 3 s test);
            # loading the collection waits for its index anyway.
            client.create_collection(name, schema=schema)
            client.create_index(name, params, sync=False)

        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("key", DataType.INT64, is_primary=True)
        schema.add_field("id", DataType.VARCHAR, max_length=64)
        schema.add_field("source", DataType.VARCHAR, max_length=MAX_TEXT)
        schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT)
        schema.add_field("tokens", DataType.VARCHAR, max_length=MAX_TEXT)
        schema.add_field("meta", DataType.VARCHAR, max_length=MAX_TEXT)
        schema.add_field("gen", DataType.INT64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("lexical", DataType.SPARSE_FLOAT_VECTOR)
        params = client.prepare_index_params()
        params.add_index("vector", index_type="FLAT", metric_type="IP")
        params.add_index("lexical", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        create(self.cols.chunks, schema, params)
        side(self.cols.files_c, [("key", DataType.VARCHAR, {"is_primary": True, "max_length": MAX_TEXT}),
                                 ("source", DataType.VARCHAR, {"max_length": MAX_TEXT}),
                                 ("gen", DataType.INT64, {}), ("record", DataType.VARCHAR, {"max_length": MAX_TEXT})])
        side(self.cols.terms, [("term", DataType.VARCHAR, {"is_primary": True, "max_length": 1024}),
                               ("df", DataType.INT64, {})])
        side(self.cols.meta, [("key", DataType.VARCHAR, {"is_primary": True, "max_length": 256}),
                              ("value", DataType.VARCHAR, {"max_length": MAX_TEXT})])
        self.cols.load()

    def _drop(self) -> None:
        for name in (self.cols.chunks, self.cols.files_c, self.cols.terms, self.cols.meta):
            if self.cols.client.has_collection(name):
                self.cols.client.drop_collection(name)
        self._leased = False

    # --- StoreWriter

    def prepare(self, *, rebuild: bool) -> None:
        state = self.cols.state()
        if state is None:
            return
        self._take_lease()
        committed = int(state.get("committed", 0))
        c = self.cols
        c.client.delete(c.chunks, filter=f"gen > {committed}")  # what a killed ingest wrote
        c.client.delete(c.files_c, filter=f"gen > {committed}")
        for key, keys in sorted(c.meta_like("retire:")):
            gen = int(key.split(":")[1])
            if gen <= committed:  # switched to, then killed before its deletions
                self._delete(keys)
            c.client.delete(c.meta, filter=f"key == {_lit(key)}")
        if state.get("dirty"):  # killed while document frequencies were being updated
            self._recount_terms(committed)
            c.put_meta({"state": {**state, "dirty": False}})

    def previous(self) -> Previous | None:
        state = self.cols.state()
        if state is None or int(state.get("committed", 0)) == 0:
            return None
        return Previous(f"gen-{int(state['committed']):06d}", state["manifest"],
                        f"{self.cols.where} gen {state['committed']}", self.cols.where)

    def files(self) -> dict[str, FileRecord]:
        state = self.cols.state()
        committed = int(state["committed"]) if state else 0
        return {s: rec for s, (_, rec) in self.cols.files_at(committed).items() if rec is not None}

    def commit(self, *, fresh: Sequence[ChunkRow], vectors: np.ndarray, keep: set[str], files: Sequence[FileRecord],
               manifest: dict[str, Any], cfg: Config) -> str:
        c = self.cols
        state = c.state()
        dim = int(manifest["embed_dim"])
        carried: list[tuple[ChunkRow, np.ndarray]] = []
        if state is not None and (state["manifest"].get("settings") != manifest.get("settings")
                                  or int(state["manifest"].get("dim", dim)) != dim):
            # Other chunking, tokens or model: nothing stored can be kept by key. Files that failed
            # now keep their earlier chunks, carried over into the new collections.
            carried = self._read_sources(keep, int(state["committed"]))
            self._drop()
            state = None
        if state is None:
            self._drop()
            self._create(dim)
            state = {"committed": 0, "n": 0, "total_len": 0, "manifest": {}}
            self._take_lease()
        committed = int(state["committed"])
        gen = committed + 1
        rows = list(fresh) + [r for r, _ in carried]
        vecs = np.concatenate([np.asarray(vectors, dtype=np.float32).reshape(len(fresh), dim),
                               np.asarray([v for _, v in carried], dtype=np.float32).reshape(len(carried), dim)])
        live_files = c.files_at(committed)
        touched = sorted(s for s, (_, rec) in live_files.items() if rec is not None and s not in keep)
        fresh_keys = {chunk_key(r.chunk.id) for r in rows}
        present = {int(r["key"]) for r in c.by_keys(sorted(fresh_keys), ["key"], committed)}
        retired: list[tuple[int, list[str]]] = []  # (key, tokens) of live chunks that go
        for lo in range(0, len(touched), 50):
            expr = f"source in {_lit(touched[lo:lo + 50])} and gen <= {committed}"
            for r in c.query_all(c.chunks, expr, ["key", "tokens"]):
                if int(r["key"]) not in fresh_keys:
                    retired.append((int(r["key"]), r["tokens"].split()))
        new = [(r, v) for r, v in zip(rows, vecs) if chunk_key(r.chunk.id) not in present]
        n = int(state["n"]) + len(new) - len(retired)
        total = (int(state["total_len"]) + sum(doc_length(r.tokens.split()) for r, _ in new)
                 - sum(doc_length(t) for _, t in retired))
        avgdl = total / n if n else 0.0
        for lo in range(0, len(new), BATCH):
            c.client.insert(c.chunks, [self._chunk_row(r, v, gen, avgdl, cfg) for r, v in new[lo:lo + BATCH]])
        file_rows = [{"key": f"{gen}:{f.source}", "source": f.source, "gen": gen,
                      "record": json.dumps(asdict(f), ensure_ascii=False), "v": _DUMMY} for f in files
                     if f.source not in live_files or live_files[f.source][1] != f]
        gone = sorted(s for s, (_, rec) in live_files.items() if rec is not None and s not in {f.source for f in files})
        file_rows += [{"key": f"{gen}:{s}", "source": s, "gen": gen, "record": "", "v": _DUMMY} for s in gone]
        for lo in range(0, len(file_rows), BATCH):
            c.client.insert(c.files_c, file_rows[lo:lo + BATCH])
        old_file_keys = [live_files[r["source"]][0] for r in file_rows if r["source"] in live_files]
        # Before the switch: the keys that go once it is made (applied by `prepare` after a kill).
        retire_chunks = [k for k, _ in retired]
        retire_rows: dict[str, Any] = {}
        for i, lo in enumerate(range(0, max(len(retire_chunks), len(old_file_keys)), 2000)):
            retire_rows[f"retire:{gen}:{i}"] = {"chunks": retire_chunks[lo:lo + 2000],
                                                "files": old_file_keys[lo:lo + 2000]}
        if retire_rows:
            c.put_meta(retire_rows)
        c.put_meta({"state": {**state, "dirty": True}})
        self._update_terms([r.tokens.split() for r, _ in new], [t for _, t in retired])
        manifest = {**manifest, "schema_version": SCHEMA_VERSION, "generation": f"gen-{gen:06d}", "chunks": n,
                    "files": len(files), "dim": dim, "dense_index": "flat", "store": "milvus",
                    "bm25": {"k1": cfg.bm25_k1, "b": cfg.bm25_b}}
        c.put_meta({"state": {"committed": gen, "n": n, "total_len": total, "manifest": manifest, "dirty": False},
                    "lock": {"holder": self.holder, "until": time.time() + LEASE_S}})  # the switch
        for key, keys in retire_rows.items():
            self._delete(keys)
            c.client.delete(c.meta, filter=f"key == {_lit(key)}")
        # Seal what was written: Milvus Lite rebuilds the index of unsealed rows on every search
        # (2.8 s a query over 646 SQuAD passages unsealed, ~0.3 s sealed).
        for name in (c.chunks, c.files_c, c.terms):
            c.client.flush(name)
        return f"gen-{gen:06d}"

    # --- helpers

    @staticmethod
    def _chunk_row(r: ChunkRow, vec: np.ndarray, gen: int, avgdl: float, cfg: Config) -> dict[str, Any]:
        ch = r.chunk
        toks = r.tokens.split()
        tf = Counter(toks)
        lexical: dict[int, float] = {}
        for t, cnt in tf.items():
            i = term_index(t)
            lexical[i] = lexical.get(i, 0.0) + tf_weight(cnt, doc_length(toks), avgdl, cfg.bm25_k1, cfg.bm25_b)
        meta = {"start": ch.start, "end": ch.end, "ordinal": ch.ordinal, "pages": list(ch.pages),
                "heading": list(ch.heading_path), "labels": list(ch.page_labels), "ocr": list(ch.ocr_pages)}
        if len(ch.text.encode("utf-8")) > MAX_TEXT or len(r.tokens.encode("utf-8")) > MAX_TEXT:
            raise IndexStateError(f"{ch.source}: chunk {ch.ordinal} holds more than {MAX_TEXT} bytes, Milvus's "
                                  "VARCHAR limit (fix: lower chunk_tokens)")
        return {"key": chunk_key(ch.id), "id": ch.id, "source": ch.source, "text": ch.text, "tokens": r.tokens,
                "meta": json.dumps(meta, ensure_ascii=False), "gen": gen,
                "vector": np.asarray(vec, dtype=np.float32).tolist(), "lexical": lexical or {0: 0.0}}

    def _delete(self, keys: dict[str, Any]) -> None:
        chunks, files = keys.get("chunks", []), keys.get("files", [])
        for lo in range(0, len(chunks), BATCH):
            self.cols.client.delete(self.cols.chunks, filter=f"key in {chunks[lo:lo + BATCH]}")
        for lo in range(0, len(files), BATCH):
            self.cols.client.delete(self.cols.files_c, filter=f"key in {_lit(files[lo:lo + BATCH])}")

    def _update_terms(self, added: Sequence[Sequence[str]], removed: Sequence[Sequence[str]]) -> None:
        delta: Counter[str] = Counter()
        for toks in added:
            delta.update({term_key(t) for t in toks})
        for toks in removed:
            delta.subtract({term_key(t) for t in toks})
        delta = Counter({t: d for t, d in delta.items() if d != 0})
        if not delta:
            return
        df = self.cols.dfs(delta)  # term keys are their own keys: term_key is idempotent below 200 chars
        rows = [{"term": t, "df": max(0, df.get(t, 0) + d), "v": _DUMMY} for t, d in delta.items()]
        for lo in range(0, len(rows), BATCH):
            self.cols.client.upsert(self.cols.terms, rows[lo:lo + BATCH])

    def _recount_terms(self, committed: int) -> None:
        df: Counter[str] = Counter()
        for r in self.cols.query_all(self.cols.chunks, f"gen <= {committed}", ["tokens"]):
            df.update({term_key(t) for t in r["tokens"].split()})
        self.cols.client.delete(self.cols.terms, filter='term != ""')
        rows = [{"term": t, "df": d, "v": _DUMMY} for t, d in df.items()]
        for lo in range(0, len(rows), BATCH):
            self.cols.client.upsert(self.cols.terms, rows[lo:lo + BATCH])

    def _read_sources(self, sources: set[str], committed: int) -> list[tuple[ChunkRow, np.ndarray]]:
        out: list[tuple[ChunkRow, np.ndarray]] = []
        for source in sorted(sources):
            for r in self.cols.query_all(self.cols.chunks, f"source == {_lit(source)} and gen <= {committed}",
                                         [*CHUNK_FIELDS, "tokens", "vector"]):
                out.append((ChunkRow(_row_to_chunk(r), r["tokens"]), np.asarray(r["vector"], dtype=np.float32)))
        return out
