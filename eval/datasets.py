"""Loaders for the public evaluation sets, returning small frozen records.

Detector sets (is a response supported by its context?) → `DetectorExample`:

- `load_halueval_qa`: HaluEval QA, JSON lines with knowledge / question / right_answer /
  hallucinated_answer. Each row gives two examples: the right answer (label 0) and the
  hallucinated one (label 1), both with the knowledge as context.
- `load_begin`: BEGIN (Wizard of Wikipedia dev), a TSV with knowledge, response, begin_label.
- `load_detector_jsonl`: our own format, one {"context", "response", "label"} per line.

Question-answering sets → `QAExample`: `load_squad` (SQuAD 1.1/2.0 and CMRC 2018, which share
the format) and `load_qa_jsonl`.

Nothing here downloads or caches: the files are read where they are (`../shared/data` in the
development checkout; a user's clone has no data).
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from rag.errors import RagError
from rag.index.tokenize import query_language


@dataclass(frozen=True)
class DetectorExample:
    context: str
    response: str
    label: int  # 1 = hallucinated / not supported by the context, 0 = supported


@dataclass(frozen=True)
class QAExample:
    id: str
    question: str
    answers: tuple[str, ...]  # empty: unanswerable (SQuAD 2.0 is_impossible)
    passages: tuple[tuple[str, str], ...]  # (title, text) of the passages that come with the question
    gold: tuple[tuple[str, int], ...] = ()  # (article title, paragraph index in the article)
    lang: str = "en"
    history: tuple[str, ...] = ()  # earlier turns of a conversation, oldest first


# BEGIN labels. 'Generic' (a response that says nothing checkable, e.g. "that sounds fun") is
# counted as not supported: the knowledge does not back it, and a RAG answer that ignores its
# sources is what the detector should catch. (The dev file we use has no 'Generic' rows.)
BEGIN_LABELS = {"Fully attributable": 0, "Not fully attributable": 1, "Generic": 1}


def _read_text(path: str | Path, what: str) -> str:
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise RagError(f"{what} file {path} does not exist (fix: pass --dataset with the right path)") from err


def _json_rows(text: str, path: str | Path) -> list[dict]:
    """A JSON list, or JSON lines (the HaluEval release is JSON lines despite its .json name)."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        return json.loads(stripped)
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise RagError(f"{path}:{i}: not a JSON object ({err.msg})") from err
    return rows


def load_halueval_qa(path: str | Path, *, with_question: bool = False) -> list[DetectorExample]:
    """Two examples per row: right answer (0) then hallucinated answer (1), context = knowledge.

    `with_question` prefixes 'Q: <question> A: ' to the response. Off by default: it lets the
    question's words (always in the knowledge) dilute the answer's, and in eval it scored lower.
    """
    out = []
    for row in _json_rows(_read_text(path, "HaluEval"), path):
        prefix = f"Q: {row['question']} A: " if with_question else ""
        out.append(DetectorExample(row["knowledge"], prefix + row["right_answer"], 0))
        out.append(DetectorExample(row["knowledge"], prefix + row["hallucinated_answer"], 1))
    return out


def load_begin(path: str | Path) -> list[DetectorExample]:
    """BEGIN TSV rows (columns knowledge, response, begin_label) → examples; see BEGIN_LABELS."""
    text = _read_text(path, "BEGIN")
    out = []
    for i, row in enumerate(csv.DictReader(text.splitlines(), delimiter="\t"), 2):
        label = row.get("begin_label", "")
        if label not in BEGIN_LABELS:
            raise RagError(f"{path}:{i}: unknown begin_label {label!r} (known: {', '.join(BEGIN_LABELS)})")
        out.append(DetectorExample(row["knowledge"], row["response"], BEGIN_LABELS[label]))
    return out


def begin_label_counts(path: str | Path) -> dict[str, int]:
    """Rows per raw BEGIN label, to show what 'Generic' mapping affects."""
    counts: dict[str, int] = {}
    for row in csv.DictReader(_read_text(path, "BEGIN").splitlines(), delimiter="\t"):
        counts[row.get("begin_label", "")] = counts.get(row.get("begin_label", ""), 0) + 1
    return counts


def load_detector_jsonl(path: str | Path) -> list[DetectorExample]:
    """One {"context": str, "response": str, "label": 0|1} per line."""
    out = []
    for i, row in enumerate(_json_rows(_read_text(path, "detector"), path), 1):
        try:
            label = int(row["label"])
            out.append(DetectorExample(str(row["context"]), str(row["response"]), label))
        except (KeyError, TypeError, ValueError) as err:
            raise RagError(f"{path}: row {i} needs context, response and a 0/1 label ({err})") from err
        if label not in (0, 1):
            raise RagError(f"{path}: row {i} has label {label}; use 1 = hallucinated, 0 = supported")
    return out


def load_squad(path: str | Path) -> list[QAExample]:
    """SQuAD-format JSON → one QAExample per question, in file order.

    passages = the question's own paragraph, as (article title, context); gold = ((title, index of
    the paragraph within its article),). answers are the distinct answer texts, empty for SQuAD 2.0
    `is_impossible` questions. lang is 'zh' when the question is mostly CJK (CMRC 2018), else 'en'.
    """
    try:
        data = json.loads(_read_text(path, "SQuAD"))["data"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise RagError(f"{path} is not a SQuAD-format file (a JSON object with 'data'): {err}") from err
    return list(_squad_examples(data))


def _squad_examples(data: list[dict]) -> Iterator[QAExample]:
    for article in data:
        title = str(article.get("title", ""))
        for p_index, para in enumerate(article["paragraphs"]):
            for qa in para["qas"]:
                answers = () if qa.get("is_impossible") else tuple(
                    dict.fromkeys(a["text"] for a in qa.get("answers", [])))
                lang = "zh" if query_language(qa["question"]) == "cjk" else "en"
                yield QAExample(id=str(qa["id"]), question=qa["question"], answers=answers,
                                passages=((title, para["context"]),), gold=((title, p_index),), lang=lang)


def squad_paragraphs(path: str | Path) -> list[tuple[tuple[str, int], str]]:
    """Every paragraph of a SQuAD-format file as ((title, index), text): the retrieval corpus."""
    data = json.loads(_read_text(path, "SQuAD"))["data"]
    return [((str(a.get("title", "")), i), p["context"]) for a in data for i, p in enumerate(a["paragraphs"])]


def load_qa_jsonl(path: str | Path) -> list[QAExample]:
    """One JSON object per line: id, question, answers [str], passages [[title, text]] or
    [{"title", "text"}], gold [[title, index]], lang, history [str] — all but question optional."""
    out = []
    for i, row in enumerate(_json_rows(_read_text(path, "QA"), path), 1):
        if "question" not in row:
            raise RagError(f"{path}: row {i} has no 'question'")
        passages = tuple((str(p["title"]), str(p["text"])) if isinstance(p, dict) else (str(p[0]), str(p[1]))
                         for p in row.get("passages", []))
        out.append(QAExample(
            id=str(row.get("id", i)), question=row["question"],
            answers=tuple(str(a) for a in row.get("answers", [])), passages=passages,
            gold=tuple((str(g[0]), int(g[1])) for g in row.get("gold", [])),
            lang=str(row.get("lang", "en")), history=tuple(str(h) for h in row.get("history", []))))
    return out
