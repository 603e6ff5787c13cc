"""PDF: bytes → a paginated `Document`, page by page with pypdf, cleaned and checked for garbage.

- `parse_pdf(source, data)` keeps one `Page` per page with text (numbers stay the real ones),
  drops a minority of unreadable pages and fails the file when they are half or more; a page
  that draws a ruled table has it written one row a paragraph (`rag.ingest.pdf_tables`);
  running headers and footers leave the pages (`rag.ingest.furniture`), and the title is the
  metadata's when page 1 shows it, else page 1's largest text (`largest_text`), else its first line;
- `clean_pdf_text` undoes what extraction leaves: hyphenated line breaks, ligatures, Kangxi
  radicals, trailing spaces, and the layout's line wraps and gaps inside Chinese text
  (`rag.ingest.cjk_layout`);
- `looks_like_garbage` / `garbage_measures` tell mojibake from a broken font encoding from language.

With an OCR reader (`rag.ingest.ocr`, `parse_pdf(..., ocr=...)`) pages without text, pages whose
layer is garbage and pages whose layer fails the quality gate (`needs_ocr`) are rendered and read
by OCR; the OCR text replaces a layer when it scores higher, and such pages are marked
`Page.ocr`. Without one they are dropped or reported as before.

Every bad input raises `LoadError(source, reason, fix)`: encrypted, corrupt, scanned (no text
layer, and no OCR), unreadable. Deliberately skipped: layout analysis (multi-column reading order
is whatever pypdf gives; tables without ruling lines stay lines of text), and images, annotations
and forms.
"""
from __future__ import annotations

import io
import re
import unicodedata
from collections import Counter
from dataclasses import replace
from functools import lru_cache
from itertools import pairwise
from typing import TYPE_CHECKING

from rag.errors import LoadError
from rag.ingest.cjk_layout import drop_layout_spaces, join_cjk_wraps
from rag.ingest.decode import FIX_WRONG_TYPE, TITLE_MAX_CHARS, first_line, normalize_text, sniff_type
from rag.ingest.furniture import furniture_keys, line_key, strip_furniture
from rag.ingest.ocr import needs_ocr
from rag.ingest.pdf_tables import TableReader
from rag.records import Document, Page
from rag.text import RADICAL_TABLE, has_cjk

if TYPE_CHECKING:  # for annotations only: pypdf is imported when a PDF is read
    from pypdf import PdfReader

    from rag.ingest.ocr import PdfOcr

_GARBAGE_SAMPLE_CHARS = 50_000  # a page is a few thousand characters; this bounds a pathological one

FIX_RE_EXPORT = "re-export or re-download the file"
FIX_OCR = ("turn OCR on (setting ocr = true, with pip install -e '.[ocr]'), or run OCR first, "
           "e.g. ocrmypdf in.pdf out.pdf")
FIX_NOTHING_READ = "check that the pages show text; a photo or a drawing without words has none to index"
FIX_GARBAGE = "run OCR (ocrmypdf --force-ocr) or re-export the PDF"
FIX_DECRYPT = "decrypt it, e.g. qpdf --decrypt in.pdf out.pdf, and ingest again"


# ---------------------------------------------------------------------------------- text cleanup


@lru_cache(maxsize=1)
def _pdf_char_table() -> dict[int, str]:
    """Ligatures (ﬁ → fi) and Kangxi/CJK radicals (⽤ → 用) that PDF fonts emit for plain characters."""
    table = {c: unicodedata.normalize("NFKC", chr(c)) for c in range(0xFB00, 0xFB07)}
    for c in range(0x2F00, 0x2FD6):
        table[c] = unicodedata.normalize("NFKC", chr(c))
    table.update(RADICAL_TABLE)  # the supplement, which NFKC barely folds: ⻅ → 见, ⻣ → 骨
    return table


_LATIN_HYPHEN_BREAK = re.compile(
    r"(?<=[A-Za-z\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u024F])[-\u00AD][ \t]*\n[ \t]*"
    r"(?=[a-z\u00DF-\u00F6\u00F8-\u00FF\u0100-\u024F])")
_TRAILING_SPACE = re.compile(r"(?<![ \t])[ \t]+\n")  # lookbehind: start only at a run's first space
_BLANK_RUN = re.compile(r"\n{3,}")


def clean_pdf_text(text: str) -> str:
    """Normalize extracted PDF text: 'exam-\\nple' → 'example' (Latin only), ﬁ → fi, no trailing
    spaces, at most one blank line in a row. Line breaks are kept.

    >>> clean_pdf_text('an exam-\\nple  \\n\\n\\n\\nof ﬁne text')
    'an example\\n\\nof fine text'
    """
    text = normalize_text(text).translate(_pdf_char_table())
    text = _TRAILING_SPACE.sub("\n", text + "\n")
    text = _LATIN_HYPHEN_BREAK.sub("", text)
    text = drop_layout_spaces(join_cjk_wraps(text))
    return _BLANK_RUN.sub("\n\n", text).strip()


# ------------------------------------------------------------------------------- garbage detection

_LATIN1_SYMBOLS = frozenset("¡¢£¤¥¦§¨©ª«¬®¯°±²³´µ¶·¸¹º»¼½¾¿×÷")
_RARE_ASCII = frozenset("!\"#$&;?@\\`~")  # glyph-id junk is full of these; formulas use +=<>^|
_WRAPPERS = "()[]{}\"'“”‘’«».,;:!?¿¡…"
_VOWELS = frozenset("aeiouy")
_BAD_CATEGORIES = frozenset({"Co", "Cn", "Cs", "Cc"})


def _script(ch: str) -> str:
    """Coarse script of a cased letter: the ones mojibake mixes inside one word."""
    o = ord(ch)
    if o < 0x250 or 0x1E00 <= o < 0x1F00:
        return "latin"
    if 0x370 <= o < 0x400 or 0x1F00 <= o < 0x2000:
        return "greek"
    if 0x400 <= o < 0x530:
        return "cyrillic"
    return "other"


def _odd_word(word: str) -> bool:
    """A letters-only word that no language writes: scripts mixed, or case flipping inside
    ('ÒòÍâ'). One lower→upper step is allowed per word part: iPhone, McDonald, TableFormer."""
    if len({_script(c) for c in word if c.isalpha()}) > 1:
        return True
    for part in re.split(r"[-'’]", word):
        steps = sum(1 for a, b in pairwise(part) if a.islower() and b.isupper())
        if steps > 1:
            return True
    return False


def _vowel_letters(word: str) -> int:
    return sum(1 for c in word.lower() if unicodedata.normalize("NFD", c)[0] in _VOWELS)


def garbage_measures(text: str) -> dict[str, float]:
    """The shares `looks_like_garbage` judges by, over the non-space characters of (at most) the
    first 50,000 characters. NaN means too little to measure (NaN fails every comparison)."""
    nan = float("nan")
    sample = text[:_GARBAGE_SAMPLE_CHARS]
    chars = [c for c in sample if not c.isspace()]
    n = len(chars)
    m = {"chars": float(n), "unusable": 0.0, "latin1_signs": 0.0, "symbols": 0.0, "rare_signs": 0.0,
         "latin1_letters": nan, "words": nan, "odd_words": nan, "vowels": nan, "junk_tokens": nan}
    if n == 0:
        return m
    categories = [unicodedata.category(c) for c in chars]
    m["unusable"] = sum(1 for c, cat in zip(chars, categories)
                        if c == "\ufffd" or cat in _BAD_CATEGORIES) / n
    m["latin1_signs"] = sum(1 for c in chars if c in _LATIN1_SYMBOLS) / n
    m["symbols"] = sum(1 for c, cat in zip(chars, categories) if cat[0] == "S" and c != "\ufffd") / n
    m["rare_signs"] = sum(1 for c in chars if c in _RARE_ASCII) / n
    latin = [c for c in chars if c.isalpha() and _script(c) == "latin"]
    if len(latin) >= 20:
        m["latin1_letters"] = sum(1 for c in latin if "\u00c0" <= c <= "\u00ff") / len(latin)

    tokens = words = cased_words = odd = ascii_tokens = junk = latin_letters = vowels = 0
    for token in sample.split():
        core = token.strip(_WRAPPERS)
        if len(core) < 2:
            continue
        tokens += 1
        if core.isascii():
            ascii_tokens += 1
            junk += any(c in _RARE_ASCII for c in core)
        letters = core.replace("-", "").replace("'", "").replace("’", "")
        if not letters.isalpha():
            continue  # numbers, codes, formulas
        words += 1
        if not any(c.isupper() or c.islower() for c in letters):
            continue  # CJK and other uncased scripts: no case or vowels to judge
        cased_words += 1
        odd += _odd_word(core)
        # acronyms (NDCG, HTML) are short; shifted codes can turn whole words upper case
        if len(letters) >= (5 if letters.isupper() else 3) and all(_script(c) == "latin" for c in letters):
            latin_letters += len(letters)
            vowels += _vowel_letters(letters)
    if tokens:
        m["words"] = words / tokens
    if cased_words >= 8:
        m["odd_words"] = odd / cased_words
    if latin_letters >= 200:
        m["vowels"] = vowels / latin_letters
    if ascii_tokens >= 10:
        m["junk_tokens"] = junk / ascii_tokens
    return m


def looks_like_garbage(text: str) -> bool:
    """True when text is mojibake (a broken font encoding), not language.

    Garbage when, among the non-space characters (see `garbage_measures`):
    1. unusable characters (private use, unassigned, surrogate, control, U+FFFD) > 10%;
    2. Latin-1 signs (¡¢£…×÷) > 5%: CJK bytes read as Latin-1 ('ÍâÏÔ×Ó ºÍÎ¢');
    3. accented Latin-1 letters > 30% of Latin letters: Cyrillic/Greek bytes read as Latin-1;
    4. symbols (math, arrows, dingbats) > 60%: codes mapped into a symbol block;
    5. > 35% of letters-only words mix scripts or flip case inside ('ÒòÍâÏÔ');
    6. vowels < 20% of the letters of Latin words: shifted codes ('Wkh txlfn', 'WKH');
    7. signs that words never hold ('!"#$&;?@') in > 25% of ASCII tokens or > 8% of characters,
       and < 30% of tokens are words: glyph ids read as ASCII ('2<0= >./?2/1'); the word test
       keeps shell and C listings, which are as full of these signs.
    Digits and the signs of formulas (+-=<>^|/) never count against a text, so tables and math
    pass, and CJK has no cased letters for rules 3, 5 and 6 to judge. Below 40 characters only
    rule 1 applies: a page number or a short caption says too little.
    """
    m = garbage_measures(text)
    if m["unusable"] > 0.10:
        return True
    if m["chars"] < 40:
        return False
    glyph_ids = (m["junk_tokens"] > 0.25 or m["rare_signs"] > 0.08) and m["words"] < 0.30
    return (m["latin1_signs"] > 0.05 or m["latin1_letters"] > 0.30 or m["symbols"] > 0.60
            or m["odd_words"] > 0.35 or m["vowels"] < 0.20 or glyph_ids)


# ------------------------------------------------------------------------------------------- PDF


def _page_text(reader: PdfReader, index: int, visitor: _SizedText | None = None) -> tuple[str, Exception | None]:
    """Raw text of one page; ('', error) when pypdf fails on it, so one bad page sinks nothing.
    A `visitor` sees every piece of text with its size (the title is looked for on page 1)."""
    try:
        page = reader.pages[index]
        if page.get("/Contents") is None:  # blank page: skip the extractor (thousands stay fast)
            return "", None
        if visitor is None:
            return page.extract_text() or "", None
        return page.extract_text(visitor_text=visitor, visitor_operand_before=visitor.before,
                                 visitor_operand_after=visitor.after) or "", None
    except Exception as err:  # pypdf raises many types on damaged content streams
        return "", err


def _short_error(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:120]


def _squash(text: str) -> str:
    return "".join(text.split()).casefold()


class _SizedText:
    """pypdf's text visitors: each upright piece of a page's text with its printed size in points
    (the font size scaled by the text and transformation matrices) and its height on the page,
    in content order. Left out: rotated text (an arXiv stamp up the margin), and the text of form
    XObjects (figures, logos), which pypdf reports in the form's own coordinates, unless the
    page has no other (a page drawn as one form)."""

    def __init__(self) -> None:
        self.page: list[tuple[float, str, float]] = []
        self.forms: list[tuple[float, str, float]] = []
        self._forms = 0  # how deep inside form XObjects the content stream is
        self._flushing = False  # between a Do and the form's first operator, pypdf flushes page text

    def before(self, operator: bytes, operands: object, cm: object, tm: object) -> None:
        self._flushing = operator == b"Do"
        self._forms += operator == b"Do"

    def after(self, operator: bytes, operands: object, cm: object, tm: object) -> None:
        if operator == b"Do":
            self._forms -= 1
        self._flushing = False

    def __call__(self, text: str, cm: list[float], tm: list[float], font: object, size: float) -> None:
        if not text:
            return
        a, b = tm[0] * cm[0] + tm[1] * cm[2], tm[0] * cm[1] + tm[1] * cm[3]
        c, d = tm[2] * cm[0] + tm[3] * cm[2], tm[2] * cm[1] + tm[3] * cm[3]
        if a <= 0 or d <= 0 or abs(b) > 0.01 * a or abs(c) > 0.01 * d:
            return
        y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
        (self.forms if self._forms - self._flushing > 0 else self.page).append((round(abs(size) * d, 1), text, y))

    @property
    def pieces(self) -> list[tuple[float, str, float]]:
        return self.page if any(text.strip() for _, text, _ in self.page) else self.forms


_TITLE_SIZE_RATIO = 1.15  # a title is printed larger than the body; a bold body-sized line is no title
_RUN_SIZE_RATIO = 1.1  # on its line, a title goes on through smaller capitals ('T' 14pt, 'ABLE' 11.5pt)


def _join_lines(text: str) -> str:
    """A title's lines as one: Latin ones joined by a space, Chinese ones without."""
    out = ""
    for line in (" ".join(line.split()) for line in text.split("\n")):
        if line:
            out += ("" if not out or (has_cjk(out[-1]) and has_cjk(line[0])) else " ") + line
    return out


def largest_text(pieces: list[tuple[float, str, float]], furniture: set[str], *, above: float) -> str:
    """The first run of the largest text in the top part of a page (pieces as (size, text,
    height on the page), those at or `above` counting), when it is printed larger than the
    page's body (the size most characters have) and is not a running header or footer; ''
    otherwise.

    >>> pieces = [(9.0, "Journal 4\\n", 800), (18.0, "Deep ", 760), (18.0, "Nets\\n", 760), (10.0, "Body " * 9, 700)]
    >>> largest_text(pieces, set(), above=400), largest_text(pieces, set(), above=780)
    ('Deep Nets', '')
    """
    chars: Counter[float] = Counter()
    for size, text, _ in pieces:
        chars[size] += len(text.strip())
    if not chars:
        return ""
    body = chars.most_common(1)[0][0]
    top = [piece for piece in pieces if piece[2] >= above]
    for size in sorted({s for s, _, _ in top if s > _TITLE_SIZE_RATIO * body}, reverse=True)[:3]:
        run: list[str] = []
        line_y = float("nan")
        for piece_size, text, y in top:
            small_caps = abs(y - line_y) < 1 and piece_size >= _RUN_SIZE_RATIO * body
            if abs(piece_size - size) < 0.5 or run and (small_caps or not text.strip()):
                run.append(text)
                line_y = y
            elif run and text.strip():
                break  # the first run only: a later heading of the same size is not the title
        lines = [line for line in "".join(run).split("\n") if line_key(line) not in furniture]
        title = _join_lines("\n".join(lines))
        if sum(c.isalpha() for c in title) >= 2:  # not a big page number or a drop cap
            return title[:TITLE_MAX_CHARS].rstrip()
    return ""


def _pdf_title(reader: PdfReader, first_page: str, *, largest: str = "") -> str:
    """The metadata title when the first page shows it (templates leave junk like 'Slide 1'),
    else the largest text of page 1 (`largest_text`), else the first line of text."""
    try:
        meta = reader.metadata
        title = " ".join(str(meta.title).split()) if meta and meta.title else ""
    except Exception:  # metadata is optional and often malformed
        title = ""
    if title and len(title) >= 3 and _squash(title) in _squash(first_page[:5000]):
        return title[:TITLE_MAX_CHARS]
    return largest or first_line(first_page)


def _without_furniture(pages: list[Page]) -> tuple[list[Page], set[str]]:
    """The pages without their running headers and footers (`rag.ingest.furniture`), a page
    left with nothing dropped; the furniture's line keys."""
    keys = furniture_keys([p.text for p in pages])
    if not keys:
        return pages, keys
    texts = strip_furniture([p.text for p in pages])
    kept = [replace(p, text=_BLANK_RUN.sub("\n\n", t)) for p, t in zip(pages, texts) if t]
    return (kept or pages), keys


def page_labels(reader: PdfReader) -> list[str]:
    """The printed page numbers the PDF defines (/PageLabels: 'i', 'ii', '251'…), one per page,
    or [] when it defines none, or only labels equal to the page numbers, or a broken tree."""
    try:
        if "/PageLabels" not in reader.root_object:  # pypdf would compute '1', '2'… for every page
            return []
        labels = [str(label) for label in reader.page_labels]
    except Exception:  # the tree is optional and sometimes malformed: the PDF's numbers still hold
        return []
    if all(label == str(i) for i, label in enumerate(labels, 1)):
        return []
    return labels


def _with_tables(tables: TableReader, reader: PdfReader, index: int, raw: str) -> str:
    """The page's text with its ruled tables written row by row (`rag.ingest.pdf_tables`); the
    text as extracted when the page draws no grid (the fast path of text pages)."""
    return tables.page_text(reader.pages[index], index, raw)


def _has_contents(reader: PdfReader, index: int) -> bool:
    try:
        return reader.pages[index].get("/Contents") is not None
    except Exception:  # a damaged page tree: nothing to render either
        return False


def _ocr_pages(source: str, data: bytes, layers: dict[int, str], labels: list[str],
               ocr: PdfOcr) -> dict[int, Page | None]:
    """What replaces each page OCR read: its OCR Page when that reads better than the text layer
    (none, or a worse one by `text_quality`); None to drop a failing layer over a page where OCR
    sees no text (hidden junk). Pages that keep their layer are left out."""
    from rag.ingest.ocr import text_quality

    try:
        texts = ocr.read_pages(data, sorted(layers))
    except Exception as err:  # onnxruntime, the renderer: one bad file sinks only itself
        raise LoadError(source, f"OCR failed: {_short_error(err)}",
                        "turn OCR off for this file's folder (setting ocr = false) or re-export the PDF") from err
    out: dict[int, Page | None] = {}
    for index, raw in texts.items():
        text = clean_pdf_text(raw)
        layer = layers[index]
        if not text or looks_like_garbage(raw):
            if layer and not looks_like_garbage(layer):
                out[index] = None
            continue
        if layer and not looks_like_garbage(layer) and text_quality(text) <= text_quality(clean_pdf_text(layer)):
            continue  # a poor layer, but OCR reads it no better: keep the layer
        out[index] = Page(number=index + 1, text=text, label=labels[index] if index < len(labels) else "", ocr=True)
    return out


def parse_pdf(source: str, data: bytes, *, ocr: PdfOcr | None = None) -> Document:
    """PDF bytes → paginated Document, one Page per page with text (numbers stay the real ones,
    printed page labels go beside them in `Page.label`).

    Garbage pages are dropped while they are a minority; when they are half or more, the file fails.
    With `ocr`, pages with no text, a garbage layer or one that fails the quality gate are read by
    OCR first (see the module docstring).
    """
    if b"%PDF" not in data[:1024]:
        raise LoadError(source, f"not a PDF: content looks like {sniff_type(data)}", FIX_WRONG_TYPE)
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                unlocked = reader.decrypt("")
            except DependencyError as err:
                raise LoadError(source, "encrypted PDF (AES: needs the 'cryptography' package)",
                                "pip install cryptography, or " + FIX_DECRYPT) from err
            if not unlocked:
                raise LoadError(source, "encrypted PDF (password required)", FIX_DECRYPT)
        count = len(reader.pages)
    except LoadError:
        raise
    except Exception as err:  # pypdf signals damage with many exception types
        raise LoadError(source, f"corrupt or truncated PDF: {_short_error(err)}", FIX_RE_EXPORT) from err
    if count == 0:
        raise LoadError(source, "corrupt or truncated PDF: no pages", FIX_RE_EXPORT)

    labels = page_labels(reader)
    slots: list[Page | None] = []  # one per page, None where nothing is kept
    layers: dict[int, str] = {}  # page index → the raw text layer OCR is to replace ('' when none)
    with_text = garbage = 0
    errors: list[Exception] = []
    tables = TableReader(data)
    sized = _SizedText()  # the sizes of the first page with text, for the title
    sized_index = -1
    try:
        for index in range(count):
            raw, error = _page_text(reader, index, sized if sized_index < 0 else None)
            if raw and sized_index < 0:
                sized_index = index
            if error is not None:
                errors.append(error)
            elif raw:
                raw = _with_tables(tables, reader, index, raw)
            text = clean_pdf_text(raw)
            slots.append(None)
            if not text:
                if ocr is not None and _has_contents(reader, index):
                    layers[index] = ""  # a page pypdf failed on may still render
                continue
            with_text += 1
            bad = looks_like_garbage(raw)
            if ocr is not None and (bad or needs_ocr(text)):
                layers[index] = raw
            if bad:
                garbage += 1
                continue
            slots[index] = Page(number=index + 1, text=text, label=labels[index] if index < len(labels) else "")
    finally:
        tables.close()
    if layers and ocr is not None:
        for index, page in _ocr_pages(source, data, layers, labels, ocr).items():
            if not layers[index]:
                with_text += 1
            elif looks_like_garbage(layers[index]):
                garbage -= 1
            elif page is None:  # a failing layer over a page that shows no text: invisible junk
                garbage += 1
            slots[index] = page
    pages = [p for p in slots if p is not None]
    if with_text == 0 and errors:
        raise LoadError(source, f"corrupt or truncated PDF: {_short_error(errors[0])}", FIX_RE_EXPORT)
    if with_text == 0 and ocr is not None:
        raise LoadError(source, "no text found, not even by OCR (blank or picture-only pages)", FIX_NOTHING_READ)
    if with_text == 0:
        raise LoadError(source, "no text layer (scanned images?)", FIX_OCR)
    if garbage * 2 >= with_text:
        raise LoadError(source, "text layer is unreadable (broken font encoding)", FIX_GARBAGE)
    pages, furniture = _without_furniture(pages)
    largest = ""
    if pages[0].number == sized_index + 1 and not pages[0].ocr:
        box = reader.pages[sized_index].mediabox  # the title stands in the top 40% of the page
        largest = largest_text(sized.pieces, furniture, above=float(box.bottom) + 0.6 * float(box.height))
    title = _pdf_title(reader, pages[0].text, largest=largest)
    return Document(source=source, kind="pdf", pages=tuple(pages), title=title, paginated=True)
