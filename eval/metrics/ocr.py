"""OCR metrics: character error rate."""
from __future__ import annotations


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions, each 1), O(len(a)·len(b)).

    >>> edit_distance("kitten", "sitting")
    3
    """
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def char_error_rate(reference: str, hypothesis: str) -> float:
    """Edit distance / reference length (can pass 1.0 when the hypothesis is longer).

    >>> char_error_rate("检索增强生成", "检索增强生产")
    0.16666666666666666
    >>> char_error_rate("", ""), char_error_rate("", "x")
    (0.0, 1.0)
    """
    if not reference:
        return 0.0 if not hypothesis else 1.0
    return edit_distance(reference, hypothesis) / len(reference)
