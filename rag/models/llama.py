"""The llama-cpp-python backend for local GGUF models: loading, offload, finding the file, threads.

The chat template comes from the GGUF metadata (`tokenizer.chat_template`), which llama-cpp-python
applies when no chat_format is given, so any instruct GGUF works without per-model prompt code.
Offload is `n_gpu_layers` passed straight through (-1 = all layers; the same setting works on CUDA
and Metal builds, and is ignored by CPU builds).

Model lifetime: nothing is cached at module level. `load_generator` loads the model each time it is
called; the `Pipeline` that calls it once owns the generator for the life of the process. A llama.cpp
context is not re-entrant, so every generation holds the generator's lock; token counting only reads
the vocabulary and does not.
"""
from __future__ import annotations

import contextlib
import logging
import os
import platform
import re
import subprocess
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rag.answer.generate import Generator, Message
from rag.config import Config
from rag.errors import MissingDependencyError, ModelNotFoundError, RagError

if TYPE_CHECKING:  # for annotations only: llama_cpp is imported where a model is loaded, so `import rag` stays light
    import llama_cpp

log = logging.getLogger(__name__)


class LlamaCppGenerator:
    """A GGUF model run by llama-cpp-python.

    `seed` is passed with every request, so the same messages at the same temperature give the same
    answer (at temperature 0 decoding is greedy anyway). `chat_prefix_cache` keeps the KV state of
    earlier prompts in RAM (llama-cpp's LlamaRAMCache), so a follow-up turn that repeats the
    conversation so far only evaluates the new tokens.
    """

    def __init__(self, model_path: str | Path, *, n_ctx: int = 4096, n_gpu_layers: int = 0, n_threads: int = 0,
                 n_threads_batch: int = 0,
                 seed: int = 0, temperature: float = 0.1, verbose: bool = False, chat_prefix_cache: bool = True,
                 cache_bytes: int = 1 << 30, weight_repack: bool | None = None) -> None:
        try:
            import llama_cpp
        except ImportError as err:
            raise MissingDependencyError("llama_cpp", "llm") from err
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF model {str(path)!r} does not exist (fix: `python -m rag.models pull NAME` "
                                     "or set llm_model to the path of a .gguf file)")
        from rag.models.registry import find_recommended, size_problem

        rec = find_recommended(path.name)
        if rec is not None and (problem := size_problem(path, rec)):  # a stat: llama.cpp's own error is obscure
            raise ModelNotFoundError(problem)
        self.path = path
        self.name = path.name
        self.seed = seed
        self.temperature = temperature
        self.n_gpu_layers = n_gpu_layers
        # n_threads 0: per answer, all physical cores on an idle machine, one fewer on a busy one
        cores = physical_cores()
        self._adaptive = DecodeThreads(cores=cores) if not n_threads and cores > 1 else None
        self.n_threads = n_threads or default_decode_threads(cores)
        self.n_threads_batch = n_threads_batch or cores
        self._lock = threading.Lock()
        self._yes_no: tuple[list[int], list[int]] | None = None
        self.weight_repack = weight_repack_default() if weight_repack is None else weight_repack
        try:
            with model_params(weight_repack=self.weight_repack):
                self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_gpu_layers=n_gpu_layers,
                                           n_threads=self.n_threads, n_threads_batch=self.n_threads_batch,
                                           seed=seed, verbose=verbose)
        except (ValueError, RuntimeError) as err:  # llama-cpp reports a bad file as "Failed to load model"
            raise ModelNotFoundError(f"could not load GGUF model {str(path)!r}: {err} (fix: check the file is a "
                                     "complete download of a model this llama-cpp-python version supports, "
                                     "or upgrade llama-cpp-python)") from err
        if chat_prefix_cache:
            from llama_cpp.llama_cache import LlamaRAMCache

            self.llm.set_cache(LlamaRAMCache(capacity_bytes=cache_bytes))
            # deliberate: see _save_state_without_logits
            self.llm.save_state = types.MethodType(_save_state_without_logits, self.llm)  # type: ignore[method-assign]
        self.context_window = int(self.llm.n_ctx())
        self.offload = _describe_offload(llama_cpp, n_gpu_layers, self.n_layers)

    @property
    def n_layers(self) -> int:
        arch = self.llm.metadata.get("general.architecture", "")
        return int(self.llm.metadata.get(f"{arch}.block_count", 0) or 0)

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def stream(self, messages: list[Message], *, max_tokens: int, temperature: float | None = None,
               stop: Sequence[str] = ()) -> Iterator[str]:
        """Text pieces as the model produces them; at most `max_tokens` tokens.

        The lock is held until the iterator is exhausted or closed: consume it fully, or close it
        (a `for` loop that breaks should be wrapped in `contextlib.closing`).
        """
        if max_tokens < 1:
            return  # llama-cpp reads 0 as "unlimited"; here it means no room left
        temp = self.temperature if temperature is None else temperature
        with self._lock:
            self._set_decode_threads()
            try:
                chunks = self.llm.create_chat_completion(
                    messages=list(messages),  # type: ignore[arg-type]  # plain dicts are llama_cpp's message TypedDicts
                    stream=True, max_tokens=max_tokens, temperature=temp, stop=list(stop), seed=self.seed)
                for chunk in cast(Iterator[Any], chunks):  # stream=True: an iterator of chunks
                    delta = chunk["choices"][0]["delta"]
                    piece = delta.get("content") if isinstance(delta, dict) else None
                    if isinstance(piece, str) and piece:
                        yield piece
            except ValueError as err:
                if "exceed context window" not in str(err):
                    raise
                raise RagError(f"the prompt does not fit the model's context window of {self.context_window} "
                               f"tokens ({err}) (fix: raise n_ctx or lower top_k / chunk_tokens)") from err


    def _set_decode_threads(self) -> None:
        """Under the lock: the adaptive decode thread count for the answer about to be written."""
        if self._adaptive is None:
            return
        n = self._adaptive.now()
        if n != self.n_threads:
            import llama_cpp

            llama_cpp.llama_set_n_threads(self.llm.ctx, n, self.n_threads_batch)
            self.n_threads = n

    def yes_probability(self, messages: list[Message]) -> float:
        """P(yes) over the yes/no tokens of the first answer token (rag.answer.gate); nothing is sampled
        beyond one token. Same lock as `stream`."""
        from rag.answer.gate import NO_WORDS, YES_WORDS, p_yes_from

        if self._yes_no is None:
            self._yes_no = (self._first_tokens(YES_WORDS), self._first_tokens(NO_WORDS))
        seen: list[Any] = []

        def capture(_ids: Any, scores: Any) -> Any:
            seen.append(scores.copy())
            return scores

        import llama_cpp

        with self._lock:
            self.llm.create_chat_completion(messages=list(messages),  # type: ignore[arg-type]
                                            max_tokens=1, temperature=0.0, seed=self.seed,
                                            logits_processor=llama_cpp.LogitsProcessorList([capture]))
        return p_yes_from(seen[0], *self._yes_no) if seen else 0.0

    def _first_tokens(self, words: Sequence[str]) -> list[int]:
        firsts = (self.llm.tokenize(w.encode(), add_bos=False, special=False)[:1] for w in words)
        return sorted({ids[0] for ids in firsts if ids})


def _save_state_without_logits(llm: llama_cpp.Llama) -> llama_cpp.LlamaState:
    """Llama.save_state keeping one row of logits instead of min(n_tokens, n_batch) rows.

    llama-cpp-python copies the logits of up to n_batch tokens into every state the prefix cache
    saves (after each completion): 512 x 151,936 float32, about 300 MB for a Qwen2.5 vocabulary and
    up to 1 s per call on 2 cores; a 1 GB cache then holds three states. A restored state is decoded
    again before sampling (`_requires_eval`), so those logits are never read; one row keeps
    load_state's broadcast valid.
    """
    import llama_cpp

    full = llm.scores
    llm.scores = full[-1:]
    try:
        return llama_cpp.Llama.save_state(llm)
    finally:
        llm.scores = full


def _describe_offload(llama_cpp: types.ModuleType, n_gpu_layers: int, n_layers: int) -> str:
    """'CPU', 'GPU: all layers (CUDA)' or 'GPU: 20 of 28 layers (Metal)', for the UI and logs."""
    if n_gpu_layers == 0:
        return "CPU"
    if not llama_cpp.llama_supports_gpu_offload():
        return "CPU (this llama-cpp-python build has no GPU support; n_gpu_layers is ignored)"
    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    backend = next((b for b in ("CUDA", "Metal", "Vulkan", "ROCm", "HIP", "SYCL") if b in info), "GPU")
    if n_gpu_layers < 0 or (n_layers and n_gpu_layers >= n_layers):
        return f"GPU: all layers ({backend})"
    return f"GPU: {n_gpu_layers} of {n_layers} layers ({backend})" if n_layers else \
        f"GPU: {n_gpu_layers} layers ({backend})"


# --- finding a GGUF file --------------------------------------------------------------------

def resolve_gguf(spec: str, *, search_dirs: Sequence[Path] = (Path("models"),)) -> Path | None:
    """The GGUF file `spec` names, found without the network.

    spec '' → the first *.gguf in `search_dirs` (recommended models first, then by name), or None.
    Otherwise: an existing file (or a folder to search); a recommended name such as
    'qwen2.5-coder-1.5b', found in `search_dirs` (see `python -m rag.models list`); or
    'owner/repo/file.gguf' / 'owner/repo:file.gguf' from the local Hugging Face cache. A spec that
    names nothing raises ModelNotFoundError with the fix.
    """
    from rag.models.registry import RECOMMENDED, find_recommended, parse_hf_spec

    spec = spec.strip()
    if not spec:
        return _first_gguf(search_dirs, [m.file for m in RECOMMENDED])
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        found = _first_gguf([path], [m.file for m in RECOMMENDED])
        if found:
            return found
        raise ModelNotFoundError(f"no .gguf file in {str(path)!r} (fix: `python -m rag.models pull NAME --dir "
                                 f"{path}` or copy a GGUF model there)")
    rec = find_recommended(spec)
    if rec is not None:
        for d in search_dirs:
            if (Path(d) / rec.file).is_file():
                return Path(d) / rec.file
    repo: str | None
    file: str | None
    if rec is not None:
        repo, file = rec.repo, rec.file
    else:
        repo, file = parse_hf_spec(spec) or (None, None)
    if repo and file:
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(repo, file, local_files_only=True))
        except Exception:
            pass
    name = rec.name if rec else "NAME"
    raise ModelNotFoundError(
        f"GGUF model {spec!r} not found: not an existing file, not in {', '.join(str(d) for d in search_dirs)}, "
        f"not in the local Hugging Face cache (fix: `python -m rag.models pull {name}` "
        "(see `python -m rag.models list`), or set llm_model to the path of a .gguf file)")


_LATER_SHARD = re.compile(r"-(?!00001)\d{5}-of-\d{5}\.gguf$")  # llama.cpp loads a split model from shard 1


def _first_gguf(dirs: Sequence[Path], preferred: Sequence[str]) -> Path | None:
    """Recommended files first (in table order), then the rest by name; projectors and later shards skipped."""
    files = sorted(p for d in dirs if Path(d).is_dir() for p in Path(d).glob("*.gguf")
                   if p.is_file() and "mmproj" not in p.name.lower() and not _LATER_SHARD.search(p.name))
    rank = {name.lower(): i for i, name in enumerate(preferred)}
    files.sort(key=lambda p: rank.get(p.name.lower(), len(rank)))  # stable: name order within a rank
    return files[0] if files else None


def load_generator(cfg: Config) -> Generator | None:
    """The configured generator, or None when no model is configured and none is in models/.

    A configured model that cannot be found raises ModelNotFoundError:
    the user asked for it, so silently answering extractively would hide the mistake.
    `llm_backend = "openai"` loads the server-backed generator instead (rag.models.openai_backend);
    a server that cannot be reached raises its ServerError for the same reason.
    """
    if cfg.llm_backend == "openai":
        from rag.models.openai_backend import load_openai_generator

        return load_openai_generator(cfg)
    path = resolve_gguf(cfg.llm_model)
    if path is None:
        return None
    gen = LlamaCppGenerator(path, n_ctx=cfg.n_ctx, n_gpu_layers=cfg.n_gpu_layers, n_threads=cfg.n_threads,
                            n_threads_batch=cfg.n_threads_batch,
                            seed=cfg.seed, temperature=cfg.temperature,
                            chat_prefix_cache=cfg.chat_prefix_cache,
                            weight_repack=weight_repack_for(cfg.weight_repack))
    log.info("generator %s loaded: %s, %d threads, context %d", gen.name, gen.offload, gen.n_threads,
             gen.context_window)
    return gen


# --- weight repacking ------------------------------------------------------------------------

_PARAMS_LOCK = threading.Lock()


def weight_repack_default(cpuinfo: str | None = None, system_info: str | None = None) -> bool:
    """Whether llama.cpp may repack weights into its extra CPU buffer types: not when this
    llama-cpp-python was built with AMX (`llama_print_system_info` says AMX_INT8 = 1, as a native
    build on such a CPU is) and the CPU reports it.

    Measured on a 2-core Firecracker VM whose CPU reports amx_int8 (llama-cpp-python 0.3.36, built
    natively there): with repacking, the first decode of more than one token segfaulted in the AMX
    buffer's kernels, for both Qwen2.5-Coder models, although the kernel granted the AMX permission
    (arch_prctl), so nothing short of running it tells a working AMX from a broken one. A build
    made without AMX (CMAKE_ARGS with GGML_NATIVE=OFF and the AVX flags) keeps its AVX repacking;
    setup does not make one, since per answer it measured about even (the README's *AMX CPUs*).
    `weight_repack = "on"` is for machines where AMX works.

    >>> amx = "flags\\t: fpu avx512f amx_bf16 amx_tile amx_int8\\n"
    >>> weight_repack_default(amx, "AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1"), weight_repack_default(amx, "AVX512 = 1 |")
    (False, True)
    >>> weight_repack_default("flags: avx2\\n", "AVX2 = 1 | AMX_INT8 = 1 |")
    True
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace") if platform.system() == "Linux" else ""
        except OSError:
            cpuinfo = ""
    flags = {w for line in cpuinfo.splitlines() if line.startswith("flags") for w in line.split(":", 1)[-1].split()}
    if "amx_int8" not in flags:
        return True
    if system_info is None:
        try:
            import llama_cpp
        except ImportError:
            return True
        system_info = llama_cpp.llama_print_system_info().decode(errors="replace")
    return "AMX_INT8 = 1" not in system_info


def weight_repack_for(setting: str) -> bool:
    """Config.weight_repack ('auto', 'on', 'off') as the flag `model_params` takes."""
    return weight_repack_default() if setting == "auto" else setting == "on"


@contextlib.contextmanager
def model_params(*, weight_repack: bool) -> Iterator[None]:
    """While open, llama_cpp.Llama builds its model parameters with `use_extra_bufts = weight_repack`.

    llama-cpp-python's Llama takes no argument for it (llama.cpp's `--no-repack`), and it reads
    `llama_cpp.llama_model_default_params()` at the start of its constructor: that function is
    wrapped for the duration, under a lock so two loads cannot interleave.
    """
    import llama_cpp.llama_cpp as lib

    if weight_repack or "use_extra_bufts" not in {f[0] for f in lib.llama_model_params._fields_}:
        yield
        return
    with _PARAMS_LOCK:
        default = lib.llama_model_default_params

        def without_repack() -> Any:
            params = default()
            params.use_extra_bufts = False
            return params

        lib.llama_model_default_params = without_repack
        try:
            yield
        finally:
            lib.llama_model_default_params = default


# --- threads --------------------------------------------------------------------------------

class DecodeThreads:
    """How many threads to decode with now: every physical core when the rest of the machine is
    idle, one fewer when something else runs (Config.n_threads = 0).

    Measured here on 2 idle cores (Qwen2.5-Coder-1.5B Q4_K_M, no repack): 1 thread decoded 6.7
    tokens/s, 2 threads 12.3; with one core kept busy by another process, 1 thread 7.3 and 2 threads
    1.1 (llama.cpp's decode threads spin-wait on each other, so one preempted thread stalls all).
    "Something else" is the CPU time other processes used, from /proc/stat minus this process's own
    (/proc/self/stat), over `window` seconds sampled at most every `every` seconds; a quarter of a
    core or more counts as busy. Without those files (macOS, Windows), or where this process may
    use fewer CPUs than the machine has (a container: the others' load cannot be placed), it is
    always one fewer.
    """

    def __init__(self, *, window: float = 0.1, every: float = 2.0, busy_cores: float = 0.25,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 read: Callable[[], tuple[float, float] | None] | None = None, cores: int | None = None) -> None:
        self.cores = cores or physical_cores()
        self.window, self.every, self.busy_cores = window, every, busy_cores
        self.clock, self.sleep = clock, sleep
        self.read = read or (_cpu_seconds if not _confined() else lambda: None)
        self._at: float | None = None
        self.fewer = max(1, self.cores - 1)  # what a busy machine, or an unknown one, gets
        self._threads = self.fewer
        self.others = float("nan")  # cores' worth of CPU the other processes used in the last sample

    def now(self) -> int:
        t = self.clock()
        if self._at is not None and t - self._at < self.every:
            return self._threads
        first = self.read()
        if first is None:
            self._at, self._threads = t, self.fewer
            return self._threads
        self.sleep(self.window)
        second = self.read()
        self._at = self.clock()
        if second is None or self._at <= t:
            return self._threads
        self.others = max(0.0, (second[0] - first[0]) - (second[1] - first[1])) / (self._at - t)
        self._threads = self.cores if self.others < self.busy_cores else self.fewer
        return self._threads


def _cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds all processes used, CPU seconds this process used), or None where unknown."""
    try:
        cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    busy = sum(int(v) for i, v in enumerate(cpu[1:8]) if i not in (3, 4))  # all but idle and iowait
    return busy / hz, (int(own[11]) + int(own[12])) / hz  # utime, stime


def _confined() -> bool:
    """Whether this process may use fewer CPUs than the machine has (a container, `taskset`)."""
    return hasattr(os, "sched_getaffinity") and (os.cpu_count() or 1) > len(os.sched_getaffinity(0))


def default_decode_threads(cores: int | None = None) -> int:
    """Physical cores (`cores`, else `physical_cores()`) minus one, at least one: see
    Config.n_threads for the measurement behind it.

    Leaving a core free keeps decoding fast when anything else runs (the UI, an ingest, the
    embedder); llama.cpp's decode threads wait on each other, so one preempted thread stalls all.
    """
    return max(1, (cores or physical_cores()) - 1)


def physical_cores() -> int:
    """Physical CPU cores available to this process: llama.cpp runs slower on hyper-threads.

    Linux: distinct (physical id, core id) pairs in /proc/cpuinfo, capped by the CPUs this process
    may run on; macOS: `sysctl hw.physicalcpu`; elsewhere os.cpu_count().
    """
    n = 0
    if platform.system() == "Linux":
        try:
            n = count_physical_cores(Path("/proc/cpuinfo").read_text(errors="replace"))
        except OSError:
            n = 0
    elif platform.system() == "Darwin":
        try:
            n = int(subprocess.run(["sysctl", "-n", "hw.physicalcpu"], capture_output=True, text=True,
                                   timeout=5).stdout.strip() or 0)
        except (OSError, ValueError, subprocess.SubprocessError):
            n = 0
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(n, available) if n else available)


def count_physical_cores(cpuinfo: str) -> int:
    """Distinct (physical id, core id) pairs; 0 when the file does not list them (some ARM kernels).

    >>> count_physical_cores("physical id : 0\\ncore id : 0\\n\\nphysical id : 0\\ncore id : 0\\n\\n"
    ...                      "physical id : 0\\ncore id : 1\\n")
    2
    """
    cores: set[tuple[str, str]] = set()
    for block in re.split(r"\n\s*\n", cpuinfo):
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if "core id" in fields:
            cores.add((fields.get("physical id", "0"), fields["core id"]))
    return len(cores)
