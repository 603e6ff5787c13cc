"""Decode: bytes → text. What a file looks like, its charset, clean text, and plain text / Markdown.

- `sniff_type(data)` names what the first bytes look like ('PDF', 'PNG image', 'HTML', 'plain text'…),
  for error messages and for the upload type check (`rag.ingest.parse.content_kind`);
- `decode_text(source, data)` decodes by BOM, then strict UTF-8, then a declared charset, then a
  guess (`guess_encoding`, charset-normalizer for multi-byte encodings), refusing binary data;
- `normalize_text` makes newlines '\\n', drops control characters and applies NFC;
- `parse_text` turns a plain-text or Markdown file into a one-page `Document`, titled by
  `first_line` / `markdown_title`.

Every bad input raises `LoadError(source, reason, fix)`. Deliberately skipped: mojibake that decodes
to valid but wrong CJK ideographs (it looks like language to any cheap test), and any Markdown
rendering: Markdown is kept verbatim, front matter included, and the chunker reads the '#' headings.
"""
from __future__ import annotations

import codecs
import re
import unicodedata
from typing import Literal

from rag.errors import LoadError
from rag.records import Document, Page

TITLE_MAX_CHARS = 120
_TITLE_SCAN_CHARS = 65_536  # titles come from the top of a file; never scan a 50 MB line for one
_ENCODING_SAMPLE_BYTES = 256 * 1024  # charset guessing needs a sample, not the whole file

FIX_WRONG_TYPE = "remove the file or give it the right extension"


# ---------------------------------------------------------------------------------------- sniff

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP (or .docx/.xlsx/.epub)"),
    (b"\x89PNG", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF8", "GIF image"),
    (b"II*\x00", "TIFF image"),
    (b"MM\x00*", "TIFF image"),
    (b"\x1f\x8b", "gzip archive"),
    (b"BZh", "bzip2 archive"),
    (b"\xfd7zXZ\x00", "xz archive"),
    (b"7z\xbc\xaf", "7-Zip archive"),
    (b"Rar!", "RAR archive"),
    (b"\x7fELF", "ELF executable"),
    (b"SQLite format 3\x00", "SQLite database"),
    (b"\xd0\xcf\x11\xe0", "old Office document (.doc/.xls)"),
    (b"{\\rtf", "RTF document"),
    (b"%!PS", "PostScript"),
    (b"RIFF", "RIFF media (WAV/AVI/WebP)"),
    (b"ID3", "MP3 audio"),
    (b"OggS", "Ogg media"),
    (b"fLaC", "FLAC audio"),
)


def sniff_type(data: bytes) -> str:
    """What the first bytes look like: 'PNG image', 'ZIP (…)', 'HTML', 'plain text', 'binary data'…"""
    head = data[:1024]
    if not head:
        return "an empty file"
    for magic, name in _MAGIC:
        if head.startswith(magic) or (magic == b"%PDF" and magic in head):
            return name
    if head[4:8] == b"ftyp":
        return "MP4/MOV media"
    start = head.lstrip()[:64].lower()
    if start.startswith((b"<!doctype html", b"<html")):
        return "HTML"
    if start.startswith(b"<?xml"):
        return "XML"
    if b"\x00" not in head:
        text = head.decode("utf-8", "ignore")
        printable = sum(ch.isprintable() or ch in "\n\r\t" for ch in text)
        if text and printable / len(text) > 0.95 and len(text) >= len(head) * 0.5:
            return "plain text"
    return "binary data"


# ------------------------------------------------------------------------------------- decoding

_BOMS: tuple[tuple[bytes, str], ...] = (  # UTF-32 first: its LE BOM starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# bytes no text file holds, tab/newlines/form feed/escape excepted (escape: coloured logs)
_CONTROL_BYTES = bytes([*range(9), 11, *range(14, 27), *range(28, 32), 127])
_NOT_CONTROL = bytes(b for b in range(256) if b not in _CONTROL_BYTES)
_CP1252_UNDEFINED = re.compile(rb"[\x81\x8d\x8f\x90\x9d]")
_ADJACENT_HIGH = re.compile(rb"[\x80-\xff]{2}")
# charset-normalizer ties often (same chaos); these are the encodings real files mostly use
_PREFERRED = ("cp1252", "gb18030", "big5", "shift_jis", "euc_jp", "euc_kr", "cp1251", "cp1250",
              "iso8859_7", "cp1253", "cp1254", "cp1255", "cp1256", "koi8_r")
_ALIASES = {  # what browsers do with these labels (WHATWG encoding standard)
    "latin_1": "cp1252", "iso8859_1": "cp1252", "ascii": "cp1252",
    "gb2312": "gb18030", "gbk": "gb18030",
}


def _bom(data: bytes) -> tuple[str, int] | None:
    for mark, encoding in _BOMS:
        if data.startswith(mark):
            return encoding, len(mark)
    return None


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 text saved without a BOM: ASCII characters put a NUL in every other byte."""
    sample = data[:4096]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    even_nul, odd_nul = even.count(0) / len(even), odd.count(0) / len(odd)
    encoding = ("utf-16-le" if odd_nul > 0.4 and even_nul < 0.05 else
                "utf-16-be" if even_nul > 0.4 and odd_nul < 0.05 else None)
    if encoding is None:
        return None
    try:
        text = data[: len(data) // 2 * 2].decode(encoding)
    except UnicodeDecodeError:
        return None
    # The NUL pattern only arises for mostly-ASCII text: anything else is binary that looks alike.
    head = text[:2048]
    printable = sum(1 for ch in head if " " <= ch <= "~" or ch in "\n\r\t")
    return text if head and printable / len(head) >= 0.7 else None


def _check_not_binary(source: str, data: bytes) -> None:
    """NULs near the start (git's test), or many control bytes: not a text file."""
    controls = len(data.translate(None, _NOT_CONTROL))
    if b"\x00" in data[:8192] or data.count(0) > len(data) // 1000 or controls > len(data) * 0.03:
        kind = sniff_type(data)
        detail = "" if kind in ("binary data", "plain text") else f" (looks like {kind})"
        raise LoadError(source, f"binary data, not text{detail}", FIX_WRONG_TYPE)


def _normalize_encoding(name: str) -> str | None:
    try:
        canonical = codecs.lookup(name).name.replace("-", "_")
    except LookupError:
        return None
    if canonical.startswith(("utf_16", "utf_32")):
        return None  # a label inside a byte-oriented file cannot be UTF-16 (WHATWG: use UTF-8)
    return _ALIASES.get(canonical, canonical)


def guess_encoding(data: bytes) -> str:
    """Best guess for bytes that are not UTF-8.

    Lone high bytes between ASCII ('caf\\xe9') mean a single-byte Western encoding: cp1252.
    Otherwise charset-normalizer decides, ties going to the commonest encoding (gb18030 for GBK).
    """
    sample = data[:_ENCODING_SAMPLE_BYTES]
    if len(data) > len(sample):  # cut at a line end so no multi-byte character is split
        cut = sample.rfind(b"\n")
        sample = sample[: cut + 1] if cut > len(sample) // 2 else sample
    western = "latin-1" if _CP1252_UNDEFINED.search(sample) else "cp1252"
    if not _ADJACENT_HIGH.search(sample):
        return western
    from charset_normalizer import from_bytes

    matches = [m for m in from_bytes(sample) if not m.encoding.startswith(("utf_16", "utf_32"))]
    if not matches:
        return western
    lowest = min(m.chaos for m in matches)
    tied = [m for m in matches if m.chaos <= lowest + 0.02]
    for name in _PREFERRED:
        for match in tied:
            if match.encoding == name or name in match.could_be_from_charset:
                return name
    return tied[0].encoding


def decode_text(source: str, data: bytes, *, declared: str | None = None) -> str:
    """Bytes → str: BOM, then strict UTF-8, then a declared charset, then a guess.

    Raises LoadError for empty or binary data. UTF-8 is tried before a declared charset because
    bytes that decode as UTF-8 by chance are vanishingly rare, while wrong declarations are not.
    """
    if not data:
        raise LoadError(source, "empty file", "remove the file or add content to it")
    bom = _bom(data)
    if bom:
        encoding, skip = bom
        return data[skip:].decode(encoding, "replace")
    utf16 = _utf16_without_bom(data)
    if utf16 is not None:
        return utf16
    _check_not_binary(source, data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        truncated = err.start >= len(data) - 3 and err.reason == "unexpected end of data"
        if truncated and not data[: err.start].isascii():  # UTF-8 cut inside its last character
            return data.decode("utf-8", "replace")
    charset = _normalize_encoding(declared) if declared else None
    if charset:
        try:
            return data.decode(charset)
        except UnicodeDecodeError:
            pass
    return data.decode(guess_encoding(data), "replace")


# ---------------------------------------------------------------------------------- text cleanup


_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")  # after \v \f \r became newlines


def normalize_text(text: str) -> str:
    """Newlines to '\\n', controls removed (tab/newline kept), NFC. Linear in the text size.

    >>> normalize_text('a\\r\\nb\\x00c\\x0cd')
    'a\\nbc\\nd'
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for separator in ("\x0b", "\x0c", "\u2028", "\u2029"):  # vertical tab, page/line/paragraph
        if separator in text:
            text = text.replace(separator, "\n")
    if _CONTROLS.search(text):  # str.translate would cost seconds on a 50 MB non-ASCII text
        text = _CONTROLS.sub("", text)
    return unicodedata.normalize("NFC", text)


# ------------------------------------------------------------------------------- text and Markdown


def _top_lines(text: str) -> list[str]:
    return text[:_TITLE_SCAN_CHARS].split("\n")


def first_line(text: str) -> str:
    """The first line with a letter (a page number is no title), else the first non-empty line;
    whitespace collapsed, trimmed to 120 characters: '2\\n\\n  An   Intro \\n' → 'An Intro'."""
    lines = [line for line in _top_lines(text) if line.strip()]
    worded = [line for line in lines if any(c.isalpha() for c in line)]
    best = (worded or lines or [""])[0]
    return " ".join(best.split())[:TITLE_MAX_CHARS].rstrip()


_ATX_HEADING = re.compile(r"#{1,6}[ \t]+(.*?)[ \t]*#*[ \t]*")
_SETEXT_UNDERLINE = re.compile(r"(=+|-+)[ \t]*")


def markdown_title(text: str) -> str:
    """The first Markdown heading ('# Title' or 'Title\\n====='), else the first non-empty line.
    A YAML front-matter block at the top is passed over."""
    lines = _top_lines(text)
    start = 0
    if lines and lines[0].strip() == "---":
        ends = [i for i, line in enumerate(lines[1:], 1) if line.strip() in ("---", "...")]
        start = ends[0] + 1 if ends else 0
    body = lines[start:]
    fenced = False
    for i, line in enumerate(body):
        head = line.strip()[:1000]
        if head.startswith(("```", "~~~")):
            fenced = not fenced
        if fenced or head.startswith(("```", "~~~")):
            continue  # '# comment' inside a code block is no heading
        match = _ATX_HEADING.fullmatch(head)
        if match and match.group(1).strip():
            return match.group(1).strip()[:TITLE_MAX_CHARS]
        if (head and i + 1 < len(body) and not head.startswith(("-", "*", "+", ">"))
                and _SETEXT_UNDERLINE.fullmatch(body[i + 1].strip()[:1000])):
            return " ".join(head.split())[:TITLE_MAX_CHARS]
    return first_line("\n".join(body))


def check_replacement_chars(source: str, text: str) -> None:
    if len(text) >= 8 and text.count("\ufffd") > len(text) * 0.30:
        raise LoadError(source, "text is unreadable (mostly U+FFFD replacement characters)",
                        "re-save it as UTF-8 from the original program or source")


def parse_text(source: str, data: bytes, *, kind: Literal["md", "txt"]) -> Document:
    """Plain text or Markdown → one-page Document; the text is kept as is (newlines normalized)."""
    text = normalize_text(decode_text(source, data))
    check_replacement_chars(source, text)
    if not text.strip():
        raise LoadError(source, "no text (only whitespace)", "remove the file or add content to it")
    title = markdown_title(text) if kind == "md" else first_line(text)
    return Document(source=source, kind=kind, pages=(Page(number=1, text=text),), title=title)
