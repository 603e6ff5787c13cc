"""The page's main strings in English and Chinese; the browser's language (`st.context.locale`)
picks the table, English by default.

Deliberately small: the tabs, the chat input, the first hint, the file filter, the uploader, the
refusal card and the evidence words. Everything else (settings, the model manager, error
messages from the library) stays English: those texts are written once, in rag/.

    >>> language("zh-CN"), language("zh-Hant-TW"), language("en-US"), language(None)
    ('zh', 'zh', 'en', 'en')
    >>> text("zh", "tab_chat")
    '聊天'
"""
from __future__ import annotations

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "tab_chat": "Chat",
        "tab_docs": "Documents",
        "tab_models": "Models",
        "chat_input": "Ask a question about your documents",
        "hint": "Ask a question below. Answers cite their sources as [n]; open a source card to see the quoted "
                "passage highlighted in its chunk.",
        "filter": "Only search these documents",
        "filter_all": "All documents",
        "upload": "Add documents (PDF, Word, Excel, CSV, PowerPoint, Markdown, text, HTML)",
        "nearest": "Nearest sources (not enough to answer):",
        "not_found": "Not found in the documents.",
        "evidence": "Evidence",
        "strong": "strong", "weak": "weak", "none": "none",
        "evidence_strong": "the sources match the question closely",
        "evidence_weak": "the sources match the question only in part; check them",
        "evidence_none": "no passage is close enough to answer from",
        "unmentioned": "None of the passages mentions {names}.",
    },
    "zh": {
        "tab_chat": "聊天",
        "tab_docs": "文档",
        "tab_models": "模型",
        "chat_input": "就你的文档提问",
        "hint": "在下方提问。回答以 [n] 标注来源；展开来源卡片可看到被引用的段落高亮显示。",
        "filter": "只搜索这些文档",
        "filter_all": "全部文档",
        "upload": "添加文档（PDF、Word、Excel、CSV、PowerPoint、Markdown、文本、HTML）",
        "nearest": "最接近的来源（不足以回答）：",
        "not_found": "文档中没有找到答案。",
        "evidence": "证据",
        "strong": "强", "weak": "弱", "none": "无",
        "evidence_strong": "来源与问题高度吻合",
        "evidence_weak": "来源只部分吻合问题，请核对",
        "evidence_none": "没有足够接近、可以据以回答的段落",
        "unmentioned": "没有任何段落提到 {names}。",
    },
}


def language(locale: str | None) -> str:
    """'zh' for a Chinese browser (zh, zh-CN, zh-TW…), else 'en'."""
    return "zh" if locale and locale.lower().split("-")[0] == "zh" else "en"


def text(lang: str, key: str) -> str:
    """The string `key` in `lang`, the English one when that table lacks it."""
    return STRINGS.get(lang, {}).get(key) or STRINGS["en"][key]
