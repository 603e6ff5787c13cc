"""Specification of the loader (rag.ingest.discover, decode, pdf, html, parse): files → Document records.

Inputs are built in tmp_path; the real PDFs under ../shared are used when that folder exists.
"""
from __future__ import annotations

import builtins
import codecs
import io
import json
import os
import random
import sqlite3
import time
import tracemalloc
from pathlib import Path

import pytest

import rag.ingest.discover as discovery
from rag.errors import LoadError
from rag.ingest.decode import markdown_title
from rag.ingest.discover import FoundFile, discover, read_bytes, too_large_reason
from rag.ingest.html import html_to_text
from rag.ingest.parse import parse
from rag.ingest.pdf import clean_pdf_text, looks_like_garbage
from rag.records import Failure, Page
from tests.conftest import make_pdf

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

ENGLISH = ("Retrieval-augmented generation combines a search step with a language model. The retriever "
           "finds passages that are likely to contain the answer, and the generator writes a response "
           "that cites them.\nIn our experiments we measured recall at ten.\n")
CHINESE = ("检索增强生成把搜索步骤和语言模型结合起来。检索器找到可能包含答案的段落，"
           "生成器写出引用这些段落的回答。\n在实验中，我们测量了前十召回率和有依据句子的比例。\n")
FRENCH = "Café crème à la française, über alles. Señor Müller aß Brötchen. é à ü\n"


def assert_load_error(err: LoadError, source: str, reason: str, fix: str | None = None) -> None:
    """Every LoadError names the file, the reason and a fix, in one readable message."""
    assert err.path == source
    assert err.reason == reason
    assert err.fix, "every error must say how to fix it"
    if fix is not None:
        assert err.fix == fix
    assert str(err) == f"{source}: {reason} (fix: {err.fix})"


def load_error(source: str, data: bytes) -> LoadError:
    with pytest.raises(LoadError) as info:
        parse(source, data)
    return info.value


def pypdf_bytes(writer: object) -> bytes:
    buffer = io.BytesIO()
    writer.write(buffer)  # type: ignore[attr-defined]
    return buffer.getvalue()


def mojibake(text: str) -> str:
    """Chinese GB2312 bytes read as Latin-1: what a PDF with a broken CJK font encoding yields."""
    return text.encode("gb2312").decode("latin-1")


def ascii_glyph_ids(text: str) -> str:
    """Each distinct character replaced by '!', '"', '#', … in order of appearance (glyph ids)."""
    codes: dict[str, str] = {}
    return "".join(c if c.isspace() else codes.setdefault(c, chr(33 + len(codes) % 94)) for c in text)


def shifted(text: str, by: int) -> str:
    return "".join(chr(ord(c) + by) if c.isalpha() and c.isascii() else c for c in text)


# ------------------------------------------------------------------------------------ text decoding


def _with_bom(bom: bytes, codec: str):
    return lambda s: bom + s.encode(codec)


@pytest.mark.parametrize("text, encode", [
    (ENGLISH + CHINESE, lambda s: s.encode("utf-8")),
    (ENGLISH + CHINESE, lambda s: s.encode("utf-8-sig")),
    (ENGLISH + CHINESE, _with_bom(codecs.BOM_UTF16_LE, "utf-16-le")),
    (ENGLISH + CHINESE, _with_bom(codecs.BOM_UTF16_BE, "utf-16-be")),
    (ENGLISH + CHINESE, _with_bom(codecs.BOM_UTF32_LE, "utf-32-le")),
    (ENGLISH + CHINESE, _with_bom(codecs.BOM_UTF32_BE, "utf-32-be")),
    (ENGLISH, lambda s: s.encode("utf-16-le")),  # no BOM: found by the NUL in every other byte
    (CHINESE + "𠀀 — a GB18030-only character.\n", lambda s: s.encode("gb18030")),
    (CHINESE, lambda s: s.encode("gbk")),
    (FRENCH, lambda s: s.encode("latin-1")),
    ("é à ü\n", lambda s: s.encode("latin-1")),
    ("“Smart quotes” cost €5 — twice.\n", lambda s: s.encode("cp1252")),
], ids=["utf-8", "utf-8-bom", "utf-16-le-bom", "utf-16-be-bom", "utf-32-le-bom", "utf-32-be-bom",
        "utf-16-le-no-bom", "gb18030", "gbk", "latin-1", "latin-1-short", "cp1252"])
def test_text_decodes_to_the_exact_original(text: str, encode) -> None:
    doc = parse("notes.txt", encode(text))
    assert doc.text == text
    assert doc.kind == "txt" and doc.pages == (Page(number=1, text=text),) and not doc.paginated


def test_newlines_are_normalized_and_controls_removed() -> None:
    doc = parse("a.txt", b"one\r\ntwo\rthree\x0cfour\x07\tfive\n" + b"and more text\n" * 5)
    assert doc.text == "one\ntwo\nthree\nfour\tfive\n" + "and more text\n" * 5


def test_text_title_is_the_first_non_empty_line_trimmed_to_120() -> None:
    assert parse("a.txt", b"\n\n   Hello   world  \nrest").title == "Hello world"
    assert parse("a.txt", b"x" * 500).title == "x" * 120
    assert parse("a.txt", b"2\n\n  An   Intro \nmore").title == "An Intro"  # a page number is no title


def test_markdown_keeps_its_syntax_and_takes_the_first_heading_as_title() -> None:
    text = "---\ntitle: meta\n---\nIntro line\n\n## Setup ##\n\nSome *text* with `code`.\n"
    doc = parse("guide.md", text.encode())
    assert doc.kind == "md" and doc.text == text and doc.title == "Setup"
    assert parse("g.markdown", b"Title\n=====\n\nbody").title == "Title"
    assert markdown_title("no heading here\n- item") == "no heading here"
    assert markdown_title("#hashtag is no heading\n# Real one") == "Real one"
    assert markdown_title("```sh\n# a comment\n```\n## After the code") == "After the code"


@pytest.mark.parametrize("source, data, reason", [
    ("empty.txt", b"", "empty file"),
    ("empty.pdf", b"", "empty file"),
    ("empty.html", b"", "empty file"),
    ("blank.md", b" \n\t\n", "no text (only whitespace)"),
    ("random.txt", random.Random(7).randbytes(4096), "binary data, not text"),
    ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200), "binary data, not text (looks like PNG image)"),
    ("controls.md", b"\x01\x02abc" * 100, "binary data, not text"),
    ("lost.txt", ("\ufffd" * 100 + " ok").encode(), "text is unreadable (mostly U+FFFD replacement characters)"),
    ("report.epub", b"PK\x03\x04", "unsupported file type (.epub)"),
    ("Makefile", b"all:", "unsupported file type (no suffix)"),
])
def test_bad_text_inputs_raise_with_reason_and_fix(source: str, data: bytes, reason: str) -> None:
    assert_load_error(load_error(source, data), source, reason)


def test_binary_fix_is_to_remove_or_rename() -> None:
    err = load_error("x.txt", bytes(100))
    assert_load_error(err, "x.txt", "binary data, not text", "remove the file or give it the right extension")


def test_fifty_megabyte_single_line_is_fast_and_memory_bounded() -> None:
    data = b"lorem ipsum dolor sit amet caf\xe9 " * (50_000_000 // 32)  # one line, cp1252
    tracemalloc.start()
    started = time.perf_counter()
    try:
        doc = parse("huge.txt", data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 10
    assert peak < 6 * len(data)
    assert len(doc.text) == len(data) and doc.text.startswith("lorem ipsum dolor sit amet café")
    assert len(doc.title) == 120


# ------------------------------------------------------------------------------------------- HTML

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>My  Page</title>
<style>p { color: red }</style><script>var x = "<p>not text</p>";</script></head>
<body><nav>Home</nav><h1>Main Title</h1><p>First   paragraph
with &amp; entity &eacute;.</p><h2>Section <em>Two</em></h2><ul><li>one</li><li>two</li></ul>
<noscript>enable js</noscript><template><p>template</p></template><svg><text>svg text</text></svg>
<pre>code  line 1
    indented</pre><table><tr><th>A</th><th>B</th></tr><tr><td>1</td><td>2</td></tr></table>
<p>line<br>break</p><!-- a comment --></body></html>"""


def test_html_keeps_visible_text_with_markdown_headings() -> None:
    doc = parse("page.html", PAGE.encode())
    assert doc.kind == "html" and doc.title == "My Page"
    assert doc.text == ("Home\n\n# Main Title\n\nFirst paragraph with & entity é.\n\n## Section Two\n\n"
                        "- one\n- two\n\ncode  line 1\n    indented\n\nA | B\n1 | 2\n\nline\nbreak")
    for hidden in ("color", "not text", "enable js", "template", "svg text", "comment"):
        assert hidden not in doc.text


def test_html_title_falls_back_to_first_h1_and_head_may_stay_open() -> None:
    doc = parse("a.htm", b"<html><head><meta charset=utf-8><p>Body text</p><h1>Heading</h1>")
    assert doc.text == "Body text\n\n# Heading" and doc.title == "Heading"


def test_html_meta_charset_is_honoured() -> None:
    html = f'<html><head><meta http-equiv="Content-Type" content="text/html; charset=gb2312">' \
           f"<title>中文</title></head><body><p>{CHINESE}</p></body></html>"
    doc = parse("zh.html", html.encode("gbk"))
    assert doc.title == "中文" and doc.text == " ".join(CHINESE.split())


def test_html_with_only_scripts_is_reported() -> None:
    err = load_error("app.html", b"<html><body><div id=root></div><script>render()</script></body></html>")
    assert_load_error(err, "app.html", "no visible text (only markup or scripts)")


def test_html_to_text_is_a_pure_function() -> None:
    assert html_to_text("<h3>A&nbsp;B</h3><p>x<p>y") == ("### A B\n\nx\n\ny", "")


# -------------------------------------------------------------------------------------------- PDF


def test_pdf_pages_become_numbered_pages() -> None:
    data = make_pdf(["Three Pages\nPage one is about retrieval.", "Page two is about ranking.",
                     "Page three is about citations."], title="Three Pages")
    doc = parse("papers/three.pdf", data)
    assert doc.kind == "pdf" and doc.paginated and doc.source == "papers/three.pdf"
    assert doc.pages == (Page(1, "Three Pages\nPage one is about retrieval."),
                         Page(2, "Page two is about ranking."), Page(3, "Page three is about citations."))
    assert doc.title == "Three Pages"


def test_pdf_title_ignores_metadata_the_page_does_not_show() -> None:
    doc = parse("t.pdf", make_pdf(["Real Heading\nbody text"], title="Slide 1 template"))
    assert doc.title == "Real Heading"


def test_pdf_text_is_cleaned() -> None:
    doc = parse("h.pdf", make_pdf(["An exam-\nple of hyphen-\nation, kept\nline breaks."]))
    assert doc.pages[0].text == "An example of hyphenation, kept\nline breaks."


def test_clean_pdf_text_rules() -> None:
    assert clean_pdf_text("exam-\nple") == "example"
    assert clean_pdf_text("Jean-\nPierre") == "Jean-\nPierre"  # capital after the break: a real hyphen
    assert clean_pdf_text("数据-\n处理") == "数据-\n处理"  # Latin only
    assert clean_pdf_text("a \x00b  \n\n\n\n\nc\x07") == "a b\n\nc"
    assert clean_pdf_text("ﬁne ﬂow, ⽤户") == "fine flow, 用户"  # ligatures and Kangxi radicals


@pytest.mark.parametrize("data, looks_like", [
    (random.Random(3).randbytes(2048), "binary data"),
    (b"PK\x03\x04" + bytes(100), "ZIP (or .docx/.xlsx/.epub)"),
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "PNG image"),
    (b"just some plain text, renamed\n" * 10, "plain text"),
])
def test_non_pdf_bytes_are_named(data: bytes, looks_like: str) -> None:
    assert_load_error(load_error("fake.pdf", data), "fake.pdf", f"not a PDF: content looks like {looks_like}",
                      "remove the file or give it the right extension")


def test_truncated_pdf_is_corrupt() -> None:
    data = make_pdf([f"Page {i} text." for i in range(1, 4)])
    err = load_error("cut.pdf", data[: len(data) // 2])
    assert err.reason.startswith("corrupt or truncated PDF: ") and len(err.reason) > 30
    assert_load_error(err, "cut.pdf", err.reason, "re-export or re-download the file")


def test_encrypted_pdf_needs_a_password() -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(["Secret text."]))))
    writer.encrypt("secret")
    assert_load_error(load_error("locked.pdf", pypdf_bytes(writer)), "locked.pdf",
                      "encrypted PDF (password required)",
                      "decrypt it, e.g. qpdf --decrypt in.pdf out.pdf, and ingest again")


def test_pdf_with_only_an_owner_password_opens() -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(["Readable text."]))))
    writer.encrypt("", owner_password="owner")
    assert parse("owner.pdf", pypdf_bytes(writer)).text == "Readable text."


def test_three_thousand_blank_pages_fail_fast() -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(3000):
        writer.add_blank_page(width=612, height=792)
    data = pypdf_bytes(writer)
    started = time.perf_counter()
    err = load_error("blank.pdf", data)
    assert time.perf_counter() - started < 5
    assert_load_error(err, "blank.pdf", "no text layer (scanned images?)",
                      "turn OCR on (setting ocr = true, with pip install -e '.[ocr]'), or run OCR first, "
                      "e.g. ocrmypdf in.pdf out.pdf")


def test_a_minority_of_garbage_pages_is_dropped() -> None:
    data = make_pdf(["Page one is fine.", mojibake(CHINESE), "Page three is fine."])
    doc = parse("mixed.pdf", data)
    assert [p.number for p in doc.pages] == [1, 3]


def test_mostly_garbage_pages_fail_the_file() -> None:
    data = make_pdf(["Page one is fine.", mojibake(CHINESE), mojibake(CHINESE * 2)])
    assert_load_error(load_error("moji.pdf", data), "moji.pdf", "text layer is unreadable (broken font encoding)",
                      "run OCR (ocrmypdf --force-ocr) or re-export the PDF")


def test_a_page_that_fails_to_extract_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    from pypdf import PageObject

    original = PageObject.extract_text

    def flaky(self, *args, **kwargs):
        text = original(self, *args, **kwargs)
        if "two" in text:
            raise ValueError("bad content stream")
        return text

    monkeypatch.setattr(PageObject, "extract_text", flaky)
    doc = parse("flaky.pdf", make_pdf(["Page one.", "Page two.", "Page three."]))
    assert [p.number for p in doc.pages] == [1, 3]


def test_a_pdf_whose_every_page_fails_is_corrupt(monkeypatch: pytest.MonkeyPatch) -> None:
    from pypdf import PageObject

    def broken(self, *args, **kwargs):
        raise ValueError("bad content stream")

    monkeypatch.setattr(PageObject, "extract_text", broken)
    assert_load_error(load_error("broken.pdf", make_pdf(["Page one."])), "broken.pdf",
                      "corrupt or truncated PDF: bad content stream", "re-export or re-download the file")


# ------------------------------------------------------------------------------ garbage detection

MATH = ("Let f(x) = Σ_{i=1}^{n} α_i x^i, where α ∈ ℝ^n. Then ∂f/∂x = Σ i·α_i x^{i-1} and "
        "‖∇f‖² ≤ n·max|α_i|². For all ε > 0 there is δ > 0 with |x − y| < δ ⇒ |f(x) − f(y)| < ε. "
        "(3) y = Wx + b, L = −Σ log p(y|x). ") * 2
SHELL = 'if [ "$#" -ne 1 ]; then echo "usage: $0 DIR" >&2; exit 1; fi\nfor f in "$1"/*.txt; do wc -l "$f"; done\n' * 3
C_CODE = '#include <stdio.h>\nint main(int argc, char **argv) {\n    if (argc != 2) { puts("usage!"); return 1; }\n' \
         '    char *p = &argv[1][0];\n    while (*p) { if (*p == \'"\') puts("quote"); p++; }\n}\n' * 3
TABLE = "Model R@10 nDCG MRR\nBM25 0.612 0.455 0.401\nDense 0.701 0.533 0.487\nHybrid 0.745 0.570 0.512\n" * 4
GERMAN = "Die Größe der Straße überrascht. Müller aß schöne Brötchen in München, während Jürgen Äpfel kaufte. " * 3
RUSSIAN = "Поиск с дополненной генерацией объединяет шаг поиска с языковой моделью. Мы измерили полноту. " * 3


@pytest.mark.parametrize("text", [ENGLISH * 3, CHINESE * 2, FRENCH * 3, GERMAN, RUSSIAN, MATH, TABLE,
                                  "12", "Fig. 3", "def f(x):\n    return {'a': x[0] + 1}\n" * 5, SHELL, C_CODE],
                         ids=["english", "chinese", "french", "german", "russian", "math", "table",
                              "page-number", "caption", "python", "shell", "c"])
def test_language_tables_and_math_are_not_garbage(text: str) -> None:
    assert not looks_like_garbage(text)


@pytest.mark.parametrize("text", [
    mojibake(CHINESE),  # CJK bytes read as Latin-1
    CHINESE.encode("utf-8").decode("cp1252", "replace"),  # UTF-8 read as cp1252
    RUSSIAN.encode("cp1251").decode("latin-1"),  # Cyrillic bytes read as Latin-1
    ascii_glyph_ids(ENGLISH * 3),  # glyph ids read as ASCII
    ascii_glyph_ids(CHINESE * 3),
    shifted(ENGLISH * 3, 3),  # codes shifted within the alphabet
    "".join(chr(ord(c) - 29) if c.isalpha() else c for c in ENGLISH * 3),  # the classic '3KH' shift
    "".join(" " if c == " " else chr(0xE000 + ord(c) % 200) for c in ENGLISH),  # private use area
    "\ufffd" * 50 + " ok",
    "".join(chr(0x2200 + ord(c) % 256) if c != " " else c for c in ENGLISH),  # a symbol block
], ids=["gbk-as-latin1", "utf8-as-cp1252", "cp1251-as-latin1", "glyph-ids-en", "glyph-ids-zh", "caesar",
        "minus-29", "private-use", "replacement", "symbols"])
def test_mojibake_is_garbage(text: str) -> None:
    assert looks_like_garbage(text)


# --------------------------------------------------------------------------------------- discover


def write(path: Path, text: str = "text") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_discover_finds_supported_files_sorted_and_reports_hidden(tmp_path: Path) -> None:
    for name in ("b.md", "a.txt", "sub/c.pdf", "sub/d.HTML", "sub/deeper/e.markdown", "x.doc",
                 ".hidden.md", ".DS_Store", ".git/config", "sub/.secret.txt"):
        write(tmp_path / name)
    found, failures = discover(tmp_path)
    assert [f.source for f in found] == ["a.txt", "b.md", "sub/c.pdf", "sub/d.HTML", "sub/deeper/e.markdown"]
    assert all(f.path.is_absolute() and f.path.is_file() for f in found)
    fix = "rename it without the leading '.' to include it"
    assert failures == [Failure(".git", "hidden folder", fix, kind="skipped"),
                        Failure(".hidden.md", "hidden file", fix, kind="skipped"),
                        Failure("sub/.secret.txt", "hidden file", fix, kind="skipped")]


def test_discover_reports_symlink_loops_and_broken_links(tmp_path: Path) -> None:
    write(tmp_path / "sub/a.md")
    (tmp_path / "sub/up").symlink_to(tmp_path)  # a folder link to its own ancestor
    (tmp_path / "alias").symlink_to(tmp_path / "sub")  # a second name for a real folder
    (tmp_path / "gone.txt").symlink_to(tmp_path / "nowhere.txt")
    (tmp_path / "self.md").symlink_to(tmp_path / "self.md")
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")  # unsupported: silent
    found, failures = discover(tmp_path)
    assert [f.source for f in found] == ["sub/a.md"]
    assert [(f.source, f.reason, f.kind) for f in failures] == [
        ("alias", "same folder as sub (read there)", "skipped"),
        ("gone.txt", f"broken symlink (target missing: {tmp_path / 'nowhere.txt'})", "failed"),
        ("self.md", "symlink loop (the link points back to itself)", "failed"),
        ("sub/up", "symlink loop (points back to the root folder)", "failed"),
    ]
    assert all(f.fix for f in failures)


def test_discover_follows_file_and_folder_links_unless_told_not_to(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside / "doc.md")
    root = tmp_path / "root"
    write(root / "own.txt")
    (root / "linked").symlink_to(outside)
    (root / "link.md").symlink_to(outside / "doc.md")
    assert [f.source for f in discover(root)[0]] == ["link.md", "linked/doc.md", "own.txt"]
    found, failures = discover(root, follow_symlinks=False)
    assert [f.source for f in found] == ["own.txt"]
    assert [(f.source, f.reason, f.kind) for f in failures] == [
        ("link.md", "symlink (not followed)", "skipped"), ("linked", "symlink (not followed)", "skipped")]


def test_discover_reports_unreadable_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "ok.md")
    write(tmp_path / "locked/secret.md")
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(discovery.os, "scandir", scandir)
    found, failures = discover(tmp_path)
    assert [f.source for f in found] == ["ok.md"]
    assert failures == [Failure("locked", "permission denied: cannot list the folder",
                                "make it readable (chmod +rx) or check its owner")]


def test_discover_reports_a_chmod_000_folder(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads through chmod 000; the monkeypatched test covers the path")
    write(tmp_path / "locked/secret.md")
    (tmp_path / "locked").chmod(0)
    try:
        found, failures = discover(tmp_path)
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert found == [] and [(f.source, f.reason) for f in failures] == [
        ("locked", "permission denied: cannot list the folder")]


def test_discover_root_file_and_missing_root(tmp_path: Path) -> None:
    file = write(tmp_path / "one.md", "# One")
    assert discover(file) == ([FoundFile(file.absolute(), "one.md")], [])
    with pytest.raises(LoadError) as info:
        discover(tmp_path / "missing")
    assert_load_error(info.value, str(tmp_path / "missing"), "not found")


def test_odd_file_names_get_safe_sources_and_still_open(tmp_path: Path) -> None:
    with open(os.path.join(os.fsencode(tmp_path), b"bad\xff.txt"), "wb") as f:
        f.write(b"bytes in a badly named file")
    write(tmp_path / "new\nline.md", "# Newline\nbody")
    found, failures = discover(tmp_path)
    assert failures == []
    assert [f.source for f in found] == ["bad\\xff.txt", "new\nline.md"]
    docs = [parse(f.source, read_bytes(f, max_bytes=1000)) for f in found]
    assert docs[0].text == "bytes in a badly named file" and docs[1].title == "Newline"
    with sqlite3.connect(":memory:") as db:  # storable as-is: valid UTF-8, no lone surrogates
        db.execute("create table docs (source text)")
        db.executemany("insert into docs values (?)", [(d.source,) for d in docs])
        assert [row[0] for row in db.execute("select source from docs")] == ["bad\\xff.txt", "new\nline.md"]
    assert json.loads(json.dumps([d.source for d in docs])) == ["bad\\xff.txt", "new\nline.md"]
    assert all(d.source.encode("utf-8") for d in docs)


# ------------------------------------------------------------------------------------- read_bytes


def found_file(path: Path) -> FoundFile:
    return FoundFile(path, path.name)


def read_error(found: FoundFile, max_bytes: int = 1_000_000) -> LoadError:
    with pytest.raises(LoadError) as info:
        read_bytes(found, max_bytes=max_bytes)
    return info.value


def test_read_bytes_reads_the_whole_file(tmp_path: Path) -> None:
    assert read_bytes(found_file(write(tmp_path / "a.txt", "0123456789")), max_bytes=10) == b"0123456789"


def test_one_byte_over_the_limit_names_the_limit(tmp_path: Path) -> None:
    err = read_error(found_file(write(tmp_path / "big.txt", "0123456789X")), max_bytes=10)
    assert_load_error(err, "big.txt", "file is 11 bytes, over the 10 bytes limit",
                      "raise RAG_MAX_FILE_MB or split the file")


def test_too_large_reason_speaks_megabytes() -> None:
    mb = 1_048_576
    assert too_large_reason(300 * mb, 200 * mb) == "file is 300.0 MB, over the 200.0 MB limit"
    assert too_large_reason(200 * mb + 1, 200 * mb) == (
        "file is 200.0 MB (209,715,201 bytes), over the 200.0 MB (209,715,200 bytes) limit")


def test_permission_denied_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(discovery, "open", denied, raising=False)
    err = read_error(found_file(write(tmp_path / "private.md")))
    assert_load_error(err, "private.md", "permission denied",
                      "make it readable (e.g. chmod a+r FILE) or check its owner")


def test_chmod_000_file_is_reported(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads through chmod 000; the monkeypatched test covers the path")
    path = write(tmp_path / "private.md")
    path.chmod(0)
    assert read_error(found_file(path)).reason == "permission denied"


def test_not_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "folder.md").mkdir()
    os.mkfifo(tmp_path / "pipe.txt")  # opening it would block: must be refused before
    assert_load_error(read_error(found_file(tmp_path / "folder.md")), "folder.md", "not a regular file (a folder)")
    assert_load_error(read_error(found_file(tmp_path / "pipe.txt")), "pipe.txt", "not a regular file (a named pipe)")
    assert "pipe.txt" in [f.source for f in discover(tmp_path)[0]]


def test_missing_file(tmp_path: Path) -> None:
    assert_load_error(read_error(found_file(tmp_path / "gone.md")), "gone.md",
                      "file not found (moved or deleted during the ingest?)", "re-run the ingest")


@pytest.mark.parametrize("change", ["append", "touch"])
def test_a_file_changing_while_read_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               change: str) -> None:
    path = write(tmp_path / "live.log.txt", "first line\n")

    def changing_open(file, mode="r", *args, **kwargs):
        handle = builtins.open(file, mode, *args, **kwargs)  # read_bytes closes it
        if change == "append":
            with builtins.open(file, "ab") as more:
                more.write(b"second line\n")
        else:  # same size, new mtime
            st = os.stat(file)
            os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        return handle

    monkeypatch.setattr(discovery, "open", changing_open, raising=False)
    assert_load_error(read_error(found_file(path)), "live.log.txt", "file changed while being read",
                      "re-run the ingest when it is stable")


# ---------------------------------------------------------------------------- real files (shared)


def shared_file(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path


@pytest.mark.parametrize("name, reason", [
    ("password-protected.pdf", "encrypted PDF (password required)"),
    ("image-only-scan.pdf", "no text layer (scanned images?)"),
    ("mojibake-encoding.pdf", "text layer is unreadable (broken font encoding)"),
])
def test_real_bad_pdfs_are_reported(name: str, reason: str) -> None:
    path = shared_file("bad-inputs", name)
    assert_load_error(load_error(name, path.read_bytes()), name, reason)


def shared_pdfs() -> list[str]:
    folder = SHARED / "pdfs"
    return sorted(p.name for p in folder.glob("*.pdf")) if folder.is_dir() else ["(shared/pdfs missing)"]


@pytest.mark.parametrize("name", shared_pdfs())
def test_real_pdfs_parse_with_readable_text(name: str) -> None:
    from pypdf import PdfReader

    path = shared_file("pdfs", name)
    data = path.read_bytes()
    doc = parse(name, data)
    total = len(PdfReader(io.BytesIO(data)).pages)
    assert doc.kind == "pdf" and doc.paginated and doc.title
    assert len(doc.pages) * 2 > total  # most pages have readable text
    assert not any(looks_like_garbage(page.text) for page in doc.pages)
    if name.startswith("zh-"):
        han = sum(1 for c in doc.text if "\u4e00" <= c <= "\u9fff")
        assert han > 300 and han > len(doc.text) * 0.4
    else:
        assert sum(c.isascii() and c.isalpha() for c in doc.text) > len(doc.text) * 0.5


def test_real_chinese_pdfs_read_as_proper_chinese() -> None:
    regulations = parse("r.pdf", shared_file("pdfs", "zh-regulations.pdf").read_bytes()).text
    ships = parse("s.pdf", shared_file("pdfs", "zh-ship-rules.pdf").read_bytes()).text
    assert "工会" in regulations and "委员" in regulations
    assert "智能船舶" in ships


def test_importing_load_stays_light() -> None:
    import subprocess
    import sys

    code = ("import sys, rag.ingest.parse, rag.ingest.discover; "
            "print(sorted(m for m in ('pypdf', 'charset_normalizer') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
