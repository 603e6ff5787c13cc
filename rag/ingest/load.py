"""Load: files on disk → `Document` records, the first stage of the pipeline.

Three steps, each usable alone:

- `discover(root)` walks a folder and returns the supported files, sorted by their display-safe
  source name, plus a `Failure` for everything it had to leave out (hidden files, symlink loops,
  broken links, unreadable folders).
- `read_bytes(found, max_bytes=…)` reads one file whole, refusing oversized, special or changing files.
- `parse(source, data)` turns bytes into a `Document` by suffix: PDF (pypdf, page by page), Markdown,
  plain text, HTML (stdlib `html.parser`, headings kept as '#' lines for the chunker).

Every bad input raises `LoadError(source, reason, fix)`; the ingest reports it and goes on.

Deliberately skipped: OCR (scanned PDFs are reported, not read), layout analysis (multi-column
reading order is whatever pypdf gives; tables stay lines of text), Office/EPUB formats, pages that
only JavaScript renders, CSS-hidden HTML, and mojibake that decodes to valid but wrong CJK
ideographs (it looks like language to any cheap test). Markdown is kept verbatim, front matter
included: the chunker reads the '#' headings.
"""
from __future__ import annotations

import codecs
import errno
import io
import os
import re
import stat
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser
from itertools import pairwise
from pathlib import Path, PurePosixPath

from rag.errors import LoadError
from rag.records import Document, Failure, Page

SUPPORTED_SUFFIXES = frozenset({".pdf", ".md", ".markdown", ".txt", ".html", ".htm"})

TITLE_MAX_CHARS = 120
_TITLE_SCAN_CHARS = 65_536  # titles come from the top of a file; never scan a 50 MB line for one
_GARBAGE_SAMPLE_CHARS = 50_000  # a page is a few thousand characters; this bounds a pathological one
_ENCODING_SAMPLE_BYTES = 256 * 1024  # charset guessing needs a sample, not the whole file

FIX_RE_EXPORT = "re-export or re-download the file"
FIX_OCR = "run OCR first, e.g. ocrmypdf in.pdf out.pdf"
FIX_GARBAGE = "run OCR (ocrmypdf --force-ocr) or re-export the PDF"
FIX_DECRYPT = "decrypt it, e.g. qpdf --decrypt in.pdf out.pdf, and ingest again"
FIX_WRONG_TYPE = "remove the file or give it the right extension"


@dataclass(frozen=True)
class FoundFile:
    path: Path  # absolute path to open (may hold undecodable bytes as surrogates)
    source: str  # path relative to the root, posix '/', display-safe; the document's identity


# --------------------------------------------------------------------------------------- discover


def display_safe(name: str) -> str:
    r"""A file name as valid UTF-8 text: undecodable bytes become '\xNN', all else is kept.

    On Linux `os.fsdecode(b'bad\xff.txt')` is 'bad\udcff.txt', a lone surrogate that JSON and
    SQLite reject; this gives 'bad\\xff.txt'. Newlines and other characters stay as they are.
    """
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no byte produced (e.g. from a Windows name)
        return name.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def _is_supported(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in SUPPORTED_SUFFIXES


def _may_matter(name: str) -> bool:
    """Worth reporting when it cannot be read: a supported file, or no suffix (maybe a folder)."""
    suffix = PurePosixPath(name).suffix
    return not suffix or suffix.lower() in SUPPORTED_SUFFIXES


def _link_problem(path: str) -> str | None:
    """'symlink loop' / 'broken symlink …' when `path` is a link that cannot be followed."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symlink loop (the link points back to itself)"
        return f"broken symlink (target missing: {display_safe(os.readlink(path))})"
    return None


# a folder to walk: (path, its source prefix, ids of the folders on the way down: a repeat is a loop)
_Walk = tuple[str, str, tuple[tuple[int, int], ...]]


def discover(root: Path, *, follow_symlinks: bool = True) -> tuple[list[FoundFile], list[Failure]]:
    """Recursively find supported files under root, sorted by source.

    Hidden files and folders are reported as skipped; symlink loops, broken links and unreadable
    folders as failed; files with other suffixes are left out silently. A folder reached twice is
    read once, under its real path (symlinked folders are walked last). A file as root is
    returned alone (source = its name). Raises LoadError if root does not exist.
    """
    root = Path(root)
    if not root.exists():
        raise LoadError(display_safe(str(root)), "not found", "check the path to the folder or file")
    if not root.is_dir():
        return [FoundFile(root.absolute(), display_safe(root.name))], []

    top = root.absolute()
    try:
        top_id = _dir_id(top)
    except OSError as err:
        raise LoadError(display_safe(str(root)), f"cannot open the folder: {err.strerror}",
                        "check its permissions (chmod +rx) and owner") from err
    found: list[FoundFile] = []
    failures: list[Failure] = []
    seen: dict[tuple[int, int], str] = {top_id: "the root folder"}  # folder id → its source
    folders: list[_Walk] = [(str(top), "", (top_id,))]
    linked: list[_Walk] = []  # symlinked folders wait, so a folder is named by its real path
    while folders or linked:
        folder, prefix, ancestors = folders.pop() if folders else linked.pop(0)
        source = display_safe(prefix[:-1]) or "."
        key = ancestors[-1]
        if key in ancestors[:-1]:
            failures.append(Failure(source, f"symlink loop (points back to {seen[key]})",
                                    "remove the link or point it outside its own folder"))
            continue
        if seen.setdefault(key, source) != source and prefix:
            failures.append(Failure(source, f"same folder as {seen[key]} (read there)",
                                    "nothing to do: it is not ingested twice", kind="skipped"))
            continue
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as err:
            reason = ("permission denied: cannot list the folder" if isinstance(err, PermissionError)
                      else f"cannot list the folder: {err.strerror or err}")
            failures.append(Failure(source, reason, "make it readable (chmod +rx) or check its owner"))
            continue
        for entry in entries:
            failure = _visit(entry, prefix, ancestors, follow_symlinks, found, folders, linked)
            if failure:
                failures.append(failure)
    found.sort(key=lambda f: f.source)
    failures.sort(key=lambda f: f.source)
    return found, failures


def _visit(entry: os.DirEntry[str], prefix: str, ancestors: tuple[tuple[int, int], ...],
           follow_symlinks: bool, found: list[FoundFile], folders: list[_Walk],
           linked: list[_Walk]) -> Failure | None:
    """Sort one folder entry into found files or folders to walk; the Failure to report, if any."""
    source = display_safe(prefix + entry.name)
    is_link = entry.is_symlink()
    try:
        is_dir = entry.is_dir()  # follows links
    except OSError:
        is_dir = False
    if entry.name.startswith("."):
        if is_dir or _is_supported(entry.name):
            return Failure(source, "hidden folder" if is_dir else "hidden file",
                           "rename it without the leading '.' to include it", kind="skipped")
        return None
    if is_link and not follow_symlinks:
        if is_dir or _is_supported(entry.name):
            return Failure(source, "symlink (not followed)",
                           "follow symlinks, or copy the target into the folder", kind="skipped")
        return None
    if is_link and not os.path.exists(entry.path):
        if _may_matter(entry.name):
            return Failure(source, _link_problem(entry.path) or "broken symlink",
                           "remove the link or point it at an existing file")
        return None
    if is_dir:
        try:
            key = _dir_id(entry.path)
        except OSError as err:
            return Failure(source, f"cannot open the folder: {err.strerror}",
                           "make it readable (chmod +rx) or check its owner")
        (linked if is_link else folders).append((entry.path, prefix + entry.name + "/", ancestors + (key,)))
    elif _is_supported(entry.name):
        # special files (fifos, devices) are kept: read_bytes reports them by name
        found.append(FoundFile(Path(entry.path), source))
    return None


def _dir_id(path: str | Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


# ------------------------------------------------------------------------------------ read_bytes


def _file_signature(path: Path) -> tuple[int, int, int, int]:
    """(mode, inode, size, mtime): any difference before and after a read means the file changed."""
    st = os.stat(path)
    return st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns


def _size_text(n: int) -> str:
    return f"{n / 1_048_576:.1f} MB" if n >= 100_000 else f"{n:,} bytes"


def too_large_reason(size: int, max_bytes: int) -> str:
    """'file is 250.0 MB, over the 200.0 MB limit' (exact bytes when MB would look equal)."""
    shown, limit = _size_text(size), _size_text(max_bytes)
    if shown == limit:
        shown, limit = f"{shown} ({size:,} bytes)", f"{limit} ({max_bytes:,} bytes)"
    return f"file is {shown}, over the {limit} limit"


def _kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def _os_error(source: str, err: OSError) -> LoadError:
    if isinstance(err, PermissionError):
        return LoadError(source, "permission denied",
                         "make it readable (e.g. chmod a+r FILE) or check its owner")
    if isinstance(err, FileNotFoundError):
        return LoadError(source, "file not found (moved or deleted during the ingest?)",
                         "re-run the ingest")
    return LoadError(source, f"cannot read the file: {err.strerror or err}",
                     "check the file and the disk, then re-run the ingest")


def read_bytes(found: FoundFile, *, max_bytes: int) -> bytes:
    """Read the whole file, or raise LoadError naming the file, the reason and the fix.

    Refuses unreadable files, files over `max_bytes`, anything but a regular file, and files
    that change while being read (mode, inode, size or mtime differ before and after).
    """
    source = found.source
    try:
        before = _file_signature(found.path)
    except OSError as err:
        raise _os_error(source, err) from err
    if not stat.S_ISREG(before[0]):
        raise LoadError(source, f"not a regular file ({_kind_of(before[0])})",
                        "remove it from the folder or replace it with a regular file")
    if before[2] > max_bytes:
        raise LoadError(source, too_large_reason(before[2], max_bytes),
                        "raise RAG_MAX_FILE_MB or split the file")
    try:
        with open(found.path, "rb") as f:
            data = f.read(max_bytes + 1)  # +1: a file that grew past the limit shows up here
    except OSError as err:
        raise _os_error(source, err) from err
    try:
        after = _file_signature(found.path)
    except OSError:
        after = None
    if after != before or len(data) != before[2]:
        raise LoadError(source, "file changed while being read", "re-run the ingest when it is stable")
    return data


# ----------------------------------------------------------------------------------------- parse


def parse(source: str, data: bytes) -> Document:
    """Bytes → Document by suffix of `source`. Raises LoadError with reason and fix for every bad input."""
    suffix = PurePosixPath(source).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise LoadError(source, f"unsupported file type ({suffix or 'no suffix'})",
                        "convert it to PDF, Markdown, plain text or HTML")
    if not data:
        raise LoadError(source, "empty file", "remove the file or add content to it")
    if suffix == ".pdf":
        return parse_pdf(source, data)
    if suffix in (".html", ".htm"):
        return parse_html(source, data)
    return parse_text(source, data, kind="md" if suffix in (".md", ".markdown") else "txt")


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
    encoding = _normalize_encoding(declared) if declared else None
    if encoding:
        try:
            return data.decode(encoding)
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


@lru_cache(maxsize=1)
def _pdf_char_table() -> dict[int, str]:
    """Ligatures (ﬁ → fi) and Kangxi/CJK radicals (⽤ → 用) that PDF fonts emit for plain characters."""
    table = {c: unicodedata.normalize("NFKC", chr(c)) for c in range(0xFB00, 0xFB07)}
    for c in (*range(0x2E80, 0x2EF4), *range(0x2F00, 0x2FD6)):
        folded = unicodedata.normalize("NFKC", chr(c))
        if folded != chr(c):
            table[c] = folded
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
    text = _join_cjk_wraps(text)
    return _BLANK_RUN.sub("\n\n", text).strip()


_CJK_WRAP = re.compile(r"(?<=[\u3400-\u9fff\uff0c\u3001])\n(?=[\u3400-\u9fff])")


def _join_cjk_wraps(text: str) -> str:
    r"""Undo the layout's line wraps inside Chinese text ("快\n速" → "快速"): a wrapped line runs to
    (nearly) the full width of the page, a heading or the end of a paragraph does not.

    >>> _join_cjk_wraps("标题\n" + "长" * 30 + "\n续行。\n" + "短行") == "标题\n" + "长" * 30 + "续行。\n短行"
    True
    """
    if "\n" not in text or not _CJK_WRAP.search(text):
        return text
    lines = text.split("\n")
    full = max(len(line) for line in lines)
    out = [lines[0]]
    for line in lines[1:]:
        prev = out[-1]
        if (prev and line and len(prev) >= 0.8 * full and "\u3400" <= line[0] <= "\u9fff"
                and ("\u3400" <= prev[-1] <= "\u9fff" or prev[-1] in "，、")):
            out[-1] = prev + line
        else:
            out.append(line)
    return "\n".join(out)


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


def _page_text(reader: object, index: int) -> tuple[str, Exception | None]:
    """Raw text of one page; ('', error) when pypdf fails on it, so one bad page sinks nothing."""
    try:
        page = reader.pages[index]  # type: ignore[attr-defined]
        if page.get("/Contents") is None:  # blank page: skip the extractor (thousands stay fast)
            return "", None
        return page.extract_text() or "", None
    except Exception as err:  # noqa: BLE001 - pypdf raises many types on damaged content streams
        return "", err


def _short_error(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:120]


def _squash(text: str) -> str:
    return "".join(text.split()).casefold()


def _pdf_title(reader: object, first_page: str) -> str:
    """The metadata title when the first page shows it (templates leave junk like 'Slide 1'),
    else the first line of text."""
    try:
        meta = reader.metadata  # type: ignore[attr-defined]
        title = " ".join(str(meta.title).split()) if meta and meta.title else ""
    except Exception:  # noqa: BLE001 - metadata is optional and often malformed
        title = ""
    if title and len(title) >= 3 and _squash(title) in _squash(first_page[:5000]):
        return title[:TITLE_MAX_CHARS]
    return first_line(first_page)


def parse_pdf(source: str, data: bytes) -> Document:
    """PDF bytes → paginated Document, one Page per page with text (numbers stay the real ones).

    Garbage pages are dropped while they are a minority; when they are half or more, the file fails.
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

    pages: list[Page] = []
    with_text = garbage = 0
    errors: list[Exception] = []
    for index in range(count):
        raw, error = _page_text(reader, index)
        if error is not None:
            errors.append(error)
        text = clean_pdf_text(raw)
        if not text:
            continue
        with_text += 1
        if looks_like_garbage(raw):
            garbage += 1
            continue
        pages.append(Page(number=index + 1, text=text))
    if with_text == 0 and errors:
        raise LoadError(source, f"corrupt or truncated PDF: {_short_error(errors[0])}", FIX_RE_EXPORT)
    if with_text == 0:
        raise LoadError(source, "no text layer (scanned images?)", FIX_OCR)
    if garbage * 2 >= with_text:
        raise LoadError(source, "text layer is unreadable (broken font encoding)", FIX_GARBAGE)
    title = _pdf_title(reader, pages[0].text)
    return Document(source=source, kind="pdf", pages=tuple(pages), title=title, paginated=True)


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


def _check_replacement_chars(source: str, text: str) -> None:
    if len(text) >= 8 and text.count("\ufffd") > len(text) * 0.30:
        raise LoadError(source, "text is unreadable (mostly U+FFFD replacement characters)",
                        "re-save it as UTF-8 from the original program or source")


def parse_text(source: str, data: bytes, *, kind: str) -> Document:
    """Plain text or Markdown → one-page Document; the text is kept as is (newlines normalized)."""
    text = normalize_text(decode_text(source, data))
    _check_replacement_chars(source, text)
    if not text.strip():
        raise LoadError(source, "no text (only whitespace)", "remove the file or add content to it")
    title = markdown_title(text) if kind == "md" else first_line(text)
    return Document(source=source, kind=kind, pages=(Page(number=1, text=text),), title=title)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ HTML

_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_:.\-]+)""", re.IGNORECASE)
_HIDDEN = frozenset({"script", "style", "noscript", "template", "svg", "iframe", "object", "canvas"})
_HEAD_ONLY = frozenset({"title", "meta", "link", "style", "script", "base", "noscript", "template"})
_HEADINGS = {f"h{i}": i for i in range(1, 7)}
_SPACES = re.compile(r"\s+")
_LINE_BREAKS = frozenset({"br", "tr", "dt", "dd", "option"})
_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "body", "caption", "center", "details", "dialog",
    "dir", "div", "dl", "fieldset", "figcaption", "figure", "footer", "form", "header", "hgroup",
    "hr", "html", "legend", "main", "menu", "nav", "ol", "p", "section", "summary", "table",
    "tbody", "tfoot", "thead", "ul",
})


class _VisibleText(HTMLParser):
    """Collects visible text as blocks: headings become '## Title' lines, list items '- item',
    table cells 'a | b'; whitespace collapses everywhere but inside <pre>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.lines: list[str] = []  # finished lines of the current block
        self.words: list[str] = []  # fragments of the current line
        self.prefix = ""  # '- ' while inside a list item that has not shown text yet
        self.hidden = 0  # depth inside script/style/svg/…
        self.in_head = self.in_title = False
        self.title: list[str] = []
        self.heading = 0
        self.first_h1 = ""
        self.pre = 0
        self.pre_text: list[str] = []

    def _end_line(self) -> None:
        line = _SPACES.sub(" ", "".join(self.words)).strip()
        self.words = []
        if line:
            self.lines.append(self.prefix + line)
            self.prefix = ""

    def _end_block(self) -> None:
        self._end_line()
        if self.lines:
            self.blocks.append("\n".join(self.lines))
            self.lines = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        if self.hidden:
            return
        if tag == "head":
            self.in_head = True
        elif tag == "body" or (self.in_head and tag not in _HEAD_ONLY):
            self.in_head = False  # </head> is optional: any body tag ends the head
        if tag == "title":
            self.in_title = True
        if self.in_head:
            return
        if tag in _HEADINGS:
            self._end_block()
            self.heading = _HEADINGS[tag]
        elif tag == "pre":
            if not self.pre:
                self._end_block()
            self.pre += 1
        elif tag == "br" and self.pre:
            self.pre_text.append("\n")
        elif tag == "li":
            self._end_line()
            self.prefix = "- "
        elif tag in ("td", "th"):
            if "".join(self.words).strip():
                self.words.append(" | ")
        elif tag in _LINE_BREAKS:
            self._end_line()
        elif tag in _BLOCKS:
            self._end_block()

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN and self.hidden:
            self.hidden -= 1
            return
        if self.hidden:
            return
        if tag == "title":
            self.in_title = False
        elif tag == "head":
            self.in_head = False
        elif tag in _HEADINGS and self.heading:
            self._end_line()
            text = " ".join(self.lines)
            self.lines = []
            if text:
                self.blocks.append("#" * self.heading + " " + text)
                if self.heading == 1 and not self.first_h1:
                    self.first_h1 = text
            self.heading = 0
        elif tag == "pre" and self.pre:
            self.pre -= 1
            if not self.pre:
                text = "".join(self.pre_text).strip("\n")
                self.pre_text = []
                if text.strip():
                    self.blocks.append(text)
        elif tag == "li":
            self._end_line()
            self.prefix = ""
        elif tag in _LINE_BREAKS and tag != "br":
            self._end_line()
        elif tag in _BLOCKS:
            self._end_block()

    def handle_data(self, data: str) -> None:
        if self.hidden:
            return
        if self.in_title:
            self.title.append(data)
        elif self.in_head:
            return
        elif self.pre:
            self.pre_text.append(data)
        else:
            self.words.append(data)

    def result(self) -> tuple[str, str]:
        """(text, title) once the whole document has been fed."""
        self._end_block()
        return "\n\n".join(self.blocks), " ".join("".join(self.title).split())


def html_to_text(html: str) -> tuple[str, str]:
    """Visible text and <title> of an HTML page.

    >>> html_to_text('<title>T</title><h2>Intro</h2><p>a  <b>b</b></p><script>x</script>')
    ('## Intro\\n\\na b', 'T')
    """
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    text, title = parser.result()
    return text, title or parser.first_h1


def parse_html(source: str, data: bytes) -> Document:
    """HTML → one-page Document of its visible text, title from <title> or the first <h1>."""
    match = _META_CHARSET.search(data[:4096])
    declared = match.group(1).decode("ascii") if match else None
    html = normalize_text(decode_text(source, data, declared=declared))
    _check_replacement_chars(source, html)
    text, title = html_to_text(html)
    if not text.strip():
        raise LoadError(source, "no visible text (only markup or scripts)",
                        "if a script builds the page, save the rendered page (e.g. print to PDF) "
                        "and ingest that")
    return Document(source=source, kind="html", pages=(Page(number=1, text=text),),
                    title=(title or first_line(text).lstrip("# "))[:TITLE_MAX_CHARS])
