"""What counts as a question: empty or punctuation-only input is refused, a very long one is cut.

    check_question("  ?!  ")                         # EmptyQuestionError: Please ask a question …
    check_question("x" * 5000, max_chars=1000)       # Question(text=first 1,000 chars, truncated=True)

Every edge (rag.ask, the chat page, Pipeline.stream itself) applies the same rule, so "?" is never
"answered" with whatever chunk happens to rank first.

Deliberately skipped: guessing whether a string of words is a question at all (keywords are fine).
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from rag.errors import RagError

EMPTY_MESSAGE = "Please ask a question"


class EmptyQuestionError(RagError):
    """The input holds no letter or digit: nothing to search for."""

    def __init__(self) -> None:
        super().__init__(f"{EMPTY_MESSAGE} (the input has no letters or digits; fix: type a question, e.g. "
                         "'How much memory does a 7B model need?')")


@dataclass(frozen=True)
class Question:
    text: str  # what to search and answer with: stripped, at most max_chars
    full_length: int  # characters of the stripped input
    truncated: bool

    def notice(self) -> str:
        """The line shown with the answer when the question was cut ('' otherwise)."""
        if not self.truncated:
            return ""
        return (f"the question is {self.full_length:,} characters long; only its first {len(self.text):,} "
                "were used to search and answer")


def has_words(text: str) -> bool:
    """True when `text` holds a letter or a digit in any script.

    >>> has_words("?!… —"), has_words("7B?"), has_words("为什么")
    (False, True, True)
    """
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)


def check_question(text: str, *, max_chars: int = 1000) -> Question:
    """The question to use, or EmptyQuestionError. A longer one is cut at the last space before
    `max_chars` (at `max_chars` when there is none, as in Chinese text).

    >>> q = check_question("word " * 300, max_chars=12)
    >>> q.text, q.truncated, q.full_length
    ('word word', True, 1499)
    """
    clean = text.strip()
    if not has_words(clean):
        raise EmptyQuestionError()
    if max_chars <= 0 or len(clean) <= max_chars:
        return Question(clean, len(clean), False)
    cut = clean[:max_chars]
    space = cut.rfind(" ")
    if space > max_chars // 2:
        cut = cut[:space]
    return Question(cut.rstrip(), len(clean), True)
