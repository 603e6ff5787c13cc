"""Deterministic stand-ins for the models, for tests where the model itself is not under test."""
from __future__ import annotations

import hashlib
import time

import numpy as np

from rag.embed import BaseEmbedder
from rag.tokenize import tokenize


class FakeEmbedder(BaseEmbedder):
    """Bag of hashed lexical tokens → 64 dims: texts sharing words get similar vectors.

    `delay` (seconds per batch) makes ingests slow enough to be killed mid-way.
    """

    def __init__(self, dim: int = 64, *, name: str = "fake-embedder", delay: float = 0.0, batch_size: int = 8) -> None:
        self.name = name
        self.dim = dim
        self.delay = delay
        self.batch_size = batch_size
        self.languages = None
        self.calls = 0

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for tok in tokenize(t) or ["<empty>"]:
                h = int.from_bytes(hashlib.blake2b(tok.encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
            if not out[i].any():
                out[i, 0] = 1.0
        return out


class FakeGenerator:
    """Emits a scripted reply word by word and records the prompts it was given."""

    def __init__(self, reply: str | list[str] = "", *, context_window: int = 4096) -> None:
        self.replies = [reply] if isinstance(reply, str) else list(reply)
        self.name = "fake-generator"
        self.context_window = context_window
        self.offload = "CPU"
        self.prompts: list[list[dict[str, str]]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + text.count("\n")

    def stream(self, messages, *, max_tokens: int, temperature: float | None = None, stop=()):
        self.prompts.append(list(messages))
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        words = reply.split(" ")
        for i, w in enumerate(words[:max_tokens]):
            yield w if i == 0 else " " + w
