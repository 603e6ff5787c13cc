"""The junk guard: recognise unusable model output early, while it streams, so it is never shown.

Small local models fail in a few recognisable ways. Measured with Qwen2.5-Coder-0.5B-Instruct on
the shipped questions under the first prompt contract, 19 of 27 answers were one of these:

- `markers`: only citation markers, `[1] [2] [3] [4] [5]`;
- `header-echo`: the source headers written back, `[1] quantization-guide.pdf p. 5 …`, until the cap;
- `repetition`: a phrase or line repeated until the token cap;
- `language`: a Chinese question answered in English, or the other way round;
- `question-echo`: the question restated as a statement with nothing added ("The default port of
  llama-server [1].");
- `heading-echo`: a heading or title of a source written back as the whole answer (measured with
  Qwen2.5-Coder-1.5B: "交叉编码器的缺点是什么？" answered "交叉编码器重排序：原理与实践 [3]。");
- `empty`: nothing, or only punctuation.

`junk_reason(text, …)` is the pure check; `StreamGuard` applies it to a growing text and says how
much of it is safe to show (the first `hold_chars` are held back until they pass). Deliberately
skipped: judging whether an answer is *right* (that is the verifier's job, sentence by sentence).
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from rag.answer.cite import find_markers, split_sentences, strip_markers
from rag.answer.prompt import is_refusal
from rag.index.tokenize import tokenize
from rag.text import CJK_CHAR, sentence_language, without_names

HOLD_CHARS = 40  # enough text to tell an answer from markers, headers or the wrong language
# Letters before a language verdict: fewer is noise ("Q4_K_M" opens Chinese answers). While streaming
# more are needed, so that "The documents do not…" can become a (restated) refusal first.
LANGUAGE_MIN_LETTERS = 12
LANGUAGE_MIN_LETTERS_STREAMING = 32
LOOP_MIN_BLOCK = 8  # a block this long written three times running is a loop, not a figure of speech
_FILE_NAME = re.compile(r"[\w\u3400-\u9fff.-]+\.(?:pdf|md|markdown|txt|html?|docx|csv|xlsx)\b", re.IGNORECASE)
_SOURCE_TAG = re.compile(r"<\s*/?\s*source\b", re.IGNORECASE)
_WORD = re.compile(r"\w", re.UNICODE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SENTENCE_END = (".", "!", "?", "。", "！", "？")


def _letters(text: str) -> tuple[int, int]:
    """(CJK characters, other letters) of a text."""
    cjk = len(CJK_CHAR.findall(text))
    other = sum(1 for ch in text if ch.isalpha()) - cjk
    return cjk, other


def wrong_language(text: str, question: str, *, min_letters: int = LANGUAGE_MIN_LETTERS) -> bool:
    """An answer whose script does not match the question's, once there are enough letters to tell.

    >>> wrong_language("The KV cache takes 2 GiB at 4096 tokens.", "KV 缓存有多大？")
    True
    >>> wrong_language("上下文为 4096 个词元时，KV 缓存共 2 GiB。", "KV 缓存有多大？")
    False
    >>> wrong_language("Q4_K_M", "Q4_K_M 是什么？")
    False
    """
    cjk, other = _letters(without_names(strip_markers(text)))  # names are no language (bge-reranker-v2-m3)
    if cjk + other < min_letters:
        return False
    share = cjk / (cjk + other)
    if sentence_language(question) == "cjk":
        return share < 0.2  # technical terms in Latin letters are normal inside a Chinese answer
    return share > 0.5


def repetition_start(text: str) -> int | None:
    """Where a loop begins: the text ends with the same block three times over (blocks of 8+ characters),
    numbers aside, so that a counting loop ("[1] 第一部分 [2] 第一部分 [3] …") is one too.

    >>> repetition_start("A is 1. " + "B is 2 and more text. " * 3)
    8
    >>> repetition_start("A is 1. B is 2. C is 3.") is None
    True
    >>> repetition_start("Intro. " + "".join(f"[{n}] 第一部分：两阶段检索 " for n in range(8, 12)))
    7
    """
    body, where = _numbers_masked(text.rstrip())
    n = len(body)
    for p in range(LOOP_MIN_BLOCK, n // 3 + 1):
        if body[n - p:] == body[n - 2 * p:n - p] == body[n - 3 * p:n - 2 * p]:
            i = n - 3 * p
            while i > 0 and body[i - 1] == body[i - 1 + p]:  # the loop may have begun mid-block
                i -= 1
            if i > 0 and not body[i - 1].isspace():  # a match that starts mid-word began at the next word
                nxt = next((k + 1 for k in range(i, min(n, i + p)) if body[k].isspace()), i)
                i = nxt
            return where[i] if i < n else len(text)
    return None


def _numbers_masked(text: str) -> tuple[str, list[int]]:
    """`text` with every run of digits as one '0', and for each masked character its offset in `text`.

    >>> _numbers_masked("a [12] b")
    ('a [0] b', [0, 1, 2, 3, 5, 6, 7])
    """
    out: list[str] = []
    where: list[int] = []
    for m in re.finditer(r"\d+|\D", text):
        out.append("0" if m.group()[0].isdigit() else m.group())
        where.append(m.start())
    return "".join(out), where


def _echoes_question(text: str, question: str) -> bool:
    """Every content word and number of the answer is already in the question: nothing was answered."""
    bare = strip_markers(text)
    answer, asked = set(tokenize(bare)), set(tokenize(question))
    figures = set(_NUMBER.findall(bare)) - set(_NUMBER.findall(question))
    return bool(answer) and answer <= asked and not figures


HEADING_MAX_CHARS = 80  # a longer line is a paragraph, not a heading


def _heading_key(text: str) -> str:
    """A heading compared as written, less case, markers, spaces and punctuation at either end."""
    key = "".join(unicodedata.normalize("NFKC", strip_markers(text)).casefold().split())
    punct = {ch for ch in key if unicodedata.category(ch).startswith("P")}
    return key.strip("".join(punct))


def heading_lines(texts: Iterable[str]) -> frozenset[str]:
    """The short lines of source texts (and heading paths) that end in no sentence punctuation: their
    titles and headings, as `junk_reason` compares them.

    >>> sorted(heading_lines(["交叉编码器重排序：原理与实践\\n第一部分：两阶段检索\\n检索分为两个阶段。"]))
    ['交叉编码器重排序:原理与实践', '第一部分:两阶段检索']
    """
    out = set()
    for text in texts:
        for line in text.splitlines():
            line = line.strip()
            if 2 <= len(_WORD.findall(line)) and len(line) <= HEADING_MAX_CHARS and not line.endswith(_SENTENCE_END):
                out.add(_heading_key(line))
    out.discard("")
    return frozenset(out)


def junk_reason(text: str, *, question: str, source_names: Sequence[str] = (), final: bool = False,
                headings: frozenset[str] = frozenset()) -> str | None:
    """Why `text` is not an answer to show, or None. `final`: the text is complete.

    >>> junk_reason("[1] [2] [3] [4] [5]", question="What is GGUF?", final=True)
    'markers'
    >>> junk_reason("[1] guide.pdf p. 2\\n[2] guide.pdf p. 3", question="What is GGUF?", source_names=["guide.pdf"])
    'header-echo'
    >>> junk_reason("GGUF is the file format of llama.cpp [1].", question="What is GGUF?", final=True) is None
    True
    >>> junk_reason("The default port of llama-server [1].", question="What is the default port of llama-server?",
    ...             final=True)
    'question-echo'
    >>> junk_reason("Part 2: How It Works [1].", question="How are passages scored?", final=True,
    ...             headings=heading_lines(["Part 2: How It Works\\nEach pair is read together."]))
    'heading-echo'

    `headings`: `heading_lines` of the prompt's sources.
    """
    bare = strip_markers(text)
    words = len(_WORD.findall(bare))
    if _SOURCE_TAG.search(text):
        return "header-echo"
    names = [n for n in source_names if n and n in text]
    if len(_FILE_NAME.findall(text)) >= 2 and (names or not source_names):
        return "header-echo"
    if find_markers(text) and words < 4 and (final or len(text.strip()) >= 12):
        return "markers"
    if repetition_start(text) is not None:
        return "repetition"
    letters = LANGUAGE_MIN_LETTERS if final else LANGUAGE_MIN_LETTERS_STREAMING
    # A refusal is restated in the right language.
    if wrong_language(text, question, min_letters=letters) and not is_refusal(text):
        return "language"
    if final:
        if words < 2:
            return "empty"
        if _echoes_question(bare, question):
            return "question-echo"
        if headings and _heading_key(bare) in headings:
            return "heading-echo"
    return None


@dataclass
class StreamGuard:
    """Watches a streamed answer: `feed` returns the text now safe to show, `reason` says why it stopped.

    >>> g = StreamGuard(question="What is GGUF?")
    >>> g.feed("[1] [2] [3]"), g.feed(" [4] [5]"), g.reason
    ('', '', 'markers')
    >>> g = StreamGuard(question="What is GGUF?")
    >>> g.feed("GGUF is the single-file format "), g.feed("that llama.cpp loads [1]."), g.finish()
    ('', 'GGUF is the single-file format that llama.cpp loads [1].', None)
    """

    question: str
    source_names: Sequence[str] = ()
    headings: frozenset[str] = frozenset()  # heading_lines of the sources
    hold_chars: int = HOLD_CHARS
    text: str = ""
    shown: int = 0  # characters of `text` already released
    reason: str | None = None
    stopped_at: int | None = field(default=None)  # where a late loop began: text[:stopped_at] is kept

    def feed(self, piece: str) -> str:
        """Add a piece; the newly releasable text ('' while held back or once junk is found)."""
        if self.done:
            return ""
        self.text += piece
        reason = junk_reason(self.text, question=self.question, source_names=self.source_names)
        if reason is not None:
            self._stop(reason)
            return ""
        if self.shown == 0 and len(self.text.strip()) < self.hold_chars:
            return ""
        out, self.shown = self.text[self.shown:], len(self.text)
        return out

    def finish(self) -> str | None:
        """The final verdict (None: `answer` is an answer); call once the model has stopped."""
        if self.reason is None:
            reason = junk_reason(self.answer, question=self.question, source_names=self.source_names, final=True,
                                 headings=self.headings)
            if reason is not None:
                self.reason = reason
        return self.reason

    @property
    def answer(self) -> str:
        """The text to keep: all of it, or what came before a loop."""
        return self.text if self.stopped_at is None else self.text[:self.stopped_at]

    @property
    def done(self) -> bool:
        """Whether to stop generating: junk was found, or a loop began."""
        return self.reason is not None or self.stopped_at is not None

    @property
    def pending(self) -> str:
        """Text held back but not junk: release it at the end of a short answer."""
        return "" if self.done else self.text[self.shown:]

    def _stop(self, reason: str) -> None:
        """A loop that began after some released text keeps that text; any other junk discards all."""
        if reason == "repetition":
            start = repetition_start(self.text) or 0
            keep = _last_sentence_end(self.text[:start])
            if keep > 0:
                self.stopped_at = keep
                return  # the answer is the text before the loop: not junk, just cut
        self.reason = reason


def _last_sentence_end(text: str) -> int:
    """Offset just after the last finished sentence of text, its markers included (0 if none).

    >>> _last_sentence_end("Q4_K_M is 4-bit [1]. It is very")
    20
    """
    ends = [b for a, b in split_sentences(text) if strip_markers(text[a:b]).endswith(_SENTENCE_END)]
    return ends[-1] if ends else 0
