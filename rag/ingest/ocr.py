"""OCR: the text of PDF pages that have none, or whose text layer fails the quality gate.

    ocr = load_ocr(progress=...)                 # None when the `ocr` extra is not installed
    texts = ocr.read_pages(pdf_bytes, [0, 3])    # {page index: text}; '' for a page with no text

- Engine: RapidOCR (PyPI `rapidocr`, the `ocr` extra): PP-OCRv6 small detection and recognition
  models (one model reads Chinese and English) inside the wheel, run by onnxruntime; nothing is
  downloaded, ever. Chosen over Tesseract 5 (Debian, `eng+chi_sim`) by character error rate on
  pages rendered with known text, noise and a slight rotation (`eval/ocr_choice.py engines`):
  lower CER in English and Chinese, one model for mixed text, and no system package, at about
  2.5 times Tesseract's seconds per page.
- Rendering: pypdfium2 (a wheel, in the same extra) draws the page as a viewer shows it, so text
  drawn as vector outlines and fonts whose encoding is broken (mojibake text layers) are read too;
  at 200 dpi, with the long side capped at 2000 px, the size the detector works at. Without
  pypdfium2 the page's largest embedded image is read with pypdf (enough for a plain scan).
  Poppler's pdftoppm is not used: a system package and a subprocess for what the wheel does in process.
- Reading order: the engine's text boxes are grouped into lines by vertical overlap, lines top
  to bottom and boxes left to right (`boxes_to_text`); Chinese is joined without spaces.
- Quality gate: `text_quality` is the share of characters in plausible tokens (words of one
  script and sane case, numbers, common Chinese characters); a text layer below
  `QUALITY_THRESHOLD` is read again by OCR, and the OCR text replaces it when it scores higher.

Deliberately skipped: layout analysis of scans (columns and tables come out as lines), pages
rotated by 90°, handwriting, OCR of images inside pages that have a good text layer, and a cache
of OCR results (a changed file is read again).
"""
from __future__ import annotations

import io
import logging
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from rag.errors import MissingDependencyError

if TYPE_CHECKING:  # for annotations only: Pillow comes with the renderers
    from PIL.Image import Image

log = logging.getLogger(__name__)

RENDER_DPI = 200  # 11 pt text is ~30 px high: the recogniser reads lines at 48 px
MAX_SIDE_PX = 2000  # RapidOCR shrinks larger images to this anyway (Global.max_side_len)
# eval/ocr_choice.py gate: the text layers of 64 clean pages (shared PDFs, sample docs, English
# and Chinese) score 0.96-1.00; with 20 % of their characters garbled 0.66-0.85 (median 0.78).
QUALITY_THRESHOLD = 0.90
MIN_MEASURED_CHARS = 20  # a shorter layer (a page number, a caption) says too little to judge

OcrProgress = Callable[[int, int], None]  # (OCR pages done, OCR pages found so far)


# ------------------------------------------------------------------------------------ quality


_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
# Separators as good as a space: brackets, commas, dashes, underscores, CJK punctuation.
_SEPARATORS = re.compile(r"[()\[\]{}<>,;:_\u2010-\u2015§\"“”‘’«»\u3000-\u303f\uff01-\uff0f\uff1a-\uff20]")
_NUMBER = re.compile(r"[+\-±]?[\d.,:/%]*\d[\d.,:/%]*")
_WRAPPERS = ".!?¿¡…'*"
_JUNK_SIGNS = frozenset("#$@&`~^")  # what glyph-id and bad-OCR junk is full of; formulas use +=<>|/
_BAD = frozenset({"Co", "Cn", "Cs", "Cc"})


def _common_hanzi(ch: str) -> bool:
    """In GB2312 or Big5: the characters of everyday simplified or traditional Chinese."""
    for codec in ("gb2312", "big5"):
        try:
            ch.encode(codec)
            return True
        except UnicodeEncodeError:
            pass
    return False


def _sane_case(letters: str) -> bool:
    """lower, UPPER (a plural 's' allowed: LLMs), Capitalised, or one hump more (iPhone, McDonald)."""
    humps = sum(1 for a, b in zip(letters, letters[1:]) if a.islower() and b.isupper())
    rest = letters[1:]
    if letters.isupper() or (letters[:-1].isupper() and letters.endswith("s")) or not rest or rest.islower():
        return True
    return humps == 1


def _plausible(token: str) -> bool | None:
    """Is a non-Chinese token one a language writes (a word, a number, a code like 'H2O' or 'x86')?
    None for signs alone (+, =, ≈): they neither help nor hurt."""
    core = token.strip(_WRAPPERS)
    if any(unicodedata.category(c) in _BAD or c == "\ufffd" for c in token):
        return False
    if not any(c.isalnum() for c in core):
        return False if any(c in _JUNK_SIGNS for c in token) else None
    if _NUMBER.fullmatch(core) or "://" in core or core.startswith("www."):
        return True
    for part in re.split(r"[-'’/.+=]", core):
        letters = "".join(c for c in part if c.isalpha())
        if part and not part.isalnum() or (letters and not _sane_case(letters)):
            return False
        if len({unicodedata.name(c, "?").split()[0] for c in letters}) > 1:
            return False  # scripts mixed inside a word: LATIN and CYRILLIC…
        if len(letters) >= 5 and letters.isascii() and not any(c in "aeiouyAEIOUY" for c in letters):
            return letters.isupper()  # an acronym, else shifted codes ('Wkh txlfn' has vowels; 'Zxqjk' none)
    return True


def text_quality(text: str) -> float:
    """Share of the non-space characters that sit in plausible tokens, 0..1 (1.0 when nothing is judged).

    Chinese characters count one by one (common ones are plausible), other tokens whole, signs
    alone not at all; a letter or two between Chinese characters is a misread one ('第3章' and
    '用GPU推理' pass). Here 4 of 11 characters are plausible: 年 and fox.

    >>> text_quality("The quick brown fox, 2024.")
    1.0
    >>> round(text_quality("ZOq5 年 T#e fox"), 2), text_quality("第3章 用GPU推理")
    (0.36, 1.0)
    """
    good = total = 0
    for token in _SEPARATORS.sub(" ", text).split():
        pieces = _CJK.split(token)
        for i, piece in enumerate(pieces):
            verdict = _plausible(piece) if piece else None
            if verdict and 0 < i < len(pieces) - 1 and len(piece) <= 2 and not piece.isdigit():
                verdict = False  # a letter or two inside Chinese ('步rm语', 'Z案'): misread characters
            if verdict is not None:
                total += len(piece)
                good += len(piece) if verdict else 0
        for run in _CJK.findall(token):
            total += len(run)
            good += sum(1 for c in run if _common_hanzi(c))
    return good / total if total else 1.0


def needs_ocr(text: str) -> bool:
    """A text layer too poor to index: enough characters to judge, and a quality below the threshold.

    >>> needs_ocr("ZOq5 年说阴 Tbe qu!ck brovvn f0x jumqs 0ver"), needs_ocr("The quick brown fox jumps over.")
    (True, False)
    """
    return sum(1 for c in text if not c.isspace()) >= MIN_MEASURED_CHARS and text_quality(text) < QUALITY_THRESHOLD


# -------------------------------------------------------------------------------- reading order


@dataclass(frozen=True)
class TextBox:
    text: str
    left: float
    top: float
    right: float
    bottom: float


def _joiner(a: str, b: str) -> str:
    """No space between two Chinese characters (or CJK punctuation), one elsewhere."""
    cjk = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]")
    return "" if a and b and cjk.match(a[-1]) and cjk.match(b[0]) else " "


def boxes_to_text(boxes: Sequence[TextBox]) -> str:
    """Boxes → lines: a box joins the line it overlaps vertically by more than half of the
    smaller height; lines run top to bottom, boxes in a line left to right.

    >>> boxes_to_text([TextBox("world", 60, 11, 100, 30), TextBox("hello", 0, 10, 50, 29),
    ...                TextBox("第二行", 0, 40, 50, 60), TextBox("结束", 60, 41, 90, 59)])
    'hello world\\n第二行结束'
    """
    lines: list[list[TextBox]] = []
    for box in sorted(boxes, key=lambda b: (b.top + b.bottom) / 2):
        if lines:
            last = lines[-1]
            top, bottom = min(b.top for b in last), max(b.bottom for b in last)
            overlap = min(bottom, box.bottom) - max(top, box.top)
            if overlap > 0.5 * min(bottom - top, box.bottom - box.top):
                last.append(box)
                continue
        lines.append([box])
    out = []
    for line in lines:
        text = ""
        for box in sorted(line, key=lambda b: b.left):
            piece = box.text.strip()
            if piece:
                text = text + _joiner(text, piece) + piece if text else piece
        if text:
            out.append(text)
    return "\n".join(out)


# ------------------------------------------------------------------------------------ rendering


def _scale(width_pt: float, height_pt: float) -> float:
    """Pixels per PDF point: RENDER_DPI, or less when the long side would pass MAX_SIDE_PX."""
    return min(RENDER_DPI / 72, MAX_SIDE_PX / max(width_pt, height_pt, 1.0))


def _blank(img: Image) -> bool:
    """Nothing drawn: every pixel of a small grey copy within a few levels of the others."""
    lo, hi = cast("tuple[int, int]", img.convert("L").resize((64, 64)).getextrema())  # one band: (min, max)
    return hi - lo < 16


def render_pages(data: bytes, indices: Sequence[int]) -> Iterator[tuple[int, Image | None]]:
    """(index, page image) for each page index; the image is None when the page shows nothing."""
    try:
        import pypdfium2 as pdfium
    except ImportError:
        yield from _embedded_images(data, indices)
        return
    pdf = pdfium.PdfDocument(data)
    try:
        for index in indices:
            page = pdf[index]
            try:
                bitmap = page.render(scale=_scale(page.get_width(), page.get_height()), grayscale=True)
                img = bitmap.to_pil()
            finally:
                page.close()
            yield index, None if _blank(img) else img
    finally:
        pdf.close()


def _embedded_images(data: bytes, indices: Sequence[int]) -> Iterator[tuple[int, Image | None]]:
    """The largest image on each page (pypdf), for installs without pypdfium2."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data), strict=False)
    for index in indices:
        best: Image | None = None
        try:
            for image in reader.pages[index].images:
                img = image.image
                if img is not None and (best is None or img.width * img.height > best.width * best.height):
                    best = img
        except Exception as err:  # a damaged image stream: the page is read as having none
            log.warning("page %d: cannot read its images (%s)", index + 1, err)
        if best is not None:
            side = max(best.width, best.height)
            if side > MAX_SIDE_PX:
                best = best.resize((round(best.width * MAX_SIDE_PX / side), round(best.height * MAX_SIDE_PX / side)))
        yield index, None if best is None or _blank(best) else best


# --------------------------------------------------------------------------------------- engine


class RapidOcrEngine:
    """RapidOCR with the models its wheel ships; loaded on the first page, then kept."""

    def __init__(self) -> None:
        self._engine: Any = None
        from importlib.metadata import version

        self.name = f"rapidocr {version('rapidocr')}"

    def read(self, img: Image) -> list[TextBox]:
        if self._engine is None:
            from rapidocr import RapidOCR

            # No 180° line classifier: pages are upright, and it turned whole upright lines of
            # English over, reading them as junk (10.8 % CER on the made pages, 0.5 % without).
            self._engine = RapidOCR(params={"Global.log_level": "error", "Global.use_cls": False})
        import numpy as np

        result = self._engine(np.asarray(img.convert("RGB")))
        if result.boxes is None or result.txts is None:
            return []
        out = []
        for quad, text in zip(result.boxes, result.txts):
            xs, ys = [float(p[0]) for p in quad], [float(p[1]) for p in quad]
            out.append(TextBox(str(text), min(xs), min(ys), max(xs), max(ys)))
        return out


class PdfOcr:
    """Reads PDF pages by OCR and counts them: `pages` done, for reports and the progress bar."""

    def __init__(self, engine: RapidOcrEngine, *, progress: OcrProgress | None = None) -> None:
        self.engine = engine
        self.progress = progress
        self.pages = 0  # pages read so far, over every document
        self.found = 0  # pages handed to read_pages so far
        self.seconds = 0.0

    def read_pages(self, data: bytes, indices: Sequence[int]) -> dict[int, str]:
        """{index: OCR text} for the given 0-based page indices ('' where the page shows no text)."""
        import time

        self.found += len(indices)
        if self.progress:
            self.progress(self.pages, self.found)
        out: dict[int, str] = {}
        for index, img in render_pages(data, indices):
            t0 = time.perf_counter()
            out[index] = boxes_to_text(self.engine.read(img)) if img is not None else ""
            self.seconds += time.perf_counter() - t0
            self.pages += 1
            if self.progress:
                self.progress(self.pages, self.found)
        return out


def ocr_available() -> bool:
    from importlib.util import find_spec

    return find_spec("rapidocr") is not None and find_spec("onnxruntime") is not None


def load_ocr(*, progress: OcrProgress | None = None) -> PdfOcr:
    """The OCR reader (the model loads on the first page). Raises MissingDependencyError without the extra."""
    if not ocr_available():
        raise MissingDependencyError("rapidocr", "ocr")
    return PdfOcr(RapidOcrEngine(), progress=progress)
