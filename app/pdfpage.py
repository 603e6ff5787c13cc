"""A PDF page as a PNG, with the quoted span highlighted when pdfium finds it on the page.

pypdfium2 (the `ui` extra) renders the page; the quote comes from pypdf's text, which pdfium may
split differently (hyphens, spaces), so the highlight is searched for by the quote's first words
and is simply left out when they are not found. The page text with the quote marked is always
shown next to the image, so a miss here loses nothing.
"""
from __future__ import annotations

import io
from pathlib import Path

HIGHLIGHT = (255, 214, 10, 110)  # translucent yellow, like <mark>


def _quote_rects(page, quote: str) -> list[tuple[float, float, float, float]]:
    words = quote.split()
    if not words:
        return []
    textpage = page.get_textpage()
    try:
        for n in (len(words), 12, 6, 3):
            probe = " ".join(words[:n])
            if len(probe) < 8 and n < len(words):
                continue
            searcher = textpage.search(probe, match_case=False)
            try:
                found = searcher.get_next()
            finally:
                searcher.close()
            if found:
                index, _ = found
                count = min(len(" ".join(words)), textpage.count_chars() - index)
                return [textpage.get_rect(i) for i in range(textpage.count_rects(index, count))]
        return []
    finally:
        textpage.close()


def render_page_png(path: str | Path, page_number: int, quote: str = "", *, scale: float = 1.5) -> bytes:
    """Page `page_number` (1-based) of the PDF at `path` as PNG bytes, `quote` highlighted."""
    import pypdfium2 as pdfium
    from PIL import Image, ImageDraw

    pdf = pdfium.PdfDocument(str(path))
    try:
        page = pdf[page_number - 1]
        image = page.render(scale=scale).to_pil().convert("RGBA")
        rects = _quote_rects(page, quote) if quote else []
        if rects:
            height = page.get_height()
            overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
            draw = ImageDraw.Draw(overlay)
            for left, bottom, right, top in rects:
                draw.rectangle([left * scale, (height - top) * scale, right * scale, (height - bottom) * scale],
                               fill=HIGHLIGHT)
            image = Image.alpha_composite(image, overlay)
        page.close()
    finally:
        pdf.close()
    out = io.BytesIO()
    image.convert("RGB").save(out, "PNG")
    return out.getvalue()
