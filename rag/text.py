"""Text logic that every stage shares: sentence spans, the CJK class, script detection, the logistic.

    >>> t = "Dr. Smith measured 3.5 kg.[1] 它很重！Next one"
    >>> [t[a:b] for a, b in sentence_spans(t, marker=re.compile(r"\\[\\d\\]"))]
    ['Dr. Smith measured 3.5 kg.[1]', '它很重！', 'Next one']
    >>> language("GGUF 量化怎么用"), language("What is GGUF?"), language("Как дела?")
    ('cjk', 'latin', 'other')
    >>> cjk_language("GGUF とは？"), cjk_language("GGUF 란?"), cjk_language("GGUF 是什么？")
    ('ja', 'ko', 'zh')

Chunking cuts documents at sentences, citations are read per sentence of the answer, the
verifier compares claims with sentences of the evidence, and the UI marks sentences of the
answer: one splitter serves them all, with an option for each job's own need (see
`sentence_spans`), so a sentence means the same thing to every stage.

- `CJK_CHARS`: Han (with extensions A-F and the compatibility ideographs), 々〆〇, Hiragana,
  Katakana (with the phonetic extensions and ー), Hangul syllables and jamo — the class the
  tokenizer cuts into bigrams, so every stage agrees on what a CJK character is.
- `language`: 'cjk' | 'latin' | 'other' from the share of letters in each script; Japanese and
  Korean count as 'cjk' (what matters downstream is bigram tokens and English-only models).
- `cjk_language`: 'zh' | 'ja' | 'ko' for CJK text, from its kana and Hangul: the language a
  refusal or an answer instruction is written in.
- `normalise`: NFKC and radical look-alikes folded (`fold_radicals`), case kept: what the
  embedder reads on both sides (chunks at ingest, the query at search). NFKC folds full-width
  Latin and digits ("ＧＧＵＦ４" → "GGUF4"), the CJK compatibility ideographs (U+F900-U+FAFF and
  the supplement U+2F800-U+2FA1F: "\uf9b4" → "\u9818" 領) and the Kangxi radicals (U+2F00-U+2FD5);
  `RADICAL_TABLE` the CJK Radicals Supplement, which NFKC barely folds ("⻅" → "见").
- `fold`: `normalise`, then lower case, the form in which text is compared: BM25 tokens
  (`rag.index.tokenize`), and through them citation, support and abstention checks ("４.８ ＧＢ"
  matches "4.8 gb", "键⻆" matches "键角"). Stored chunk text is never normalised: users see the
  text as the file has it (PDF extraction alone folds radicals and ligatures, which are font
  artefacts, not the author's text).
- `logistic`: the one sigmoid behind every fitted score.

Deliberately skipped: sentence rules for scripts other than Latin and CJK punctuation (Thai,
Devanagari danda…), language identification beyond scripts (German and English are both
'latin'), and a trained sentence splitter (punkt-style): the rules are small and testable.
"""
from __future__ import annotations

import math
import re
import unicodedata
from typing import Literal

# --- characters ----------------------------------------------------------------------------------

# Han (incl. extensions A-F and compatibility ideographs), 々〆〇, Hiragana, Katakana (incl.
# phonetic extensions and ー), Hangul syllables and jamo.
CJK_CHARS = (
    "\u1100-\u11ff\u3005-\u3007\u3040-\u309f\u30a0-\u30ff\u3130-\u318f\u31f0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f"
)
CJK_CHAR = re.compile(f"[{CJK_CHARS}]")
CJK_RUN = re.compile(f"[{CJK_CHARS}]+")
# Letters (Basic Latin, Latin-1, Extended-A/B, IPA, Extended Additional): accented Latin counts.
_LATIN_CHAR = re.compile("[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u0250-\u02af\u1e00-\u1eff]")


def has_cjk(text: str) -> bool:
    """Whether any character of `text` is CJK.

    >>> has_cjk("GGUF 量化"), has_cjk("GGUF"), has_cjk("\\u3400"), has_cjk("\\uf900")
    (True, False, True, True)
    """
    return CJK_CHAR.search(text) is not None


def normalise(text: str) -> str:
    """NFKC, then radical look-alikes folded; case kept. Full-width Latin and digits become ASCII,
    ligatures split, compatibility ideographs become the unified ones, '⻆' (a radical some PDF
    fonts emit) becomes '角'.

    >>> normalise("４.８ ＧＢ ﬁle 键⻆ \uf9b4")
    '4.8 GB file 键角 領'
    """
    return fold_radicals(unicodedata.normalize("NFKC", text))


def fold(text: str) -> str:
    """`normalise`, then lower case: the form in which text is compared.

    >>> fold("４.８ ＧＢ ﬁle 键⻆")
    '4.8 gb file 键角'
    """
    return normalise(text).lower()


# Recorded in every index manifest (rag.ingest.build.settings_signature): bump it whenever `normalise`
# gives a different text, so the next ingest re-embeds every file instead of mixing vectors of old
# and new forms. (BM25 tokens have their own version, rag.index.tokenize.TOKENIZER_VERSION.)
NORMALISE_VERSION = "1"  # 1: chunks and queries are embedded in the normalised form

# CJK Radicals Supplement (U+2E80-U+2EFF) → the ideograph each stands for, after Unicode's
# EquivalentUnifiedIdeograph.txt: Chinese PDF fonts often map glyphs to these look-alikes, and NFKC
# folds only two of them (the Kangxi radicals, U+2F00-U+2FD5, it folds all). Pairs: radical, ideograph.
_RADICAL_PAIRS = (
    "⺆冂⺇几⺉刂⺋㔾⺌小⺎兀⺏尣⺐尢⺒巳⺓幺⺔彑⺖忄⺗㣺⺘扌⺙攵⺛旡⺝月⺞歺⺟母⺠民⺡氵⺢氺⺣灬⺤爫⺦丬⺧牛"
    "⺨犭⺩王⺪疋⺫罒⺬示⺭礻⺮竹⺯糹⺰纟⺲罒⺳㓁⺶羊⺹耂⺺肀⺻聿⺼月⺽臼⺾艹⺿艹⻀艹⻁虎⻂衤⻃覀⻄西⻅见"
    "⻆角⻈讠⻉贝⻋车⻌辶⻍辶⻎辶⻏阝⻐钅⻑長⻒镸⻓长⻔门⻖阝⻗雨⻘青⻙韦⻚页⻛风⻜飞⻝食⻟飠⻠饣⻢马"
    "⻣骨⻤鬼⻥鱼⻦鸟⻧卤⻨麦⻩黄⻪黾⻫斉⻬齐⻭歯⻮齿⻯竜⻰龙⻱龜⻲亀⻳龟"
)
RADICAL_TABLE = {ord(a): b for a, b in zip(_RADICAL_PAIRS[::2], _RADICAL_PAIRS[1::2])}
_RADICAL = re.compile("[\u2e80-\u2eff\u2f00-\u2fdf]")


def fold_radicals(text: str) -> str:
    """Radical look-alikes to the ideographs they stand for: Kangxi radicals by NFKC, the CJK
    Radicals Supplement by `RADICAL_TABLE`; other text is returned as it is (one regex scan).

    >>> fold_radicals("常⻅的⻣架, 键⻆ and ⽤")
    '常见的骨架, 键角 and 用'
    """
    if _RADICAL.search(text) is None:
        return text
    text = text.translate(RADICAL_TABLE)
    return _RADICAL.sub(lambda m: unicodedata.normalize("NFKC", m.group()), text)


# --- scripts -------------------------------------------------------------------------------------

Script = Literal["cjk", "latin", "other"]
CJK_SHARE = 0.3  # see `language`


def script_profile(text: str) -> dict[str, float]:
    """Share of letters by script; digits, spaces and punctuation do not count.

    >>> script_profile("GGUF 量化")
    {'latin': 0.6666666666666666, 'cjk': 0.3333333333333333, 'other': 0.0}

    All shares are 0.0 when the text has no letters. Text is NFKC-normalised first, so
    half-width katakana counts as CJK and full-width Latin as Latin.
    """
    text = unicodedata.normalize("NFKC", text)
    latin = cjk = other = 0
    for ch in text:
        if CJK_CHAR.match(ch):
            cjk += 1
        elif not ch.isalpha():
            continue
        elif _LATIN_CHAR.match(ch):
            latin += 1
        else:
            other += 1
    total = latin + cjk + other
    if total == 0:
        return {"latin": 0.0, "cjk": 0.0, "other": 0.0}
    return {"latin": latin / total, "cjk": cjk / total, "other": other / total}


def language(text: str) -> Script:
    """'cjk' when CJK letters are ≥ 30 % of the letters, 'latin' when Latin letters are the
    majority, else 'other' (also for text without letters, such as '2024').

    >>> language("GGUF 量化 怎么 用"), language("abcdefgh 向量"), language("2024")
    ('cjk', 'latin', 'other')

    30 %, not 50 %: a Chinese question naming an English product ("GGUF 量化 怎么 用") is still
    a Chinese question, and each Han character carries a word's worth of meaning.
    """
    profile = script_profile(text)
    if profile["cjk"] >= CJK_SHARE:
        return "cjk"
    if profile["latin"] > 0.5:
        return "latin"
    return "other"


# A run of Latin letters and digits, its parts joined by - _ . (bge-reranker-v2-m3, Q4_K_M, llama.cpp).
# It names something rather than being a word of the sentence when it has digits (Qwen2, 7B), joined
# parts, or two capitals (GGUF, MiniLM). rag.answer.abstain's identifiers are tokens of this shape too.
LATIN_TOKEN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.\-]*[A-Za-z0-9])?")
_NAME_SHAPE = re.compile(r"\d|[-_.]|[A-Z].*[A-Z]")


def without_names(text: str) -> str:
    """`text` (NFKC) less its Latin name tokens (see `_NAME_SHAPE`), which say nothing about the
    language a sentence is written in.

    >>> without_names("bge-reranker-v2-m3 有多少层"), without_names("What is the size of GGUF files?")
    (' 有多少层', 'What is the size of  files?')
    """
    text = unicodedata.normalize("NFKC", text)
    return LATIN_TOKEN.sub(lambda m: "" if _NAME_SHAPE.search(m.group()) else m.group(), text)


def sentence_language(text: str) -> Script:
    """The script a question or an answer is written in: `language` of its words with the Latin
    names set aside (`without_names`), or of the whole text when nothing else is left.

    >>> sentence_language("bge-reranker-v2-m3 有多少层？"), language("bge-reranker-v2-m3 有多少层？")
    ('cjk', 'latin')
    >>> sentence_language("What is 向量?"), sentence_language("Q4_K_M"), sentence_language("GGUF 是什么？")
    ('latin', 'latin', 'cjk')

    A Chinese question naming a long English identifier is a Chinese question: measured on the
    shipped set, `language` took zh-024 ("bge-reranker-v2-m3 有多少层？", 13 Latin letters to 4
    Han characters) for English, so the model was instructed, and answered, in English.
    """
    rest = without_names(text)
    return language(rest) if any(ch.isalpha() for ch in rest) else language(text)


CjkLanguage = Literal["zh", "ja", "ko"]
# Hiragana and katakana letters (with ー and the phonetic extensions), not the middle dot ・ (U+30FB),
# which Chinese text also uses between the parts of a foreign name ("马丁・波特").
_KANA = re.compile("[\u3041-\u3096\u309d-\u309f\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff]")
_HANGUL = re.compile("[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")
KANA_SHARE = 0.1  # see `cjk_language`
HANGUL_SHARE = 0.3


def cjk_language(text: str) -> CjkLanguage:
    """'ko' when Hangul is ≥ 30 % of the CJK letters (and outnumbers kana), 'ja' when kana is
    ≥ 10 %, else 'zh' (also for text without CJK letters: ask `language` first).

    >>> cjk_language("量子化の利点は？"), cjk_language("양자화의 장점은?"), cjk_language("量化的优点？")
    ('ja', 'ko', 'zh')

    10 %, not more: Japanese writes its content words in kanji and only particles and endings in
    kana ("量子化の利点は？" is 2 kana of 7), and Chinese text has no kana at all. Korean text may
    quote Hanja, but Hangul carries it. Japanese written in kanji alone reads as Chinese.
    """
    text = unicodedata.normalize("NFKC", text)  # half-width katakana and Hangul to their full forms
    cjk = len(CJK_CHAR.findall(text))
    if cjk == 0:
        return "zh"
    kana, hangul = len(_KANA.findall(text)), len(_HANGUL.findall(text))
    if hangul > kana and hangul >= HANGUL_SHARE * cjk:
        return "ko"
    if kana >= KANA_SHARE * cjk:
        return "ja"
    return "zh"


# --- numbers -------------------------------------------------------------------------------------

def logistic(z: float) -> float:
    """1 / (1 + e^-z), clamped so that no logit overflows.

    >>> logistic(0.0), round(logistic(2.0), 4), logistic(-1000.0) < 1e-20
    (0.5, 0.8808, True)
    """
    return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))


# --- sentences -----------------------------------------------------------------------------------

# Lower-cased words after which a period ends no sentence ("Dr. Smith", "e.g. SQuAD", "No. 5").
# "no" and "nos" only before a number: "the answer is no. The …" ends a sentence.
ABBREVIATIONS = frozenset("""
mr mrs ms dr prof sr jr st mt vs v cf al e.g i.e approx ca c no nos vol vols pp p fig figs eq eqs
sec ch ref refs inc ltd corp dept jan feb mar apr jun jul aug sep sept oct nov dec
""".split())

_TERMINATOR = re.compile(r"(?P<latin>[.!?…]+)|(?P<cjk>[。！？；．]+)|\n")
# Closing quotes and brackets after a terminator belong to the sentence that it ends.
_CLOSERS = frozenset("\"'”’」』）)»】〉》")  # not ']': "some writers[who?] used" goes on
_OPENERS = "([{\"'“‘"
_WIDE_CHAR = re.compile(f"[{CJK_CHARS}\u3000-\u303f\uff00-\uffef]")  # CJK letters and punctuation
# "J. Smith", "U.S. Army", "a.m."; not a lower-case letter alone: "a function of n. Since …" ends.
_INITIALS = re.compile(r"[A-Z]|(?:[A-Za-z]\.)+[A-Za-z]")
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")
# A line that starts like a list item or a table row (Latin and Chinese numbering).
_LIST_LINE = re.compile(
    r"^[ \t]*(?:[-*+•·▪◦‣>][ \t]|\||\d{1,3}[.)][ \t]|\d{1,3}、|[（(]?[\d一二三四五六七八九十]{1,3}[)）、]"
    r"|[a-zA-Z][.)][ \t]|第[\d一二三四五六七八九十百]+[条章节])", re.M)
_BEFORE_NUMBER = frozenset({"no", "nos"})
_GLUED_BEFORE = re.compile(r"[a-z]{2}")
_GLUED_AFTER = re.compile(r"[A-Z][a-z]")


def sentence_spans(text: str, start: int = 0, end: int | None = None, *,
                   marker: re.Pattern[str] | None = None, glued: bool = False, every_line: bool = False,
                   semicolons: bool = True, trust_case: bool = False) -> list[tuple[int, int]]:
    """Sentence spans `(a, b)` of `text[start:end]`, trimmed of whitespace, in order.

    >>> t = "Pi is 3.14 here. Dr. Smith agrees, e.g. in Fig. 2. 质量是五公斤。它很重！"
    >>> [t[a:b] for a, b in sentence_spans(t)]
    ['Pi is 3.14 here.', 'Dr. Smith agrees, e.g. in Fig. 2.', '质量是五公斤。', '它很重！']

    A sentence ends
    - at CJK end punctuation `。！？；．`, wherever it is;
    - at Latin `. ! ? …` followed by whitespace (or by a CJK character: "done.下一句"), except a
      single period after an abbreviation (`ABBREVIATIONS`), an initial or dotted acronym
      ("J. Smith", "U.S. Army"), or a list number at the start of its line ("1. Install");
    - at a blank line, and, in a paragraph in which at least two lines start like list items or
      table rows, at each line break before a line that starts a new item or row.
    Closing quotes and brackets after the punctuation stay with the sentence it ends.

    Options, one per job:
    - `marker`: a pattern of citation markers that belong to the sentence they follow
      ("kg.[1] Next", "kg. [1] Next"); a marker after any punctuation also ends the sentence;
    - `glued`: also cut where a lower-case word runs into a capitalised one ("American.First":
      scraped text loses the space between sentences);
    - `every_line`: every line break ends a sentence (evidence texts, where a line is a unit);
    - `semicolons=False`: `；` ends no sentence (answers cite once per sentence, so a clause cut off
      at `；` would lose its marker);
    - `trust_case`: a period before a lower-case word ends no sentence ("approx. five", "etc. and")
      — right for well-cased text such as model answers, wrong for lower-cased corpora.
    """
    stop = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    pos = start
    for m in _BLANK_LINE.finditer(text, start, stop):
        _paragraph(text, pos, m.start(), spans, marker, glued, every_line, semicolons, trust_case)
        pos = m.end()
    _paragraph(text, pos, stop, spans, marker, glued, every_line, semicolons, trust_case)
    return spans


def _paragraph(text: str, start: int, end: int, spans: list[tuple[int, int]], marker: re.Pattern[str] | None,
               glued: bool, every_line: bool, semicolons: bool, trust_case: bool) -> None:
    """Append the sentence spans of one paragraph (no blank line inside) to `spans`."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start == end:
        return
    lines = every_line or _is_list_like(text, start, end)
    begin = pos = start
    while (m := _TERMINATOR.search(text, pos, end)) is not None:
        pos = m.end()
        if m.lastgroup is None:  # a line break
            # In a list, a line that does not start a new item continues the one above
            # ("- Elasticsearch switched its default\n  similarity from TF-IDF to BM25 …").
            if every_line or (lines and _LIST_LINE.match(text, pos, end)):
                _add(text, begin, m.start(), spans)
                begin = pos
            continue
        if m.lastgroup == "cjk" and not semicolons and m.group().strip("；") == "":
            continue
        cut = pos
        while cut < end and text[cut] in _CLOSERS:
            cut += 1
        closed = cut > pos
        absorbed = False
        if marker is not None:
            while (mk := marker.match(text, _skip_blanks(text, cut, end), end)) is not None:
                cut, absorbed = mk.end(), True
        if m.lastgroup == "latin" and not absorbed and not _latin_end(
                text, start, m.start(), m.group(), cut, end, closed, glued, trust_case):
            continue
        _add(text, begin, cut, spans)
        begin = pos = cut
    _add(text, begin, end, spans)


def _latin_end(text: str, para: int, at: int, run: str, cut: int, end: int, closed: bool, glued: bool,
               trust_case: bool) -> bool:
    """Whether the Latin terminator `run` at `at` (closers up to `cut`) ends its sentence."""
    if cut < end and not text[cut].isspace():
        if not closed and CJK_CHAR.match(text[cut]):
            # "done.下一句" ends; an ellipsis ("生物...同时", "汉时……爰延") and "S.K.母亲" do not
            return not ("…" in run or ".." in run or (run == "." and _is_abbreviation(text, para, at, end)))
        return (glued and not closed and len(run) == 1 and run != "…" and at - para >= 2
                and _GLUED_BEFORE.fullmatch(text, at - 2, at) is not None
                and _GLUED_AFTER.match(text, cut, end) is not None)
    if run != ".":
        return True
    if trust_case:
        nxt = cut
        while nxt < end and text[nxt].isspace():
            nxt += 1
        if nxt < end and text[nxt].islower():
            return False
    return closed or not _is_abbreviation(text, para, at, end)  # 'in C.) Thus' ends


def _is_abbreviation(text: str, para: int, dot: int, end: int) -> bool:
    """Whether the word before the period at `dot` is an abbreviation, an initial or a list
    number ("1. Install"), so the period ends no sentence."""
    word_start = dot
    while (word_start > para and dot - word_start < 40 and not text[word_start - 1].isspace()
           and not _WIDE_CHAR.match(text[word_start - 1])):  # CJK text has no spaces: "险恶。S.K."
        word_start -= 1
    word = text[word_start:dot].lstrip(_OPENERS)
    if not word:
        return False
    low = word.lower()
    if low in _BEFORE_NUMBER:
        nxt = dot + 1
        while nxt < end and text[nxt].isspace():
            nxt += 1
        return nxt < end and text[nxt].isdigit()
    if low in ABBREVIATIONS or _INITIALS.fullmatch(word):
        return True
    if word.isdigit():  # a list number when it is the first word on its line
        line_start = text.rfind("\n", para, word_start) + 1 or para
        return not text[max(line_start, para):word_start].strip()
    return False


def _is_list_like(text: str, start: int, end: int) -> bool:
    """At least two lines of the paragraph start like list items (or table rows)."""
    if text.find("\n", start, end) == -1:
        return False
    found = _LIST_LINE.finditer(text, start, end)
    return next(found, None) is not None and next(found, None) is not None


def _skip_blanks(text: str, i: int, end: int) -> int:
    while i < end and text[i] in " \t":
        i += 1
    return i


def _add(text: str, a: int, b: int, spans: list[tuple[int, int]]) -> None:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    if a < b:
        spans.append((a, b))
