"""Deterministic stand-ins for the models, for tests and benchmarks where the model itself is not under test.

- `FakeEmbedder`, `FakeGenerator`: no model at all (hashed tokens; a scripted reply); `SlowGenerator`
  streams that reply slowly under one lock, as a model in this process does.
- `write_tiny_gguf`, `write_tiny_cross_encoder`: tiny random-weight models built on the spot, so
  tests never need the network. The GGUF (~0.2 MB, llama architecture) loads and runs in llama.cpp
  in milliseconds; the cross-encoder (~0.1 MB BERT) loads in sentence-transformers. Their outputs
  are meaningless but deterministic: what they exercise is the plumbing (loading, chat template,
  streaming, token limits, seeding, sorting). `gguf`, `numpy`, `torch` and `transformers` are
  imported inside the writers, so importing this module stays light.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.models.embed import HashEmbedder

if TYPE_CHECKING:  # Pillow is imported where a scan is drawn
    from PIL.Image import Image


class FakeEmbedder(HashEmbedder):
    """The hashing embedder under the name the tests' configs use."""

    def __init__(self, dim: int = 64, *, name: str = "fake-embedder", delay: float = 0.0, batch_size: int = 8) -> None:
        super().__init__(dim, name=name, delay=delay, batch_size=batch_size)


class FailingEmbedder(FakeEmbedder):
    """A FakeEmbedder whose embedding breaks after `fail_after` batches, as a model running out of
    memory does: for the tests of what a failed worker leaves behind (its token counts still work)."""

    def __init__(self, dim: int = 64, *, fail_after: int = 0, **kwargs: Any) -> None:
        super().__init__(dim, **kwargs)
        self.fail_after = fail_after

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        if self.calls >= self.fail_after:
            raise RuntimeError(f"embedding failed after {self.calls} batches (FailingEmbedder)")
        return super().embed_batch(texts)


class DyingEmbedder(FakeEmbedder):
    """A FakeEmbedder whose process is killed (SIGKILL) on its first batch while the file `marker`
    does not exist yet; it creates it first, so only one process dies: a worker killed mid-ingest."""

    def __init__(self, dim: int = 64, *, marker: str, **kwargs: Any) -> None:
        super().__init__(dim, **kwargs)
        self.marker = marker

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        import os
        import signal

        if not os.path.exists(self.marker):
            Path(self.marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return super().embed_batch(texts)


class FakeGenerator:
    """Emits a scripted reply word by word and records the prompts it was given.

    Requests to translate a search question or an answer sentence (rag.answer.translate) are answered
    apart, from `translations` ({text: translation}; a text not in it comes back unchanged, which the
    pipeline ignores), and recorded in `translated`, so the scripted replies and `prompts` stay
    those of the answers.
    """

    def __init__(self, reply: str | list[str] = "", *, context_window: int = 4096,
                 translations: dict[str, str] | None = None) -> None:
        self.replies = [reply] if isinstance(reply, str) else list(reply)
        self.name = "fake-generator"
        self.context_window = context_window
        self.offload = "CPU"
        self.prompts: list[list[dict[str, str]]] = []
        self.translations = dict(translations or {})
        self.translated: list[str] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + text.count("\n")

    def stream(self, messages: Iterable[dict[str, str]], *, max_tokens: int, temperature: float | None = None,
               stop: Sequence[str] = ()) -> Iterator[str]:
        from rag.answer.translate import PROMPTS

        messages = list(messages)
        if messages and messages[0]["content"] in PROMPTS:
            question = messages[-1]["content"]
            self.translated.append(question)
            yield self.translations.get(question, question)
            return
        self.prompts.append(messages)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        words = reply.split(" ")
        for i, w in enumerate(words[:max_tokens]):
            yield w if i == 0 else " " + w


class SlowGenerator(FakeGenerator):
    """A FakeGenerator that holds one lock while it streams and sleeps `delay` seconds a word, as
    LlamaCppGenerator holds its model: for tests of answers queueing and of clients that leave mid-answer.
    `active` counts the streams holding the lock now (0 once every stream has ended or been closed)."""

    def __init__(self, reply: str | list[str] = "", *, delay: float = 0.05, **kwargs: Any) -> None:
        super().__init__(reply, **kwargs)
        self.name = "slow-fake-generator"
        self.delay = delay
        self.active = 0
        self._lock = threading.Lock()

    def stream(self, messages: Iterable[dict[str, str]], *, max_tokens: int, temperature: float | None = None,
               stop: Sequence[str] = ()) -> Iterator[str]:
        delay = self.delay  # as it was when this answer began: a test may speed up the next one
        with self._lock:
            self.active += 1
            try:
                for piece in super().stream(messages, max_tokens=max_tokens, temperature=temperature, stop=stop):
                    time.sleep(delay)
                    yield piece
            finally:
                self.active -= 1


# A ChatML-style template: llama-cpp-python renders it from the GGUF metadata with Jinja.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable-character map that byte-level BPE vocabularies are written in."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, n = keep[:], 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(keep, chars)}


def write_tiny_gguf(path: str | Path, *, seed: int = 0) -> Path:
    """A 2-layer llama (dim 64, 4 heads, ff 128, ctx 512) with a byte-level BPE vocab of 264 tokens.

    Vocabulary: 256 byte tokens, a few merges, then <s> </s> <unk> <|im_start|> <|im_end|> as control
    tokens. The output projection is zero for every token but printable ASCII, so greedy decoding
    emits readable text and never ends early: generation always runs to max_tokens.
    """
    import gguf
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_embd, n_head, n_ff, n_layer, n_ctx = 64, 4, 128, 2, 512

    byte_chars = _bytes_to_unicode()
    tokens = [byte_chars[b] for b in range(256)]
    types = [gguf.TokenType.NORMAL] * 256
    merges = ["Ġ t", "h e", "Ġt he", "i n"]  # llama.cpp insists on a merges list; a few suffice
    for m in merges:
        tokens.append(m.replace(" ", ""))
        types.append(gguf.TokenType.NORMAL)
    specials = ["<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>"]
    first_special = len(tokens)
    tokens += specials
    types += [gguf.TokenType.CONTROL, gguf.TokenType.CONTROL, gguf.TokenType.UNKNOWN,
              gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    bos, eos, unk = first_special, first_special + 1, first_special + 2
    n_vocab = len(tokens)

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-test-llama")
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([int(t) for t in types])
    w.add_token_merges(merges)
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eos)
    w.add_unk_token_id(unk)
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    def mat(rows: int, cols: int, scale: float = 0.2) -> np.ndarray:
        # numpy (rows=out, cols=in) is GGUF's ne = {in, out}, as llama.cpp expects for weights
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)

    ones = np.ones(n_embd, dtype=np.float32)
    w.add_tensor("token_embd.weight", mat(n_vocab, n_embd, 1.0))
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        w.add_tensor(f"blk.{i}.attn_q.weight", mat(n_embd, n_embd))
        w.add_tensor(f"blk.{i}.attn_k.weight", mat(n_embd, n_embd))
        w.add_tensor(f"blk.{i}.attn_v.weight", mat(n_embd, n_embd))
        w.add_tensor(f"blk.{i}.attn_output.weight", mat(n_embd, n_embd))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        w.add_tensor(f"blk.{i}.ffn_gate.weight", mat(n_ff, n_embd))
        w.add_tensor(f"blk.{i}.ffn_up.weight", mat(n_ff, n_embd))
        w.add_tensor(f"blk.{i}.ffn_down.weight", mat(n_embd, n_ff))
    w.add_tensor("output_norm.weight", ones)
    out = mat(n_vocab, n_embd, 1.0)
    printable = np.zeros(n_vocab, dtype=bool)
    printable[[ord(c) for c in "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.,"]] = True
    out[~printable] = 0.0  # logit 0 for the rest: some printable token always scores higher
    w.add_tensor("output.weight", out)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


_WORDS = """the a an of to in and or is are was were be been it its this that for on with as by at from
not no yes what which who when where why how do does did can could should would will may might
model models data rag search query answer question document documents page pages text chunk chunks
paris france capital city river water cat cats dog dogs sun moon earth planet star light heat energy
python code program file files error errors test tests index retrieve rank rerank score scores
""".split()


def write_tiny_cross_encoder(directory: str | Path, *, seed: int = 0) -> Path:
    """A random 2-layer BERT (hidden 32, 2 heads) with one output label, plus a local WordPiece vocab.

    Loadable with `sentence_transformers.CrossEncoder(directory)`; scores are arbitrary but fixed.
    """
    import string

    import torch

    # BertTokenizerFast is a lazy alias in transformers 5 (of BertTokenizer) that its stubs do not declare.
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast  # type: ignore[attr-defined]

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab += ["##" + c for c in string.ascii_lowercase + string.digits]
    vocab += [w for w in dict.fromkeys(_WORDS) if w not in vocab]
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")

    torch.manual_seed(seed)
    # num_labels reaches PretrainedConfig through **kwargs, which BertConfig's annotated signature omits.
    config = BertConfig(  # type: ignore[call-arg]
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=512, num_labels=1,
        initializer_range=0.2)  # wide init: scores that differ visibly between texts
    model = BertForSequenceClassification(config)
    model.eval()  # type: ignore[no-untyped-call]  # transformers overrides Module.eval without annotations
    # transformers 5 takes `vocab` (a dict or a vocab.txt path); 4.x took `vocab_file`
    try:
        tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True,
                                      model_max_length=512)
    except TypeError:
        tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True, model_max_length=512)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


# --- scanned pages with known text (rag.ingest.ocr tests, eval/ocr_choice.py) -------------------------


def cjk_font() -> Path | None:
    """A font file that has Chinese glyphs (fontconfig's `fc-list :lang=zh`), or None."""
    import shutil
    import subprocess

    if shutil.which("fc-list") is None:
        return None
    out = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True, check=False).stdout
    paths = sorted(line.split(":")[0].strip() for line in out.splitlines() if line.strip())
    return Path(paths[0]) if paths else None


def scan_image(text: str, *, font: str | Path | None = None, size: int = 30, width: int = 1600,
               noise: float = 18.0, specks: float = 0.002, angle: float = 0.6, seed: int = 0) -> Image:
    """`text` drawn black on white as a page scanner sees it, a PIL image ('L').

    Wrapped at `width` px (at word breaks for spaced text, anywhere in Chinese), then rotated by
    `angle` degrees, with Gaussian grey noise of `noise` levels (σ) and a share `specks` of black and
    white pixels. `size` 30 px is 11 pt at 200 dpi. `font` None: Pillow's own scalable font (Latin only).
    """
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    face = ImageFont.truetype(str(font), size) if font else ImageFont.load_default(size)
    margin, gap = 2 * size, int(size * 1.5)
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    lines: list[str] = []
    for para in text.split("\n"):
        line = ""
        units = para.split(" ") if " " in para else list(para)
        sep = " " if " " in para else ""
        for unit in units:
            trial = line + sep + unit if line else unit
            if line and measure.textlength(trial, font=face) > width - 2 * margin:
                lines.append(line)
                line = unit
            else:
                line = trial
        lines.append(line)
    height = 2 * margin + gap * len(lines)
    img = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((margin, margin + i * gap), line, font=face, fill=0)
    img = img.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    rng = np.random.default_rng(seed)
    pixels = np.asarray(img, dtype=np.float32) + rng.normal(0.0, noise, (img.height, img.width))
    flips = rng.random(pixels.shape)
    pixels[flips < specks / 2] = 0
    pixels[flips > 1 - specks / 2] = 255
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")


def scanned_pdf(pages: Sequence[str], *, dpi: int = 200, **scan: Any) -> bytes:
    """A PDF whose pages are only images of `pages` (see `scan_image`): no text layer at all."""
    from fpdf import FPDF

    pdf = FPDF(unit="pt")
    for i, text in enumerate(pages):
        img = scan_image(text, seed=i, **scan)
        w, h = img.width * 72 / dpi, img.height * 72 / dpi
        pdf.add_page(format=(w, h))
        pdf.image(img, x=0, y=0, w=w, h=h)
    return bytes(pdf.output())
