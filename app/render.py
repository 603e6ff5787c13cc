"""Safe rendering for the chat page: Answer records → HTML fragments and Markdown, no Streamlit.

Everything shown in the UI that came from a document or a model is untrusted. Two escapers:

- `html_text` turns text into inert HTML: every ASCII punctuation character becomes a numeric
  character reference and newlines become <br>. Neither HTML nor Markdown can arise from the result
  (`![x](http://evil/b.png)` stays those characters, `<script>` stays text). Our own tags (<mark>,
  spans with a title) are added around escaped pieces; `st.markdown(..., unsafe_allow_html=True)`
  then only ever sees markup written here. Fragments are one line: Markdown reads a line that
  starts with <div> as an HTML block up to the next blank line, so nothing inside is re-parsed.
- `md_escape` backslash-escapes ASCII punctuation for places that render Markdown without HTML
  (captions, alerts, expander labels), so links, images, `:red[...]` directives and `$math$` in
  file names or error messages show as typed.

Model answers keep line breaks, `**bold**` and '- ' bullets (rebuilt from escaped pieces, never
parsed as Markdown). Deliberately skipped: the rest of Markdown (links, images, tables, headings):
it would need a sanitiser, and plain text with inline citations is what the page is for.
"""
from __future__ import annotations

import html
import re
import time
from collections.abc import Iterable, Sequence

from app.strings import text
from rag.answer.cite import find_markers
from rag.records import Answer, Citation, Hit, SentenceCheck, pages_text

_ASCII_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
_ENTITIES = {ord(c): f"&#{ord(c)};" for c in _ASCII_PUNCT}
_MD_ESCAPES = {ord(c): "\\" + c for c in _ASCII_PUNCT}

FLAG_STYLE = ("background: rgba(255, 75, 75, 0.12); text-decoration: underline wavy #d9534f; "
              "text-decoration-skip-ink: none; text-underline-offset: 3px; cursor: help")
MARKER_STYLE = "font-size: 0.75em; font-weight: 600; color: #1c6dd0; padding: 0 1px"
MARK_STYLE = "background: #ffe58f; color: inherit; padding: 0 2px; border-radius: 2px"
REFUSAL_STYLE = ("border-left: 4px solid #e0a800; background: rgba(224, 168, 0, 0.10); padding: 0.6rem 0.9rem; "
                 "border-radius: 0.4rem")
CHUNK_STYLE = ("font-size: 0.9em; line-height: 1.5; max-height: 22rem; overflow-y: auto; padding: 0.5rem 0.7rem; "
               "border-radius: 0.4rem; background: rgba(128, 128, 128, 0.08)")


def html_text(text: str) -> str:
    """Text as inert HTML.

    >>> html_text('<b>hi</b> ![x](http://e/b.png)\\nnext')
    '&#60;b&#62;hi&#60;&#47;b&#62; &#33;&#91;x&#93;&#40;http&#58;&#47;&#47;e&#47;b&#46;png&#41;<br>next'
    """
    return text.replace("\r\n", "\n").replace("\r", "\n").translate(_ENTITIES).replace("\n", "<br>")


def md_escape(text: str) -> str:
    r"""Text as literal Markdown: every ASCII punctuation character backslash-escaped, one line.

    >>> md_escape("[a](javascript:x) *b* :red[c]")
    '\\[a\\]\\(javascript\\:x\\) \\*b\\* \\:red\\[c\\]'
    """
    return " ".join(text.split()).translate(_MD_ESCAPES)


def attr(text: str) -> str:
    """A value for a double-quoted HTML attribute (title=...), newlines kept as spaces."""
    return html.escape(" ".join(text.split()), quote=True).translate(
        {ord(c): f"&#{ord(c)};" for c in "[]()!:*_`$\\"})


def highlight_html(text: str, start: int, end: int) -> str:
    """`text` as inert HTML with text[start:end] wrapped in <mark>.

    >>> highlight_html("a <b> c", 2, 5).replace(MARK_STYLE, "...")
    'a <mark style="...">&#60;b&#62;</mark> c'
    """
    start, end = max(0, min(start, len(text))), max(0, min(end, len(text)))
    if end <= start:
        return html_text(text)
    return (html_text(text[:start]) + f'<mark style="{MARK_STYLE}">' + html_text(text[start:end]) + "</mark>"
            + html_text(text[end:]))


_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_BULLET = re.compile(r"^[-*•]\s+")


def _inline(text: str) -> str:
    """Model text as inert HTML, keeping the two formats models use most: **bold** and '- ' bullets.

    >>> _inline("- **4.8 GB** <b>x</b>")
    '• <b>4&#46;8 GB</b> &#60;b&#62;x&#60;&#47;b&#62;'
    """
    text = _BULLET.sub("• ", text)
    out, pos = [], 0
    for m in _BOLD.finditer(text):
        out.append(html_text(text[pos:m.start()]) + "<b>" + html_text(m.group(1)) + "</b>")
        pos = m.end()
    return "".join(out) + html_text(text[pos:])


def _with_markers(piece: str) -> str:
    """A sentence with its [n] markers drawn as small blue superscripts (still reading '[n]')."""
    out, pos = [], 0
    for mk in find_markers(piece):
        out.append(_inline(piece[pos:mk.start]))
        nums = "".join(f"[{n}]" for n in mk.numbers)
        out.append(f'<sup class="rag-cite" style="{MARKER_STYLE}">{html_text(nums)}</sup>')
        pos = mk.end
    out.append(_inline(piece[pos:]))
    return "".join(out)


def answer_html(answer: Answer) -> str:
    """The answer text as one line of HTML: inline [n] markers, flagged sentences underlined in red
    with the verifier's reason as their tooltip.

    Sentences are marked where their checks say they are (`SentenceCheck.start/end` in
    `answer.text`): the answer is not split again here, so the UI flags exactly what was checked.
    """
    text = answer.text
    parts, pos = [], 0
    for check in sorted(answer.sentences, key=lambda c: c.start):
        if not (pos <= check.start < check.end <= len(text)):
            continue  # no span (a check made outside an answer), or one that does not fit this text
        parts.append(_lines(text[pos:check.start]))
        body = _with_markers(text[check.start:check.end])
        if not check.supported:
            tip = f"Flagged by the verifier: {check.reason or 'not supported'} (support {check.support:.2f})"
            body = f'<span class="rag-flagged" title="{attr(tip)}" style="{FLAG_STYLE}">{body} ⚠</span>'
        parts.append(body)
        pos = check.end
    parts.append(_lines(text[pos:]))
    return f'<div class="rag-answer" style="line-height: 1.6">{"".join(parts)}</div>'


def _lines(text: str) -> str:
    """Text between checked sentences (or an answer without checks), line by line, so that a
    '- ' bullet at the start of any line is drawn."""
    out = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        body = line.lstrip()
        out.append(html_text(line[:len(line) - len(body)]) + _with_markers(body))
    return "<br>".join(out)


def streaming_html(raw: str) -> str:
    """The answer while it streams: escaped text and a cursor."""
    return f'<div class="rag-streaming" style="line-height: 1.6">{html_text(raw)} ▌</div>'


def refusal_html(answer: Answer, *, collection: str = "", passages: int = 0, evidence: str = "",
                 lang: str = "en") -> str:
    """Refusals look like a notice, not like an answer, and say what was searched and, given its
    band ('none', 'weak', 'strong'), how much evidence was found.

    >>> a = Answer("Who won?", "who won", "refused", "No answer.", "No answer.")
    >>> refusal_html(a, collection="docs", passages=120).split("<br>")[1]
    'Searched for “who won” in 120 passages of the collection “docs”&#46;</div>'
    >>> refusal_html(a, evidence="none").split("<br>")[2]
    'Evidence&#58; none — no passage is close enough to answer from&#46;</div>'
    >>> from dataclasses import replace
    >>> refusal_html(replace(a, unmentioned=("Q5_K_S",))).split("<br>")[2]
    'None of the passages mentions Q5&#95;K&#95;S&#46;</div>'
    """
    lines = [html_text(answer.text), html_text(searched_text(answer, collection=collection, passages=passages))]
    if answer.unmentioned:
        lines.append(html_text(text(lang, "unmentioned").format(names=", ".join(answer.unmentioned))))
    if evidence:
        lines.append(html_text(evidence_text(evidence, lang)))
    return (f'<div class="rag-refusal" style="{REFUSAL_STYLE}"><b>{html_text(text(lang, "not_found"))}</b> '
            + "<br>".join(lines) + "</div>")


# The evidence bands (rag.answer.abstain.evidence_band) in words (app.strings): the page shows these,
# and the raw scores only under a source card's "details".
EVIDENCE_BANDS = ("strong", "weak", "none")


def evidence_text(band: str, lang: str = "en") -> str:
    """'Evidence: strong — the sources match the question closely.'

    >>> evidence_text("none", "zh")
    '证据：无 — 没有足够接近、可以据以回答的段落。'
    """
    colon, stop = ("：", "。") if lang == "zh" else (": ", ".")
    return f"{text(lang, 'evidence')}{colon}{text(lang, band)} — {text(lang, 'evidence_' + band)}{stop}"


def searched_text(answer: Answer, *, collection: str = "", passages: int = 0) -> str:
    """'Searched for “query” in 120 passages of the collection “docs”; the 3 nearest are below.'"""
    where = f"{passages:,} passage{'s' if passages != 1 else ''}" if passages else "the passages"
    where += f" of the collection “{collection}”" if collection else ""
    return f"Searched for “{answer.query}” in {where}."


def chunk_html(text: str, start: int = 0, end: int = 0) -> str:
    """A source chunk in a scrollable box, the quoted span highlighted, table rows as tables."""
    return f'<div class="rag-chunk" style="{CHUNK_STYLE}">{rows_as_tables_html(text, start, end)}</div>'


ROW_TABLE_STYLE = "border-collapse: collapse; font-size: 0.9em; margin: 0.2rem 0"
ROW_MARK_STYLE = "; background: #ffe58f"  # the quoted row: <mark>'s colour (a table cannot sit in a <mark>)
ROW_CELL_STYLE = "border: 1px solid rgba(128, 128, 128, 0.4); padding: 1px 6px; text-align: left"


def rows_as_tables_html(text: str, start: int = 0, end: int = 0) -> str:
    """`highlight_html(text, start, end)`, except that each line written as a table row
    ('Header: value | Header: value', `rag.ingest.rows`) is drawn as a small table, a header row
    over a value row, highlighted whole when the quoted span touches it. Every cell is escaped.

    >>> html = rows_as_tables_html("Sales\\nCity: Oslo | Staff: <b>9</b>")
    >>> html.replace(f' style="{ROW_CELL_STYLE}"', "").replace(f' style="{ROW_TABLE_STYLE}"', "")
    'Sales<table><tr><th>City</th><th>Staff</th></tr><tr><td>Oslo</td><td>&#60;b&#62;9&#60;&#47;b&#62;</td></tr></table>'
    """
    from rag.ingest.rows import CELL_SEPARATOR, is_row

    if CELL_SEPARATOR not in text:
        return highlight_html(text, start, end)
    out, pos, after_table = [], 0, True
    for line in text.split("\n"):
        line_end = pos + len(line)
        cells = [cell.partition(": ") for cell in line.split(CELL_SEPARATOR)] if is_row(line) else []
        if cells and all(sep and name for name, sep, _ in cells):  # 'a | b' without headers stays text
            head = "".join(f'<th style="{ROW_CELL_STYLE}">{html_text(name)}</th>' for name, _, _ in cells)
            body = "".join(f'<td style="{ROW_CELL_STYLE}">{html_text(value)}</td>' for _, _, value in cells)
            style = ROW_TABLE_STYLE + (ROW_MARK_STYLE if start < line_end and end > pos else "")
            out.append(f'<table style="{style}"><tr>{head}</tr><tr>{body}</tr></table>')
            after_table = True
        else:
            out.append(("" if after_table else "<br>") + highlight_html(line, start - pos, end - pos))
            after_table = False
        pos = line_end + 1
    return "".join(out)


def user_html(text: str) -> str:
    return f'<div class="rag-question">{html_text(text)}</div>'


# --- labels ------------------------------------------------------------------------------------------


def pages_label(pages: Sequence[int], paginated: bool, labels: Sequence[str] = ()) -> str:
    """'p. 3', 'p. 3-4', 'p. 251 (PDF page 1)' with printed labels, or '' for unpaginated text.

    >>> pages_label((3, 4), True), pages_label((2,), True), pages_label((1,), False)
    ('p. 3-4', 'p. 2', '')
    >>> pages_label((1,), True, ("251",))
    'p. 251 (PDF page 1)'
    """
    if not paginated or not pages:
        return ""
    return pages_text(tuple(pages), tuple(labels))


def citation_label(c: Citation) -> str:
    where = pages_label(c.pages, c.paginated, c.page_labels)
    return f"[{c.n}] {c.source}" + (f" · {where}" if where else "")


def scores_text(hit: Hit) -> str:
    """'retrieval 0.82 (BM25 7.31 #1, dense 0.64 #3) · rerank 5.12', or 'rerank off'."""
    parts = []
    if hit.bm25_score is not None:
        parts.append(f"BM25 {hit.bm25_score:.2f}" + (f" #{hit.bm25_rank}" if hit.bm25_rank else ""))
    if hit.dense_score is not None:
        parts.append(f"dense {hit.dense_score:.2f}" + (f" #{hit.dense_rank}" if hit.dense_rank else ""))
    fused = hit.fused_score if hit.fused_score is not None else hit.score
    out = f"retrieval {fused:.3f}" + (f" ({', '.join(parts)})" if parts else "")
    out += f" · rerank {hit.rerank_score:.2f}" if hit.rerank_score is not None else " · rerank off"
    return out


def when(ts: float | None) -> str:
    if not ts:
        return "unknown"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def flagged(answer: Answer) -> list[SentenceCheck]:
    return [s for s in answer.sentences if not s.supported]


# --- export ------------------------------------------------------------------------------------------

_EXPORT_ESCAPES = {ord(c): "\\" + c for c in "\\`*_[]<>!|~$"}


def _export_text(text: str) -> str:
    r"""Literal Markdown for an export: no links, images or HTML; [n] markers kept readable.

    >>> _export_text("GGUF [1]. ![x](http://e/b.png) <script> [2](javascript:x)")
    'GGUF [1]. \\!\\[x\\](http://e/b.png) \\<script\\> \\[2\\](javascript:x)'
    """
    escaped = re.sub(r"\\\[(\d{1,2})\\\](?![(:\[])", r"[\1]", text.translate(_EXPORT_ESCAPES))  # keep [n] readable
    return "\n".join(("\\" + line) if line.lstrip().startswith(("#", ">", "-", "+", "=")) else line
                     for line in escaped.splitlines())


def chat_to_markdown(turns: Iterable[dict], *, title: str = "Chat export") -> str:
    """A conversation as Markdown: questions, answers with [n] markers, and their sources.

    `turns` are {'question': str, 'answer': Answer} dicts, oldest first.
    """
    lines = [f"# {title}", "", f"_Exported {time.strftime('%Y-%m-%d %H:%M')}_", ""]
    for i, turn in enumerate(turns, 1):
        answer: Answer = turn["answer"]
        lines += [f"## {i}. {_export_text(turn['question'])}", ""]
        if answer.refused:
            lines += ["**Not found in the documents.** " + _export_text(answer.text), ""]
            if answer.sources:
                lines += ["Nearest sources:", ""]
                lines += [f"- {_export_text(h.label)}" for h in answer.sources[:3]]
                lines.append("")
            continue
        if answer.mode == "extractive":
            lines += ["_Extractive answer: sentences quoted from the documents._", ""]
        lines += [_export_text(answer.text), ""]
        if answer.citations:
            lines += ["Sources:", ""]
            for c in answer.citations:
                where = pages_label(c.pages, c.paginated, c.page_labels)
                quote = " ".join(c.quote.split())
                lines.append(f"- [{c.n}] {_export_text(c.source)}" + (f", {where}" if where else "")
                             + (f" — “{_export_text(quote)}”" if quote else ""))
            lines.append("")
        bad = flagged(answer)
        if bad:
            lines += ["Flagged by the verifier:", ""]
            lines += [f"- {_export_text(s.text)} ({_export_text(s.reason)})" for s in bad]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
