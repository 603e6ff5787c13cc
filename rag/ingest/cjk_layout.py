"""Chinese text as PDF layout leaves it, put back together: wrapped lines joined, layout spaces dropped.

pypdf writes a line break where a line of a paragraph wraps, and a space wherever two glyphs
stand further apart than half a space: justified Chinese lines ('本 规 范 第 十 章'), a run that
a word processor placed on its own ('年业 绩预告'). Both end up as stray spaces in chunks, since a
chunk shown or quoted collapses its whitespace. This module undoes them from the text alone:

- `join_cjk_wraps`: a line that runs to (nearly) the full width of the page and ends inside a
  Chinese sentence is joined to the next one, without a space (a space only beside a Latin
  letter); headings, list items and the short last line of a paragraph keep their line ends;
- `drop_layout_spaces`: letter-spaced runs ('本 规 范') close up, and in running text (a line
  with Chinese sentence punctuation) a single space between two ideographs goes, except after a
  leading label ('第十四条 工会…', '附件一 …').

Deliberately skipped: the page's real geometry (this works on the extracted text, so it costs
nothing on pages without Chinese), vertical text, and spaces that a table without ruling lines
puts between its columns, which stay (a line without sentence punctuation keeps its spaces).
"""
from __future__ import annotations

import re
import unicodedata

from rag.ingest.rows import is_row

_IDEOGRAPH = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_OPENING = "（《“‘【〔「『"  # a line never ends inside a sentence before these by choice
_CLOSING = "，。、；：？！）》”’】〕」』"  # nor does one start with these (kinsoku), unless wrapped
_MID = "，、"  # a line ending on these goes on
_CJK_WRAP = re.compile(f"[{_IDEOGRAPH}{_MID}{_OPENING}]\n|\n[{_IDEOGRAPH}{_CLOSING}]")
_WRAP_SHARE = 0.8  # a wrapped line fills at least this share of the page's full line width

_LETTER_SPACED = re.compile(f"(?<!\\S)[{_IDEOGRAPH}](?: [{_IDEOGRAPH}]){{2,}}(?!\\S)")
_GAP = re.compile(f"(?<=[{_IDEOGRAPH}，。、；：]) (?=[{_IDEOGRAPH}])")
_SENTENCE_MARK = re.compile("[，。；！？]")
_LABEL = re.compile(
    "(?:第\\S{1,8}?[章节条款项篇部编卷回]|[〇零一二三四五六七八九十百千\\d]+[、.．]?"
    "|[（(【\\[]\\S{1,6}[）)】\\]]|附[件录表]\\S{0,4}|注\\S{0,2}|[表图]\\S{0,8})")


def display_width(line: str) -> int:
    """Width in half-em units: 2 for a wide (CJK, full-width) character, 1 for the rest, the
    average of a proportional Latin font.

    >>> display_width("中文ab")
    6
    """
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)


def _full_width(widths: list[int]) -> int:
    """The page's full line width: the widest line, unless it stands alone, over 10% wider than
    any other while the next two match (a URL or a formula running into the margin).

    >>> _full_width([120, 90, 88, 30]), _full_width([90, 30]), _full_width([60, 6, 4, 4])
    (90, 90, 60)
    """
    ranked = sorted(widths, reverse=True)
    if len(ranked) >= 3 and ranked[1] < 0.9 * ranked[0] and ranked[2] >= 0.9 * ranked[1] >= 0.6 * ranked[0]:
        return ranked[1]
    return ranked[0]


def _is_cjk(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" or ch in _MID or ch in _OPENING or ch in _CLOSING


def _joiner(end: str, start: str) -> str | None:
    """What joins a wrapped line ending in `end` to the next starting with `start`: '' inside
    Chinese text or beside a digit, ' ' beside a Latin letter, None when the break is real."""
    if end in "。；：？！":  # a sentence ended: a paragraph may end there too
        return None
    end_cjk, start_cjk = _is_cjk(end), _is_cjk(start)
    if end_cjk and start_cjk:
        return ""
    if end_cjk or start_cjk:
        other = start if end_cjk else end
        if other.isdigit():
            return ""
        if other.isascii() and other.isalpha():
            return " "
    return None


def join_cjk_wraps(text: str) -> str:
    r"""Undo the layout's line wraps inside Chinese text ("快\n速" → "快速"): a wrapped line runs
    to (nearly) the page's full width, a heading, a list item or a paragraph's last line does not.

    >>> join_cjk_wraps("标题\n" + "长" * 30 + "\n续行。\n" + "短行") == "标题\n" + "长" * 30 + "续行。\n短行"
    True
    >>> join_cjk_wraps("见第" + "长" * 30 + "\n10章。\n" + "x" * 70)  # Latin width counts half
    '见第长长长长长长长长长长长长长长长长长长长长长长长长长长长长长长10章。\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'
    """
    if "\n" not in text or not _CJK_WRAP.search(text):
        return text
    lines = text.split("\n")
    widths = [display_width(line) for line in lines]
    measured = [w for line, w in zip(lines, widths) if line and not is_row(line)]
    if not measured:
        return text
    least = _WRAP_SHARE * _full_width(measured)
    out, out_width = [lines[0]], widths[0]
    for line, width in zip(lines[1:], widths[1:]):
        prev = out[-1]
        glue = None
        if prev and line and out_width >= least and not is_row(prev) and not is_row(line):
            glue = _joiner(prev[-1], line[0])
        if glue is None:
            out.append(line)
            out_width = width
        else:
            out[-1] = prev + glue + line
            out_width = width  # the joined line's last part decides whether it wraps again
    return "\n".join(out)


def _drop_gaps(line: str) -> str:
    """Drop the single spaces between ideographs of one line of running Chinese text, keeping
    the one after a leading label."""
    keep = -1
    head, _, _ = line.lstrip().partition(" ")
    if _LABEL.fullmatch(head):
        keep = len(line) - len(line.lstrip()) + len(head)
    return _GAP.sub(lambda m: m.group() if m.start() == keep else "", line)


def drop_layout_spaces(text: str) -> str:
    """Spaces that pypdf writes for gaps in Chinese layout, gone: letter-spaced runs close up,
    and a single space between ideographs in running text goes (not after a leading label, not
    in a line without sentence punctuation, such as a heading or a table's columns).

    >>> drop_layout_spaces("本 规 范 第 10 章")
    '本规范第 10 章'
    >>> drop_layout_spaces("公司发布2021 年业 绩预告，涉 及海外。\\n第十四条 工会经费，审 查。\\n第三章 职工代表")
    '公司发布2021 年业绩预告，涉及海外。\\n第十四条 工会经费，审查。\\n第三章 职工代表'
    """
    if not _GAP.search(text):
        return text
    text = _LETTER_SPACED.sub(lambda m: m.group().replace(" ", ""), text)
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if _GAP.search(line) and _SENTENCE_MARK.search(line) and not is_row(line):
            lines[i] = _drop_gaps(line)
    return "\n".join(lines)
