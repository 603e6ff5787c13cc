"""Numbers with their units, as a reader checks them: is this figure, in this unit, in the source?

    >>> missing_quantities("The file is 4.4 GB.", ["Size on disk: 4.4 MB."])
    ('4.4 GB',)
    >>> missing_quantities("约 1.17 亿个参数", ["about 117 million parameters"])
    ()
    >>> missing_quantities("模型有十二层。", ["The model has 12 layers."])
    ()

A quantity is a number written with digits or Chinese numerals, an optional multiplier (k, M, B,
thousand, million, 万, 亿 …) and an optional unit of a known dimension (bytes, seconds, percent,
bits). Its value is number × multiplier × unit factor, so 4,400 MB is 4.4 GB and 1.17 亿 is 117
million. A claimed quantity is found when the evidence has the same value in a compatible unit: the
same dimension, or no unit on either side (a table header may carry it). A number the evidence has
only in another unit ("4.4 MB" for a claimed "4.4 GB") is missing.

Table rows (`rag.ingest.rows.row_text`: "Header: value | Header: value" lines) are checked too: a
claimed figure that the evidence holds only in table rows must sit in a row the claim names —
a row whose own cells share a word with the claim — when the claim names any row at all
(`wrong_row`). Comparison is after Unicode NFKC (full-width digits are digits).

Deliberately skipped: unit conversion across systems (miles/km), ranges as intervals ("3–5" is two
numbers), and decimal/binary byte prefixes, which count as equal (a reader copying 4.4 GiB as
4.4 GB is not hallucinating).
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from rag.index.tokenize import tokenize

# Multipliers written after a number. Single letters only in these cases: "5k", "22M", "1.5B".
_MULTIPLIERS = {"k": 1e3, "K": 1e3, "thousand": 1e3, "千": 1e3, "万": 1e4, "M": 1e6, "million": 1e6,
                "百万": 1e6, "千万": 1e7, "亿": 1e8, "B": 1e9, "bn": 1e9, "billion": 1e9, "十亿": 1e9,
                "万亿": 1e12, "trillion": 1e12}
# Units of a dimension, by lower-cased spelling: (dimension, factor to the dimension's base).
_UNITS = {
    **{u: ("bytes", f) for f, names in ((1e3, "kb kib"), (1e6, "mb mib"), (1e9, "gb gib"), (1e12, "tb tib"),
                                        (1.0, "bytes byte 字节")) for u in names.split()},
    **{u: ("seconds", f) for f, names in ((1e-6, "µs μs us 微秒"), (1e-3, "ms 毫秒"),
                                          (1.0, "s sec secs second seconds 秒"),
                                          (60.0, "min mins minute minutes 分钟"),
                                          (3600.0, "h hr hrs hour hours 小时"), (86400.0, "day days 天"))
       for u in names.split()},
    **{u: ("percent", 1.0) for u in ("%", "percent", "pct")},
    **{u: ("bits", 1.0) for u in ("bit", "bits", "比特")},
}
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}
_CN_SMALL = {"十": 10, "百": 100, "千": 1000}
_CN_BIG = {"万": 10_000, "亿": 100_000_000}
_CN_CHARS = "".join([*_CN_DIGITS, *_CN_SMALL, *_CN_BIG])

_SUFFIX = r"(?:\s?(?P<mult>thousand|million|billion|trillion|bn|十亿|万亿|百万|千万|[kKMB千万亿](?![A-Za-z])))?" \
          r"(?:\s?(?P<unit>%|[A-Za-zµμ]+|字节|微秒|毫秒|秒|分钟|小时|天|比特))?"
_DIGIT_NUM = re.compile(r"(?<![\w.])(?P<num>\d+(?:[.,]\d+)*)(?:st|nd|rd|th|s(?![A-Za-z]))?(?!\d)" + _SUFFIX)
_CN_NUM = re.compile(rf"(?:百分之)?[{_CN_CHARS}]+" + r"(?:\s?(?P<unit>%|字节|微秒|毫秒|秒|分钟|小时|天|比特))?")


@dataclass(frozen=True)
class Quantity:
    text: str  # as written, for messages: "4.4 GB", "十二"
    number: str  # the written number normalised: "4.4", "12", "2000"
    value: float  # number × multiplier × unit factor
    dimension: str | None  # "bytes" | "seconds" | "percent" | "bits" | None
    start: int
    end: int

    def matches(self, other: Quantity) -> bool:
        """Same figure: equal values in one dimension, or equal numbers when either side has no unit."""
        if self.dimension and other.dimension and self.dimension != other.dimension:
            return False
        if _close(self.value, other.value):
            return True
        return (self.bare or other.bare) and self.number == other.number

    @property
    def bare(self) -> bool:
        """Written without a multiplier or unit ("4.4", not "4.4 GB" or "1.17 亿"); a version such as
        "127.0.0.1" is bare, its value NaN."""
        return not self.dimension and (self.value != self.value or self.value == _as_float(self.number))


def _as_float(number: str) -> float:
    try:
        return float(number)
    except ValueError:
        return float("nan")


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1e-12)


def normalise_number(raw: str) -> str:
    """'2,000' → '2000', '4.80' → '4.8', '3,5' (European decimal) → '3.5'."""
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", raw):
        raw = raw.replace(",", "")
    raw = raw.replace(",", ".") if re.fullmatch(r"\d+,\d{1,2}", raw) else raw
    if "." in raw and re.fullmatch(r"\d+\.\d+", raw):
        raw = raw.rstrip("0").rstrip(".")
    return raw


def chinese_number(text: str) -> int | None:
    """The value of a Chinese numeral; digit-by-digit strings read as written.

    >>> chinese_number("十二"), chinese_number("三千五百万"), chinese_number("一百零五"), chinese_number("二〇二四")
    (12, 35000000, 105, 2024)
    """
    if not text or any(c not in _CN_CHARS for c in text):
        return None
    if all(c in _CN_DIGITS for c in text):
        return int("".join(str(_CN_DIGITS[c]) for c in text))
    total, section, digit = 0, 0, 0
    for c in text:
        if c in _CN_DIGITS:
            digit = _CN_DIGITS[c]
        elif c in _CN_SMALL:
            section += (digit or 1) * _CN_SMALL[c]
            digit = 0
        else:  # 万 / 亿 close a section
            section += digit
            total = (total + section) * _CN_BIG[c] if c == "亿" or total == 0 else total + section * _CN_BIG[c]
            section, digit = 0, 0
    return total + section + digit


def _unit(word: str | None) -> tuple[str, float] | None:
    if not word:
        return None
    return _UNITS.get(word.lower()) or _UNITS.get(word)


def quantities(text: str, *, claim: bool = False) -> list[Quantity]:
    """Every number in `text` with its multiplier and unit.

    With `claim`, Chinese numerals that are usually parts of words are left out: a lone 一 or 零
    ("一些", "统一") and ordinals after 第.

    >>> [(q.text, q.value, q.dimension) for q in quantities("4,400 MB in 1.5 s, 80% of 22M")]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('4,400 MB', 4400000000.0, 'bytes'), ('1.5 s', 1.5, 'seconds'), ('80%', 80.0, 'percent'),
     ('22M', 22000000.0, None)]
    """
    text = unicodedata.normalize("NFKC", text)
    out: list[Quantity] = []
    for m in _DIGIT_NUM.finditer(text):
        number = normalise_number(m.group("num"))
        value = _as_float(number)  # NaN for "1.2.3": a version, compared as written
        end = m.end("num")
        mult = m.group("mult")
        if mult:
            value *= _MULTIPLIERS[mult]
            end = m.end("mult")
        unit = _unit(m.group("unit"))
        if unit:
            value *= unit[1]
            end = m.end("unit")
        out.append(Quantity(text[m.start():end].strip(), number, value, unit[0] if unit else None, m.start(), end))
    taken = [(q.start, q.end) for q in out]
    for m in _CN_NUM.finditer(text):
        if any(a < m.end() and m.start() < b for a, b in taken):
            continue  # the 亿 of "1.17 亿"
        body = m.group().removeprefix("百分之")
        unit_word = m.group("unit")
        if unit_word:
            body = body[: -len(unit_word)].rstrip()
        value_int = chinese_number(body)
        if value_int is None or (value_int == 0 and not set(body) & {"零", "〇"}):
            continue  # a bare 万 or 亿 is a word ("万一"), not a number
        if claim and (body in ("一", "零", "〇") or text[max(0, m.start() - 1):m.start()] == "第"):
            continue
        percent = m.group().startswith("百分之")
        unit = ("percent", 1.0) if percent else _unit(unit_word)
        value = float(value_int) * (unit[1] if unit else 1.0)
        out.append(Quantity(m.group(), str(value_int), value, unit[0] if unit else None, m.start(), m.end()))
    return sorted(out, key=lambda q: q.start)


def missing_quantities(claim: str, evidence: Sequence[str]) -> tuple[str, ...]:
    """The claim's quantities (as written) that no evidence text holds in a compatible unit."""
    have = [q for text in evidence for q in _evidence_quantities(text)]
    out = [q.text for q in quantities(claim, claim=True) if not any(q.matches(e) for e in have)]
    return tuple(dict.fromkeys(out))


def _evidence_quantities(text: str) -> list[Quantity]:
    """Quantities of an evidence text, plus the parts of compound numbers ("1844–1846", "3.5.1") and
    number words ("three"), both unitless, for claims that quote one of them."""
    found = quantities(text)
    extra = []
    for q in found:
        for part in re.split(r"[,.]", q.number):
            if part and part != q.number:
                extra.append(Quantity(part, part, float(part), None, q.start, q.end))
    for m in re.finditer(r"[a-z]+", text.lower()):
        digit = NUMBER_WORDS.get(m.group())
        if digit is not None:
            extra.append(Quantity(m.group(), digit, float(digit), None, m.start(), m.end()))
    return found + extra


NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split())}
NUMBER_WORDS.update({"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70",
                     "eighty": "80", "ninety": "90", "hundred": "100", "thousand": "1000",
                     "first": "1", "second": "2", "third": "3", "fourth": "4", "fifth": "5"})

ROW_SEPARATOR = " | "  # rag.ingest.rows.CELL_SEPARATOR (not imported: verify must not import ingest)
_NUMERIC = re.compile(r"[\d.,%]+")


def _row_cells(line: str) -> list[tuple[str, str]] | None:
    """[(header, value)] of a row line written by rag.ingest.rows.row_text, else None."""
    parts = line.split(ROW_SEPARATOR)
    cells = [p.partition(": ") for p in parts]
    if len(parts) < 2 or any(not sep for _, sep, _ in cells):
        return None
    return [(h.strip(), v.strip()) for h, _, v in cells]


def wrong_row(claim: str, evidence: Sequence[str]) -> tuple[str, ...]:
    """Claimed quantities that the evidence holds only in table rows the claim does not name.

    A row is named by the claim when a word of its cells' values (not its headers, not a number,
    and not a word every row shares) is a word of the claim. Quantities found outside table rows,
    and claims that name no row, are left to `missing_quantities`.

    >>> table = "Model: MiniLM | Size: 90 MB\\nModel: BERT | Size: 440 MB"
    >>> wrong_row("BERT is 90 MB.", [table]), wrong_row("MiniLM is 90 MB.", [table])
    (('90 MB',), ())
    """
    rows = [cells for text in evidence for line in text.splitlines() if (cells := _row_cells(line))]
    if len(rows) < 2:
        return ()
    row_tokens = [{t for t in tokenize(" ".join(v for _, v in cells)) if not _NUMERIC.fullmatch(t)}
                  for cells in rows]
    shared = set.intersection(*row_tokens)
    claim_tokens = set(tokenize(claim))
    named = [bool((toks - shared) & claim_tokens) for toks in row_tokens]
    if not any(named):
        return ()
    prose = [line for text in evidence for line in text.splitlines() if not _row_cells(line)]
    prose_q = [q for line in prose for q in _evidence_quantities(line)]
    out = []
    for q in quantities(claim, claim=True):
        if any(q.matches(e) for e in prose_q):
            continue
        holders = [i for i, cells in enumerate(rows)
                   if any(q.matches(e) for _, v in cells for e in _evidence_quantities(v))]
        if holders and not any(named[i] for i in holders):
            out.append(q.text)
    return tuple(dict.fromkeys(out))


