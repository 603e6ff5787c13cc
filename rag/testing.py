"""Deterministic stand-ins for the models, for tests where the model itself is not under test."""
from __future__ import annotations

from rag.models.embed import HashEmbedder


class FakeEmbedder(HashEmbedder):
    """The hashing embedder under the name the tests' configs use."""

    def __init__(self, dim: int = 64, *, name: str = "fake-embedder", delay: float = 0.0, batch_size: int = 8) -> None:
        super().__init__(dim, name=name, delay=delay, batch_size=batch_size)


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
