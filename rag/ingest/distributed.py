"""Distributed ingest on a Ray cluster: files parsed and chunks embedded by Ray workers, committed here.

    python -m rag.ingest FOLDER --ray 127.0.0.1:6379      # or --ray auto, or ray_address in rag.toml

The driver (this process) discovers the folder, hashes every file and skips unchanged ones exactly
as a local ingest does (rag.ingest.build.ingest, which this module only feeds). Two Ray Data stages
do the work: `map_batches(_ParseWorker)` parses and chunks the new and changed files, one file a
batch, and `map_batches(_EmbedWorker)` embeds the chunks the embedding cache does not hold, 256 a
batch. Both are callable classes run as fixed actor pools (`ActorPoolStrategy`, one actor a
cluster CPU; Ray 2.51 deprecated `concurrency=` for it), so each worker loads the embedding model
once, not once per batch; the parse workers load it too, for its tokenizer's token counts.
Results stream back to the driver, which shows them on the usual progress bars and commits the new
generation by the local code path: same chunk ids, vectors (to float rounding), manifest and report.

File bytes travel through Ray's object store, so the workers need no shared filesystem; this
package travels as a runtime_env `py_modules` entry, so they run the driver's code. They do need
its dependencies and the embedding model installed (the `ray` extra next to the project's own).
A worker process that dies is restarted and its batch retried (RETRIES times); code that raises in
a worker, or a worker that keeps dying, fails the ingest with an IngestError: nothing is committed,
the previous generation stays searchable, and the vectors already embedded wait in the embedding
cache for the next run.

Deliberately skipped: streaming file bytes from the driver in bounded windows (the new and changed
files of one run are held in memory together), workers that read a shared folder by path, GPU
scheduling, and overlapping parsing with embedding (the stages run one after the other).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import pickle
import socket
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import Config
from rag.errors import IngestError, LoadError, MissingDependencyError, RagError
from rag.ingest.build import IngestReport, ParsedFile, Progress, ingest, parse_file
from rag.models.embed import BaseEmbedder, Embedder
from rag.records import Failure

log = logging.getLogger(__name__)

EmbedderFactory = Callable[[], Embedder]  # picklable: it is called in every worker
EMBED_BATCH = 256  # chunks a Ray batch, as the local ingest embeds them between cache writes
CONNECT_TIMEOUT_S = 5.0
# A worker process that dies (killed, out of memory) is restarted and its batch retried this many
# times; Ray Data's default is forever, which turns a file that kills every worker into a hang.
RETRIES = 3


def _ray() -> Any:
    try:
        import ray
        import ray.data  # Ray Data is in the ray wheel; its pyarrow and pandas come with the extra
    except ImportError as err:
        raise MissingDependencyError("ray", "ray") from err  # or drop --ray / ray_address: ingest here
    return ray


def ray_ingest(folder: str | Path, cfg: Config, *, address: str | None = None,
               make_embedder: EmbedderFactory | None = None, rebuild: bool = False,
               progress: Progress | None = None) -> IngestReport:
    """Ingest `folder` into cfg.index_dir with the parsing and embedding done on the Ray cluster at
    `address` (default cfg.ray_address; "auto" finds a cluster started on this machine). The
    embedder is `make_embedder()` in each worker (default: the configured one)."""
    address = (address or cfg.ray_address).strip()
    if not address:
        raise IngestError("no Ray address given (fix: pass --ray HOST:PORT or --ray auto, or set ray_address)")
    make_embedder = make_embedder or functools.partial(_configured_embedder, cfg)
    ray = _ray()
    connected_here = _connect(ray, address)  # before the lock and any write: a bad address leaves no trace
    try:
        embedder = RayEmbedder(ray, make_embedder)
        return ingest(folder, cfg, embedder=embedder, rebuild=rebuild, progress=progress,
                      parse_many=functools.partial(ray_parse, ray, cfg, make_embedder))
    finally:
        if connected_here:
            ray.shutdown()


def _configured_embedder(cfg: Config) -> Embedder:
    from rag.models.factory import load_embedder

    return load_embedder(cfg)


def _connect(ray: Any, address: str) -> bool:
    """Join the cluster; False when this process is already connected to one (it stays connected)."""
    if ray.is_initialized():
        return False
    fix = ("start one with `ray start --head --port=6379` on the head machine, or pass the address that "
           "`ray start` printed (or --ray auto on a machine of the cluster)")
    if address != "auto":
        host, _, port = address.rpartition(":")
        host = host.removeprefix("ray://").strip("[]")
        if not host or not port.isdigit():
            raise IngestError(f"Ray address {address!r} is not HOST:PORT (e.g. 127.0.0.1:6379, or auto)")
        try:  # Ray itself waits about a minute for an absent cluster before giving up
            socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as err:
            raise IngestError(f"no Ray cluster answers at {address} ({err.strerror or err}); fix: {fix}") from err
    package = str(Path(__file__).resolve().parents[1])  # rag/: the workers run the driver's code
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False,
                 runtime_env={"py_modules": [package], "excludes": ["__pycache__", "*.pyc"]})
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise IngestError(f"could not join the Ray cluster at {address}: {err}; fix: {fix}") from err
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the ingest shows its own bars, fed as results arrive
    ctx.print_on_execution_start = False
    ctx.execution_options.preserve_order = True  # embeddings come back in the order they were sent
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled": by us
    return True


@contextlib.contextmanager
def _retry_args_accepted() -> Iterator[None]:
    """Ray 2.60 deprecates map_batches' extra remote args (max_restarts, max_task_retries) but names
    no replacement for them yet; the `ray` extra pins Ray below 2.61, so its notice is silenced here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        yield


def _workers(ray: Any) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _failed(stage: str, err: BaseException) -> IngestError:
    first = next((line for line in str(err).strip().splitlines() if line.strip()), type(err).__name__)
    return IngestError(f"a Ray worker failed while {stage}: {first[:300]}; nothing was committed and the previous "
                       "generation stays searchable (fix: see the worker's error in the Ray logs, "
                       "/tmp/ray/session_latest/logs on its node, then run the ingest again: vectors already "
                       "embedded are kept in the embedding cache)")


# --- parsing ---------------------------------------------------------------------------------------


class _ParseWorker:
    """A Ray Data actor: parses and chunks files with one tokenizer and OCR reader for its lifetime."""

    def __init__(self, cfg: Config, make_embedder: EmbedderFactory) -> None:
        from rag.ingest.build import _ocr_reader

        self.cfg = cfg
        self.count_tokens = make_embedder().count_tokens
        self.ocr = _ocr_reader(cfg, None)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for source, data in zip(batch["source"], batch["data"]):
            result: ParsedFile | Failure
            try:
                result = parse_file(str(source), bytes(data), cfg=self.cfg, count_tokens=self.count_tokens,
                                    ocr=self.ocr)
            except LoadError as err:  # a bad file is reported, as locally; anything else fails the ingest
                result = Failure(str(source), err.reason, err.fix)
            out.append(pickle.dumps(result))
        return {"source": batch["source"], "result": np.array(out, dtype=object)}


def ray_parse(ray: Any, cfg: Config, make_embedder: EmbedderFactory,
              files: list[tuple[str, bytes]]) -> Iterator[tuple[str, ParsedFile | Failure]]:
    """rag.ingest.build.ParseMany on Ray Data: one file a batch, results as they finish."""
    if not files:
        return
    workers = min(_workers(ray), len(files))
    ds = ray.data.from_items([{"source": s, "data": d} for s, d in files], override_num_blocks=len(files))
    with _retry_args_accepted():
        ds = ds.map_batches(_ParseWorker, fn_constructor_kwargs={"cfg": cfg, "make_embedder": make_embedder},
                            batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1,
                            batch_format="numpy", max_restarts=RETRIES, max_task_retries=RETRIES)
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for source, blob in zip(batch["source"], batch["result"]):
                yield str(source), pickle.loads(blob)
    except RagError:
        raise
    except Exception as err:  # Ray wraps the worker's exception in its own types (RayTaskError, UserCodeException)
        raise _failed("parsing", err) from err


# --- embedding -------------------------------------------------------------------------------------


class _EmbedWorker:
    """A Ray Data actor: the embedding model, loaded once, embeds batch after batch."""

    def __init__(self, make_embedder: EmbedderFactory) -> None:
        self.embedder = make_embedder()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"vector": self.embedder.embed([str(t) for t in batch["text"]])}


def _describe(make_embedder: EmbedderFactory) -> tuple[str, int, list[str] | None]:
    e = make_embedder()
    return e.name, e.dim, sorted(e.languages) if e.languages is not None else None


class RayEmbedder(BaseEmbedder):
    """The Embedder the driver's commit sees: texts go to `_EmbedWorker` actors on the cluster.
    Its name, dimension and languages come from one worker's copy of the model, asked at once so
    that the model loads there while the files are parsed."""

    def __init__(self, ray: Any, make_embedder: EmbedderFactory) -> None:
        self.ray = ray
        self.make_embedder = make_embedder
        self._info: tuple[str, int, list[str] | None] | None = None
        # num_cpus=0: it must not wait for the parse actors to hand back their CPUs
        self._pending = ray.remote(num_cpus=0)(_describe).remote(make_embedder)

    def _describe(self) -> tuple[str, int, list[str] | None]:
        if self._info is None:
            try:
                self._info = self.ray.get(self._pending)
            except Exception as err:
                raise _failed("loading the embedding model", err) from err
        return self._info

    # Properties, so that the first commit step that needs one waits for the worker's answer. The
    # setters only satisfy the Embedder protocol's plain attributes; nothing sets them.
    @property
    def name(self) -> str:
        return self._describe()[0]

    @name.setter
    def name(self, value: str) -> None:
        raise AttributeError("a RayEmbedder's name is its workers' model's")

    @property
    def dim(self) -> int:
        return self._describe()[1]

    @dim.setter
    def dim(self, value: int) -> None:
        raise AttributeError("a RayEmbedder's dim is its workers' model's")

    @property
    def languages(self) -> frozenset[str] | None:
        langs = self._describe()[2]
        return frozenset(langs) if langs is not None else None

    @languages.setter
    def languages(self, value: frozenset[str] | None) -> None:
        raise AttributeError("a RayEmbedder's languages are its workers' model's")

    def count_tokens(self, text: str) -> int:
        raise NotImplementedError("chunks are counted by the parse workers, never on the driver")

    def embed(self, texts: Sequence[str], *, progress: Iterable[int] | None = None) -> np.ndarray:
        parts = [v for _, v in self.embed_iter(texts)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), dtype=np.float32)

    def embed_iter(self, texts: Sequence[str], *, every: int = EMBED_BATCH) -> Iterable[tuple[int, np.ndarray]]:
        if not texts:
            return
        ray = self.ray
        blocks = (len(texts) + every - 1) // every
        ds = ray.data.from_items([{"text": t} for t in texts], override_num_blocks=blocks)
        with _retry_args_accepted():
            ds = ds.map_batches(_EmbedWorker, fn_constructor_kwargs={"make_embedder": self.make_embedder},
                                batch_size=every, num_cpus=1, batch_format="numpy",
                                compute=ray.data.ActorPoolStrategy(size=min(_workers(ray), blocks)),
                                max_restarts=RETRIES, max_task_retries=RETRIES)
        t0, lo = time.perf_counter(), 0
        try:
            for batch in ds.iter_batches(batch_size=every, batch_format="numpy"):
                vecs = np.asarray(batch["vector"], dtype=np.float32)
                yield lo, vecs
                lo += len(vecs)
        except RagError:
            raise
        except Exception as err:
            raise _failed("embedding", err) from err
        if lo != len(texts):
            raise IngestError(f"the Ray workers returned {lo} vectors for {len(texts)} chunks; nothing was "
                              "committed (fix: run the ingest again)")
        log.info("embedded %d chunks on Ray in %.1f s", lo, time.perf_counter() - t0)
