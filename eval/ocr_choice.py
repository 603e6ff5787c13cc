"""Which OCR engine, and where the text-layer quality gate sits: the measurements behind `rag.ingest.ocr`.

    python eval/ocr_choice.py engines [--pages 3]     # CER and seconds per page, RapidOCR vs Tesseract
    python eval/ocr_choice.py gate [--data ../shared] # text_quality of clean and garbled text layers

`engines` renders English and Chinese paragraphs as scans (`rag.testing.scanned_pdf`: 11 pt at
200 dpi, grey noise, specks, 0.6° rotation; and 'rough': 8 pt, heavy noise, 1.2°), embeds them
in a PDF, renders the PDF page back (pypdfium2, as the ingest does) and reads it with each
engine: RapidOCR from the `ocr` extra, and Tesseract 5 from Debian (`apt-get install
tesseract-ocr tesseract-ocr-chi-sim`, run as `tesseract - - -l eng+chi_sim --psm 6`) when it is
on PATH. CER = edit distance / reference length, on text with the spaces removed for Chinese and
runs of spaces folded to one for English.

`gate` scores the text layers of the shared PDFs and sample documents page by page, as they are
and with a share of their characters replaced by what bad OCR layers hold (random letters,
digits, signs, rare CJK characters), and prints the score range of each group: the threshold
goes between the clean pages and the garbled ones. Runs in a few minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import itertools
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval.metrics.ocr import char_error_rate  # noqa: E402
from rag.ingest.ocr import boxes_to_text, load_ocr, render_pages, text_quality  # noqa: E402
from rag.testing import cjk_font, scanned_pdf  # noqa: E402

ENGLISH = [
    "Retrieval-augmented generation combines a search step with a language model. The retriever finds "
    "passages that are likely to contain the answer, and the generator writes a response that cites them. "
    "In our experiments we measured recall at ten, the share of supported sentences and the latency of "
    "each stage on a laptop with two cores and 8 GB of memory.",
    "The committee met on 14 March 2023 and approved the budget of $1,250,000 for the next fiscal year. "
    "Members noted that travel costs rose by 12.5% while equipment spending fell; the chair asked for a "
    "revised estimate before the June meeting, with quotes from at least three suppliers.",
    "Install the package with pip, then run the ingest command on a folder of documents. Every file is "
    "parsed, chunked and embedded; files that cannot be read are reported with a reason and a fix, and "
    "the index is written as a new generation that replaces the old one atomically.",
]
CHINESE = [
    "检索增强生成把搜索步骤和语言模型结合起来。检索器找到可能包含答案的段落，生成器写出引用这些段落的回答。"
    "在实验中，我们测量了前十召回率、有依据句子的比例，以及每个阶段在双核笔记本电脑上的延迟。",
    "委员会于二〇二三年三月十四日召开会议，批准了下一财政年度一百二十五万元的预算。委员们指出，差旅费用上升了百分之"
    "十二点五，而设备支出有所下降；主席要求在六月会议之前提交修订后的估算，并附上至少三家供应商的报价。",
    "船舶应当按照规定配备消防设备和救生设备，并定期进行检验。船长负责组织船员进行应急演习，确保每名船员熟悉自己的"
    "职责和集合地点。发现安全隐患时，应当立即采取措施并向主管机关报告。",
]


def normalise(text: str, *, cjk: bool) -> str:
    return "".join(text.split()) if cjk else " ".join(text.split())


def tesseract_text(img: object) -> str:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")  # type: ignore[attr-defined]
    run = subprocess.run(["tesseract", "-", "-", "-l", "eng+chi_sim", "--psm", "6"], input=buf.getvalue(),
                         capture_output=True, check=True)
    return run.stdout.decode("utf-8")


def engines(pages: int) -> None:
    font = cjk_font()
    sets = [("English", ENGLISH[:pages], None, False)]
    if font is None:
        print("no CJK font (fc-list :lang=zh): Chinese skipped; apt-get install fonts-wqy-microhei")
    else:
        sets.append(("Chinese", CHINESE[:pages], font, True))
    ocr = load_ocr()
    readers = {"rapidocr": lambda img: boxes_to_text(ocr.engine.read(img))}
    if shutil.which("tesseract"):
        readers["tesseract"] = tesseract_text
    else:
        print("tesseract not on PATH: only RapidOCR measured")
    readers["rapidocr"](scanned_images([ENGLISH[0][:40]], None)[0])  # load the models outside the timing
    print(f"{'engine':10} {'language':8} {'scan':6} {'CER':>7} {'s/page':>7}")
    for (name, texts, font_path, cjk), (scan, how) in itertools.product(sets, SCANS.items()):
        images = scanned_images(texts, font_path, **how)
        for engine, read in readers.items():
            errors = length = 0.0
            t0 = time.perf_counter()
            for ref, img in zip(texts, images):
                hyp = read(img)
                a, b = normalise(ref, cjk=cjk), normalise(hyp, cjk=cjk)
                errors += char_error_rate(a, b) * len(a)
                length += len(a)
            per_page = (time.perf_counter() - t0) / len(texts)
            print(f"{engine:10} {name:8} {scan:6} {errors / length:7.2%} {per_page:7.2f}")


# 'clean': 11 pt at 200 dpi, light noise (the test pages); 'rough': 8 pt, heavy noise and specks, 1.2°.
SCANS: dict[str, dict[str, float]] = {"clean": {}, "rough": {"size": 22, "noise": 40, "specks": 0.01, "angle": 1.2}}


def scanned_images(texts: list[str], font: Path | None, **how: float) -> list[object]:
    data = scanned_pdf(texts, font=font, **how)
    return [img for _, img in render_pages(data, range(len(texts)))]


BAD_LATIN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!|#@$%&*~^"


def garble(text: str, share: float, rng: random.Random) -> str:
    """Replace `share` of the non-space characters as bad OCR does: junk Latin, rare CJK."""
    out = []
    for c in text:
        if not c.isspace() and rng.random() < share:
            c = chr(rng.randint(0x3400, 0x4DBF)) if ("\u4e00" <= c <= "\u9fff" and rng.random() < 0.5) \
                else rng.choice(BAD_LATIN)
        out.append(c)
    return "".join(out)


def gate(data: Path) -> None:
    from rag.ingest.parse import parse

    files = sorted((data / "pdfs").glob("*.pdf")) + sorted((ROOT / "data" / "docs").glob("*"))
    pages: list[tuple[str, str]] = []
    for path in files:
        if path.is_file():
            try:
                doc = parse(path.name, path.read_bytes())
            except Exception as err:
                print(f"skipped {path.name}: {err}")
                continue
            pages += [(f"{path.name} p. {p.number}", p.text) for p in doc.pages if len(p.text) >= 200]
    rng = random.Random(0)
    print(f"{len(pages)} pages of {len(files)} files")
    print(f"{'garbled':>8} {'min':>6} {'p05':>6} {'median':>6} {'max':>6}")
    for share in (0.0, 0.1, 0.2, 0.3, 0.5):
        scores = sorted(text_quality(garble(text, share, rng) if share else text) for _, text in pages)
        n = len(scores)
        print(f"{share:8.0%} {scores[0]:6.3f} {scores[n // 20]:6.3f} {scores[n // 2]:6.3f} {scores[-1]:6.3f}")
        if share == 0.0:
            worst = sorted((text_quality(t), name) for name, t in pages)[:5]
            print("   lowest clean pages: " + ", ".join(f"{name} {q:.3f}" for q, name in worst))
    bad = data / "bad-inputs" / "mojibake-encoding.pdf"
    if bad.exists():
        from pypdf import PdfReader

        layer = PdfReader(bad).pages[0].extract_text()
        print(f"mojibake-encoding.pdf text layer: {text_quality(layer):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["engines", "gate"])
    ap.add_argument("--pages", type=int, default=3, help="pages per language (engines)")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared")
    args = ap.parse_args()
    if args.what == "engines":
        engines(args.pages)
    else:
        gate(args.data)


if __name__ == "__main__":
    main()
