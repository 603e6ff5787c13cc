"""Office files: Word (.docx), Excel (.xlsx), CSV and PowerPoint (.pptx) → a `Document`.

- Word (python-docx): the body in order; 'Heading N' / 'Title' paragraphs become Markdown
  headings (so chunks carry them in `heading_path`), list paragraphs '- item', tables one row a
  paragraph with their headers (`rag.ingest.rows`): 'Company: Aramark | Employees: 53'.
- Excel (openpyxl, read-only, cached formula values) and CSV: each sheet a '# Sheet' section whose
  first non-empty row is the header; every other row becomes one row paragraph.
- PowerPoint (python-pptx): one page per slide (page numbers are slide numbers); the title
  placeholder is the slide's heading, other text frames and tables follow top to bottom.

Word and Excel files are one unpaginated page (they have no fixed pages). Every bad input raises
`LoadError(source, reason, fix)`: encrypted files (Office wraps them in an OLE container),
old binary formats under a new name (.doc as .docx), damaged zips, zips that expand far beyond
their size, and files with no text.

Deliberately skipped: Word headers, footers, footnotes, comments and text boxes; nested tables
(their text is in the outer cell); merged-cell spans beyond python-docx's repeated cell; charts,
images and speaker notes; .doc/.xls/.ppt (convert them: LibreOffice `soffice --convert-to`).
"""
from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any, Literal

from rag.errors import LoadError
from rag.ingest.decode import (
    FIX_WRONG_TYPE,
    TITLE_MAX_CHARS,
    check_replacement_chars,
    decode_text,
    first_line,
    normalize_text,
    sniff_type,
)
from rag.ingest.rows import table_text
from rag.records import Document, Page

OfficeKind = Literal["docx", "xlsx", "pptx"]
_NAMES = {"docx": "Word file", "xlsx": "Excel file", "pptx": "PowerPoint file"}
_APPS = {"docx": "Word", "xlsx": "Excel", "pptx": "PowerPoint"}
_OLD = {"docx": ".doc", "xlsx": ".xls", "pptx": ".ppt"}
# The part every file of the kind holds: how a zip is told to be this kind.
MAIN_PART = {"docx": "word/document.xml", "xlsx": "xl/workbook.xml", "pptx": "ppt/presentation.xml"}
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTION_STREAM = "EncryptionInfo".encode("utf-16-le")  # a directory entry of encrypted OOXML
MAX_EXPANSION = 100  # unpacked size / file size: real Office files stay under ~20, zip bombs do not
_MIN_BOMB_BYTES = 256 * 1024 * 1024  # small files may compress well (an empty sheet); only big unpacks count


def _fix_resave(kind: OfficeKind) -> str:
    return f"open it in {_APPS[kind]} or LibreOffice and save it again as {'.' + kind}"


def open_container(source: str, data: bytes, kind: OfficeKind) -> zipfile.ZipFile:
    """The file's zip, after the checks every Office format shares; LoadError otherwise. The
    upload check runs it too, so an upload is refused for the reason the ingest would give."""
    name = _NAMES[kind]
    if not data.startswith((b"PK\x03\x04", _OLE_MAGIC)):
        raise LoadError(source, f"not a {name}: content looks like {sniff_type(data)}", FIX_WRONG_TYPE)
    if data.startswith(_OLE_MAGIC):
        if _ENCRYPTION_STREAM in data:
            raise LoadError(source, f"encrypted {name} (password required)",
                            f"open it in {_APPS[kind]}, remove the password (File › Info › Protect), "
                            "save, and ingest again")
        raise LoadError(source, f"old binary {_APPS[kind]} format ({_OLD[kind]}) under a .{kind} name",
                        f"save it as .{kind} in {_APPS[kind]} or LibreOffice "
                        f"(soffice --headless --convert-to {kind} FILE)")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        names = set(zf.namelist())
        unpacked = sum(i.file_size for i in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise LoadError(source, f"corrupt or truncated {name}: content looks like {sniff_type(data)} "
                        f"but is no readable zip ({err})",
                        "re-download the file, or " + _fix_resave(kind)) from err
    if MAIN_PART[kind] not in names:
        raise LoadError(source, f"not a {name}: the zip has no {MAIN_PART[kind]}",
                        FIX_WRONG_TYPE)
    if unpacked > max(_MIN_BOMB_BYTES, MAX_EXPANSION * len(data)):
        raise LoadError(source, f"the file unpacks to {unpacked / 1e9:.1f} GB from {len(data) / 1e6:.1f} MB "
                        "(a zip bomb?)", "remove the file, or split it into smaller files")
    return zf


def _damaged(source: str, kind: OfficeKind, err: Exception) -> LoadError:
    text = " ".join(str(err).split())[:120] or type(err).__name__
    return LoadError(source, f"corrupt {_NAMES[kind]}: {text}", _fix_resave(kind))


def _no_text(source: str, kind: OfficeKind | Literal["csv"]) -> LoadError:
    return LoadError(source, "no text (the file holds no paragraphs, cells or slides with text)",
                     "check that it is the right file; text inside images needs OCR")


def _heading_line(level: int, text: str) -> str:
    return "#" * min(max(level, 1), 6) + " " + " ".join(text.split())


def _escape(line: str) -> str:
    """A body line that would read as a Markdown heading gets a backslash: '# 1 rule' → '\\# 1 rule'."""
    stripped = line.lstrip(" ")
    if stripped.startswith("#") and len(line) - len(stripped) <= 3:
        return line[:len(line) - len(stripped)] + "\\" + stripped
    return line


def _title(meta_title: str | None, text: str) -> str:
    title = " ".join((meta_title or "").split())
    return title[:TITLE_MAX_CHARS] if len(title) >= 3 else first_line(text.replace("#", " "))


# ------------------------------------------------------------------------------------------ Word


def _heading_level(style_name: str) -> int:
    """1-6 for 'Title' / 'Heading N' styles, 0 for body text."""
    if style_name == "Title":
        return 1
    if style_name.startswith("Heading "):
        tail = style_name[len("Heading "):].strip()
        return int(tail) if tail.isdigit() and 1 <= int(tail) <= 9 else 0
    return 0


def _docx_table(table: Any) -> str:
    rows = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:  # a merged cell is repeated: keep it once
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(cell.text)
        rows.append(cells)
    return table_text(rows)


def parse_docx(source: str, data: bytes) -> Document:
    """A Word file → one unpaginated page of Markdown-like text (headings, lists, table rows)."""
    open_container(source, data, "docx").close()
    try:
        import docx
    except ImportError as err:
        raise LoadError(source, "reading .docx needs python-docx", "pip install 'rag-local[office]'") from err
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        blocks: list[str] = []
        heading_title = ""
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                text = _docx_table(item)
                if text:
                    blocks.append(text)
                continue
            text = normalize_text(item.text).strip()
            if not text:
                continue
            style = item.style.name if item.style is not None else ""
            level = _heading_level(style or "")
            if level:
                blocks.append(_heading_line(level, text))
                heading_title = heading_title or " ".join(text.split())
            elif (style or "").startswith("List"):
                blocks.append("- " + " ".join(text.split()))
            else:
                blocks.append("\n".join(_escape(line) for line in text.split("\n")))
        meta_title = document.core_properties.title
    except LoadError:
        raise
    except Exception as err:  # python-docx and lxml raise many types on damaged parts
        raise _damaged(source, "docx", err) from err
    text = "\n\n".join(blocks)
    if not text.strip():
        raise _no_text(source, "docx")
    check_replacement_chars(source, text)
    title = _title(meta_title or heading_title, text)
    return Document(source=source, kind="docx", pages=(Page(1, text),), title=title)


# ------------------------------------------------------------------------------ Excel and CSV


def parse_xlsx(source: str, data: bytes) -> Document:
    """An Excel workbook → one unpaginated page: a '# Sheet' section per sheet with text, rows
    under their headers. Formulas give their last computed value (what Excel shows)."""
    open_container(source, data, "xlsx").close()
    try:
        import openpyxl
    except ImportError as err:
        raise LoadError(source, "reading .xlsx needs openpyxl", "pip install 'rag-local[office]'") from err
    sections: list[str] = []
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            for sheet in book.worksheets:
                rows = [list(r) for r in sheet.iter_rows(values_only=True)]
                body = table_text(rows)
                if body:
                    sections.append(_heading_line(1, sheet.title) + "\n\n" + body)
            meta_title = book.properties.title
        finally:
            book.close()
    except LoadError:
        raise
    except Exception as err:  # openpyxl raises many types on damaged parts
        raise _damaged(source, "xlsx", err) from err
    text = normalize_text("\n\n".join(sections))
    if not text.strip():
        raise _no_text(source, "xlsx")
    title = " ".join((meta_title or "").split()) or PurePosixPath(source).stem
    return Document(source=source, kind="xlsx", pages=(Page(1, text),), title=title[:TITLE_MAX_CHARS])


def _csv_rows(text: str) -> Iterator[list[str]]:
    sample = text[:64 * 1024]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:  # one column, or too irregular to tell: commas
        dialect = csv.excel
    return csv.reader(io.StringIO(text), dialect)


def parse_csv(source: str, data: bytes) -> Document:
    """A CSV (or semicolon/tab separated) file → one unpaginated page of rows under the header
    row. The encoding is found as for text files; the delimiter is sniffed."""
    text = normalize_text(decode_text(source, data))
    check_replacement_chars(source, text)
    try:
        rows = list(_csv_rows(text))
    except csv.Error as err:
        raise LoadError(source, f"malformed CSV: {err}",
                        "re-export it as CSV (comma separated, quoted fields)") from err
    body = table_text(rows)
    if not body.strip():
        raise _no_text(source, "csv")
    return Document(source=source, kind="csv", pages=(Page(1, body),), title=PurePosixPath(source).stem)


# ------------------------------------------------------------------------------------ PowerPoint


def _shape_text(shape: Any) -> str:
    if getattr(shape, "has_table", False) and shape.has_table:
        return table_text([[c.text for c in row.cells] for row in shape.table.rows])
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        lines = [" ".join(p.text.split()) for p in shape.text_frame.paragraphs]
        return "\n".join(_escape(line) for line in lines if line)
    if shape.shape_type is not None and getattr(shape, "shapes", None) is not None:  # a group
        return "\n\n".join(t for t in (_shape_text(s) for s in _ordered(shape.shapes)) if t)
    return ""


def _ordered(shapes: Any) -> list[Any]:
    return sorted(shapes, key=lambda s: ((s.top or 0), (s.left or 0)))


def parse_pptx(source: str, data: bytes) -> Document:
    """A PowerPoint file → one page per slide with text; the slide title is its '#' heading."""
    open_container(source, data, "pptx").close()
    try:
        import pptx
    except ImportError as err:
        raise LoadError(source, "reading .pptx needs python-pptx", "pip install 'rag-local[office]'") from err
    pages: list[Page] = []
    try:
        deck = pptx.Presentation(io.BytesIO(data))
        for number, slide in enumerate(deck.slides, 1):
            title_shape = slide.shapes.title
            blocks = []
            if title_shape is not None and title_shape.text.strip():
                blocks.append(_heading_line(1, title_shape.text))
            for shape in _ordered(slide.shapes):
                if title_shape is not None and shape.shape_id == title_shape.shape_id:
                    continue
                text = _shape_text(shape)
                if text:
                    blocks.append(text)
            text = normalize_text("\n\n".join(blocks)).strip()
            if text:
                pages.append(Page(number, text))
        meta_title = deck.core_properties.title
    except LoadError:
        raise
    except Exception as err:  # python-pptx and lxml raise many types on damaged parts
        raise _damaged(source, "pptx", err) from err
    if not pages:
        raise _no_text(source, "pptx")
    title = _title(meta_title, pages[0].text)
    return Document(source=source, kind="pptx", pages=tuple(pages), title=title, paginated=True)

