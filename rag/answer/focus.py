"""Passages cut to the sentences that matter, so that a CPU reads a third of the prompt.

    texts = focus_passages(question, hits, budget=90, count_tokens=gen.count_tokens)
    # texts[i]: hit i's text, or its best window of whole sentences within `budget` tokens

Reading the prompt is most of an answer's time on a CPU (a 1,200-token prompt: 29 s at the 42
tokens/s a 2-core 2 GHz machine reads with the 0.5B model; decoding the answer takes 2 s). The
system prompt and worked example are the same for every question and stay in llama.cpp's KV
cache, so the passages are what each question pays for.

A passage longer than the budget keeps one window of consecutive sentences: it starts at the
sentence with the best answer score (`rag.answer.extractive.scored_sentences`: idf-weighted
question-term coverage, rank, answer shape, cosine) and grows one neighbour at a time, the
better-scoring side first, while it fits. The window is verbatim document text, a substring of
the chunk, so citations still point into the chunk the card shows.

Deliberately skipped: windows from several places of one chunk (the cut text would read as one
paragraph) and model-based compression (LLMLingua-style: a second model reading the passages is
what this avoids).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rag.answer.extractive import scored_sentences
from rag.records import Hit


def focus_passages(question: str, hits: Sequence[Hit], *, budget: int, count_tokens: Callable[[str], int],
                   embed: Callable[[list[str]], np.ndarray] | None = None) -> list[str]:
    """Each hit's text, or its best window of whole sentences within `budget` tokens (0: no cut).

    >>> from rag.records import Chunk
    >>> text = "GGUF is a file format. It was made for llama.cpp. Cats sleep a lot. Dogs bark."
    >>> hit = Hit(Chunk("c", "a.md", text, 0, len(text), (1,), ()), 1.0)
    >>> focus_passages("What is GGUF made for?", [hit], budget=10, count_tokens=lambda s: len(s.split()))
    ['GGUF is a file format. It was made for llama.cpp.']
    """
    texts = [h.chunk.text for h in hits]
    if budget <= 0:
        return texts
    long = [i for i, t in enumerate(texts) if count_tokens(t) > budget]
    if not long:
        return texts
    candidates, scores = scored_sentences(question, hits, embed=embed)
    for i in long:
        mine = [(c, float(s)) for c, s in zip(candidates, scores) if c.hit == i]
        if not mine:
            continue
        mine.sort(key=lambda cs: cs[0].start)
        best = max(range(len(mine)), key=lambda k: (mine[k][1], -k))
        lo = hi = best
        text = texts[i]

        def window(a: int, b: int, text: str = text, mine: list[tuple[Any, float]] = mine) -> str:
            return text[mine[a][0].start:mine[b][0].end].strip()

        while True:
            options = [k for k in (lo - 1, hi + 1) if 0 <= k < len(mine)]
            options.sort(key=lambda k: -mine[k][1])
            for k in options:
                a, b = min(lo, k), max(hi, k)
                if count_tokens(window(a, b)) <= budget:
                    lo, hi = a, b
                    break
            else:
                break
        texts[i] = window(lo, hi)
    return texts
