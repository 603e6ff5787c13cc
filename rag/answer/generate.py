"""Generation: the `Generator` protocol every backend meets, and helpers over it.

A generator turns chat messages into streamed text pieces. The in-process llama-cpp-python
backend lives in `rag.models.llama`.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

Message = dict[str, str]  # {'role': 'system' | 'user' | 'assistant', 'content': ...}


@runtime_checkable
class Generator(Protocol):
    name: str
    context_window: int  # tokens, prompt and answer together

    def count_tokens(self, text: str) -> int: ...

    def stream(self, messages: list[Message], *, max_tokens: int, temperature: float | None = None,
               stop: Sequence[str] = ()) -> Iterator[str]: ...


def complete(gen: Generator, messages: list[Message], *, max_tokens: int, temperature: float | None = None,
             stop: Sequence[str] = ()) -> str:
    """The whole answer at once: `stream` joined."""
    return "".join(gen.stream(messages, max_tokens=max_tokens, temperature=temperature, stop=stop))
