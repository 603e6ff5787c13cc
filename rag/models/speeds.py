"""Measured writing speed of each local model: tokens per second of its last answers, in a JSON file.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> record_speed(folder, "tiny.gguf", tokens=120, seconds=4.0)
    30.0
    >>> last_speed(folder, "tiny.gguf")
    30.0

`MeteredGenerator` wraps a loaded generator and records every answer it streams; the app wraps the
shared generator with it, so the sidebar can name the speed of the last answer.

The file is `speeds.json` beside the models (models/speeds.json): {"tiny.gguf": [30.0, ...]}, the
last `KEEP` answers of each model, newest last. Speed = tokens written / seconds from the first
streamed piece to the last, so the time spent reading the prompt is not counted: it is what a user
sees the model type at. Writes are atomic (a temporary file, then `os.replace`).

Deliberately skipped: locking between processes (the last writer wins; a lost sample costs nothing)
and reading speed (prompt tokens per second), which needs llama.cpp's own timings.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rag.answer.generate import Generator, Message

SPEEDS_FILE = "speeds.json"
KEEP = 5  # enough to smooth one slow answer (a cold cache, a busy machine), few enough to follow a change


def speeds_path(models_dir: str | Path) -> Path:
    return Path(models_dir) / SPEEDS_FILE


def load_speeds(models_dir: str | Path) -> dict[str, list[float]]:
    """{model file name: [tokens/s, ...]}; {} when nothing was measured or the file is unreadable."""
    try:
        data = json.loads(speeds_path(models_dir).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}  # a measurement, not a setting: a damaged file is started again
    if not isinstance(data, dict):
        return {}
    return {str(k): [float(x) for x in v if isinstance(x, int | float)] for k, v in data.items()
            if isinstance(v, list)}


def record_speed(models_dir: str | Path, model: str, *, tokens: int, seconds: float) -> float | None:
    """Add one answer's speed for `model`; returns it (None when too short to measure)."""
    if tokens < 2 or seconds <= 0:
        return None
    speed = round(tokens / seconds, 1)
    speeds = load_speeds(models_dir)
    speeds[model] = [*speeds.get(model, []), speed][-KEEP:]
    path = speeds_path(models_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(speeds, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return speed


def last_speed(models_dir: str | Path, model: str) -> float | None:
    values = load_speeds(models_dir).get(model)
    return values[-1] if values else None


def mean_speed(models_dir: str | Path, model: str) -> float | None:
    values = load_speeds(models_dir).get(model)
    return round(sum(values) / len(values), 1) if values else None


class MeteredGenerator:
    """`inner`, recording the speed of each text it streams (of `min_tokens` or more) in `models_dir`.

    Everything but `stream` is `inner`'s own (`name`, `count_tokens`, `yes_probability`…).
    """

    def __init__(self, inner: Generator, models_dir: str | Path, *, min_tokens: int = 8) -> None:
        self._inner = inner
        self._models_dir = Path(models_dir)
        self._min_tokens = min_tokens
        self.last_speed: float | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def inner(self) -> Generator:
        return self._inner

    def count_tokens(self, text: str) -> int:
        return self._inner.count_tokens(text)

    def stream(self, messages: list[Message], *, max_tokens: int, temperature: float | None = None,
               stop: Sequence[str] = ()) -> Iterator[str]:
        pieces = self._inner.stream(messages, max_tokens=max_tokens, temperature=temperature, stop=stop)
        first: float | None = None
        text: list[str] = []
        try:
            for piece in pieces:
                if first is None:
                    first = time.perf_counter()
                text.append(piece)
                yield piece
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:  # releases the model's lock when the consumer stops early
                close()
            if first is not None:
                tokens = self._inner.count_tokens("".join(text))
                if tokens >= self._min_tokens:
                    name = str(getattr(self._inner, "name", "model"))
                    try:
                        speed = record_speed(self._models_dir, name, tokens=tokens,
                                             seconds=time.perf_counter() - first)
                    except OSError:  # a read-only models folder: measuring is a bonus
                        speed = None
                    if speed is not None:
                        self.last_speed = speed
