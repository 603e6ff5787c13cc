"""The one reader of the evaluation sets: every harness gets its questions and documents here.

Question sets → `QASet`: the documents to index (built from the file) and `Question`s whose
`gold` names those documents by `source`, the id the index stores and a `Hit` carries back.

- `load_squad`: SQuAD 1.1/2.0 and CMRC 2018 (the same format). One document per paragraph,
  source `paragraph_source(article, paragraph)` = 'AAA-PPP' (indices in file order), title the
  article's with '_' as spaces. A question's gold is its own paragraph; SQuAD 2.0 `is_impossible`
  questions (and any without an answer) have no answers and type 'unanswerable'; lang is 'zh'
  when the question is mostly CJK (CMRC), else 'en'.
- `load_cranfield`: Cranfield 1400 (a folder with cran.all.1400, cran.qry, cranqrel). One
  document per abstract, source its `.I` number; graded gold from cranqrel (gain 5 - code, so
  1 'complete answer' → 4). No reference answers: type 'query', answerable by its judgements.
- `load_passages_jsonl`: rows that bring their own passages: question, answers [str], passages
  [{title, text, gold?}] or [[title, text]] or [text], lang, history [str]. One document per
  distinct passage text, source `passage_source(n)` = 'NNNNNN' in order of first appearance; a
  question's gold is its first passage and any marked `"gold": true`.
- `load_questions_jsonl`: the shipped format (data/eval/README.md): gold [{source, page}] names
  files of a documents folder, which is not read here. The shipped sets have names (`SHIPPED`):
  'sample' (data/eval/questions.jsonl) and 'crosslingual' (data/eval/crosslingual.jsonl, every
  question with a `direction` such as 'en→zh'); `dataset_path` turns a name into its file.
- `load_qa(path, fmt)`: one of the above by format ('squad', 'cranfield', 'jsonl' → passages or
  shipped questions, told apart by the first row); `guess_format` picks it from the path.

Detector sets (is a response supported by its context?) → `DetectorExample`:

- `load_halueval_qa`: HaluEval QA, JSON lines with knowledge / question / right_answer /
  hallucinated_answer. Each row gives two examples: the right answer (label 0) and the
  hallucinated one (label 1), both with the knowledge as context.
- `load_begin`: BEGIN (Wizard of Wikipedia dev), a TSV with knowledge, response, begin_label.
- `load_detector_jsonl`: our own format, one {"context", "response", "label"} per line.

Nothing here downloads or caches: the files are read where they are (`../shared/data` in the
development checkout; a user's clone has no data). Deliberately skipped: PubMedQA (no harness
reads it).
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from rag.errors import RagError
from rag.records import Document, Page
from rag.text import sentence_language

FORMATS = ("squad", "cranfield", "jsonl")
EVAL_DIR = Path(__file__).resolve().parents[1] / "data" / "eval"
SHIPPED = {"sample": EVAL_DIR / "questions.jsonl", "crosslingual": EVAL_DIR / "crosslingual.jsonl"}


# --- records -----------------------------------------------------------------------------------------


class Gold(NamedTuple):
    """Where an answer is: a document source, optionally one page of it, with a graded gain."""

    source: str
    page: int | None = None  # None: any page of the source
    gain: float = 1.0  # > 0 is relevant; Cranfield grades 1..4, every other set 1


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: tuple[str, ...]  # reference answer first; empty: unanswerable or no reference (Cranfield)
    gold: tuple[Gold, ...] = ()
    lang: str = "en"
    type: str = ""  # factoid | followup | unanswerable | query; '' → factoid or unanswerable by answers
    history: tuple[tuple[str, str], ...] = ()  # (role, content) of earlier turns, oldest first
    direction: str = ""  # cross-lingual sets: 'en→zh' = an English question answered by Chinese documents

    def __post_init__(self) -> None:
        if not self.type:
            object.__setattr__(self, "type", "factoid" if self.answers else "unanswerable")

    @property
    def answerable(self) -> bool:
        """Should the system answer? False for 'unanswerable' (the right behaviour is to refuse).

        >>> Question("1", "q?", ()).answerable, Question("2", "q?", ("a",)).answerable
        (False, True)
        """
        return self.type != "unanswerable"


@dataclass(frozen=True)
class QASet:
    """A question file read: its questions and, where the file holds them, the documents to index."""

    name: str
    format: str
    questions: tuple[Question, ...]
    docs: tuple[Document, ...] = ()  # empty: the documents live in a folder (the shipped set)


@dataclass(frozen=True)
class DetectorExample:
    context: str
    response: str
    label: int  # 1 = hallucinated / not supported by the context, 0 = supported


# BEGIN labels. 'Generic' (a response that says nothing checkable, e.g. "that sounds fun") is
# counted as not supported: the knowledge does not back it, and a RAG answer that ignores its
# sources is what the detector should catch. (The dev file we use has no 'Generic' rows.)
BEGIN_LABELS = {"Fully attributable": 0, "Not fully attributable": 1, "Generic": 1}


# --- the source-id scheme -------------------------------------------------------------------------------


def paragraph_source(article: int, paragraph: int) -> str:
    """The source of a SQuAD-format paragraph: article and paragraph index in file order.

    Zero-padded so that the index, which orders rows by source, keeps file order.

    >>> paragraph_source(3, 12)
    '003-012'
    """
    return f"{article:03d}-{paragraph:03d}"


def passage_source(n: int) -> str:
    """The source of the n-th distinct passage of a passages file (0-based).

    >>> passage_source(7)
    '000007'
    """
    return f"{n:06d}"


def _doc(source: str, title: str, text: str) -> Document:
    return Document(source=source, kind="txt", pages=(Page(1, text),), title=title)


# --- reading helpers ------------------------------------------------------------------------------------


def _read_text(path: str | Path, what: str, *, errors: str = "strict") -> str:
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8", errors=errors)
    except FileNotFoundError as err:
        raise RagError(f"{what} file {path} does not exist (fix: pass --dataset with the right path)") from err


def _json_rows(text: str, path: str | Path) -> list[Any]:
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


def _lang(question: str) -> str:
    return "zh" if sentence_language(question) == "cjk" else "en"


# --- question sets --------------------------------------------------------------------------------------


def load_squad(path: str | Path) -> QASet:
    """SQuAD-format JSON → every paragraph as a document, one Question per question in file order."""
    try:
        data = json.loads(_read_text(path, "SQuAD"))["data"]
        docs, questions = [], []
        for a, article in enumerate(data):
            title = str(article.get("title", "")).replace("_", " ")
            for p, para in enumerate(article["paragraphs"]):
                source = paragraph_source(a, p)
                docs.append(_doc(source, title, para["context"]))
                for qa in para["qas"]:
                    answers = () if qa.get("is_impossible") else tuple(
                        dict.fromkeys(str(x["text"]) for x in qa.get("answers", [])))
                    questions.append(Question(id=str(qa["id"]), question=qa["question"], answers=answers,
                                              gold=(Gold(source),), lang=_lang(qa["question"])))
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise RagError(f"{path} is not a SQuAD-format file (a JSON object with 'data'): {err!r}") from err
    return QASet(Path(path).name, "squad", tuple(questions), tuple(docs))


def with_mismatched_half(qs: QASet, *, seed: int = 0) -> QASet:
    """`qs` with a seeded half of its documents left out of the collection: each question whose gold
    documents are all left out becomes unanswerable (its retrieved passages are all someone else's);
    the others keep their answers. How a set without unanswerable questions (CMRC 2018) measures
    refusals: the collection is on another topic, not one that hides the answer."""
    import random

    order = list(qs.docs)
    random.Random(seed).shuffle(order)
    kept = {d.source for d in order[: len(order) // 2]}
    questions = []
    for q in qs.questions:
        if q.gold and not any(g.source in kept for g in q.gold):
            q = replace(q, answers=(), gold=(), type="unanswerable")
        questions.append(q)
    docs = tuple(d for d in qs.docs if d.source in kept)
    return QASet(f"{qs.name} (mismatched half)", qs.format, tuple(questions), docs)


def _cranfield_blocks(text: str) -> list[dict[str, str]]:
    out = []
    for part in re.split(r"^\.I\s+", text, flags=re.M)[1:]:
        ident, _, rest = part.partition("\n")
        fields = dict(re.findall(r"^\.([TABW])\n(.*?)(?=^\.[TABWI]\b|\Z)", rest, flags=re.M | re.S))
        out.append({"id": ident.strip(), **{k: " ".join(v.split()) for k, v in fields.items()}})
    return out


def load_cranfield(folder: str | Path) -> QASet:
    """The Cranfield collection in `folder` (or the folder of a file in it)."""
    folder = Path(folder) if Path(folder).is_dir() else Path(folder).parent
    docs = [_doc(b["id"], b.get("T", ""), b.get("W", ""))
            for b in _cranfield_blocks(_read_text(folder / "cran.all.1400", "Cranfield", errors="replace"))]
    qs = _cranfield_blocks(_read_text(folder / "cran.qry", "Cranfield", errors="replace"))
    rel: dict[int, dict[str, float]] = {}
    for line in _read_text(folder / "cranqrel", "Cranfield").splitlines():
        parts = line.split()
        if len(parts) >= 3:
            q, d, code = int(parts[0]), parts[1], int(parts[2])
            if 1 <= code <= 4:  # Cleverdon's scale: 1 = complete answer … 4 = minimum interest
                rel.setdefault(q, {})[d] = float(5 - code)
    # cranqrel numbers queries 1..225 in file order, not by their .I id.
    questions = tuple(Question(id=q["id"], question=q.get("W", ""), answers=(), type="query",
                               gold=tuple(Gold(d, None, g) for d, g in rel.get(i, {}).items()))
                      for i, q in enumerate(qs, start=1))
    return QASet("cranfield", "cranfield", questions, tuple(docs))


def _passage(p: Any) -> tuple[str, str, bool]:
    """(title, text, marked gold) of one passage: {title, text, gold}, [title, text] or a bare text."""
    if isinstance(p, dict):
        return str(p.get("title", "")), str(p["text"]), bool(p.get("gold"))
    if isinstance(p, (list, tuple)):
        return str(p[0]), str(p[1]), False
    return "", str(p), False


def load_passages_jsonl(path: str | Path) -> QASet:
    """Rows with their own passages (see the module docstring); all fields but question optional."""
    docs: dict[str, Document] = {}
    by_text: dict[str, str] = {}
    questions = []
    for i, row in enumerate(_json_rows(_read_text(path, "QA"), path), 1):
        try:
            gold: list[Gold] = []
            for j, p in enumerate(row.get("passages", [])):
                title, text, marked = _passage(p)
                source = by_text.get(text)
                if source is None:
                    source = by_text[text] = passage_source(len(docs))
                    docs[source] = _doc(source, title, text)
                if (j == 0 or marked) and Gold(source) not in gold:
                    gold.append(Gold(source))
            questions.append(Question(
                id=str(row.get("id", i)), question=str(row["question"]),
                answers=tuple(str(a) for a in row.get("answers", [])), gold=tuple(gold),
                lang=str(row.get("lang", "en")), history=tuple(("user", str(h)) for h in row.get("history", []))))
        except (KeyError, TypeError, IndexError, AttributeError) as err:
            raise RagError(f"{path}: row {i} is not a question with passages ({err!r})") from err
    return QASet(Path(path).name, "jsonl", tuple(questions), tuple(docs.values()))


def load_questions_jsonl(path: str | Path) -> QASet:
    """The shipped format (data/eval/README.md): id, question, lang, answers, gold [{source, page}],
    type, history [{role, content}]. The documents are a folder's files; none are returned."""
    out = []
    for i, line in enumerate(_read_text(path, "questions").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append(Question(
                id=str(row.get("id", i)), question=str(row["question"]),
                answers=tuple(str(a) for a in row.get("answers", [])),
                gold=tuple(Gold(str(g["source"]), int(g["page"]) if g.get("page") is not None else None)
                           for g in row.get("gold", [])),
                lang=str(row.get("lang", "en")), type=str(row.get("type", "")),
                history=tuple((str(h["role"]), str(h["content"])) for h in row.get("history", [])),
                direction=str(row.get("direction", ""))))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
            raise RagError(f"{path}:{i}: not a question row of the data/eval format ({err!r}; "
                           "see data/eval/README.md)") from err
    return QASet(Path(path).name, "jsonl", tuple(out))


def is_passages_jsonl(path: str | Path) -> bool:
    """True when the first row brings passages and no {source, page} gold: `load_passages_jsonl`."""
    for line in _read_text(path, "QA").splitlines():
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise RagError(f"{path}: the first row is not JSON ({err.msg})") from err
            return isinstance(row, dict) and "passages" in row and not any(
                isinstance(g, dict) for g in row.get("gold", []))
    return False


def dataset_path(name_or_path: str | Path) -> Path:
    """The file of a shipped set by name ('sample', 'crosslingual'), else the path as given.

    >>> dataset_path("crosslingual").name, str(dataset_path("my/q.jsonl"))
    ('crosslingual.jsonl', 'my/q.jsonl')
    """
    return SHIPPED.get(str(name_or_path), Path(name_or_path))


def guess_format(path: str | Path) -> str:
    """'cranfield' for a folder or a cran* file, 'jsonl' for .jsonl, else 'squad'.

    >>> guess_format("dev-v2.0.json"), guess_format("q.jsonl"), guess_format("cranfield/cran.qry")
    ('squad', 'jsonl', 'cranfield')
    """
    path = Path(path)
    if path.is_dir() or "cran" in path.name:
        return "cranfield"
    return "jsonl" if path.suffix == ".jsonl" else "squad"


def load_qa(path: str | Path, fmt: str | None = None) -> QASet:
    """A question set by format (default: `guess_format`)."""
    fmt = fmt or guess_format(path)
    if fmt == "squad":
        return load_squad(path)
    if fmt == "cranfield":
        return load_cranfield(path)
    if fmt == "jsonl":
        return load_passages_jsonl(path) if is_passages_jsonl(path) else load_questions_jsonl(path)
    raise RagError(f"unknown dataset format {fmt!r} (known: {', '.join(FORMATS)})")


# --- detector sets --------------------------------------------------------------------------------------


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


def load_detector(path: str | Path, fmt: str, *, with_question: bool = False) -> list[DetectorExample]:
    """A detector set by format: 'halueval', 'begin' or 'jsonl'."""
    if fmt == "halueval":
        return load_halueval_qa(path, with_question=with_question)
    if fmt == "begin":
        return load_begin(path)
    if fmt == "jsonl":
        return load_detector_jsonl(path)
    raise RagError(f"unknown detector format {fmt!r} (known: halueval, begin, jsonl)")
