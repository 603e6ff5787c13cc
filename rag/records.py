"""Typed records that cross stage boundaries: Document → Chunk → Hit → Citation → Answer.

Modelled on paper-qa: a chunk knows where it came from (source, pages, character span, heading
path) and carries a content-hash id; an Answer keeps the raw model text apart from the rendered
text whose citations are resolved.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from rag.errors import IndexStateError

PAGE_JOINER = "\n\n"  # between pages in Document.text; a page break is a paragraph break


@dataclass(frozen=True)
class Page:
    number: int  # 1-based; text formats are one page
    text: str
    label: str = ""  # the printed page number a PDF defines (/PageLabels: 'iv', '251'); '' when none
    ocr: bool = False  # read by OCR from the page image (rag.ingest.ocr), not from a text layer


def pages_text(pages: tuple[int, ...] | list[int], labels: tuple[str, ...] | list[str] = ()) -> str:
    """'p. 3', 'p. 3-4', or with printed labels 'p. 251 (PDF page 1)', 'p. xi-2 (PDF pages 11-12)'.

    >>> pages_text((3, 4)), pages_text((1,), ("251",)), pages_text((11, 12), ("xi", "2"))
    ('p. 3-4', 'p. 251 (PDF page 1)', 'p. xi-2 (PDF pages 11-12)')

    `labels` run parallel to `pages`; they are shown only when the first or last differs from its
    PDF page number, so a PDF whose labels are '1', '2'… reads as before. '' for no pages.
    """
    if not pages:
        return ""
    lo, hi = min(pages), max(pages)
    numbers = f"{lo}" if lo == hi else f"{lo}-{hi}"
    if len(labels) != len(pages):
        return f"p. {numbers}"
    by_page = dict(zip(pages, labels))
    first, last = by_page[lo] or str(lo), by_page[hi] or str(hi)
    if first == str(lo) and last == str(hi):
        return f"p. {numbers}"
    printed = first if lo == hi else f"{first}-{last}"
    return f"p. {printed} (PDF page{'' if lo == hi else 's'} {numbers})"


@dataclass(frozen=True)
class Document:
    source: str  # path relative to the ingested folder, posix separators: the user-facing name
    kind: Literal["pdf", "md", "txt", "html", "docx", "xlsx", "csv", "pptx"]
    pages: tuple[Page, ...]
    title: str = ""
    paginated: bool = False  # True for PDFs: page numbers mean something to the user

    @property
    def text(self) -> str:
        return PAGE_JOINER.join(p.text for p in self.pages)

    @property
    def page_starts(self) -> tuple[int, ...]:
        """Offset in `text` where each page begins, e.g. pages 'ab','c' → (0, 4)."""
        starts, pos = [], 0
        for p in self.pages:
            starts.append(pos)
            pos += len(p.text) + len(PAGE_JOINER)
        return tuple(starts)


@dataclass(frozen=True)
class Chunk:
    id: str  # content hash of (source, span, text): identical files give identical ids
    source: str
    text: str  # == document.text[start:end]
    start: int
    end: int
    pages: tuple[int, ...]
    heading_path: tuple[str, ...] = ()
    ordinal: int = 0  # position within its document
    # Printed labels of `pages`, one each ('251', 'iv'), or () when the PDF defines none: `pages`
    # stay the PDF's own 1-based indexes, which the page viewer opens.
    page_labels: tuple[str, ...] = ()
    ocr_pages: tuple[int, ...] = ()  # those of `pages` whose text was read by OCR: cite them "p. 3, OCR"

    def label(self, *, paginated: bool = True) -> str:
        """'report.pdf p. 3-4', 'report.pdf p. 251 (PDF page 1)', or the file name for unpaginated text."""
        if not paginated or not self.pages:
            return self.source
        return f"{self.source} {pages_text(self.pages, self.page_labels)}"


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with every score behind its rank (None: that retriever did not run)."""

    chunk: Chunk
    score: float  # the score the final order is sorted by
    bm25_score: float | None = None
    bm25_rank: int | None = None  # 1-based; None when outside the lexical candidate list
    dense_score: float | None = None
    dense_rank: int | None = None
    fused_score: float | None = None
    rerank_score: float | None = None
    paginated: bool = True

    @property
    def label(self) -> str:
        return self.chunk.label(paginated=self.paginated)


@dataclass(frozen=True)
class Citation:
    n: int  # the marker number as shown to the user: [n]
    chunk_id: str
    source: str
    pages: tuple[int, ...]
    quote: str  # the span of the chunk that best supports the citing sentence
    quote_start: int = 0  # offset of `quote` inside the chunk text
    paginated: bool = True
    page_labels: tuple[str, ...] = ()  # printed labels of `pages` (Chunk.page_labels)


@dataclass(frozen=True)
class SentenceCheck:
    text: str  # the sentence without its markers
    cited: tuple[int, ...]  # marker numbers the sentence cites
    support: float  # 0..1 from the Verifier
    supported: bool
    reason: str = ""  # why it was flagged, for the UI and --json
    # Answer.text[start:end] is the sentence as shown, markers included: the UI marks it there
    # instead of splitting the answer again. (0, 0) for a claim checked outside an answer.
    start: int = 0
    end: int = 0


Mode = Literal["generative", "extractive", "refused"]


@dataclass(frozen=True)
class Answer:
    question: str
    query: str  # the standalone query actually retrieved with (follow-ups are rewritten)
    mode: Mode
    text: str  # rendered: valid markers only
    raw_text: str  # exactly what the generator produced
    citations: tuple[Citation, ...] = ()
    sentences: tuple[SentenceCheck, ...] = ()
    sources: tuple[Hit, ...] = ()  # the numbered sources given to the generator, [1] first
    invalid_markers: int = 0
    notices: tuple[str, ...] = ()  # e.g. 'reranker unavailable: answering without reranking'
    timings: dict[str, float] = field(default_factory=dict)
    # Why the model's own answer was replaced (rag.answer.guard: 'markers', 'language'…): then the
    # answer is extractive, labelled as such. '' when the model's answer was used, or no model ran.
    fallback: str = ""
    realigned: int = 0  # sentences whose markers citation alignment changed (rag.answer.align)
    # The question's identifiers that no retrieved passage mentions (rag.answer.abstain.unmentioned):
    # the reason for a refusal when cfg.refuse_unmentioned, else only recorded (the eval scores it).
    unmentioned: tuple[str, ...] = ()

    @property
    def refused(self) -> bool:
        return self.mode == "refused"


@dataclass(frozen=True)
class Retraction:
    """A stream event: forget the text streamed so far, it was not an answer (`reason`, as in
    rag.answer.guard). The final Answer follows; consumers that only show it can ignore this."""

    reason: str


@dataclass(frozen=True)
class Failure:
    """A file the ingest could not use, with the reason and what the user can do about it."""

    source: str
    reason: str
    fix: str = ""
    kind: str = "failed"  # failed | skipped (hidden files, over the size limit by choice…)


@dataclass(frozen=True)
class Status:
    """Collection and model facts for the UI sidebar (Pipeline.status).

    When the index cannot be opened, `error` holds the exception (match it by class:
    IndexMissingError, ModelMismatchError…) and the collection facts keep their empty defaults.
    """

    index_dir: str
    notices: tuple[str, ...] = ()
    documents: int = 0
    chunks: int = 0
    embed_model: str = ""
    generation: str = ""  # the live generation's folder name
    created: float | None = None  # when that generation was written (epoch seconds)
    dense_index: str | None = None  # 'flat' or 'hnsw(M=…)'
    error: IndexStateError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


# --- a whole Answer as JSON-ready data, and back (rag.conversations stores answers this way) --------


def answer_to_record(answer: Answer) -> dict[str, Any]:
    """Everything an Answer holds, as JSON-ready dicts and lists; `answer_from_record` inverts it.

    Unlike rag.pipeline.answer_to_json (the --json view) this keeps the sources' whole chunks, so a
    saved answer shows its citation cards exactly as when it was asked.
    """
    return asdict(answer)


def _tuples(data: dict[str, Any], *names: str) -> dict[str, Any]:
    return {**data, **{n: tuple(data[n]) for n in names if n in data}}


def answer_from_record(data: dict[str, Any]) -> Answer:
    """The Answer `answer_to_record` wrote (fields added later take their defaults).

    >>> a = Answer("q", "q", "refused", "no", "no", notices=("n",), unmentioned=("Q5_K_S",))
    >>> answer_from_record(answer_to_record(a)) == a
    True
    """
    def chunk(d: dict[str, Any]) -> Chunk:
        return Chunk(**_tuples(d, "pages", "heading_path", "page_labels", "ocr_pages"))

    def hit(d: dict[str, Any]) -> Hit:
        return Hit(**{**d, "chunk": chunk(d["chunk"])})

    known = {f.name for f in fields(Answer)}
    d = {k: v for k, v in data.items() if k in known}
    d["citations"] = tuple(Citation(**_tuples(c, "pages", "page_labels")) for c in d.get("citations", ()))
    d["sentences"] = tuple(SentenceCheck(**_tuples(s, "cited")) for s in d.get("sentences", ()))
    d["sources"] = tuple(hit(h) for h in d.get("sources", ()))
    d["notices"] = tuple(d.get("notices", ()))
    d["unmentioned"] = tuple(d.get("unmentioned", ()))
    d["timings"] = dict(d.get("timings", {}))
    return Answer(**d)
